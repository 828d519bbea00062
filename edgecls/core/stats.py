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
POWER = 0.8  # "about N images would decide": the N at which the check decides with this probability
Z_POWER = 0.8416212335729143  # its normal quantile
SCORE_CC = 0.2  # counts: the score bound's continuity correction (the smallest of 0, 0.05 ... 0.25 that kept
#                 every enumerated one-sided error <= 2.5%; it costs 420 instead of 381 unchanged images to
#                 show a drop <= 1 point)
MAX_IMAGES_TO_DECIDE = 10_000_000  # beyond this "how many images would decide" reads "more than 10 million"


class Outcome(str, Enum):
    passed = "pass"
    inconclusive = "inconclusive"
    failed = "fail"

    @classmethod
    def combine(cls, outcomes) -> "Outcome":
        """One outcome from several checks: fail if any fails, pass if all pass, else inconclusive."""
        outcomes = list(outcomes)
        if not outcomes:  # no check shows anything: nothing is shown to pass
            return cls.inconclusive
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


def exact_upper(k: float, n: float, level: float = LEVEL) -> float:
    """Clopper-Pearson upper end of a proportion k/n: one minus the lower end of the complement."""
    return 1.0 if n <= 0 else 1.0 - exact_lower(n - k, n, level)


def rate_interval(k: float, n: float) -> tuple[float, float]:
    """95% interval of a rate for the gates: Wilson's, each end moved out to the exact (Clopper-Pearson) one
    where that is wider, so a rate is shown beyond a limit, or within it, only on evidence an exact
    one-sided test at 2.5% accepts (Wilson's upper end alone passes a rate exactly at a 5% limit 2.55% of
    the time on 587 images, at 3% 2.53% on 1,420; tests/test_stats.py enumerates both sides)."""
    low, high = wilson(k, n)
    return min(low, exact_lower(k, n)), max(high, exact_upper(k, n))


def paired_difference(b, c, n, z: float = Z):
    """Bonett & Price's (2012) adjusted Wald interval of p_b - p_c from paired data: `b` pairs changed
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


def score_z(b, c, n, delta, cc: float = 0.0):
    """Tango's (1998) score statistic for H0: p_b - p_c = `delta` (the variance at the restricted maximum-
    likelihood estimate under H0), its numerator moved by `cc` counts (+ for an upper bound, - for a lower)."""
    b, c, delta = np.asarray(b, np.float64), np.asarray(c, np.float64), np.asarray(delta, np.float64)
    a2 = 2.0 * n
    bb = -b - c + (2.0 * n - b + c) * delta
    cc0 = -c * delta * (1.0 - delta)
    p_c = (-bb + np.sqrt(np.maximum(bb * bb - 4.0 * a2 * cc0, 0.0))) / (2.0 * a2)
    var = n * np.maximum(2.0 * p_c + delta * (1.0 - delta), 0.0)
    return (b - c - n * delta + cc) / np.sqrt(np.maximum(var, 1e-300))


def _score_bound(b, c, n, z: float, upper: bool):
    """The end of Tango's score interval, with SCORE_CC, by bisection (vectorised)."""
    b, c = np.asarray(b, np.float64), np.asarray(c, np.float64)
    d = (b - c) / n
    lo, hi = (d, np.ones_like(d)) if upper else (-np.ones_like(d), d)
    for _ in range(50):
        mid = (lo + hi) / 2
        if upper:  # inside while the statistic is >= -z
            inside = score_z(b, c, n, mid, SCORE_CC) >= -z
            lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
        else:
            inside = score_z(b, c, n, mid, -SCORE_CC) <= z
            lo, hi = np.where(inside, lo, mid), np.where(inside, mid, hi)
    return hi if upper else lo


def paired_interval(b, c, n, z: float = Z):
    """The gates' 95% interval of a paired difference p_b - p_c: the union of Bonett-Price's and Tango's score
    interval (continuity-corrected by SCORE_CC counts). Bonett-Price alone passes a drop exactly at its
    limit up to 4.2% of the time at 800-20,000 images and on zero-rate cells; the score bound alone up to
    2.56% (100 images, 20% gained, 10-point limit); the union keeps each one-sided error <= 2.5% on the
    enumerated grid (tests/test_stats.py, benchmarks/gate_calibration.py). Scalars or arrays."""
    bl, bh = paired_difference(b, c, n, z)
    lo, hi = np.minimum(bl, _score_bound(b, c, n, z, False)), np.maximum(bh, _score_bound(b, c, n, z, True))
    lo, hi = np.maximum(lo, -1.0), np.minimum(hi, 1.0)
    return (float(lo), float(hi)) if np.ndim(lo) == 0 else (lo, hi)


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
            return (f"about {self.images_to_decide:,} images would decide (with {POWER:.0%} probability) at the "
                    "observed rates")
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
    """The smallest image count (searched by doubling, then bisection) at which `interval(m)` — what m images
    would show, at its POWER-ward quantile, if the observed rates are the true ones — no longer straddles
    the limit, so that m images decide with probability >= POWER; None if beyond the search."""
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


def binom_quantile(m: int, p: float, q: float) -> int:
    """The smallest k with P(K <= k) >= q for K ~ Binomial(m, p) (q: POWER, 1 - POWER or 0.5; a normal
    approximation past 10^5 images)."""
    if p <= 0:
        return 0
    if p >= 1:
        return m
    if m > 100_000:
        zq = Z_POWER if q > 0.5 else -Z_POWER if q < 0.5 else 0.0
        return min(m, max(0, math.ceil(m * p + zq * math.sqrt(m * p * (1 - p)) - 0.5)))
    lo, hi = -1, m  # P(K <= lo) < q <= P(K <= hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if betainc(m - mid, mid + 1, 1 - p) >= q:  # P(K <= mid) = I_{1-p}(m - mid, mid + 1)
            hi = mid
        else:
            lo = mid
    return hi


def judge_rate(name: str, k: int, n: int, limit_percent: float) -> Judgement:
    """Is the share `k/n` (of something that should be rare) shown to be at most `limit_percent`?"""
    low, high = (100 * v for v in rate_interval(k, n))
    outcome = _side(low, high, limit_percent) if n else Outcome.inconclusive
    need = None
    p = k / n if n else 0.0
    if outcome == Outcome.inconclusive and 100 * p != limit_percent:
        def at(m: int) -> Outcome:  # decided with >= POWER probability at m images if the true rate is p
            if 100 * p < limit_percent:  # the pass side: the POWER quantile of the count must still pass
                return _side(-1.0, 100 * rate_interval(binom_quantile(m, p, POWER), m)[1], limit_percent)
            kq = binom_quantile(m, p, 1 - POWER)  # the fail side: the (1 - POWER) quantile must still fail
            return _side(100 * rate_interval(kq, m)[0], 101.0, limit_percent)

        need = _images_to_decide(at, max(n, 1))
    return Judgement(name, 100 * p, low, high, limit_percent, outcome, f"{k} of {n}", need)


def judge_drop(lost: int, gained: int, n: int, max_drop: float) -> Judgement:
    """Is the paired accuracy drop (reference minus candidate, points) shown to be at most `max_drop`?"""
    low, high = (100 * v for v in paired_interval(lost, gained, n)) if n else (-100.0, 100.0)
    outcome = _side(low, high, max_drop) if n else Outcome.inconclusive
    need = None
    if outcome == Outcome.inconclusive and n and (lost - gained) * 100 / n != max_drop:
        pb, pc = lost / n, gained / n
        toward = 1 if 100 * (pb - pc) < max_drop else -1  # the pass side: more lost, fewer gained; else the reverse

        def at(m: int) -> Outcome:  # each count at its POWER-ward binomial quantile
            b = binom_quantile(m, pb, POWER if toward > 0 else 1 - POWER)
            c = binom_quantile(m, pc, 1 - POWER if toward > 0 else POWER)
            lo, hi = paired_interval(b, c, m)
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


__all__ = ["Judgement", "Outcome", "judge_drop", "judge_rate", "paired_difference", "paired_interval", "rate_interval",
           "score_z", "sqnr_db", "wilson"]
