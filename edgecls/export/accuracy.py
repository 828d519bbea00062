"""Accuracy-aware int8: judge each int8 file with verify's gate, and retry with a more accurate recipe.

Export never touches the held-out split, and never judges a file on the images it was chosen on.
The images it may use (the validation split, and the training images calibration did not take)
are split in two: the **selection set** (those training images) chooses the recipe — each
candidate is judged there with verify's int8 gate (`edgecls.core.gates`), the first that passes is
kept, else the best — and the **judging set** (the validation images) judges the kept file once,
for the record. `edgecls verify` judges again on held-out + validation images; the selection set
is never among them. When the default file misses the gate on the selection set, the format
module's `accuracy_aware(ctx, selection, workdir)` yields candidates made with the vendor's own
mechanism (onnxruntime's qdq_loss_debug + nodes_to_exclude, TFLite's QuantizationDebugger +
denylisted nodes, NNCF's quantize_with_accuracy_control), each keeping more layers in float (when
the default fails there, or is inconclusive leaning to fail: `worth_retrying`). The
manifest records both sets, every attempt, the layers left in float, and the cost in bytes and
latency against the default file.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..core.gates import Evidence, gates, judge
from ..core.names import Format, Precision
from ..core.stats import Outcome
from ..runtimes.keras import probabilities
from ..train import recorded

MAX_SET_IMAGES = 5000  # each set: keeps each attempt within seconds; a stratified sample beyond
RANKING_IMAGES = 64  # images the per-layer tools rank layers on (taken from the selection set)
SELECTION = "training images not used for calibration (chooses the recipe)"
JUDGING = "validation split (judges the kept file; never used to choose it)"


@dataclass
class ImageSet:
    """Images int8 files are tried on at export, with labels and the Keras probabilities."""

    images: np.ndarray  # uint8 NHWC
    labels: np.ndarray
    keras: np.ndarray  # float64 (N, classes)
    max_drop: float
    ids: list = field(default_factory=list)

    def judge(self, fmt: Format, path: Path) -> Evidence:
        """`path` run by its runtime on every image, judged against Keras under verify's int8 gate."""
        from .. import runtimes
        from .base import runtime_of

        runner = runtimes.create(runtime_of(fmt))
        runner.load(path)
        return judge(gates(self.max_drop)[Precision.int8], runner.predict_all(self.images), self.keras, self.labels)

    def ranking(self) -> np.ndarray:
        """A few images for the per-layer tools (evenly spread over the set)."""
        n = min(RANKING_IMAGES, len(self.images))
        return self.images[np.linspace(0, len(self.images) - 1, n).astype(int)] if n else self.images


@dataclass
class Int8Images:
    selection: ImageSet  # chooses the recipe
    judging: ImageSet  # judges the kept file


def _image_set(ctx, part: str, seen: set) -> ImageSet:
    bundle = ctx.bundle
    n = sum(1 for i in bundle.split_ids(part) if i not in seen)
    if not n:
        return ImageSet(np.zeros((0, *bundle.input_shape()), np.uint8), np.zeros(0, np.int64),
                        np.zeros((0, len(bundle.labels()))), ctx.cfg.max_drop)
    seed = bundle.manifest["dataset"]["split"]["seed"]
    ids, x, y = recorded.select(bundle, part, data_dir=ctx.cfg.data_dir, exclude=seen, limit=min(n, MAX_SET_IMAGES),
                                seed=seed)
    return ImageSet(x, y, probabilities(ctx.model, x).astype(np.float64), ctx.cfg.max_drop, list(ids))


def int8_images(ctx) -> Int8Images:
    """The selection set (training images `ctx.calibration()` did not take) and the judging set (validation
    images), each stratified, seeded, at most MAX_SET_IMAGES, labelled, with the Keras probabilities."""
    seen = set(ctx.calibration_record()["ids"])
    return Int8Images(_image_set(ctx, "train", seen), _image_set(ctx, "val", set()))


@dataclass
class Recipe:
    """An int8 file made by a more accurate recipe, written under `root` at the default file's relative path(s)."""

    recipe: str
    float_layers: list[str]
    root: Path
    notes: dict = field(default_factory=dict)


def _evidence(ev: Evidence) -> dict:
    drop = next(c for c in ev.checks if c.name == "accuracy drop")
    return {"outcome": ev.outcome.value, "passed": ev.outcome == Outcome.passed, "images": ev.images,
            "accuracy": ev.accuracy, "drop_points": drop.estimate, "drop_interval": [drop.low, drop.high],
            "lost": ev.lost, "gained": ev.gained, "changed": ev.changed,
            "checks": [c.to_dict() for c in ev.checks], "failures": ev.failures()}


_RANK = {Outcome.passed: 2, Outcome.inconclusive: 1, Outcome.failed: 0}


def _score(ev: Evidence) -> tuple:
    """Higher is better: pass, then inconclusive, then fail; among failing files the smallest drop, then the
    fewest changes. Among passing or inconclusive ones no candidate beats an earlier (smaller) one."""
    if ev.outcome == Outcome.failed:
        return (0, ev.gained - ev.lost, -ev.changed)
    return (_RANK[ev.outcome], 0, 0)


def worth_retrying(ev: Evidence) -> bool:
    """A more accurate recipe is tried when the default file fails, or is inconclusive with an estimate past its
    limit (leaning to fail). An inconclusive file whose estimates are within the limits (too few images, nothing
    seen wrong) keeps the default recipe: more float layers would cost size and speed for no shown gain."""
    return ev.outcome == Outcome.failed or (
        ev.outcome == Outcome.inconclusive and any(c.estimate > c.limit for c in ev.checks))


def _bytes(root: Path, written) -> int:
    return sum((root / f).stat().st_size for f in [written.file, *written.parts])


def _latency_ms(fmt: Format, path: Path, images: np.ndarray, runs: int = 7) -> float:
    """Median wall time of `predict()` on a batch of 32 (a quick cost figure, not a benchmark)."""
    from .. import runtimes
    from .base import runtime_of

    runner = runtimes.create(runtime_of(fmt))
    runner.load(path)
    batch = np.resize(images, (32, *images.shape[1:])) if len(images) else np.zeros((32, *images.shape[1:]))
    runner.predict(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.predict(batch)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def choose_int8_recipe(ctx, fmt: Format, written, candidates: Callable[..., Iterator[Recipe]]) -> dict:
    """Judge the default int8 file in the bundle; while it misses the gate, try `candidates` (a
    format's accuracy-aware generator) until one passes or none is left, put the best in the artifact's
    staging folder (`ctx.out`; it reaches the bundle with the artifact's commit), and return the
    manifest record (`int8` of the artifact's entry)."""
    bundle = ctx.out
    sets = ctx.int8_images()
    selection, judging = sets.selection, sets.judging
    record = {"recipe": "default", "float_layers": [], "max_drop": ctx.cfg.max_drop,
              "selected_on": {"images": len(selection.images), "selection": SELECTION,
                              "ids_sha256": _ids_hash(selection.ids)},
              "judged_on": {"images": len(judging.images), "selection": JUDGING,
                            "ids_sha256": _ids_hash(judging.ids)},
              "attempts": []}
    if not len(selection.images):
        record.update(passed=None, outcome=None, note="no unseen training images to choose a recipe on; "
                                                      "the default file is kept and verify judges it")
        return record
    default_bytes = _bytes(bundle, written)
    best_ev = selection.judge(fmt, bundle / written.file)
    best: Recipe | None = None  # None: the default file already in the bundle
    record["attempts"].append({"recipe": "default", "float_layers": [], **_evidence(best_ev)})
    if worth_retrying(best_ev):
        workdir = ctx.workdir / f"int8-{fmt}"
        workdir.mkdir(exist_ok=True)
        for cand in candidates(ctx, selection, workdir):
            ev = selection.judge(fmt, cand.root / written.file)
            record["attempts"].append({"recipe": cand.recipe, "float_layers": cand.float_layers, **cand.notes,
                                       **_evidence(ev)})
            if _score(ev) > _score(best_ev):
                best, best_ev = cand, ev
            if ev.outcome == Outcome.passed:
                break
    if best is not None:  # the chosen candidate's files over the default ones, in the private staging folder
        default_ms = _latency_ms(fmt, bundle / written.file, selection.images)
        for rel in [written.file, *written.parts]:
            shutil.copyfile(best.root / rel, bundle / rel)
        final_ms = _latency_ms(fmt, bundle / written.file, selection.images)
        record.update(recipe=best.recipe, float_layers=best.float_layers)
        record["cost"] = {"bytes": _bytes(bundle, written), "default_bytes": default_bytes,
                          "bytes_ratio": round(_bytes(bundle, written) / default_bytes, 3),
                          "latency_ms_batch32": {"default": round(default_ms, 3), "final": round(final_ms, 3)},
                          "latency_ratio": round(final_ms / default_ms, 3)}
    else:
        record["cost"] = {"bytes": default_bytes, "default_bytes": default_bytes, "bytes_ratio": 1.0,
                          "latency_ratio": 1.0}
    record["selection_evidence"] = _evidence(best_ev)
    if len(judging.images):  # the kept file, judged once on images that did not choose it
        kept = _evidence(judging.judge(fmt, bundle / written.file))
        record.update(evidence=kept, outcome=kept["outcome"], passed=kept["passed"])
    else:
        record.update(evidence=None, outcome=None, passed=None,
                      note="no validation images to judge the kept file on; verify judges it")
    return record


def _ids_hash(ids: list) -> str:
    """A hash of which images a set holds (the ids themselves are in the split)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sorted(map(str, ids))).encode()).hexdigest()


def doubling_prefixes(ranked: list, first: int = 1) -> Iterator[list]:
    """Prefixes of `ranked` of length 1, 2, 4, ... and finally all of it (the growing float set)."""
    k = first
    while k < len(ranked):
        yield ranked[:k]
        k *= 2
    if ranked:
        yield ranked


__all__ = ["Recipe", "ImageSet", "Int8Images", "doubling_prefixes", "int8_images", "choose_int8_recipe"]
