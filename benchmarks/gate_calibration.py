"""The gates' one-sided errors at their limits, on the full grid: what tests/test_stats.py checks on a subset.

For the paired accuracy drop (edgecls.core.stats.paired_interval) and, for comparison, Bonett-Price
alone: P(pass) when the true drop sits exactly on the limit, by trinomial enumeration restricted to
10 standard deviations around the expected counts (the rest weighs < 1e-12), over limits 0.5-10
points, gained rates 0-30% and 20-20,000 images. For rates (edgecls.core.stats.rate_interval, and
Wilson alone): P(pass) at the limit by binomial enumeration, 5-3,000 images and 20,000.

    .venv/bin/python -m benchmarks.gate_calibration            # a few minutes on 2 cores
    .venv/bin/python -m benchmarks.gate_calibration --smoke    # a corner of the grid (CI)

Exit 1 if any cell of the gates' intervals exceeds 2.5%.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy.special import gammaln
from scipy.stats import binom

from edgecls.core.stats import paired_difference, paired_interval, rate_interval, wilson


def trinomial(n: int, pb: float, pc: float, width: float = 10.0):
    def counts(p):
        m, s = n * p, math.sqrt(n * p * (1 - p))
        return np.arange(max(0, int(m - width * s) - 3), min(n, int(m + width * s) + 3) + 1)

    b, c = np.meshgrid(counts(pb), counts(pc), indexing="ij")
    keep = b + c <= n
    b, c = b[keep].astype(float), c[keep].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.where(b == 0, 0.0, b * np.log(pb)) if pb > 0 else np.where(b == 0, 0.0, -np.inf)
        tc = np.where(c == 0, 0.0, c * np.log(pc)) if pc > 0 else np.where(c == 0, 0.0, -np.inf)
    logp = gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(n - b - c + 1) + tb + tc + (n - b - c) * np.log1p(
        -pb - pc)
    return b, c, np.exp(logp)


def drop_grid(limits, gains, sizes):
    worst, worst_bp = (0.0, ()), (0.0, ())
    for limit in limits:
        for n in sizes:
            for pc in gains:
                b, c, p = trinomial(n, pc + limit, pc)
                ours = float(p[paired_interval(b, c, n)[1] <= limit].sum())
                bp = float(p[paired_difference(b, c, n)[1] <= limit].sum())
                worst = max(worst, (ours, (limit, n, pc)))
                worst_bp = max(worst_bp, (bp, (limit, n, pc)))
    return worst, worst_bp


def rate_grid(limits, sizes):
    worst, worst_w = (0.0, ()), (0.0, ())
    for limit in limits:
        for n in sizes:
            k = np.arange(n + 1)
            pmf = binom.pmf(k, n, limit)
            ours = float(pmf[np.array([rate_interval(i, n)[1] for i in k]) <= limit].sum())
            w = float(pmf[np.array([wilson(i, n)[1] for i in k]) <= limit].sum())
            worst, worst_w = max(worst, (ours, (limit, n))), max(worst_w, (w, (limit, n)))
    return worst, worst_w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        drop = drop_grid((0.01,), (0.0, 0.05), (100, 800))
        rate = rate_grid((0.05,), (100, 587))
    else:
        drop = drop_grid((0.005, 0.01, 0.02, 0.03, 0.05, 0.1), (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
                         (20, 40, 100, 200, 400, 800, 2000, 5000, 20000))
        rate = rate_grid((0.01, 0.02, 0.03, 0.05), list(range(5, 3001, 3)) + [587, 1420, 2075, 2962, 20000])
    (ours, at), (bp, bp_at) = drop
    print(f"accuracy drop at its limit: P(pass) at most {ours:.4%} (limit, images, gained rate = {at}); "
          f"Bonett-Price alone {bp:.4%} at {bp_at}")
    (r, r_at), (w, w_at) = rate
    print(f"rate at its limit: P(pass) at most {r:.4%} (limit, images = {r_at}); Wilson alone {w:.4%} at {w_at}")
    return 0 if ours <= 0.025 and r <= 0.025 else 1


if __name__ == "__main__":
    sys.exit(main())
