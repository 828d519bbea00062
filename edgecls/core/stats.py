"""Intervals and three-outcome decisions for the parity gates: what a count of images can show.

Two statistics, both published score intervals with tested coverage (tests/test_stats.py
enumerates the exact binomial and trinomial outcomes):

- a **rate** (answers changed, images whose probabilities moved beyond a tolerance): the Wilson
  score interval of a binomial proportion, its lower end never above the exact (Clopper-Pearson)
  one (`rate_interval`). Wilson's lower end alone is too high for one or two events in few images
  (Brown, Cai and DasGupta 2001): with a true rate exactly at a 1% limit, 17 images would show it
  "beyond" the limit 15.7% of the time (one changed answer), not the 2.5% a one-sided 95% bound
  allows; the exact bound keeps every false "fail" at or under 2.5% (tested by enumeration);
- an **accuracy drop** from paired answers on the same images (`lost`: the reference right and
  the candidate wrong; `gained`: the reverse): Bonett and Price's (2012) adjusted Wald interval for
  the difference of two paired proportions, which treats the two discordant cells as cells of one
  multinomial (Newcombe's independent-samples hybrid, used before, does not: its coverage falls to
  ~92%). Tango's score interval was also measured: closer to 95% on average, but 92.97% at 40
  images with 20%/2% discordance; Bonett-Price stays at or above 94.7% on the whole grid.

A limit is judged on the whole interval: `pass` when all of it is on the allowed side, `fail`
when all of it is on the wrong side, `inconclusive` when it straddles the limit. An
inconclusive result says roughly how many images would decide at the observed rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

Z = 1.959963984540054  # two-sided 95%
LEVEL = 0.95
MAX_IMAGES_TO_DECIDE = 10_000_000  # beyond this "how many images would decide" reads "more than 10 million"


class Outcome(str, Enum):
    passed = "pass"
    inconclusive = "inconclusive"
    failed = "fail"

    @classmethod
    def combine(cls, outcomes) -> "Outcome":
        """One outcome from several checks: fail if any fails, pass if all pass, else inconclusive."""
        outcomes = list(outcomes)
        if cls.failed in outcomes:
            return cls.failed
        return cls.passed if all(o == cls.passed for o in outcomes) else cls.inconclusive


def wilson(k: float, n: float, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (k may be fractional: an expected count)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (a, b > 0; 0 <= x <= 1)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def exact_lower(k: float, n: float, level: float = LEVEL) -> float:
    """Clopper-Pearson lower end of a proportion k/n (k may be fractional): the p at which k or more events
    in n have probability (1 - level) / 2, i.e. I_p(k, n - k + 1) = (1 - level) / 2, by bisection."""
    if k <= 0 or n <= 0:
        return 0.0
    if k >= n:
        return ((1 - level) / 2) ** (1 / n)
    target, lo, hi = (1 - level) / 2, 0.0, k / n
    for _ in range(100):
        mid = (lo + hi) / 2
        if betainc(k, n - k + 1, mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return lo


def rate_interval(k: float, n: float) -> tuple[float, float]:
    """95% interval of a rate for the gates: Wilson's, its lower end lowered to the exact one where that is
    lower (so a rate is shown beyond a limit only on evidence an exact test accepts)."""
    low, high = wilson(k, n)
    return min(low, exact_lower(k, n)), high


def paired_difference(b, c, n, z: float = Z):
    """95% interval of p_b - p_c from paired data (Bonett & Price 2012, adjusted Wald): `b` pairs changed
    one way, `c` the other, `n` pairs in all. Scalars or numpy arrays (the coverage test enumerates
    every outcome at once); fractions, clipped to [-1, 1].

    One pseudo-pair added to each discordant cell (and two to n) centres the interval where the
    Wald interval breaks down: no change at all, or one change in 40 images.
    """
    pb, pc = (np.asarray(b, np.float64) + 1) / (n + 2), (np.asarray(c, np.float64) + 1) / (n + 2)
    d = pb - pc
    half = z * np.sqrt(np.maximum(pb + pc - d * d, 0.0) / (n + 2))
    lo, hi = np.maximum(d - half, -1.0), np.minimum(d + half, 1.0)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


@dataclass(frozen=True)
class Judgement:
    """One check of a gate: the estimate, its 95% interval, the limit, and what they show."""

    name: str  # e.g. "changed answers", "accuracy drop", "images with |Δp| > 1e-4"
    estimate: float  # in the check's unit (percent for rates and drops)
    low: float
    high: float
    limit: float
    outcome: Outcome
    count: str  # the counts behind it, e.g. "3 of 520"
    images_to_decide: int | None = None  # inconclusive: roughly how many images would decide
    unit: str = "%"  # "%" for rates, " points" for accuracy drops

    def sentence(self) -> str:
        """One line: what was measured, its interval and what it shows, e.g. for a table or a reason."""
        u = self.unit
        head = f"{self.name} {self.estimate:.2f}{u} ({self.count}; 95% interval {self.low:.2f} to {self.high:.2f}{u})"
        if self.outcome == Outcome.passed:
            return f"{head}: shown <= {self.limit:g}{u}"
        if self.outcome == Outcome.failed:
            return f"{head}: shown > {self.limit:g}{u}"
        return f"{head}: not shown either side of {self.limit:g}{u}; {self.need()}"

    def need(self) -> str:
        """What would decide an inconclusive check, in words."""
        if self.images_to_decide is not None:
            return f"about {self.images_to_decide:,} images would decide at the observed rates"
        if abs(self.estimate - self.limit) < 1e-12:
            return "the observed rate sits on the limit: no number of images decides"
        return "more than 10 million images would be needed at the observed rates"

    def to_dict(self) -> dict:
        return {"name": self.name, "estimate": self.estimate, "interval": [self.low, self.high],
                "limit": self.limit, "unit": self.unit.strip(), "outcome": self.outcome.value,
                "count": self.count, "images_to_decide": self.images_to_decide}

    @classmethod
    def from_dict(cls, d: dict) -> "Judgement":
        """A check as `to_dict` stored it (in a manifest or JSON)."""
        return cls(d["name"], d["estimate"], *d["interval"], d["limit"], Outcome(d["outcome"]), d["count"],
                   d.get("images_to_decide"), "%" if d.get("unit", "%") == "%" else " points")


def _side(low: float, high: float, limit: float) -> Outcome:
    if high <= limit:
        return Outcome.passed
    if low > limit:
        return Outcome.failed
    return Outcome.inconclusive


def _images_to_decide(interval, n: int) -> int | None:
    """The smallest image count (searched by doubling, then bisection) at which `interval(m)` — the same
    observed rates scaled to m images — no longer straddles the limit; None if beyond the search."""
    if interval(n) != Outcome.inconclusive:
        return n
    lo, hi = n, max(2 * n, 16)
    while interval(hi) == Outcome.inconclusive:
        lo, hi = hi, hi * 2
        if hi > MAX_IMAGES_TO_DECIDE:
            return None
    while hi - lo > max(1, lo // 100):  # 1% precision is plenty for "roughly how many"
        mid = (lo + hi) // 2
        if interval(mid) == Outcome.inconclusive:
            lo = mid
        else:
            hi = mid
    return hi


def judge_rate(name: str, k: int, n: int, limit_percent: float) -> Judgement:
    """Is the share `k/n` (of something that should be rare) shown to be at most `limit_percent`?"""
    low, high = (100 * v for v in rate_interval(k, n))
    outcome = _side(low, high, limit_percent) if n else Outcome.inconclusive
    need = None
    if outcome == Outcome.inconclusive and n:
        p = k / n

        def at(m: int) -> Outcome:
            lo, hi = rate_interval(p * m, m)
            return _side(100 * lo, 100 * hi, limit_percent)

        need = _images_to_decide(at, n) if 100 * p != limit_percent else None
    elif not n:
        need = _images_to_decide(lambda m: _side(*(100 * v for v in wilson(0, m)), limit_percent), 1)
    return Judgement(name, 100 * k / n if n else 0.0, low, high, limit_percent, outcome, f"{k} of {n}", need)


def judge_drop(lost: int, gained: int, n: int, max_drop: float) -> Judgement:
    """Is the paired accuracy drop (reference minus candidate, points) shown to be at most `max_drop`?"""
    low, high = (100 * v for v in paired_difference(lost, gained, n))
    outcome = _side(low, high, max_drop) if n else Outcome.inconclusive
    need = None
    if outcome == Outcome.inconclusive and n and (lost - gained) * 100 / n != max_drop:
        def at(m: int) -> Outcome:
            lo, hi = paired_difference(lost * m / n, gained * m / n, m)
            return _side(100 * lo, 100 * hi, max_drop)

        need = _images_to_decide(at, n)
    return Judgement("accuracy drop", 100 * (lost - gained) / n if n else 0.0, low, high, max_drop, outcome,
                     f"lost {lost}, gained {gained} of {n}", need, unit=" points")


SQNR_CAP_DB = 200.0  # an exact tensor (no noise at all) reads as this


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `approx` against `reference`, dB (20 log10 |ref| / |ref - approx|),
    capped at SQNR_CAP_DB: the per-layer measure of int8 error (export's TFLite ranking, verify --explain)."""
    f, q = np.asarray(reference, np.float64).ravel(), np.asarray(approx, np.float64).ravel()
    noise = float(np.linalg.norm(f - q))
    if noise == 0:
        return SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 20 * np.log10(max(float(np.linalg.norm(f)), 1e-30) / noise)))


__all__ = ["Judgement", "Outcome", "judge_drop", "judge_rate", "paired_difference", "sqnr_db", "wilson"]
