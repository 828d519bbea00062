"""The intervals behind the parity gates: tested by their coverage, computed exactly by enumeration."""

import math

import numpy as np
import pytest

from edgecls.core.stats import Outcome, judge_drop, judge_rate, paired_difference, wilson

RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)  # each discordant cell: lost, gained


def _trinomial(n: int, pb: float, pc: float):
    """Every outcome (lost b, gained c, unchanged n-b-c) of n paired answers, with its exact probability."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = b + c <= n
    b, c = b[keep], c[keep]
    lg = np.vectorize(math.lgamma)
    logp = (lg(n + 1) - lg(b + 1) - lg(c + 1) - lg(n - b - c + 1) + b * np.log(pb) + c * np.log(pc)
            + (n - b - c) * np.log1p(-pb - pc))
    return b, c, np.exp(logp)


def _coverage(interval, n: int, pb: float, pc: float) -> float:
    b, c, p = _trinomial(n, pb, pc)
    lo, hi = interval(b, c, n)
    d = pb - pc
    return float(p[(lo - 1e-12 <= d) & (d <= hi + 1e-12)].sum())


def _newcombe_hybrid(b, c, n):
    """The interval edgecls used before (independent Wilson intervals of the two discordant counts)."""
    z = 1.959964

    def w(k):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return centre - half, centre + half

    (l1, u1), (l2, u2) = w(b), w(c)
    p1, p2 = b / n, c / n
    return (p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), p1 - p2 + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


@pytest.mark.parametrize("n", [40, 100, 400])
def test_paired_interval_coverage_is_near_nominal(n):
    """Exact coverage over a grid of discordance rates stays within 93-99% (at or above 93% everywhere; at most
    99% wherever the expected number of changed answers reaches 5 — below that every interval covers more,
    as most outcomes are "nothing changed", which any interval must cover)."""
    for pb in RATES:
        for pc in RATES:
            cov = _coverage(paired_difference, n, pb, pc)
            assert cov >= 0.93, (n, pb, pc, cov)
            if n * (pb + pc) >= 5:
                assert cov <= 0.99, (n, pb, pc, cov)


def test_the_old_interval_fails_the_same_check():
    assert _coverage(_newcombe_hybrid, 100, 0.2, 0.2) < 0.93


def test_wilson_matches_known_values():
    lo, hi = wilson(0, 381)
    assert lo == 0 and hi == pytest.approx(0.00998, abs=1e-4)  # 381 images with no change show < 1%
    lo, hi = wilson(5, 100)
    assert (lo, hi) == pytest.approx((0.02154, 0.11175), abs=1e-4)


def _false_fail_rate(interval, n: int, limit: float) -> float:
    """P(the interval's lower end is above `limit`) when the true rate is exactly `limit`: exact, by enumeration."""
    k = np.arange(n + 1)
    pmf = np.exp([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(limit)
                  + (n - i) * math.log1p(-limit) for i in k])
    return float(pmf[np.array([interval(i, n)[0] for i in k]) > limit].sum())


@pytest.mark.parametrize("n", [12, 17, 30, 60, 100, 280, 400])
def test_a_rate_at_its_limit_is_shown_beyond_it_at_most_2_5_percent_of_the_time(n):
    """One changed answer of 12 images was 'shown > 1%' (Wilson's lower end 1.49%): with a true rate of
    exactly 1%, 17 images fail 15.7% of the time. The gates' rate interval keeps a false fail <= 2.5%."""
    from edgecls.core.stats import rate_interval

    assert _false_fail_rate(rate_interval, n, 0.01) <= 0.025
    assert _false_fail_rate(rate_interval, n, 0.05) <= 0.025
    if n in (12, 17):
        assert _false_fail_rate(wilson, n, 0.01) > 0.1  # the interval used before
    assert judge_rate("changed answers", 1, 12, 1.0).outcome == Outcome.inconclusive
    k = np.arange(n + 1)  # and the other side: a false pass (upper end below the limit) stays <= 2.5% too
    pmf = np.exp([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(0.01)
                  + (n - i) * math.log1p(-0.01) for i in k])
    assert pmf[np.array([rate_interval(i, n)[1] for i in k]) < 0.01].sum() <= 0.025


def test_exact_lower_end_matches_the_beta_quantile():
    from scipy.stats import beta

    from edgecls.core.stats import exact_lower

    for k, n in [(1, 12), (2, 40), (13, 280), (0.5, 10), (300, 30000), (7, 7)]:
        assert exact_lower(k, n) == pytest.approx(beta.ppf(0.025, k, n - k + 1), rel=1e-6, abs=1e-12)
    assert exact_lower(0, 50) == 0.0


def test_three_outcomes_and_how_many_images_would_decide():
    assert judge_rate("changed answers", 0, 500, 1.0).outcome == Outcome.passed
    assert judge_rate("changed answers", 5, 100, 1.0).outcome == Outcome.failed
    j = judge_rate("changed answers", 1, 40, 1.0)
    assert j.outcome == Outcome.inconclusive and 100 < j.images_to_decide < 1000
    # at the estimated rate, that many images would decide: check the claim itself
    assert judge_rate("x", j.images_to_decide / 40, j.images_to_decide, 1.0).outcome != Outcome.inconclusive
    d = judge_drop(1, 0, 40, 1.0)
    assert d.outcome == Outcome.inconclusive and d.images_to_decide > 40
    assert judge_drop(0, 0, 1000, 1.0).outcome == Outcome.passed
    assert judge_drop(40, 0, 400, 1.0).outcome == Outcome.failed
    assert "sits on the limit" in judge_rate("x", 1, 100, 1.0).need()


def test_docs_worked_examples_equal_the_code():
    """docs/verify.md's worked examples are the code's own output (edgecls.core.gates.worked_examples)."""
    from pathlib import Path

    from edgecls.core.gates import worked_examples

    doc = (Path(__file__).parent.parent / "docs" / "verify.md").read_text()
    assert worked_examples() in doc


def test_limits_are_stated_from_one_definition():
    """docs/verify.md's limits table, verify --help and golden's float tolerances come from edgecls.core.gates."""
    from pathlib import Path

    from typer.testing import CliRunner

    from edgecls.cli import app
    from edgecls.core.gates import TOLERANCE, limits_table, summary
    from edgecls.verify.golden import TOLERANCES

    doc = (Path(__file__).parent.parent / "docs" / "verify.md").read_text()
    assert limits_table() in doc
    help_text = " ".join(CliRunner().invoke(app, ["verify", "--help"]).stdout.replace("│", " ").split())
    assert " ".join(summary().split()[:12]) in help_text and "{gates}" not in help_text
    assert {p: t["abs"] for p, t in TOLERANCES.items() if p != "int8"} == {p.value: v for p, v in TOLERANCE.items()}
