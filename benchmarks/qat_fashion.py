"""Post-training int8 vs quantization-aware int8 (issue #31) on the 1,000-image Fashion-MNIST folder with
efficientnet-lite0 @128: changed answers vs the float Keras model on other Fashion-MNIST images, per format, and
batch-1 p50 of each QAT int8 file against the post-training one, timed in one run (alternating).

    apt-get install dataset-fashion-mnist
    .venv/bin/python -m benchmarks.qat_fashion --work /tmp/qat-fashion --other 10000
    .venv/bin/python -m benchmarks.qat_fashion --work /tmp/qat-photos --case photos-4cls   # the 149 photos

Trains once (`benchmarks.small_data`'s folder and settings), exports two copies of the bundle (`--int8`, and
`--int8 --qat`), and writes every number to WORK/qat_fashion.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

FILES = {"onnx": "model.int8.onnx", "tflite": "model.int8.tflite", "openvino": "openvino/model.int8.xml"}
FLOAT_FILES = {"onnx": "model.onnx", "tflite": "model.tflite", "openvino": "openvino/model.xml"}


def unseen(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's images it never trained on (held-out + validation), with labels."""
    from edgecls.core.bundle import Bundle
    from edgecls.train import recorded

    b = Bundle.open(bundle)
    parts = [recorded.select(b, part) for part in ("test", "val") if b.split_ids(part)]
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def other_images(folder: Path, n: int, seed: int = 1):
    """`n` Fashion-MNIST images not in `folder` (whose files are named by source index), made as the folder's
    images are (64x64 RGB, bilinear), with labels."""
    from PIL import Image

    from benchmarks.small_data import _source

    x, y, names = _source("fashion-mnist")
    order = sorted(names)  # a folder's classes are its sorted folder names
    y = np.array([order.index(names[k]) for k in y])
    used = {int(p.stem) for p in folder.rglob("*.png")}
    pool = np.array([i for i in range(len(y)) if i not in used])
    pick = np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))
    imgs = np.stack([np.asarray(Image.fromarray(x[i]).resize((64, 64), Image.Resampling.BILINEAR).convert("RGB"))
                     for i in pick])
    return imgs, y[pick]


def changed(bundle: Path, images: np.ndarray, labels: np.ndarray, keras_probs: np.ndarray, files=None) -> dict:
    from edgecls import runtimes

    out = {}
    for fmt, rel in (files or FILES).items():
        if not (bundle / rel).is_file():
            continue
        r = runtimes.create(fmt)
        r.load(bundle / rel)
        p = r.predict_all(images)
        out[fmt] = {"changed": int((p.argmax(1) != keras_probs.argmax(1)).sum()), "of": len(images),
                    "accuracy": float((p.argmax(1) == labels).mean())}
    return out


def p50_pair(a: Path, b: Path, fmt: str, image: np.ndarray, rounds: int = 400) -> dict:
    """Batch-1 predict() p50 (ms) of `a` and `b`, alternating call by call (the same load for both)."""
    from edgecls import runtimes

    ra, rb = runtimes.create(fmt), runtimes.create(fmt)
    ra.load(a)
    rb.load(b)
    for _ in range(20):
        ra.predict(image)
        rb.predict(image)
    ta, tb = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ra.predict(image)
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rb.predict(image)
        tb.append(time.perf_counter() - t0)
    return {"ptq_ms": round(1000 * float(np.median(ta)), 3), "qat_ms": round(1000 * float(np.median(tb)), 3),
            "ratio": round(float(np.median(tb) / np.median(ta)), 3)}


def smoke(bundle: Path) -> int:
    """CI: QAT export of a small exported bundle (one epoch) and the changed-answers and timing code on its
    reference images; no Fashion-MNIST. Skipped, saying so, where edgecls[qat] is not installed."""
    from edgecls.export import qat as qat_module

    if not qat_module.installed():
        print("qat_fashion smoke: skipped: needs edgecls[qat] (tf-keras, tensorflow-model-optimization; "
              "docs/export.md)")
        return 0
    from edgecls.core.bundle import Bundle
    from edgecls.export import ExportConfig, export
    from edgecls.export.qat import QatSettings
    from edgecls.export.reference import load
    from edgecls.runtimes.keras import load_bundle_model, probabilities

    qat = bundle.parent / f"{bundle.name}-qat-smoke"  # a sibling: the bundle names its images relative to itself
    shutil.rmtree(qat, ignore_errors=True)
    shutil.copytree(bundle, qat)
    try:
        res = export(qat, ExportConfig(int8=True, qat="on", qat_settings=QatSettings(max_epochs=1)))
        ref = load(Bundle.open(bundle))
        keras = probabilities(load_bundle_model(Bundle.open(bundle)), ref.images)
        rows = {"changed_ptq": changed(bundle, ref.images, ref.labels, keras),
                "changed_qat": changed(qat, ref.images, ref.labels, keras),
                "p50_batch1": {fmt: p50_pair(bundle / rel, qat / rel, fmt, ref.images[:1], rounds=20)
                               for fmt, rel in FILES.items() if (bundle / rel).is_file() and (qat / rel).is_file()}}
    finally:
        shutil.rmtree(qat, ignore_errors=True)
    print(json.dumps(rows, default=str))
    return 1 if res.failures else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", nargs="?", type=Path, help="--smoke: a small exported bundle (int8 files included)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qat-fashion"))
    ap.add_argument("--other", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="CI: the comparison on BUNDLE's reference images")
    ap.add_argument("--reuse-ptq", action="store_true", help="keep an earlier run's post-training export (ptq/)")
    ap.add_argument("--case", default="fashion-1000", help="a benchmarks.small_data case (photos-4cls: the 149 "
                    "photos, judged on their held-out + validation images: no other images exist)")
    args = ap.parse_args(argv)
    if args.smoke:
        if args.bundle is None:
            ap.error("--smoke needs BUNDLE")
        return smoke(args.bundle)
    from benchmarks.small_data import CASES, run_case
    from edgecls.core.bundle import Bundle
    from edgecls.export import ExportConfig, export
    from edgecls.export.qat import QatSettings
    from edgecls.runtimes.keras import load_bundle_model, probabilities

    case = next(c for c in CASES if c.name == args.case)
    rows = {"case": case.name, "seed": args.seed}
    src = args.work / f"{case.name}-{args.seed}" / "efficientnet-lite0-128"
    if not (src / "manifest.json").is_file():  # trained once; a rerun reuses the bundle
        run_case(case, args.seed, args.work, arch="efficientnet-lite0", backbone_size=128)
    training = json.loads((src / "manifest.json").read_text())["training"]
    rows["fine_tune_seconds"] = training.get("seconds")  # the whole transfer-learning run's fit time
    rows["training_phases"] = training.get("phases") or training.get("plan")
    ptq, qat = src.parent / "ptq", src.parent / "qat"  # beside the bundle: it names its folder as ../images
    reuse = args.reuse_ptq and (ptq / "manifest.json").is_file()
    for d in (qat,) if reuse else (ptq, qat):
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
    if reuse:
        made = json.loads((ptq / "manifest.json").read_text())["artifacts"]
        rows["ptq_gate"] = {a["file"]: (a.get("int8") or {}).get("outcome") for a in made if a.get("int8")}
    else:
        t0 = time.perf_counter()
        res = export(ptq, ExportConfig(int8=True))
        rows["ptq_export_seconds"] = round(time.perf_counter() - t0, 1)
        rows["ptq_gate"] = {a["file"]: (a.get("int8") or {}).get("outcome") for a in res.artifacts if a.get("int8")}
    t0 = time.perf_counter()
    res = export(qat, ExportConfig(int8=True, qat="on", qat_settings=QatSettings()))
    rows["qat_export_seconds"] = round(time.perf_counter() - t0, 1)
    rows["qat_gate"] = {a["file"]: (a.get("int8") or {}).get("outcome") for a in res.artifacts if a.get("int8")}
    rows["qat_failures"] = res.failures
    rows["qat_phase"] = next((a["int8"]["qat"] for a in res.artifacts if (a.get("int8") or {}).get("qat")), None)
    Path(args.work / "qat_fashion.json").write_text(json.dumps(rows, indent=1, default=str))
    if case.source == "photos":  # every photo is in the folder: its unseen images are held-out + validation
        images, labels = unseen(src)
        keras = probabilities(load_bundle_model(Bundle.open(src)), images)
        rows.update(unseen_images=len(images), keras_accuracy=float((keras.argmax(1) == labels).mean()),
                    changed_float=changed(ptq, images, labels, keras, FLOAT_FILES),
                    changed_ptq=changed(ptq, images, labels, keras), changed_qat=changed(qat, images, labels, keras))
        Path(args.work / "qat_fashion.json").write_text(json.dumps(rows, indent=1, default=str))
        print(json.dumps(rows, indent=1, default=str))
        return 0
    images, labels = other_images(args.work / f"{case.name}-{args.seed}" / "images", args.other)
    keras = probabilities(load_bundle_model(Bundle.open(src)), images)
    rows["other_images"] = len(images)
    rows["keras_accuracy"] = float((keras.argmax(1) == labels).mean())
    rows["changed_ptq"] = changed(ptq, images, labels, keras)
    rows["changed_qat"] = changed(qat, images, labels, keras)
    Path(args.work / "qat_fashion.json").write_text(json.dumps(rows, indent=1, default=str))
    rows["p50_batch1"] = {fmt: p50_pair(ptq / rel, qat / rel, fmt, images[:1]) for fmt, rel in FILES.items()
                          if (ptq / rel).is_file() and (qat / rel).is_file()}
    Path(args.work / "qat_fashion.json").write_text(json.dumps(rows, indent=1, default=str))
    print(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
