"""Latency percentiles with their uncertainty: how sure a set of timed runs lets us be.

A p50 from one process is one draw: two runs of the same configuration differ by more than two
runtimes often do. Each bench row therefore carries a 95% interval for its p50 (and its p90/p99)
made of two parts, and the wider of them wins:

- **within a process**: the distribution-free order-statistic interval for a quantile (the
  ranks l, u whose binomial probability of bracketing the true quantile is at least 95%, equal
  tails); exact for independent samples of any distribution, no bootstrap, no randomness;
- **between processes** (with >= 3 rounds): the range of the rounds' own values. Samples in one
  process share its memory layout, thread placement and the machine's state, so the pooled
  samples understate the spread; the rounds' range shows it.

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
MIN_ROUNDS = 3  # from this many rounds on, the rounds' range widens the interval


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


def interval(samples, rounds: list[float], name: str, level: float = LEVEL) -> list[float] | None:
    """The row's interval for percentile `name` ("p50", "p90", "p99") of the pooled `samples`, widened to
    the range of the rounds' own values (`rounds`) when there are at least MIN_ROUNDS of them; None when
    the pooled samples are fewer than MIN_RUNS[name]."""
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
