"""The latency intervals: coverage, not formulas (STYLE 14)."""

import math

import numpy as np
import pytest

from edgecls.bench.latency import MIN_RUNS, binom_cdf, interval, quantile_interval, ranks, too_few


def test_binomial_cdf_against_the_sum_of_terms():
    for n, q in ((1, 0.5), (7, 0.3), (40, 0.9), (200, 0.99)):
        exact = np.cumsum([math.comb(n, k) * q ** k * (1 - q) ** (n - k) for k in range(n + 1)])
        assert np.allclose(binom_cdf(n, q), exact, atol=1e-12)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("n", [6, 11, 50, 64, 101, 662, 1000])
def test_exact_coverage_is_at_least_95_percent(n, q):
    """P(X_(l) <= quantile <= X_(u)) = P(l <= B <= u - 1), B ~ Binomial(n, q), for any continuous distribution."""
    r = ranks(n, q)
    if r is None:
        assert q > 0.5  # only the tails run out of ranks
        return
    low, high = r
    cdf = binom_cdf(n, q)
    coverage = cdf[high - 1] - (cdf[low - 2] if low >= 2 else 0.0)
    assert 0.95 <= coverage < 0.995, coverage  # holds the truth, and is not uselessly wide
    assert 1 <= low < high <= n


def test_median_interval_covers_a_lognormal_median_95_percent_of_the_time():
    """2,000 draws of 101 lognormal 'latencies' (skewed like real ones): the interval holds exp(mu) ~95%."""
    rng = np.random.default_rng(0)
    mu, trials = math.log(0.2), 2000
    draws = np.sort(rng.lognormal(mu, 0.4, (trials, 101)), axis=1)
    low, high = ranks(101, 0.5)
    covered = (draws[:, low - 1] <= math.exp(mu)) & (math.exp(mu) <= draws[:, high - 1])
    assert 0.94 <= covered.mean() <= 0.985, covered.mean()
    assert quantile_interval(draws[0], 0.5) == (draws[0, low - 1], draws[0, high - 1])


def test_too_few_runs_for_a_tail():
    assert ranks(5, 0.5) is None and quantile_interval([1.0, 2.0], 0.5) is None
    x = np.arange(1.0, 101.0)
    assert interval(x, [], "p99") is None and too_few("p99", 100) == "too few runs for p99 (100 < 662)"
    assert interval(x, [], "p90") is not None and too_few("p90", MIN_RUNS["p90"]) is None


def test_the_rounds_widen_the_interval_from_three_on():
    x = np.linspace(1.0, 2.0, 301)
    alone = interval(x, [], "p50")
    assert alone[0] <= np.median(x) <= alone[1] and alone[1] - alone[0] < 0.2
    assert interval(x, [1.0, 1.9], "p50") == alone  # two rounds: their range is no interval yet
    assert interval(x, [1.1, 1.5, 1.9], "p50") == [1.1, 1.9]
