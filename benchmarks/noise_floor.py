"""The float model's own noise floor (issue #31), beside the QAT benchmark's int8 files.

On the other Fashion-MNIST images `benchmarks.qat_fashion` judges int8 files on (the same seed, the same images),
how many answers the float efficientnet-lite0 @128 model changes under uniform noise of at most half a gray level
(one, two) — `edgecls.verify.noise_floor`, the line `verify --explain` starts with — and how many of the answers
each int8 file of that benchmark changes are on those noise-flipped images. Then where the simulated int8
model (TF-MOT's QAT model at the calibrated start of the QAT phase, before any step) loses its agreement with
float: each group of quantizers switched off in turn, on the first `--ablation` of those images.

    apt-get install dataset-fashion-mnist
    .venv/bin/python -m benchmarks.qat_fashion --work /tmp/qat-fashion      # trains the bundle, exports twice
    .venv/bin/python -m benchmarks.noise_floor --work /tmp/qat-fashion       # writes WORK/noise_floor.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

AMPLITUDES = (0.5, 1.0, 2.0)
# groups of the QAT model's quantizers, matched on "<layer>:<weight|act|out>" (efficientnet-lite0's layer names)
GROUPS = {
    "every weight quantizer": r":weight$",
    "every activation quantizer": r":(act|out)$",
    "the input path (rescale, resize)": r"^(rescale|resize):",
    "the stem": r"^stem_",
    "blocks 0-2": r"^block[0-2]_",
    "blocks 3-7": r"^block[3-7]_",
    "blocks 8-15": r"^block([89]|1[0-5])_",
    "the head (head conv, pool, logits)": r"^(head_|pool|logits)",
    "input path + stem + blocks 0-2": r"^(rescale|resize|stem_|block[0-2]_)",
    "everything after block 2": r"^(block([3-9]|1[0-5])_|head_|pool|logits)",
}


def quantizers(qmodel) -> list[tuple[str, object]]:
    """("<layer>:<weight|act|out>", quantizer) for every TF-MOT quantizer of the QAT model."""
    found = []
    for layer in qmodel.layers:
        name = getattr(getattr(layer, "layer", None), "name", layer.name)
        found += [(f"{name}:weight", q) for _, q, _ in getattr(layer, "_weight_vars", ())]
        found += [(f"{name}:act", a.quantizer) for a in getattr(layer, "_quantize_activations", ())]
        found += [(f"{name}:out", q) for q in getattr(layer, "_output_quantizers", None) or ()]
    return found


def ablation(bundle: Path, images: np.ndarray, float_answers: np.ndarray) -> dict:
    """Agreement of the simulated int8 model with float with every quantizer, then with each group switched off."""
    import keras

    from edgecls.core.bundle import Bundle
    from edgecls.export import qat
    from edgecls.runtimes.keras import probabilities
    from edgecls.train import recorded

    b = Bundle.open(bundle)
    seed = b.manifest["dataset"]["split"]["seed"]
    _, train_x, _ = recorded.select(b, "train", seed=seed, limit=len(b.split_ids("train")))
    twin = qat.twin(keras.saving.load_model(str(bundle / "model.keras")))
    q = qat.quantized(twin)
    qat.calibrate_ranges(q, twin, train_x)
    qat.pin_input_range(q)
    found = quantizers(q)
    classes = {id(z): type(z) for _, z in found}

    def agreement() -> float:
        return float((probabilities(q, images, batch=100).argmax(1) == float_answers).mean())

    out = {"images": len(images), "quantizers": len(found), "every quantizer on": agreement(), "off": {}}
    for group, pattern in GROUPS.items():
        off = [z for key, z in found if re.search(pattern, key)]
        for z in off:  # an identity of the same quantizer: its variables stay, its rounding goes
            z.__class__ = type(f"Off{classes[id(z)].__name__}", (classes[id(z)],),
                               {"__call__": lambda self, inputs, training, weights, **kw: inputs})
        out["off"][group] = {"quantizers": len(off), "agreement": agreement()}
        for z in off:
            z.__class__ = classes[id(z)]
        print(group, out["off"][group], flush=True)
    return out


def smoke(bundle: Path) -> int:
    """CI: the floor at every amplitude and the ablation (where edgecls[qat] is installed) on a small bundle's
    held-out and validation images; no Fashion-MNIST."""
    from benchmarks.qat_fashion import unseen
    from edgecls.export import qat

    images, labels = unseen(bundle)
    rows = run(bundle, images, labels, len(images) if qat.installed() else 0, {"bundle": bundle},
               kind="held-out + validation")
    print(json.dumps(rows))
    return 0


def run(bundle: Path, images: np.ndarray, labels: np.ndarray, ablate: int, exports: dict[str, Path],
        kind: str = "other") -> dict:
    """The floor at each of `AMPLITUDES` on `images` (`kind` of images), the int8 files of `exports` against it,
    and the ablation on the first `ablate` images."""
    from edgecls.core.bundle import Bundle
    from edgecls.runtimes.keras import load_bundle_model, probabilities
    from edgecls.verify.noise_floor import NoiseFloor, moved_answers

    model = load_bundle_model(Bundle.open(bundle))
    answers = probabilities(model, images).argmax(1)
    rows = {"bundle": str(bundle), "other_images": len(images), "keras_accuracy": float((answers == labels).mean()),
            "floor": {}}
    unsteady = {}
    for amplitude in AMPLITUDES:
        t0 = time.perf_counter()
        moved = moved_answers(model, images, amplitude=amplitude)
        unsteady[amplitude] = moved.any(axis=0)
        floor = NoiseFloor.of(moved, amplitude, {kind: len(images)}, 0)
        rows["floor"][str(amplitude)] = floor.to_dict() | {"seconds": round(time.perf_counter() - t0, 1)}
        print(amplitude, rows["floor"][str(amplitude)], flush=True)
    rows["int8_files"] = overlap(exports, images, answers, unsteady)
    if ablate:
        rows["ablation"] = ablation(bundle, images[:ablate], answers[:ablate])
    return rows


def overlap(exports: dict[str, Path], images: np.ndarray, answers: np.ndarray, unsteady: dict) -> dict:
    """For each int8 file of each of `exports` (name: bundle folder): its changed answers, and how many of them are
    on images the float model itself changes under each amplitude of noise."""
    from benchmarks.qat_fashion import FILES
    from edgecls import runtimes

    out = {}
    for kind, folder in exports.items():
        for fmt, rel in FILES.items():
            if not (folder / rel).is_file():
                continue
            r = runtimes.create(fmt)
            r.load(folder / rel)
            moved = r.predict_all(images).argmax(1) != answers
            out[f"{kind}/{rel}"] = {"changed": int(moved.sum())} | {
                f"on_unsteady_{a:g}": int((moved & u).sum()) for a, u in unsteady.items()}
            print(kind, rel, out[f"{kind}/{rel}"], flush=True)
    return out


def main(argv=None) -> int:
    from benchmarks.qat_fashion import other_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", type=Path, help="--smoke: a small bundle")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qat-fashion"), help="benchmarks.qat_fashion's --work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--other", type=int, default=10000, help="other images (benchmarks.qat_fashion's --other)")
    ap.add_argument("--ablation", type=int, default=2000, help="of them, for the simulated-int8 ablation (0: none)")
    ap.add_argument("--smoke", action="store_true", help="CI: the floor and the ablation on BUNDLE's unseen images")
    args = ap.parse_args(argv)
    if args.smoke:
        return smoke(args.bundle)
    case = args.work / f"fashion-1000-{args.seed}"
    bundle = case / "efficientnet-lite0-128"
    images, labels = other_images(case / "images", args.other)  # qat_fashion's images: its default seed
    rows = run(bundle, images, labels, args.ablation, {"ptq": case / "ptq", "qat": case / "qat"})
    (args.work / "noise_floor.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
