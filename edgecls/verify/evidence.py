"""Which images judge which file: evidence sized to each question.

- **Float files (fp32, fp16)** are conversions of a fixed function: nothing in them was fitted to any
  image, so every input the bundle can reach shows a conversion fault as well as an unseen one
  does — the held-out, validation and training images (a stratified sample beyond
  `MAX_FLOAT_IMAGES`), plus `FLOAT_VARIANTS` label-free variants of them (mirrored, cropped,
  brighter or darker, more or less contrast: inputs unlike any in the dataset). Edge-case tensors
  (all 0, all 255, grey, uniform noise) are run apart and checked for gross faults only (a
  non-finite output, or |Δp| beyond `GROSS`): near-ties on noise are not a conversion fault.
- **int8 files** were fitted to calibration images (training images) and a fine-tuned model has
  memorised its training images, so an int8 file is judged only on images it was never fitted to,
  chosen on or trained on: the held-out and validation images, plus `--images` (unlabelled), less
  the images its recipe was selected on at export (recorded in its `int8.selected_on`).

Each row records which images judged it (`judged_on`: kinds and counts, a hash of their ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import runtimes
from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.inputs import edge_cases, ids_hash, variants
from ..core.names import Device, Precision, Runtime
from ..export import reference
from ..train import recorded, unlabelled

MAX_AGREEMENT_IMAGES = 20000  # validation images beyond the held-out split: verify stays within seconds
MAX_FLOAT_IMAGES = 4096  # images the bundle can reach, judging float files (a stratified sample beyond)
FLOAT_VARIANTS = 1024  # label-free variants of them
GROSS = {Precision.fp32: 1e-2, Precision.fp16: 0.25}  # |Δp| on an edge-case tensor that is a gross fault
INT8_KINDS = ("held-out", "validation", "images")  # images an int8 file was never fitted to or trained on


@dataclass
class Pool:
    """Every evidence input of one verify run, Keras' probabilities for them, and what each is."""

    images: np.ndarray  # uint8 NHWC; the labelled held-out images first
    labels: np.ndarray  # labels of the first len(labels) images
    keras: np.ndarray  # float64 (N, classes)
    kinds: np.ndarray  # per image: held-out, validation, training, images, variant
    keys: list[str]  # per image: "<kind>:<id>" (ids, file digests, variant of which image)
    edge: np.ndarray  # edge-case tensors (uint8)
    edge_names: list[str]
    edge_keras: np.ndarray | None  # None: no Keras probabilities for them (an older reference.npz)
    source: str  # dataset (Keras run here) or reference (the bundle's stored Keras probabilities)
    notes: list[str] = field(default_factory=list)  # what was sampled, dropped, not available
    images_record: dict | None = None  # --images: folder, counts, dropped, files hash
    float_only: int = 0  # the last `float_only` images judge float files only (the reference's float inputs)

    def mask(self, precision: Precision | str, exclude: set[str] = frozenset()) -> np.ndarray:
        """Which images judge a file of `precision` (less the keys in `exclude`)."""
        keep = (self.kinds != "images" if Precision(precision) != Precision.int8  # float: no need of unseen ones
                else np.isin(self.kinds, INT8_KINDS))
        if self.float_only and Precision(precision) == Precision.int8:
            keep[len(keep) - self.float_only:] = False
        if exclude:
            keep &= np.array([k not in exclude for k in self.keys], bool)
        return keep

    def judged_on(self, mask: np.ndarray, excluded: int = 0) -> dict:
        """The row's record of its images: counts per kind, a hash of which, what was left out and why."""
        kinds = self.kinds[mask]
        counts = {k: int((kinds == k).sum()) for k in dict.fromkeys(self.kinds) if (kinds == k).any()}
        out = {"images": int(mask.sum()), "kinds": counts,
               "ids_sha256": ids_hash(k for k, m in zip(self.keys, mask) if m), "source": self.source}
        if excluded:
            out["excluded_selection"] = excluded
        if self.images_record and counts.get("images"):
            out["images_folder"] = self.images_record
        return out


def selection_keys(artifact: dict) -> set[str]:
    """The pool keys of the images an int8 file's recipe was selected on at export (never judge it)."""
    sel = (artifact.get("int8") or {}).get("selected_on") or {}
    return ({f"validation:{i}" for i in sel.get("ids", [])}
            | {f"images:{d}" for d in sel.get("digests", [])})


def describe(judged_on: dict) -> str:
    """'360 held-out, 144 validation, 1024 variant (ids 3f2a…)' for tables and reports."""
    kinds = ", ".join(f"{n:,} {k}" for k, n in judged_on.get("kinds", {}).items())
    extra = (f"; {judged_on['excluded_selection']:,} its recipe was selected on left out"
             if judged_on.get("excluded_selection") else "")
    return f"{kinds}{extra} (ids {judged_on.get('ids_sha256', '')[:8]})"


def split_sample(bundle: Bundle, part: str, limit: int, data_dir: str | None):
    """(ids, images, labels) of at most `limit` of the bundle's `part` split (a stratified sample beyond)."""
    seed = bundle.manifest["dataset"]["split"]["seed"]
    n = len(bundle.split_ids(part))
    if not n or limit <= 0:
        return [], np.zeros((0, *bundle.input_shape()), np.uint8), np.zeros(0, np.int64)
    return recorded.select(bundle, part, data_dir=data_dir, limit=min(n, limit), seed=seed)


def build(bundle: Bundle, data_dir: str | None, device: Device, threads: int | None,
          images_dir: str | None = None, float_inputs: bool = True, skip_bad: bool = False) -> Pool:
    """The evidence inputs of a verify run with Keras' probabilities: from the dataset with Keras run here
    where both are present, else from the bundle's reference data (a device: no TensorFlow, no dataset).

    Raises:
        EdgeclsError: neither the dataset and TensorFlow nor reference data; a bad `--images` folder (a file in
            it that is not a readable image, unless `skip_bad`).
    """
    keras = runtimes.runner_class(Runtime.keras)
    missing = None if keras.installed() else "TensorFlow is not installed"
    if missing is None:
        try:
            ids_t, x_t, y = recorded.select(bundle, "test", data_dir=data_dir)
        except EdgeclsError as e:  # the folder is not here, or scikit-learn (digits) is not
            if data_dir:  # the user said where the data is: that must work
                raise
            missing = str(e)
    if missing is not None:
        if images_dir:
            raise EdgeclsError(f"--images {images_dir}: cannot be judged here: {missing} (unlabelled images need "
                               "the Keras model run beside each file)")
        return _from_reference(bundle, missing)
    seed = bundle.manifest["dataset"]["split"]["seed"]
    parts = [("held-out", ids_t, x_t)]
    ids_v, x_v, _ = split_sample(bundle, "val", MAX_AGREEMENT_IMAGES, data_dir)
    parts.append(("validation", ids_v, x_v))
    notes = []
    u = None
    if images_dir:
        def known():  # the bundle's own images, decoded only once the folder is known to be good
            return {"training": recorded.digests(bundle, "train", data_dir),
                    "validation": recorded.digests(bundle, "val", data_dir),
                    "held-out": recorded.digests(bundle, "test", data_dir)}

        u = unlabelled.load(images_dir, bundle.input_shape(), known, seed=seed, skip_bad=skip_bad)
        parts.append(("images", u.digests, u.images))
        notes += u.notes()
    if float_inputs:
        room = MAX_FLOAT_IMAGES - len(x_t) - len(x_v)
        ids_tr, x_tr, _ = split_sample(bundle, "train", room, data_dir)
        n_train = len(bundle.split_ids("train"))
        if len(x_tr) < n_train:
            notes.append(f"float files: {len(x_tr):,} of {n_train:,} training images (a stratified sample)")
        parts.append(("training", ids_tr, x_tr))
        real = np.concatenate([x_t, x_v, x_tr])
        x_var, var_keys = variants(real, FLOAT_VARIANTS, seed=seed)
        parts.append(("variant", var_keys, x_var))
    images = np.concatenate([x for _, _, x in parts])
    kinds = np.array([k for k, ids, _ in parts for _ in ids], dtype=object)
    keys = [f"{k}:{i}" for k, ids, _ in parts for i in ids]
    del parts
    edge, edge_names = edge_cases(bundle.input_shape(), seed=seed)
    runner = keras()
    runner.load(bundle.checked_path("model.keras"), device=device, threads=threads)
    probs = runner.predict_all(images).astype(np.float64)
    edge_probs = runner.predict_all(edge).astype(np.float64)
    return Pool(images, y, probs, kinds, keys, edge, edge_names, edge_probs, "dataset", notes,
                u.record() if u else None)


def _from_reference(bundle: Bundle, missing: str) -> Pool:
    if "reference" not in bundle.manifest:
        raise EdgeclsError(f"{bundle.path}: cannot verify here: {missing}, and the bundle has no reference data. "
                           "Re-export it where the data and TensorFlow are ('edgecls export' stores "
                           "reference.npz), or pass --data-dir with the dataset")
    ref = reference.load(bundle)
    extra = reference.load_float_inputs(bundle)
    images, probs = ref.images, ref.keras_probabilities.astype(np.float64)
    kinds = ["held-out"] * len(images)
    keys = [f"held-out:{i}" for i in bundle.manifest["reference"].get("ids", range(len(images)))]
    edge, edge_names = edge_cases(bundle.input_shape(), seed=bundle.manifest["dataset"]["split"]["seed"])
    edge_probs, notes = None, []
    if extra is not None:
        images = np.concatenate([images, extra.images])
        probs = np.concatenate([probs, extra.keras_probabilities.astype(np.float64)])
        kinds += list(extra.kinds)
        keys += [f"{k}:{j}" for j, k in enumerate(extra.kinds)]
        edge_probs = extra.edge_keras_probabilities.astype(np.float64)
    else:
        notes.append("the reference data holds held-out images only (exported by an older edgecls): float files "
                     "are judged on them alone; export again to store float inputs")
    return Pool(images, ref.labels, probs, np.array(kinds, dtype=object), keys, edge, edge_names, edge_probs,
                "reference", notes, float_only=len(extra.images) if extra is not None else 0)


def edge_faults(precision: Precision | str, probs: np.ndarray, pool: Pool) -> tuple[dict, list[str]]:
    """Gross faults on the edge-case tensors: a non-finite output (any file), or (float files) a |Δp| beyond
    `GROSS`. Returns the record and one failure sentence per fault."""
    p = Precision(precision)
    finite = np.isfinite(probs).all(1)
    faults = [f"edge-case input {n}: non-finite output" for n, ok in zip(pool.edge_names, finite) if not ok]
    record = {"inputs": list(pool.edge_names), "non_finite": int((~finite).sum())}
    if p in GROSS and pool.edge_keras is not None and finite.all():
        diff = np.abs(probs.astype(np.float64) - pool.edge_keras).max(1)
        record.update(max_abs_diff=float(diff.max()), limit=GROSS[p])
        faults += [f"edge-case input {n}: |Δp| {d:.2e}, far beyond the {p.value} tolerance (gross fault above "
                   f"{GROSS[p]:g})" for n, d in zip(pool.edge_names, diff) if d > GROSS[p]]
    return record, faults


__all__ = ["FLOAT_VARIANTS", "GROSS", "MAX_AGREEMENT_IMAGES", "MAX_FLOAT_IMAGES", "Pool", "build", "describe",
           "edge_faults", "selection_keys"]
