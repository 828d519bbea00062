"""Latency percentiles with their uncertainty: how sure a set of timed runs lets us be.

The round — one fresh process, its warm-up and its timed calls — is the unit of evidence. Calls
in one process are not independent draws: they share its memory layout, thread placement and the
machine's moment, and consecutive calls are correlated. An interval built from the pooled calls as
if they were independent covers the truth far less often than it says (simulated with AR(1)
noise inside a round, phi 0.5 / 0.9: 80% / 43% for a nominal 95%).

- **p50** (from 2 rounds on): each round gives one p50; the row's p50 is their median and its
  interval the distribution-free order-statistic interval of the median of the rounds' p50s
  (`round_interval`). It is exact whatever happens inside a round, as long as rounds are
  independent draws of one process-to-process distribution; its level is the exact binomial
  coverage of the chosen ranks, stated with it: 96.9% for 6 rounds ([min, max]), 93.8% for 5, 75%
  for 3. tests/test_latency.py checks it by simulation (independent calls, AR(1) within rounds,
  process-to-process spread). One round has no between-process evidence: its interval is the
  within-process one and says so (level None).
- **p90/p99**: the order-statistic interval of the pooled calls, widened to the rounds' range from
  MIN_ROUNDS on; nominal 95% for independent calls only (not a calibrated level: see above).

Tail percentiles rest on few samples: below MLPerf's minimum run counts (64 for p90, 662 for p99)
the upper order statistic a 95% interval needs does not exist, and the tail is reported as too few
runs rather than as a number with no bound. numpy only: this runs on a device without SciPy.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
#: MLPerf's minimum query counts for a tail-latency estimate (the LoadGen rules); p50 needs 6 for 95%
MIN_RUNS = {"p50": 6, "p90": 64, "p99": 662}
QUANTILE = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
MIN_ROUNDS = 3  # from this many rounds on, the rounds' range widens the p90/p99 interval
#: the fewest rounds whose p50s give an order-statistic interval of at least LEVEL: [min, max] of 6
#: covers the median of the rounds' distribution with probability 1 - 2 * 0.5**6 = 96.9%
ROUNDS_FOR_LEVEL = 6


def binom_cdf(n: int, q: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, q), in float64 through log-space (no SciPy)."""
    k = np.arange(n + 1)
    logc = np.concatenate([[0.0], np.cumsum(np.log(n - k[1:] + 1) - np.log(k[1:]))])
    pmf = np.exp(logc + k * np.log(q) + (n - k) * np.log1p(-q))
    return np.minimum(np.cumsum(pmf), 1.0)


def ranks(n: int, q: float, level: float = LEVEL) -> tuple[int, int] | None:
    """1-based ranks (l, u) with P(X_(l) <= quantile q <= X_(u)) >= `level` for `n` independent samples,
    each tail at most (1 - level) / 2; None when `n` is too small for such a pair to exist."""
    if n < 1:
        return None
    cdf = binom_cdf(n, q)  # cdf[k] = P(B <= k), B = samples at or below the true quantile
    alpha = (1 - level) / 2
    # X_(l) <= xi  iff  B >= l:  P(B <= l-1) <= alpha;  xi <= X_(u)  iff  B <= u-1:  P(B <= u-1) >= 1-alpha
    lows = np.flatnonzero(cdf[:n] <= alpha)  # candidates l-1 = 0..n-1
    highs = np.flatnonzero(cdf[:n] >= 1 - alpha)
    if not len(lows) or not len(highs):
        return None
    return int(lows[-1]) + 1, int(highs[0]) + 1


def quantile_interval(samples, q: float, level: float = LEVEL) -> tuple[float, float] | None:
    """The order-statistic `level` interval of quantile `q` of `samples`; None for too few samples."""
    x = np.sort(np.asarray(samples, np.float64))
    r = ranks(len(x), q, level)
    return None if r is None else (float(x[r[0] - 1]), float(x[r[1] - 1]))


def coverage(n: int, low: int, high: int, q: float = 0.5) -> float:
    """The exact coverage of the order statistics (X_(low), X_(high)) of `n` independent values for their
    quantile `q`: P(low <= B <= high - 1), B ~ Binomial(n, q) the values at or below the quantile."""
    cdf = binom_cdf(n, q)
    return float(cdf[high - 1] - cdf[low - 1])


def round_interval(values, level: float = LEVEL) -> tuple[float, float, float] | None:
    """The order-statistic interval of the median of independent per-round `values` (one per fresh process),
    and its exact level: the ranks of `ranks(r, 0.5, level)` where r rounds allow them, else [min, max]
    (level 1 - 2 * 0.5**r: 75% for 3, 93.8% for 5, 96.9% for 6). None for fewer than 2 rounds."""
    x = np.sort(np.asarray(values, np.float64))
    r = len(x)
    if r < 2:
        return None
    lo, hi = ranks(r, 0.5, level) or (1, r)
    return float(x[lo - 1]), float(x[hi - 1]), coverage(r, lo, hi)


def interval(samples, rounds: list[float], name: str, level: float = LEVEL) -> list[float] | None:
    """The row's interval for percentile `name` ("p50", "p90", "p99"). p50 from 2 rounds on: the interval of
    the median of the rounds' p50s (`round_interval`; its level from `interval_level`). Otherwise the
    order-statistic interval of the pooled `samples`, widened to the range of the rounds' own values when
    there are at least MIN_ROUNDS of them; None when the pooled samples are fewer than MIN_RUNS[name]."""
    if name == "p50" and len(rounds) >= 2:
        lo, hi, _ = round_interval(rounds, level)
        return [lo, hi]
    if len(samples) < MIN_RUNS[name]:
        return None
    ci = quantile_interval(samples, QUANTILE[name], level)
    if ci is None:
        return None
    point = float(np.percentile(samples, 100 * QUANTILE[name]))
    lo, hi = min(ci[0], point), max(ci[1], point)
    if len(rounds) >= MIN_ROUNDS:
        lo, hi = min(lo, min(rounds)), max(hi, max(rounds))
    return [lo, hi]


def too_few(name: str, runs: int) -> str | None:
    """Why percentile `name` cannot be estimated from `runs` samples, or None when it can."""
    need = MIN_RUNS[name]
    return None if runs >= need else f"too few runs for {name} ({runs} < {need})"


def interval_level(rounds: int, name: str = "p50", level: float = LEVEL) -> float | None:
    """The real level of `interval`'s p50 interval for `rounds` rounds (None: within one process only, or a
    tail percentile's nominal interval, which is not calibrated for correlated calls)."""
    if name != "p50" or rounds < 2:
        return None
    lo, hi = ranks(rounds, 0.5, level) or (1, rounds)
    return coverage(rounds, lo, hi)
