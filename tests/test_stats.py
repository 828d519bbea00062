"""The intervals behind the parity gates: tested by their coverage, computed exactly by enumeration."""

import math

import numpy as np
import pytest

from edgecls.core.stats import (
    Outcome,
    judge_drop,
    judge_rate,
    paired_difference,
    paired_interval,
    rate_interval,
    wilson,
)

RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)  # each discordant cell: lost, gained


def _trinomial(n: int, pb: float, pc: float, width: float | None = None):
    """Every outcome (lost b, gained c, unchanged n-b-c) of n paired answers, with its exact probability (zero
    rates allowed); with `width`, only counts within that many standard deviations of their means (the rest
    weighs < 1e-12)."""
    def counts(p):
        if width is None:
            return np.arange(n + 1)
        m, s = n * p, math.sqrt(n * p * (1 - p))
        return np.arange(max(0, int(m - width * s) - 3), min(n, int(m + width * s) + 3) + 1)

    b, c = np.meshgrid(counts(pb), counts(pc), indexing="ij")
    keep = b + c <= n
    b, c = b[keep].astype(np.float64), c[keep].astype(np.float64)
    lg = np.vectorize(math.lgamma)
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.where(b == 0, 0.0, b * np.log(pb)) if pb > 0 else np.where(b == 0, 0.0, -np.inf)
        tc = np.where(c == 0, 0.0, c * np.log(pc)) if pc > 0 else np.where(c == 0, 0.0, -np.inf)
    logp = lg(n + 1) - lg(b + 1) - lg(c + 1) - lg(n - b - c + 1) + tb + tc + (n - b - c) * np.log1p(-pb - pc)
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


@pytest.mark.parametrize("n", [20, 100])
def test_the_gates_paired_interval_covers_zero_rate_cells(n):
    """Bonett-Price alone covers 92.8% at 20 images and 93.8% at 100 on cells with a zero rate, which the grid above
    skips; the gates' interval (with the score bound) stays >= 95% there."""
    cells = [(pb, pc) for pb in (0.0, 0.005, 0.01, 0.05, 0.2) for pc in (0.0, 0.005, 0.01, 0.05, 0.2) if pb + pc > 0]
    worst_bp = min(_coverage(paired_difference, n, pb, pc) for pb, pc in cells)
    assert worst_bp < 0.945
    for pb, pc in cells:
        assert _coverage(paired_interval, n, pb, pc) >= 0.95, (n, pb, pc)


def _false_pass_drop(interval, n: int, limit: float, gained: float) -> float:
    """P(the interval's upper end <= `limit`) when the true drop is exactly `limit` (lost rate = gained + limit)."""
    b, c, p = _trinomial(n, gained + limit, gained, width=10)
    return float(p[interval(b, c, n)[1] <= limit].sum())


@pytest.mark.parametrize("n", [20, 100, 400, 800, 2000])
def test_a_drop_at_its_limit_passes_at_most_2_5_percent_of_the_time(n):
    """The pass side of the drop: at a true drop exactly at the limit, Bonett-Price passed 2.9-4.2% of the time
    for 800-20,000 images (and more on zero-rate cells); the gates' interval <= 2.5% on every cell, zero rates
    included (the full grid to 20,000 images: benchmarks/gate_calibration.py)."""
    worst_bp = 0.0
    for limit in (0.01, 0.03):
        for gained in (0.0, 0.001, 0.01, 0.05, 0.2):
            assert _false_pass_drop(paired_interval, n, limit, gained) <= 0.025, (limit, gained)
            worst_bp = max(worst_bp, _false_pass_drop(paired_difference, n, limit, gained))
    if n >= 400:
        assert worst_bp > 0.025  # the interval used before
    assert judge_drop(0, 0, 419, 1.0).outcome == Outcome.inconclusive  # 0.99^360 = 2.7% > 2.5%: not enough
    assert judge_drop(0, 0, 420, 1.0).outcome == Outcome.passed


def _threshold(end, n: int, limit: float, upper: bool) -> int:
    """The last count k whose interval end (upper: the upper end <= limit, a pass) or the first whose lower end
    > limit (a fail): the ends grow with k, so a bisection finds it."""
    lo, hi = -1, n + 1  # upper: end(lo) <= limit < end(hi); lower: end(lo) <= limit < end(hi) as well
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if end(mid, n)[1 if upper else 0] <= limit:
            lo = mid
        else:
            hi = mid
    return lo if upper else hi


@pytest.mark.parametrize("limit", [0.01, 0.03, 0.05])
def test_a_rate_at_its_limit_passes_at_most_2_5_percent_of_the_time(limit):
    """Wilson's upper end alone passes a rate at a 5% limit 2.55% of the time (587 images); the gates' rate interval
    (the exact upper end where wider) keeps every n <= 2.5%."""
    from scipy.stats import binom

    worst_wilson = 0.0
    for n in list(range(5, 700, 11)) + [587, 1420, 2075, 2962, 5000, 20000]:
        assert binom.cdf(_threshold(rate_interval, n, limit, True), n, limit) <= 0.025, n
        worst_wilson = max(worst_wilson, binom.cdf(_threshold(wilson, n, limit, True), n, limit))
    if limit == 0.05:
        assert worst_wilson > 0.025


def _decided_rate(m: int, p: float, limit: float) -> float:
    from scipy.stats import binom

    return float(binom.cdf(_threshold(rate_interval, m, limit, True), m, p)
                 + binom.sf(_threshold(rate_interval, m, limit, False) - 1, m, p))


@pytest.mark.parametrize("case", [(1, 40, 1.0), (5, 336, 1.0), (2, 540, 1.0), (0, 40, 1.0), (26, 400, 5.0),
                                  (8, 600, 1.0)])
def test_images_that_would_decide_a_rate_decide_80_percent_of_the_time(case):
    """At the quoted N, with the observed rate as the truth, the check decides with probability >= 0.8 (it was
    0.45-0.53 in every worked example: the N at which the expected outcome just decided)."""
    k, n, limit = case
    j = judge_rate("x", k, n, limit)
    assert j.outcome == Outcome.inconclusive
    m = j.images_to_decide
    assert _decided_rate(m, k / n, limit / 100) >= 0.8, case
    assert _decided_rate(int(m * 0.9), k / n, limit / 100) < 0.8  # and not far more than needed


@pytest.mark.parametrize("case", [(1, 0, 40, 1.0), (4, 0, 80, 1.0), (2, 0, 360, 1.0), (6, 2, 300, 1.0),
                                  (30, 10, 800, 3.0)])
def test_images_that_would_decide_a_drop_decide_80_percent_of_the_time(case):
    lost, gained, n, limit = case
    j = judge_drop(lost, gained, n, limit)
    assert j.outcome == Outcome.inconclusive
    m = j.images_to_decide
    b, c, p = _trinomial(m, lost / n, gained / n, width=10)
    lo, hi = paired_interval(b, c, m)
    decided = p[(100 * hi <= limit) | (100 * lo > limit)].sum()
    assert decided >= 0.8, (case, m, decided)


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
    assert Outcome.combine([]) == Outcome.inconclusive  # no check: nothing is shown
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


def test_tied_top_classes_in_dequantized_outputs_are_not_changed_answers():
    """int8 outputs dequantize to few levels: [0.5, 0.5] with Keras answering class 1 counted as changed (argmax
    breaks toward the lower class); an exact tie that includes Keras's answer is its answer."""
    from edgecls.core.gates import answers, gates, judge
    from edgecls.core.names import Precision

    ref = np.tile([[0.2, 0.8], [0.9, 0.1]], (250, 1))
    probs = np.tile([[0.5, 0.5], [0.5, 0.5]], (250, 1))
    assert (answers(probs, ref.argmax(1)) == ref.argmax(1)).all()
    labels = ref.argmax(1)[:300]
    e = judge(gates()[Precision.int8], probs.astype(np.float32), ref, labels)
    assert e.changed == 0 and e.lost == 0
    probs[0] = [0.6, 0.4]  # a real change still counts
    assert judge(gates()[Precision.int8], probs, ref, labels).changed == 1


def test_max_drop_sets_the_int8_changed_answers_limit():
    """--max-drop 3 with 30 lost of 2,000 failed on the fixed 1% changed-answers check although the drop was shown
    <= 3: the int8 changed-answers limit is the larger of 1% and --max-drop."""
    from edgecls.core.gates import gates, judge
    from edgecls.core.names import Precision

    ref = np.tile([[0.9, 0.1]], (2000, 1))
    probs = ref.copy()
    probs[:30] = [0.1, 0.9]
    labels = np.zeros(2000, np.int64)
    assert judge(gates(3.0)[Precision.int8], probs, ref, labels).outcome == Outcome.passed
    assert gates(3.0)[Precision.int8].max_changed == 3.0 and gates(0.5)[Precision.int8].max_changed == 1.0
    assert judge(gates(1.0)[Precision.int8], probs, ref, labels).outcome == Outcome.failed
