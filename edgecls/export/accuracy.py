"""Accuracy-aware int8: judge each int8 file with verify's gate, and retry with a more accurate recipe.

An int8 file is fitted to its calibration images (training images), and a fine-tuned model has
memorised its training images, so int8 faults show on images the model never trained on. Export
never touches the held-out split, and never judges a file on the images it was chosen on. It
splits what it may use in two: the **selection set** — half of the validation split (stratified,
seeded) plus, with ``--images DIR``, up to half of those unlabelled images (a seeded sample) —
chooses the recipe: each candidate is judged there with verify's int8 gate (`edgecls.core.gates`),
the first that passes is kept, else the best; the **judging set** (the other half of the
validation split) judges the kept file once, for the record. The selection set's ids (and the
--images pixel digests) are recorded in ``int8.selected_on``: `edgecls verify` leaves them out
when it judges that file. When the default file misses the gate on the selection set, the format
module's `accuracy_aware(ctx, selection, workdir)` yields candidates made with the vendor's own
mechanism (onnxruntime's qdq_loss_debug + nodes_to_exclude, TFLite's QuantizationDebugger +
denylisted nodes, NNCF's quantize_with_accuracy_control), each keeping more layers in float (when
the default fails there, or is inconclusive leaning to fail: `worth_retrying`). The manifest
records both sets, every attempt, the layers left in float, and the cost in bytes and latency
against the default file.
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
SELECTION = ("half the validation split, stratified, seeded, and up to half of --images (chooses the recipe; "
             "verify leaves these images out when it judges the file)")
JUDGING = "the other half of the validation split (judges the kept file; never used to choose it)"


@dataclass
class ImageSet:
    """Images int8 files are tried on at export, with labels and the Keras probabilities."""

    images: np.ndarray  # uint8 NHWC
    labels: np.ndarray
    keras: np.ndarray  # float64 (N, classes)
    max_drop: float
    ids: list = field(default_factory=list)
    digests: list = field(default_factory=list)  # --images: pixel digests of the unlabelled images in the set

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


def _empty(ctx) -> ImageSet:
    b = ctx.bundle
    return ImageSet(np.zeros((0, *b.input_shape()), np.uint8), np.zeros(0, np.int64),
                    np.zeros((0, len(b.labels()))), ctx.cfg.max_drop)


def _val_half(ctx, exclude: set) -> ImageSet:
    """Half the validation split (stratified, seeded; with `exclude`: the rest of it)."""
    bundle = ctx.bundle
    ids = [i for i in bundle.split_ids("val") if i not in exclude]
    n = len(ids) if exclude else (len(ids) + 1) // 2
    if not n:
        return _empty(ctx)
    seed = bundle.manifest["dataset"]["split"]["seed"]
    ids, x, y = recorded.select(bundle, "val", data_dir=ctx.cfg.data_dir, exclude=exclude,
                                limit=min(n, MAX_SET_IMAGES), seed=seed)
    return ImageSet(x, y, probabilities(ctx.model, x).astype(np.float64), ctx.cfg.max_drop, list(ids))


def _with_images(ctx, sel: ImageSet) -> ImageSet:
    """The selection set plus up to half of the --images folder (a seeded sample, at most MAX_SET_IMAGES)."""
    u = ctx.unlabelled()
    if u is None or not len(u.images):
        return sel
    n = min(max(1, len(u.images) // 2), MAX_SET_IMAGES)
    seed = ctx.bundle.manifest["dataset"]["split"]["seed"]
    pick = np.sort(np.random.default_rng(seed).choice(len(u.images), n, replace=False))
    x = u.images[pick]
    return ImageSet(np.concatenate([sel.images, x]), sel.labels,
                    np.concatenate([sel.keras, probabilities(ctx.model, x).astype(np.float64)]), ctx.cfg.max_drop,
                    sel.ids, [u.digests[i] for i in pick])


def int8_images(ctx) -> Int8Images:
    """The selection set (half the validation split, and up to half of --images) and the judging set (the other
    half of the validation split): images the model never trained on, with the Keras probabilities."""
    selection = _with_images(ctx, _val_half(ctx, set()))
    return Int8Images(selection, _val_half(ctx, set(selection.ids)) if selection.ids else _empty(ctx))


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
                              "kinds": {"validation": len(selection.ids), "images": len(selection.digests)},
                              "ids": list(selection.ids), "digests": list(selection.digests),
                              "ids_sha256": _ids_hash(list(selection.ids) + list(selection.digests))},
              "judged_on": {"images": len(judging.images), "selection": JUDGING,
                            "ids_sha256": _ids_hash(judging.ids)},
              "attempts": []}
    if selection.digests:  # which folder, what was dropped (the bundle's own images) or sampled, and why
        record["selected_on"]["images_folder"] = ctx.unlabelled().record() | {"notes": ctx.unlabelled().notes()}
    if not len(selection.images):
        record.update(passed=None, outcome=None, note="no validation images (nor --images) to choose a recipe on; "
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
                      note="no validation images left to judge the kept file on; verify judges it")
    return record


def _ids_hash(ids: list) -> str:
    """A hash of which images a set holds (the ids themselves are in the split)."""
    from ..core.inputs import ids_hash

    return ids_hash(ids)


def doubling_prefixes(ranked: list, first: int = 1) -> Iterator[list]:
    """Prefixes of `ranked` of length 1, 2, 4, ... and finally all of it (the growing float set)."""
    k = first
    while k < len(ranked):
        yield ranked[:k]
        k *= 2
    if ranked:
        yield ranked


__all__ = ["Recipe", "ImageSet", "Int8Images", "doubling_prefixes", "int8_images", "choose_int8_recipe"]
