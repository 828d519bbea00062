"""Golden vectors for native ports: a few held-out images, the exact tensors the model receives, and
what every exported artifact answers, so a C++/Android/iOS app can check itself byte for byte.

    >>> from edgecls.verify.golden import write_golden
    >>> result = write_golden("models/digits-small")          # -> models/digits-small/golden/
    >>> result.index["outputs"][0]["probabilities"]            # [[...], ...] per image

The folder (written whole or not at all) holds:

    golden.json                 the index: files with shape, dtype, sha256; labels; tolerances
    images/00-<label>.<ext>     the original file (folder datasets) or a PNG of the uint8 pixels
    inputs/00.float32.npy       (1, H, W, C) float32, raw 0-255, NHWC: what every float model receives
    inputs/00.uint8.npy         (1, H, W, C) uint8: what the int8 TFLite model receives (with one)
    outputs/<format>-<precision>.npy   (N, classes) float32 probabilities of that artifact
    outputs/keras.npy           the Keras model's, where TensorFlow is installed
    outputs/<platform>-<cpu>/<format>-<precision>.npy   with --platform: the same artifact run on that
                                instruction set (emulated CPU model): a port on an ARM device compares
                                with these (golden.json: platform_outputs)

Tensors are made from the written image files with `edgecls.core.images.load_image`, the same decode
as training and `Classifier.load` (docs/embedding.md states it).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core.bundle import Bundle, now
from ..core.errors import EdgeclsError, MissingDependency
from ..core.files import atomic_write, ensure_writable, sha256, staged_bundle
from ..core.gates import TOLERANCE
from ..core.images import load_image

GOLDEN = "golden.json"
FORMAT_VERSION = 1
#: what a port must meet against the artifact it ports (abs: max |p_port - p_golden| per class)
TOLERANCES = {  # float: the |Δp| tolerance of verify's gates (edgecls.core.gates), one definition
    **{p.value: {"abs": tol, "top1": "same"} for p, tol in TOLERANCE.items()},
    "int8": {"abs": "the artifact's own max |p - p_keras| (outputs[].tolerance.abs), at least 1/256",
             "top1": "same"},
}
INT8_FLOOR = 1 / 256  # one step of a uint8 softmax output: a rounding difference must pass


@dataclass
class GoldenResult:
    folder: Path
    index: dict
    skipped: list[str] = field(default_factory=list)


def _pick(labels: np.ndarray, count: int) -> np.ndarray:
    """Stratified and deterministic: classes take turns, each giving its held-out images in order."""
    queues = [list(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < count:
        for q in queues:
            if q and len(picked) < count:
                picked.append(q.pop(0))
    return np.asarray(picked)


def _heldout(bundle: Bundle, count: int, data_dir: str | None):
    """(ids, uint8 images, label indices, source paths or None) of `count` held-out images."""
    from ..train import sources

    ds = bundle.manifest["dataset"]
    ids = list(bundle.split_ids("test"))
    if count < 1:
        raise EdgeclsError(f"--count {count}: must be at least 1")
    if count > len(ids):
        raise EdgeclsError(f"--count {count}: the bundle has only {len(ids)} held-out images")
    folder = ds["source"]["name"] == "folder"
    data = sources.open_source(ds["source"], ids=ids if folder else None, classes=ds["classes"],
                                data_dir=data_dir, base=bundle.path)
    idx = np.arange(len(ids)) if folder else np.asarray(ids, dtype=np.int64)
    pick = _pick(data.labels[idx], count)
    paths = [data.paths[i] for i in idx[pick]] if folder else None
    return [ids[i] for i in pick], data.images(idx[pick]), data.labels[idx[pick]], paths


def _npy(folder: Path, rel: str, array: np.ndarray) -> dict:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return {"file": rel, "shape": list(array.shape), "dtype": str(array.dtype), "sha256": sha256(path)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "class"


def _write_images(stage: Path, bundle: Bundle, ids, images, labels, paths) -> tuple[list[dict], np.ndarray]:
    """The image files, and the float32 batch decoded back from them (the model's exact input)."""
    from PIL import Image

    h, w, c = bundle.input_shape()
    names = bundle.labels()
    (stage / "images").mkdir()
    entries, tensors = [], []
    for i, (id_, img, y) in enumerate(zip(ids, images, labels)):
        stem = f"images/{i:02d}-{_safe(names[y])}"
        if paths is not None:  # the user's own file, as it is: the port decodes it
            rel = stem + paths[i].suffix.lower()
            shutil.copyfile(paths[i], stage / rel)
            source = "the dataset's image file, copied"
        else:
            rel = stem + ".png"
            Image.fromarray(img[..., 0] if c == 1 else img, "L" if c == 1 else "RGB").save(stage / rel)
            source = "PNG of the dataset's uint8 pixels (already at the model's size)"
        x = load_image(stage / rel, (h, w), c)[None].astype(np.float32)
        tensors.append(x)
        entries.append({"id": id_, "label": names[y], "label_index": int(y), "source": source,
                        "file": {"file": rel, "bytes": (stage / rel).stat().st_size, "sha256": sha256(stage / rel)},
                        "input": _npy(stage, f"inputs/{i:02d}.float32.npy", x)})
    return entries, np.concatenate(tensors)


def _run(bundle: Bundle, artifact: dict, x: np.ndarray):
    from ..runtimes.classifier import check_contract

    runner = runtimes.create(runtimes.runtime_of(artifact))
    runner.load(bundle.checked_path(artifact["file"]), threads=1)
    check_contract(bundle, artifact, runner)  # the manifest's input and labels are this model's
    return runner, np.asarray(runner.predict(x), np.float32)


def _int8_tolerance(bundle: Bundle, artifact: dict, probs: np.ndarray, keras: np.ndarray | None,
                    fp32: dict[str, np.ndarray]) -> dict:
    """The int8 artifact's own distance from the float model: from `edgecls verify` when it ran (every
    held-out image) on these very bytes, else on these images (vs Keras, else vs the same format's fp32
    artifact). A verify row of other bytes (re-exported since) or without a hash is not used."""
    from ..core import results

    row = next((r for r in results.current(bundle.manifest, "verify")
                if r.get("file") == artifact["file"] and r.get("max_abs_diff") is not None
                and r.get("runtime") in (None, "", artifact["format"])
                and r.get("compute_requested") in (None, "", "f32")), None)
    if row is not None:
        own, basis = row["max_abs_diff"], f"edgecls verify: max |p - p_keras| on {row.get('images')} images"
    elif keras is not None:
        own, basis = float(np.abs(probs - keras).max()), "max |p - p_keras| on these images"
    elif artifact["format"] in fp32:
        own, basis = float(np.abs(probs - fp32[artifact["format"]]).max()), "max |p - p_fp32| on these images"
    else:
        own, basis = 0.0, "no float reference available"
    return {"abs": max(float(own), INT8_FLOOR), "top1": "same", "basis": basis + f"; at least {INT8_FLOOR}"}


def _check_out(out: Path, bundle_path: Path) -> None:
    """`out` is replaced whole: refuse the bundle itself, a folder above it, or a folder of other files."""
    ensure_writable(out, "--out")
    target, bundle = out.resolve(), bundle_path.resolve()
    if target == bundle or target in bundle.parents:
        raise EdgeclsError(f"--out {out}: is the bundle folder or holds it; choose a new folder, e.g. {out}/golden")
    if out.is_dir() and any(out.iterdir()) and not (out / GOLDEN).is_file():
        raise EdgeclsError(f"--out {out}: a folder of other files (no {GOLDEN}); it would be replaced whole: "
                           "choose a new or empty folder")


def write_golden(bundle_dir: str | Path, out: str | Path | None = None, count: int = 4,
                 data_dir: str | None = None, platform_outputs=None) -> GoldenResult:
    """Write golden vectors of a bundle's exported artifacts into `out` (default BUNDLE/golden).

    Args:
        bundle_dir: the bundle folder (exported: at least one ONNX, TFLite or OpenVINO artifact).
        out: the folder to write; replaced whole, never left half-written.
        count: held-out images, stratified (classes take turns).
        data_dir: where the dataset lives now, if it moved.
        platform_outputs: ``(inputs, artifacts) -> list of dicts`` (platform, cpu, file, runtime, compute,
            probabilities or error): each artifact's outputs on other instruction sets
            (`edgecls.platforms.golden_outputs`), recorded beside this machine's.

    Raises:
        EdgeclsError: no exported artifact, a bad --count, an unwritable --out, a tampered file.
    """
    bundle = Bundle.open(bundle_dir)
    exported = [a for a in bundle.manifest["artifacts"] if a["format"] != "keras"]
    if not exported:
        raise EdgeclsError(f"{bundle.path}: no exported artifact to write golden vectors for; "
                           "run 'edgecls export' first")
    out = Path(out) if out is not None else bundle.path / "golden"
    _check_out(out, bundle.path)
    ids, images, labels, paths = _heldout(bundle, count, data_dir)
    m = bundle.manifest
    index = {"edgecls_golden": FORMAT_VERSION, "bundle": m["name"], "edgecls_version": m["edgecls_version"],
             "created_at": now(), "labels": bundle.labels(),
             "input": {"shape": [1, *bundle.input_shape()], "layout": "NHWC", "dtype": "float32",
                       "range": [0, 255], "color": m["input"]["color"], "resize": m["input"]["resize"],
                       "contract": "docs/embedding.md"},
             "tolerances": TOLERANCES}
    skipped: list[str] = []
    with staged_bundle(out) as stage:
        index["images"], x = _write_images(stage, bundle, ids, images, labels, paths)
        keras = None
        if importlib.util.find_spec("tensorflow") is not None and bundle.entry("model.keras"):
            runner = runtimes.create("keras")
            runner.load(bundle.checked_path("model.keras"))
            keras = np.asarray(runner.predict(x), np.float32)
            index["keras"] = {"file": _npy(stage, "outputs/keras.npy", keras), "probabilities": keras.tolist(),
                              "top1": [bundle.labels()[k] for k in keras.argmax(1)]}
        else:
            skipped.append("keras: TensorFlow is not installed (or no model.keras)")
        outputs, fp32 = [], {}
        for a in sorted(exported, key=lambda a: ("fp32", "fp16", "int8").index(a["precision"])):
            try:
                runner, probs = _run(bundle, a, x)
            except MissingDependency as e:
                skipped.append(f"{a['format']} {a['precision']}: {e}")
                continue
            if a["precision"] == "fp32":
                fp32[a["format"]] = probs
            entry = {"format": a["format"], "precision": a["precision"], "artifact": a["file"],
                     "artifact_sha256": a["sha256"], "runtime": str(runner.name), "device": runner.device_ran,
                     "file": _npy(stage, f"outputs/{a['format']}-{a['precision']}.npy", probs),
                     "probabilities": probs.tolist(), "top1": [bundle.labels()[k] for k in probs.argmax(1)],
                     "tolerance": (_int8_tolerance(bundle, a, probs, keras, fp32) if a["precision"] == "int8"
                                   else dict(TOLERANCES[a["precision"]]))}
            if hasattr(runner, "quantize") and runner.inp["dtype"] == np.uint8:  # the runner quantizes the input
                for img, q in zip(index["images"], runner.quantize(x)):
                    img["input_uint8"] = _npy(stage, img["input"]["file"].replace(".float32", ".uint8"), q[None])
                entry["input"] = {"dtype": "uint8", "quantization": list(runner.inp["quantization"]),
                                  "files": "images[].input_uint8"}
            outputs.append(entry)
        if not outputs:
            raise EdgeclsError("no exported artifact could be run here: " + "; ".join(skipped))
        index["outputs"], index["skipped"] = outputs, skipped
        if platform_outputs is not None:
            index["platform_outputs"] = _platform_entries(stage, bundle, exported, x, outputs, platform_outputs,
                                                          skipped)
        atomic_write(stage / GOLDEN, json.dumps(index, indent=1) + "\n")
    return GoldenResult(out, index, skipped)


def _platform_entries(stage: Path, bundle: Bundle, exported: list[dict], x: np.ndarray, outputs: list[dict],
                      platform_outputs, skipped: list[str]) -> list[dict]:
    """Each artifact's probabilities on other instruction sets, saved beside this machine's, with how far
    they are from them (max |Δp|, top-1 the same)."""
    here = {o["artifact"]: np.asarray(o["probabilities"], np.float32) for o in outputs}
    entries = []
    for e in platform_outputs(x, exported):
        if e.get("error"):
            skipped.append(f"{e['platform']}/{e['cpu']} {e['file']}: {e['error']}")
            continue
        a = next(a for a in exported if a["file"] == e["file"])
        probs = np.asarray(e["probabilities"], np.float32)
        entry = {"platform": e["platform"], "cpu": e["cpu"], "emulator": e.get("emulator", ""),
                 "format": a["format"], "precision": a["precision"], "artifact": a["file"],
                 "artifact_sha256": a["sha256"], "runtime": e.get("runtime", a["format"]), "compute": e.get("compute"),
                 "file": _npy(stage, f"outputs/{e['platform']}-{e['cpu']}/{a['format']}-{a['precision']}.npy", probs),
                 "probabilities": probs.tolist(), "top1": [bundle.labels()[k] for k in probs.argmax(1)]}
        if a["file"] in here:
            entry["vs_this_machine"] = {"max_abs_diff": float(np.abs(probs - here[a["file"]]).max()),
                                        "same_top1": bool((probs.argmax(1) == here[a["file"]].argmax(1)).all())}
        entries.append(entry)
    return entries
