"""`edgecls import`: a Keras classifier made elsewhere plus a labelled folder (or a bundled dataset) -> a bundle
that export, verify, bench, app, golden and report treat exactly like a trained one.

The data are split as training splits them (stratified, seeded), the imported model is evaluated on the held-out
part and the pixel baseline fitted and scored on the same split, and the bundle is written by the training
stage's own code (`edgecls.train.output`): model.keras (the user's model, wrapped only where its preprocessing
was declared or its output is logits: `edgecls.train.foreign`), the split, and a manifest whose ``imported``
section says where the model came from and what was read or declared about its pixels and its output.

Example:
    >>> import_model(ImportConfig(model=Path("m.keras"), data="~/pets"))   # -> models/pets-imported
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.bundle import new_manifest
from ..core.errors import EdgeclsError
from ..core.files import ensure_writable
from . import foreign, output, sources, splits
from .baseline import pixel_baseline

OUTPUTS = ("auto", "probabilities", "logits")


@dataclass
class ImportConfig:
    """Options of `edgecls import`."""

    model: Path
    data: str = "digits"
    out: Path | None = None  # default models/<data>-imported
    force: bool = False  # replace an existing bundle folder (atomically)
    labels: Path | None = None  # class names in output order, one a line (default: the folder's, sorted)
    scale: float | None = None
    offset: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    channels_order: str = "rgb"
    raw: bool = False  # the model takes raw 0-255 pixels as they are (no normalising layer needed)
    output: str = "auto"  # auto (read from the model), probabilities, logits
    image_size: int | None = None  # only for a model that takes any size
    test_split: float = 0.2
    val_split: float = 0.1
    seed: int = 0
    limit: int | None = None
    skip_bad: bool = False
    data_dir: str | None = None

    def validate(self) -> None:
        """Options checked before anything is loaded."""
        if self.output not in OUTPUTS:
            raise EdgeclsError(f"--output {self.output!r}: choose {', '.join(OUTPUTS)}")
        if self.channels_order not in ("rgb", "bgr"):
            raise EdgeclsError(f"--channels-order {self.channels_order!r}: choose rgb or bgr")
        if self.raw and self.preprocessing().declared:
            raise EdgeclsError("--raw-pixels says the model takes raw 0-255 pixels: it cannot go with --scale, "
                               "--offset, --mean, --std or --channels-order bgr")
        if self.scale == 0:
            raise EdgeclsError("--scale 0: every pixel would become the same value")
        for v in self.std or []:
            if v <= 0:
                raise EdgeclsError(f"--std {','.join(f'{s:g}' for s in self.std)}: every value must be above 0")
        if not 0 <= self.seed < 2**32:
            raise EdgeclsError(f"--seed {self.seed}: must be between 0 and 4294967295")
        if self.labels is not None and not Path(self.labels).is_file():
            raise EdgeclsError(f"--labels {self.labels}: no such file")

    def preprocessing(self) -> foreign.Preprocessing:
        return foreign.Preprocessing(1.0 if self.scale is None else self.scale,
                                     0.0 if self.offset is None else self.offset, self.mean, self.std,
                                     self.channels_order)

    def bundle_dir(self, data: sources.Data) -> Path:
        if self.out is not None:
            return Path(self.out)
        name = Path(self.data).resolve().name if data.name == "folder" else data.name
        return Path("models") / f"{name}-imported"


@dataclass
class ImportResult:
    bundle: Path
    manifest: dict
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # none: nothing was trained (a TrainResult's shape)
    interrupted: bool = False
    written: bool = True


def _labels(cfg: ImportConfig, data: sources.Data, outputs: int) -> sources.Data:
    """`data` with its classes in the model's output order (--labels), checked against the model's outputs."""
    where = cfg.data if data.name == "folder" else f"--data {cfg.data}"
    if cfg.labels is not None:
        names = [line.strip() for line in Path(cfg.labels).read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(set(names)) != len(names):
            raise EdgeclsError(f"--labels {cfg.labels}: a class name appears twice")
        if set(names) != set(data.classes):
            only_file = sorted(set(names) - set(data.classes))
            only_data = sorted(set(data.classes) - set(names))
            raise EdgeclsError(f"--labels {cfg.labels}: its classes differ from {where}'s"
                               + (f"; only in the file: {', '.join(only_file)}" if only_file else "")
                               + (f"; only in the data: {', '.join(only_data)}" if only_data else ""))
        if names != data.classes:
            if data.name != "folder":
                raise EdgeclsError(f"--labels {cfg.labels}: a bundled dataset's classes keep their order "
                                   f"({', '.join(data.classes)})")
            index = {c: names.index(c) for c in data.classes}
            data = dataclasses.replace(data, classes=names,
                                       labels=np.array([index[data.classes[k]] for k in data.labels], np.int64))
    if outputs != len(data.classes):
        raise EdgeclsError(f"{cfg.model}: the model scores {outputs} classes, {where} has {len(data.classes)} "
                           f"({', '.join(data.classes[:8])}{', …' if len(data.classes) > 8 else ''})")
    return data


def _size(cfg: ImportConfig, f: foreign.Foreign) -> tuple[int, int, int]:
    h, w, c = f.input_shape
    if h is None or w is None:
        if cfg.image_size is None:
            raise EdgeclsError(f"{cfg.model}: the model takes images of any size; say which with --image-size")
        h = w = h or w or cfg.image_size
    elif cfg.image_size is not None and cfg.image_size != h:
        raise EdgeclsError(f"--image-size {cfg.image_size}: the model takes {h}x{w} images")
    if h != w:
        raise EdgeclsError(f"{cfg.model}: input {h}x{w}: edgecls decodes square images (height = width)")
    return int(h), int(w), int(c)


def _preprocessing(cfg: ImportConfig, f: foreign.Foreign, channels: int) -> tuple[foreign.Preprocessing | None, dict]:
    """The declared preprocessing (None: nothing to add), and what the manifest says of it."""
    prep = cfg.preprocessing()
    if prep.declared:
        prep.affine(channels)  # wrong channel counts fail here
        notes = [f"the model also normalises inside ({', '.join(f.inside)}): the declared preprocessing runs before"
                 " it"] if f.inside else []
        return prep, {"how": "declared", "inside": f.inside, "notes": notes} | prep.to_dict(channels)
    if f.inside:
        return None, {"how": "inside the model", "inside": f.inside}
    if cfg.raw:
        return None, {"how": "raw pixels (--raw-pixels)", "inside": []}
    layer = "its serving signature" if f.kind == "savedmodel" else "no Rescaling or Normalization layer at its input"
    raise EdgeclsError(f"{cfg.model}: {layer}: say what it expects: --scale/--offset (e.g. --scale 0.003921569 "
                       "for 0-1), --mean/--std (with --channels-order bgr for Caffe-style models), or --raw-pixels "
                       "if it takes 0-255 pixels as they are")


def _output(cfg: ImportConfig, f: foreign.Foreign, model, sample: np.ndarray) -> tuple[bool, dict]:
    """(append a softmax?, what the manifest says): read from the output layer, else from its outputs."""
    if cfg.output != "auto":
        return cfg.output == "logits", {"kind": cfg.output, "how": f"declared (--output {cfg.output})"}
    if f.activation == "softmax":
        return False, {"kind": "probabilities", "how": "the output layer's activation is softmax"}
    if f.activation == "linear":
        return True, {"kind": "logits", "how": "the output layer is linear (no activation)"}
    if f.activation is not None:
        raise EdgeclsError(f"{cfg.model}: the output layer's activation is {f.activation}: edgecls needs one "
                           "probability per class (softmax) or logits; say which with --output")
    probs = np.asarray(model(sample.astype(np.float32), training=False))
    sums_to_one = bool((probs >= 0).all() and np.abs(probs.sum(1) - 1).max() < 1e-3)
    return not sums_to_one, {"kind": "probabilities" if sums_to_one else "logits",
                             "how": f"read from its outputs on {len(sample)} images (rows "
                                    f"{'are' if sums_to_one else 'are not'} non-negative and sum to 1)"}


def _warnings(accuracy: float, base, f: foreign.Foreign) -> list[str]:
    from ..core.stats import wilson

    n = base.test_images
    if accuracy <= wilson(base.chance * n, n)[1]:
        return [f"the imported model is at chance level on these images: {accuracy:.1%} held-out accuracy, and always "
                f"answering the most common class scores {base.chance:.1%}. Likely cause: the class order (pass "
                "--labels FILE in the model's output order) or the preprocessing (--scale/--mean/--std/"
                "--channels-order) differ from the model's training."]
    if accuracy <= base.accuracy:
        return [f"the imported model ({accuracy:.1%}) does not beat a linear model on the pixels ({base.accuracy:.1%}) "
                "on the same held-out images: check the class order and the preprocessing"]
    return []


def _replaceable(out: Path, force: bool) -> None:
    """Refuse an existing folder unless `force`, and even then one that is not a bundle (it is replaced whole)."""
    if not out.exists():
        return
    if not force:
        raise EdgeclsError(f"--out {out}: already exists; pass --force to replace it (or --out another folder)")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise EdgeclsError(f"--out {out}: exists and is not an edgecls bundle (no manifest.json); --force replaces "
                           "only bundles: choose another folder")


def _params(model, kind: str) -> int:
    """Parameters of the bundle's model; for a SavedModel, its graph's variables too."""
    n = int(model.count_params())
    if kind == "savedmodel":
        from ..core.savedmodel import layer_class

        for layer in model.layers:
            if isinstance(layer, layer_class()):
                n += sum(int(np.prod(v.shape)) for v in getattr(layer._fn, "variables", ()))
    return n


def import_model(cfg: ImportConfig) -> ImportResult:
    """Import `cfg.model` with the data `cfg.data` into a bundle (see the module's docstring).

    Raises:
        EdgeclsError: bad options, a file that is not a usable model, classes that do not match, an existing
            bundle folder without `force` (nothing is written).
    """
    from ..core._tf import keras, tensorflow
    from .fit import evaluate

    t0 = time.perf_counter()
    cfg.validate()
    if cfg.out is not None:
        _replaceable(Path(cfg.out), cfg.force)
    f = foreign.load(cfg.model)
    shape = _size(cfg, f)
    prep, prep_record = _preprocessing(cfg, f, shape[2])
    data = sources.load(cfg.data, image_size=shape[0], data_dir=cfg.data_dir, skip_bad=cfg.skip_bad,
                        channels=shape[2])
    if data.input_shape[2] != shape[2]:
        raise EdgeclsError(f"--data {cfg.data}: {data.input_shape[2]}-channel images; the model takes {shape[2]}")
    data = _labels(cfg, data, f.outputs)
    out = cfg.bundle_dir(data)
    _replaceable(out, cfg.force)
    ensure_writable(out)
    split = splits.split(data, test_fraction=cfg.test_split, val_fraction=cfg.val_split, seed=cfg.seed,
                         limit=cfg.limit)
    keras().utils.set_random_seed(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="edgecls-import-") as tmp:
        parts = None
        if f.kind == "savedmodel":  # the bundle's model calls its own copy, loaded from beside model.keras
            from ..core import savedmodel

            foreign.copy_savedmodel(f.path, Path(tmp))
            ctx = savedmodel.base(Path(tmp))
            parts = lambda stage: foreign.copy_savedmodel(Path(tmp) / savedmodel.FOLDER, stage)  # noqa: E731
        else:
            import contextlib

            ctx = contextlib.nullcontext()
        with ctx:
            model = foreign.bundle_model(f, shape, prep, logits=False)
            sample = data.images(split.train[:16])
            logits, out_record = _output(cfg, f, model, sample)
            if logits:
                model = foreign.bundle_model(f, shape, prep, logits=True)
            probs = np.asarray(model(sample.astype(np.float32), training=False))
            if not np.isfinite(probs).all() or np.abs(probs.sum(1) - 1).max() > 1e-3:
                raise EdgeclsError(f"{cfg.model}: its outputs are not probabilities even after the check (row sums "
                                   f"{probs.sum(1).round(3)[:4]}); say --output logits or probabilities")
            metrics = evaluate(model, data, split.test)
            base = pixel_baseline(data, split.train, split.test, seed=cfg.seed)
            manifest, split_ids = record_manifest(cfg, f, data, split, out, model, shape, prep, prep_record,
                                                  out_record, metrics, base, time.perf_counter() - t0,
                                                  {"tensorflow": tensorflow().__version__,
                                                   "keras": keras().__version__})
            output.write_bundle(out, model, manifest, [], split_ids, keras_parts=parts)
    return ImportResult(out, manifest, manifest["imported"]["notes"])


def record_manifest(cfg: ImportConfig, f: foreign.Foreign, data, split, out: Path, model, shape, prep,
                    prep_record: dict, out_record: dict, metrics: dict, base, seconds: float,
                    versions: dict) -> tuple[dict, dict | None]:
    """The imported bundle's manifest (and the split ids for split.json when there are many)."""
    manifest = new_manifest(out.name)
    manifest["dataset"], split_ids = output.dataset_section(cfg, data, split, out)
    spec = output.input_spec(data)
    inside = (prep.describe(shape[2]) if prep is not None else
              f"the model normalises them itself ({', '.join(f.inside)})" if f.inside else
              "the model takes them as they are")
    colour = ("BGR order is handled inside the model; feed RGB" if cfg.channels_order == "bgr" else "RGB")
    colour = colour if shape[2] == 3 else "grey"
    spec["preprocessing"] = f"none outside the model: feed raw 0-255 pixels ({colour}); {inside}"
    manifest["input"] = spec
    manifest["labels"] = data.classes
    manifest["architecture"] = {"name": model.name, "width": 1.0, "params": _params(model, f.kind),
                                "why": f"imported from {f.path.name} with edgecls import"}
    notes = list(prep_record.pop("notes", []))
    if data.name == "folder" and cfg.labels is None:
        notes.append("class order: the folder's class names sorted (as keras.utils.image_dataset_from_directory "
                     "orders them); pass --labels FILE if the model's outputs are in another order")
    notes.append("held-out here means held out by edgecls (never used to calibrate, select or judge int8 before "
                 "verify); the imported model may have been trained on any of these images")
    if out_record["kind"] == "logits":
        notes.append(f"the model outputs logits: a Softmax layer ({foreign.SOFTMAX_LAYER}) was appended, so every "
                     "exported file returns probabilities")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    for key in ("model", "labels", "data_dir") + (("data",) if data.name == "folder" else ()):
        if config.get(key):
            config[key] = os.path.relpath(Path(config[key]).resolve(), out.resolve())
    config["out"] = out.name
    manifest["imported"] = {
        "source": f.source(), "config": config, "preprocessing": prep_record, "output": out_record,
        "input_from_model": [None if d is None else int(d) for d in f.input_shape],
        "seconds": round(seconds, 2), "versions": versions,
        "warnings": _warnings(metrics["accuracy"], base, f), "notes": notes,
    }
    manifest["metrics"] = {"test": metrics}
    manifest["baseline"] = base.to_dict()
    return manifest, split_ids
