"""What a training run outputs: the manifest's dataset, input, architecture and training sections, and the
bundle written (model.keras, history.json, split.json) staged and swapped in whole. (`recorded`, beside it,
reads a bundle's recorded images back.)"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..core.bundle import SPLIT_FILE, Bundle, new_manifest
from ..core.files import atomic_target, atomic_write, file_entry, staged_bundle
from ..core.manifest import INLINE_IDS
from . import distribute, sources, splits
from .baseline import verdict
from .plan import TrainPlan

if TYPE_CHECKING:
    from .baseline import Baseline
    from .fit import TrainConfig
    from .fitting import Fitted


@dataclass
class TrainingRun:
    """What a training run was set up with: the options, the data and its split, where the bundle goes, the plan
    and how the work is placed, why this architecture, the backbone's size (None: no backbone), the notes."""

    cfg: TrainConfig
    data: sources.Data
    split: splits.Split
    out: Path
    plan: TrainPlan
    placement: distribute.Placement
    why: str
    backbone_size: int | None
    notes: list[str]


@dataclass
class Evaluation:
    """The fitted model judged: images batch-norm was re-estimated on, the held-out metrics, the pixel baseline."""

    bn_images: int
    metrics: dict
    baseline: Baseline


def input_spec(data: sources.Data, backbone_size: int | None = None) -> dict:
    h, w, c = data.input_shape
    inside = ("the model's first layer rescales them by 1/255" if backbone_size is None else
              "the model's first layer maps them to (x - 127) / 128" + (
                  f", then resizes them (bilinear) to {backbone_size}x{backbone_size}"
                  if backbone_size != h else ""))
    return {"name": "images", "shape": [None, h, w, c], "dtype": "float32", "layout": "NHWC",
            "range": [0, 255], "color": "grayscale" if c == 1 else "rgb",
            "resize": "bilinear to HxW, aspect ratio not kept",
            "preprocessing": f"none outside the model: feed raw 0-255 pixels; {inside}"}


def dataset_section(cfg: TrainConfig, data: sources.Data, split: splits.Split, out: Path) -> tuple[dict, dict]:
    """The manifest's dataset section, and the split ids: inline there up to `INLINE_IDS`, else
    (returned second) for the hashed ids file, so the manifest stays small."""
    ids = {p: [data.ids[i] for i in getattr(split, p)] for p in ("train", "val", "test")}
    inline = sum(map(len, ids.values())) <= INLINE_IDS
    section = {
        "name": data.name, "source": sources.portable(data.source, out), "classes": data.classes,
        "counts": {p: data.counts(getattr(split, p)) for p in ("train", "val", "test")},
        "skipped": data.skipped,
        "split": {"seed": cfg.seed, "official_test": data.official_test is not None,
                  "test_fraction": cfg.test_split, "val_fraction": cfg.val_split, "limit": cfg.limit,
                  **(ids if inline else {"ids_file": SPLIT_FILE})},
    }
    return section, ({} if inline else ids)


def portable_config(cfg: TrainConfig, data: sources.Data, out: Path) -> dict:
    """The options as the manifest keeps them: paths relative to the bundle folder, none absolute."""
    config = asdict(cfg) | {"out": out.name}
    paths = (("data", cfg.data if data.name == "folder" else None), ("data_dir", cfg.data_dir),
             ("cache", cfg.cache))
    return config | {key: os.path.relpath(Path(v).resolve(), out.resolve()) for key, v in paths if v}


def architecture(run: TrainingRun, model) -> dict:
    """The manifest's architecture section: which network, why this one, and for a backbone its weights."""
    from .models import pretrained

    cfg = run.cfg
    section = {"name": cfg.arch, "width": cfg.width, "params": int(model.count_params()), "why": run.why}
    if run.backbone_size is not None:
        section |= {"pretrained": cfg.pretrained, "backbone_size": run.backbone_size,
                    "weights": dict(pretrained(cfg.arch).weights) if cfg.pretrained else None}
    return section


def notes(cfg: TrainConfig, data: sources.Data, backbone_size: int | None) -> list[str]:
    """What the user should know about how their images reach the network (not warnings)."""
    notes = []
    if backbone_size is not None and data.input_shape[2] == 1 and cfg.pretrained:
        notes.append(f"grayscale images, RGB backbone: the backbone's colour stem kernels are summed, the same as "
                     f"feeding each grey image as R = G = B ({cfg.arch} was trained on colour photos)")
    h = data.input_shape[0]
    if backbone_size is not None and backbone_size != h:
        notes.append(f"images are decoded at {h}x{h} (--image-size) and the model resizes them to "
                     f"{backbone_size}x{backbone_size} (--backbone-size) inside itself: exported files take {h}x{h}")
    return notes


def scale_section(placement: distribute.Placement, plan: TrainPlan, cfg: TrainConfig) -> dict:
    """How the work was spread: the global batch (the plan's) and what each replica took; the learning
    rate is the one given, unscaled, because the global batch is the plan's whatever the replicas."""
    return placement.to_dict() | {
        "global_batch_size": plan.batch_size, "per_replica_batch_size": plan.batch_size // placement.replicas,
        "learning_rate": cfg.lr, "lr_scale": 1.0}


def manifest(run: TrainingRun, model, fitted: Fitted, evaluation: Evaluation) -> tuple[dict, dict | None]:
    """The new bundle's manifest (and the split ids that go to split.json when there are many)."""
    from ..core._tf import keras, tensorflow

    cfg, data, split, out, plan = run.cfg, run.data, run.split, run.out, run.plan
    arch = architecture(run, model)
    metrics, base = evaluation.metrics, evaluation.baseline
    manifest = new_manifest(out.name)
    manifest["dataset"], split_ids = dataset_section(cfg, data, split, out)
    manifest["input"] = input_spec(data, run.backbone_size)
    manifest["labels"] = data.classes
    manifest["architecture"] = arch
    manifest["training"] = {
        "config": portable_config(cfg, data, out), "plan": plan.to_dict(), "epochs_run": len(fitted.history),
        "best_epoch": fitted.kept_epoch, "interrupted": fitted.interrupted, "seconds": round(fitted.seconds, 2),
        "train_images_per_second": round(len(split.train) * len(fitted.history) / fitted.train_seconds, 1)
        if fitted.train_seconds else None,
        "batchnorm_recalibrated_on": evaluation.bn_images,
        "warnings": verdict(metrics["accuracy"], base, min(data.counts(split.train).values()),
                            arch["name"], bool(arch.get("pretrained"))),
        "versions": {"tensorflow": tensorflow().__version__, "keras": keras().__version__},
        "distribute": scale_section(run.placement, plan, cfg),
        "notes": run.notes,
    }
    manifest["metrics"] = {"test": metrics}
    manifest["baseline"] = base.to_dict()
    return manifest, split_ids


def write_bundle(out: Path, model, manifest: dict, history: list[dict], split_ids: dict | None,
                 keras_parts: Callable[[Path], list[Path]] | None = None) -> None:
    """model.keras, history.json (and split.json) and the manifest, staged and swapped in whole.

    `keras_parts(stage)` writes files model.keras needs (an imported SavedModel's folder) into the stage
    before the model is saved, and returns them: they are recorded as the keras artifact's parts."""
    from ..core._tf import keras

    with staged_bundle(out) as stage:
        parts = keras_parts(stage) if keras_parts else []
        with atomic_target(stage / "model.keras") as tmp:
            model.save(tmp)
        atomic_write(stage / "history.json", json.dumps(history, indent=1) + "\n")
        if split_ids:
            atomic_write(stage / SPLIT_FILE, json.dumps(split_ids, separators=(",", ":")) + "\n")
        b = Bundle(stage, manifest)
        entry = {"format": "keras", "precision": "fp32", **file_entry(stage / "model.keras", stage),
                 "versions": {"keras": keras().__version__}}
        if parts:
            entry["parts"] = [file_entry(p, stage) for p in parts]
            entry["total_bytes"] = entry["bytes"] + sum(p["bytes"] for p in entry["parts"])
        b.record(entry)
        b.record(file_entry(stage / "history.json", stage), key="files")
        if split_ids:
            b.record(file_entry(stage / SPLIT_FILE, stage), key="files")
        b.save()
