"""Accuracy-aware int8: judge each int8 file with verify's gate, and retry with a more accurate recipe.

After the default int8 file is written, it is judged with the same gate as `edgecls verify`
(`verify.compare`, `verify.default_gates`) — but on images that are *not* the held-out split, so
export never selects on the test set: the validation split plus the training images calibration
did not use (the *judging set*), against the Keras model's probabilities computed here. When it
misses the gate, the format module's `accuracy_aware(ctx, judging, workdir)` yields candidates made
with the vendor's own mechanism (onnxruntime's qdq_loss_debug + nodes_to_exclude, TFLite's
QuantizationDebugger + denylisted nodes, NNCF's quantize_with_accuracy_control), each keeping more
layers in float; the first that passes is kept. If none does, the best candidate is kept and marked
as failing. The manifest records every attempt, the layers left in float, and what it cost in
bytes and latency against the default int8 file.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..names import Format, Precision
from ..runtimes.keras import probabilities
from ..verify import Parity, compare, default_gates

MAX_JUDGING_IMAGES = 5000  # keeps each attempt within seconds; a stratified sample beyond
RANKING_IMAGES = 64  # images the per-layer tools rank layers on (taken from the judging set)
SELECTION = "validation split + training images not used for calibration (never the held-out split)"


@dataclass
class Judging:
    """The images int8 files are judged on at export, with labels and the Keras probabilities."""

    images: np.ndarray  # uint8 NHWC
    labels: np.ndarray
    keras: np.ndarray  # float64 (N, classes)
    max_drop: float

    def judge(self, fmt: Format, path: Path) -> Parity:
        """`path` run by its runtime on every judging image, compared with Keras under verify's int8 gate."""
        from .. import runtimes
        from ..verify import _predict

        runner = runtimes.create(fmt)
        runner.load(path)
        row = Parity(Format(fmt).value, Precision.int8.value, path.name, runtime=Format(fmt).value)
        return compare(row, _predict(runner, self.images), self.keras, self.labels,
                       default_gates(self.max_drop)[Precision.int8])

    def ranking(self) -> np.ndarray:
        """A few judging images for the per-layer tools (evenly spread over the set)."""
        n = min(RANKING_IMAGES, len(self.images))
        return self.images[np.linspace(0, len(self.images) - 1, n).astype(int)] if n else self.images


def judging_set(ctx) -> Judging:
    """Validation images and the training images `ctx.calibration()` did not take (stratified, seeded,
    at most MAX_JUDGING_IMAGES), labelled, with the Keras model's probabilities."""
    bundle, seen = ctx.bundle, set(ctx.calibration_record()["ids"])
    x, y = bundle.unseen(seen, MAX_JUDGING_IMAGES, ctx.cfg.data_dir)
    if not len(x):
        return Judging(x, y, np.zeros((0, len(bundle.labels()))), ctx.cfg.max_drop)
    return Judging(x, y, probabilities(ctx.model, x).astype(np.float64), ctx.cfg.max_drop)


@dataclass
class Candidate:
    """An int8 file made by a more accurate recipe, written under `root` at the default file's relative path(s)."""

    recipe: str
    float_layers: list[str]
    root: Path
    notes: dict = field(default_factory=dict)


def _evidence(row: Parity) -> dict:
    return {"passed": row.passed, "images": row.images, "accuracy": row.accuracy,
            "drop_points": -row.delta_points, "drop_interval": list(row.drop_interval), "lost": row.lost,
            "gained": row.gained, "agreement": row.agreement, "agreement_interval": list(row.agreement_interval),
            "changed": row.changed, "failures": list(row.failures)}


def _score(row: Parity) -> tuple:
    """Higher is better: passing first, then the smallest drop (lower end of its interval), then agreement."""
    return (row.passed, -row.drop_interval[0], row.agreement)


def _bytes(root: Path, written) -> int:
    return sum((root / f).stat().st_size for f in [written.file, *written.parts])


def _latency_ms(fmt: Format, path: Path, images: np.ndarray, runs: int = 7) -> float:
    """Median wall time of `predict()` on a batch of 32 (a quick cost figure, not a benchmark)."""
    from .. import runtimes

    runner = runtimes.create(fmt)
    runner.load(path)
    batch = np.resize(images, (32, *images.shape[1:])) if len(images) else np.zeros((32, *images.shape[1:]))
    runner.predict(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.predict(batch)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def tune(ctx, fmt: Format, written, candidates: Callable[..., Iterator[Candidate]]) -> dict:
    """Judge the default int8 file in the bundle; while it misses the gate, try `candidates` (a
    format's accuracy-aware generator) until one passes or none is left, put the best in the artifact's
    staging folder (`ctx.out`; it reaches the bundle with the artifact's commit), and return the
    manifest record (`int8` of the artifact's entry)."""
    bundle = ctx.out
    judging = ctx.judging()
    record = {"recipe": "default", "float_layers": [], "max_drop": ctx.cfg.max_drop,
              "judged_on": {"images": len(judging.images), "selection": SELECTION}, "attempts": []}
    if not len(judging.images):
        record.update(passed=None, note="no validation or unseen training images to judge on; verify judges it")
        return record
    default_bytes = _bytes(bundle, written)
    best_row = judging.judge(fmt, bundle / written.file)
    best: Candidate | None = None  # None: the default file already in the bundle
    record["attempts"].append({"recipe": "default", "float_layers": [], **_evidence(best_row)})
    if not best_row.passed:
        workdir = ctx.workdir / f"int8-{Format(fmt).value}"
        workdir.mkdir(exist_ok=True)
        for cand in candidates(ctx, judging, workdir):
            row = judging.judge(fmt, cand.root / written.file)
            record["attempts"].append({"recipe": cand.recipe, "float_layers": cand.float_layers, **cand.notes,
                                       **_evidence(row)})
            if _score(row) > _score(best_row):
                best, best_row = cand, row
            if row.passed:
                break
    if best is not None:  # the chosen candidate's files over the default ones, in the private staging folder
        default_ms = _latency_ms(fmt, bundle / written.file, judging.images)
        for rel in [written.file, *written.parts]:
            shutil.copyfile(best.root / rel, bundle / rel)
        final_ms = _latency_ms(fmt, bundle / written.file, judging.images)
        record.update(recipe=best.recipe, float_layers=best.float_layers)
        record["cost"] = {"bytes": _bytes(bundle, written), "default_bytes": default_bytes,
                          "bytes_ratio": round(_bytes(bundle, written) / default_bytes, 3),
                          "latency_ms_batch32": {"default": round(default_ms, 3), "final": round(final_ms, 3)},
                          "latency_ratio": round(final_ms / default_ms, 3)}
    else:
        record["cost"] = {"bytes": default_bytes, "default_bytes": default_bytes, "bytes_ratio": 1.0,
                          "latency_ratio": 1.0}
    record["passed"] = best_row.passed
    record["evidence"] = _evidence(best_row)
    return record


def grow(ranked: list, first: int = 1) -> Iterator[list]:
    """Prefixes of `ranked` of length 1, 2, 4, ... and finally all of it (the growing float set)."""
    k = first
    while k < len(ranked):
        yield ranked[:k]
        k *= 2
    if ranked:
        yield ranked


__all__ = ["Candidate", "Judging", "grow", "judging_set", "tune"]
