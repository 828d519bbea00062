"""The parity gates: limits per precision, defined once, and how a file's answers are judged against them.

Every check is judged on its 95% interval (`edgecls.core.stats`) with three outcomes — pass (shown
within the limit), fail (shown beyond it), inconclusive (too few images to tell) — and a gate's
outcome combines its checks: fail if any fails, pass if all pass, else inconclusive.

- **Changed answers** (every precision): the share of images whose top-1 answer differs from the
  Keras model's, on images the model never trained on (held-out + validation), at most
  `MAX_CHANGED` percent; for int8 at most the larger of `MAX_CHANGED` and `--max-drop` (every lost
  answer is a changed answer, so a tighter changed-answers limit would make a `--max-drop` above 1
  do nothing). A file's top classes tied exactly (dequantized int8 outputs often are) count as
  its answer being the Keras model's when Keras's answer is among them.
- **Moved probabilities** (float): the share of those images on which any class probability moved
  by more than the precision's tolerance, at most `MAX_MOVED` percent. Its 99th percentile of
  per-image max |Δp| is reported with the maximum; unlike the maximum, it does not grow with the
  number of images.
- **Accuracy drop** (int8): Keras' held-out accuracy minus the file's, from the paired answers,
  at most `--max-drop` points. A drop can never exceed the share of changed answers (every lost
  answer is a changed one), so where the labelled images are too few to show the drop, a change
  rate *shown* at most `--max-drop` percent (on held-out, validation and unlabelled `--images`
  images) shows the drop within it too (`drop_within_changes`).

A limit must be showable on the data users have: a 1% rate is shown at 95% by 381 images with no
change; 0.1% would need 3,837, so every float file of a small folder would stay inconclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .names import Precision
from .stats import Judgement, Outcome, judge_drop, judge_rate

MAX_CHANGED = 1.0  # percent of answers that may change vs Keras, every precision
MAX_MOVED = 1.0  # percent of images whose max |Δp| may exceed the tolerance (float)
TOLERANCE = {Precision.fp32: 1e-4, Precision.fp16: 1e-2}  # |Δp| per float precision
DEFAULT_MAX_DROP = 1.0  # accuracy points an int8 file may lose (--max-drop)
QUANTILE = 99  # the reported percentile of per-image max |Δp|
MAX_DROP_HELP = ("the accuracy drop vs Keras (points) and the changed answers (% of images; that limit never below "
                 "1%) must each be shown (95% interval) at most this; at 1 or less the 1% changed-answers check is "
                 "usually the tighter")  # --max-drop's help everywhere


@dataclass(frozen=True)
class Gate:
    """The limits one precision is held to (percent, points, probability)."""

    max_changed: float = MAX_CHANGED
    tolerance: float | None = None  # float: |Δp| an image's probabilities may move by
    max_moved: float | None = None  # float: percent of images that may move beyond `tolerance`
    max_drop: float | None = None  # int8: accuracy points

    def describe(self) -> str:
        parts = [f"changed answers <= {self.max_changed:g}%"]
        if self.tolerance is not None:
            parts.append(f"images with |Δp| > {self.tolerance:.0e} <= {self.max_moved:g}%")
        if self.max_drop is not None:
            parts.append(f"accuracy drop <= {self.max_drop:g} points")
        return ", ".join(parts)


def check_max_drop(max_drop: float, option: str = "--max-drop") -> float:
    from .errors import EdgeclsError

    if not 0 <= max_drop <= 100:
        raise EdgeclsError(f"{option} {max_drop:g}: must be between 0 and 100 accuracy points")
    return max_drop


def gates(max_drop: float = DEFAULT_MAX_DROP) -> dict[Precision, Gate]:
    """The gate of each precision (the int8 one with `max_drop`, its changed-answers limit the larger of
    MAX_CHANGED and `max_drop`: one meaning of --max-drop)."""
    return {p: Gate(tolerance=TOLERANCE[p], max_moved=MAX_MOVED) for p in TOLERANCE} | {
        Precision.int8: Gate(max_changed=max(MAX_CHANGED, max_drop), max_drop=max_drop)}


def summary(max_drop: float = DEFAULT_MAX_DROP) -> str:
    """The gates in one paragraph: for help texts and report footers."""
    g = gates(max_drop)
    return (f"Each check is judged on its 95% interval: pass (shown within the limit), fail (shown beyond it), "
            f"inconclusive (too few images). fp32: {g[Precision.fp32].describe()}; fp16: "
            f"{g[Precision.fp16].describe()}; int8: {g[Precision.int8].describe()}.")


@dataclass
class Evidence:
    """What one file's answers show against Keras' on the same images."""

    heldout_images: int  # labelled held-out images (accuracy, drop)
    images: int  # images the model never trained on (held-out + validation): changed answers, |Δp|
    accuracy: float
    keras_accuracy: float
    lost: int  # held-out: Keras right, the file wrong
    gained: int  # held-out: the reverse
    changed: int  # top-1 answers that differ from Keras'
    moved: int | None  # images whose max |Δp| exceeds the tolerance (float gates)
    q99_abs_diff: float
    max_abs_diff: float
    mean_abs_diff: float
    checks: list[Judgement] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return Outcome.combine(c.outcome for c in self.checks) if self.checks else Outcome.inconclusive

    def failures(self) -> list[str]:
        return [c.sentence() for c in self.checks if c.outcome == Outcome.failed]

    def undecided(self) -> list[str]:
        return [c.sentence() for c in self.checks if c.outcome == Outcome.inconclusive]

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "checks"} | {
            "checks": [c.to_dict() for c in self.checks], "outcome": self.outcome.value}


def answers(probs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each image's top-1 class, an exact tie between top classes broken toward `reference`'s answer: int8
    outputs dequantize to a few levels, and argmax alone would break a tie toward the lower class index
    and count an answer that agrees with Keras as changed."""
    mine = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    if not len(probs):
        return mine
    rows = np.arange(len(probs))
    return np.where(probs[rows, reference] >= probs[rows, mine], reference, mine)


def judge(gate: Gate, probs: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> Evidence:
    """Judge a file's probabilities `probs` against Keras' `ref` on the same images under `gate`.

    The first `len(labels)` images are the labelled held-out ones; every image is one the model
    never trained on.
    """
    n = len(labels)
    theirs = ref.argmax(1)
    mine = answers(probs, theirs)
    right, ref_right = mine[:n] == labels, theirs[:n] == labels
    lost, gained = int((ref_right & ~right).sum()), int((right & ~ref_right).sum())
    changed = int((mine != theirs).sum())
    per_image = np.abs(probs.astype(np.float64) - ref).max(1) if len(probs) else np.zeros(0)
    ev = Evidence(n, len(mine), float(right.mean()) if n else 0.0, float(ref_right.mean()) if n else 0.0,
                  lost, gained, changed, None,
                  float(np.percentile(per_image, QUANTILE)) if len(per_image) else 0.0,
                  float(per_image.max()) if len(per_image) else 0.0,
                  float(np.abs(probs.astype(np.float64) - ref).mean()) if len(probs) else 0.0)
    ev.checks.append(judge_rate("changed answers", changed, len(mine), gate.max_changed))
    if gate.tolerance is not None:
        ev.moved = int((per_image > gate.tolerance).sum())
        ev.checks.append(judge_rate(f"images with |Δp| > {gate.tolerance:.0e}", ev.moved, len(mine),
                                    gate.max_moved))
    if gate.max_drop is not None:
        ev.checks.append(drop_within_changes(judge_drop(lost, gained, n, gate.max_drop), ev.checks[0]))
    return ev


def drop_within_changes(drop: Judgement, changed: Judgement | None) -> Judgement:
    """The accuracy drop, shown within its limit by the changed answers where the labels alone cannot show it.

    On any images, drop = P(Keras right, file wrong) - P(file right, Keras wrong) <= P(answers differ): a
    lost answer is a changed one. So when the change rate's 95% upper end (percent) is at or below the drop's
    limit (points), the drop is shown at or below it with the same confidence; its interval's upper end
    becomes that bound. A drop shown beyond the limit, or already decided, is kept as it is.
    """
    if (drop.outcome != Outcome.inconclusive or changed is None or changed.outcome == Outcome.failed
            or changed.high > drop.limit):
        return drop
    return Judgement(drop.name, drop.estimate, drop.low, min(drop.high, changed.high), drop.limit, Outcome.passed,
                     f"{drop.count}; bounded by changed answers, at most {changed.high:.2f}% ({changed.count})",
                     None, drop.unit)


def limits_table(max_drop: float = DEFAULT_MAX_DROP) -> str:
    """The limits table of docs/verify.md, made from the gates (a test keeps the doc equal to this)."""
    rows = ["| precision | checks (each must be *shown*) |", "|---|---|"]
    for precision, gate in gates(max_drop).items():
        parts = [f"changed answers ≤ {gate.max_changed:g}% of images" if gate.max_drop is None else
                 f"changed answers ≤ the larger of {MAX_CHANGED:g}% and `--max-drop` (default {gate.max_changed:g}%)"]
        if gate.tolerance is not None:
            parts.append(f"images with any \\|Δp\\| > {gate.tolerance:.0e} ≤ {gate.max_moved:g}%")
        if gate.max_drop is not None:
            parts.append(f"accuracy drop ≤ `--max-drop` points (default {gate.max_drop:g})")
        rows.append(f"| {precision.value} | {'; '.join(parts)} |")
    return "\n".join(rows) + "\n"


EXAMPLES = [  # (case, precision, held-out images, lost, gained, images never trained on, changed, moved[, max_drop])
    ("one answer changed on a 40-image folder", Precision.int8, 40, 1, 0, 40, 1, None),
    ("4 lost of 80 held-out, 1 more changed of 256 validation", Precision.int8, 80, 4, 0, 336, 5, None),
    ("15 lost of 300 held-out", Precision.int8, 300, 15, 0, 300, 15, None),
    ("2 lost of 360 held-out, none else changed of 540 (digits)", Precision.int8, 360, 2, 0, 540, 2, None),
    ("nothing changed on 540 images (digits)", Precision.int8, 360, 0, 0, 540, 0, None),
    ("nothing changed on 40 held-out + 500 unlabelled (--images)", Precision.int8, 40, 0, 0, 540, 0, None),
    ("fp32, nothing moved on 40 reference images", Precision.fp32, 40, 0, 0, 40, 0, 0),
    ("fp32, nothing moved on 540 images", Precision.fp32, 360, 0, 0, 540, 0, 0),
    ("fp16, one near-tie flip of 40", Precision.fp16, 40, 1, 0, 40, 1, 1),
    ("fp32 damaged: 30 of 40 images moved", Precision.fp32, 40, 3, 0, 40, 4, 30),
    ("--max-drop 3: 30 lost of 2,000, nothing else changed", Precision.int8, 2000, 30, 0, 2000, 30, None, 3.0),
]


def worked_examples(max_drop: float = DEFAULT_MAX_DROP) -> str:
    """The worked examples of docs/verify.md, computed here (a test keeps the doc equal to this)."""
    lines = ["| case | gate | check | estimate | 95% interval | check's outcome | images that would decide | "
             "file's outcome |", "|---|---|---|---|---|---|---|---|"]
    for case, precision, n, lost, gained, images, changed, moved, *own in EXAMPLES:
        g = gates(own[0] if own else max_drop)[precision]
        checks = [judge_rate("changed answers", changed, images, g.max_changed)]
        if g.tolerance is not None:
            checks.append(judge_rate(f"images with |Δp| > {g.tolerance:.0e}", moved, images, g.max_moved))
        if g.max_drop is not None:
            checks.append(drop_within_changes(judge_drop(lost, gained, n, g.max_drop), checks[0]))
        overall = Outcome.combine(c.outcome for c in checks).value
        for i, c in enumerate(checks):
            u = c.unit.strip() if c.unit.strip() != "%" else "%"
            need = f"{c.images_to_decide:,}" if c.outcome == Outcome.inconclusive and c.images_to_decide else ""
            name = c.name.replace("|", "\\|")  # a literal bar inside a Markdown table cell
            lines.append(f"| {case if i == 0 else ''} | {precision.value if i == 0 else ''} | {name} "
                         f"(limit {c.limit:g} {u}; {c.count}) | {c.estimate:.2f} | {c.low:.2f} to {c.high:.2f} | "
                         f"{c.outcome.value} | {need} | {overall if i == 0 else ''} |")
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_MAX_DROP", "MAX_DROP_HELP", "Evidence", "Gate", "answers", "check_max_drop",
           "drop_within_changes", "gates", "judge", "limits_table", "summary", "worked_examples"]
