"""onnxruntime int8 recipes of one bundle's model, timed like `edgecls bench` (issue #21).

Quantizes the bundle's `model.onnx` with onnxruntime's `quantize_static` from one calibration set
(training images of the bundle's split), in QDQ with int8 (S8S8) or uint8 (U8S8) activations and in
QOperator U8S8 per-channel and per-tensor, counts the convolutions and matrix products onnxruntime's
CPU provider leaves in float in each (`edgecls.export.onnx.float_ops`), and times every file at each
batch size in a fresh process (`edgecls.bench.timing.measure_one`: the model's execution alone), the
bundle's own `model.onnx` and `model.int8.onnx` beside them:

    .venv/bin/python -m benchmarks.onnx_int8_recipes models/photos-efficientnet-lite0 --batches 1 32

Measured on EfficientNet-Lite0 @224 (docs/measurements.md): S8S8 leaves 14 convolutions in float and is
slower than fp32; U8S8 leaves none and is 1.9x faster than S8S8 at batch 1. `--smoke` (CI): batch 1,
a fraction of a second each, nothing judged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

RECIPES = {  # name -> (format, activations, per-channel weights)
    "qdq-s8s8-per-channel": ("QDQ", "int8", True),
    "qdq-u8s8-per-channel": ("QDQ", "uint8", True),
    "qoperator-u8s8-per-channel": ("QOperator", "uint8", True),
    "qoperator-u8s8-per-tensor": ("QOperator", "uint8", False),
}


def quantize(pre: Path, out: Path, calibration: np.ndarray, fmt: str, activations: str, per_channel: bool) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgecls.export.onnx import _reader

    quantize_static(str(pre), str(out), _reader(calibration), quant_format=getattr(QuantFormat, fmt),
                    activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel)
    return out


def p50_ms(path: Path, images: np.ndarray, tmp: Path, seconds: float, smoke: bool) -> dict:
    from edgecls.bench.hardware import physical_cores
    from edgecls.bench.timing import in_fresh_process, measure_one

    np.save(tmp / "x.npy", images)
    spec = {"runtime": "onnx", "path": str(path), "device": "cpu", "threads": physical_cores(),
            "images": str(tmp / "x.npy"),
            "warmup": 2 if smoke else 10, "warmup_time": 0.0 if smoke else 0.2, "min_runs": 5 if smoke else 50,
            "min_time": seconds, "precision": "int8"}
    return in_fresh_process(measure_one, spec)


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecls.core.bundle import Bundle
    from edgecls.export.onnx import float_ops
    from edgecls.train import recorded

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--calib-size", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per file and batch")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batches, args.seconds, args.calib_size = [1], 0.05, 8
    bundle = Bundle.open(args.bundle)
    seed = bundle.manifest["dataset"]["split"]["seed"]
    _, calibration, _ = recorded.select(bundle, "train", limit=args.calib_size, seed=seed)
    x, _ = recorded.heldout(bundle)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecls-onnx-int8-") as tmp:
        tmp = Path(tmp)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(bundle.checked_path("model.onnx")), str(pre))
        files = {"fp32 (bundle)": bundle.checked_path("model.onnx")}
        if bundle.entry("model.int8.onnx"):
            files["int8 (bundle)"] = bundle.checked_path("model.int8.onnx")
        for name, recipe in RECIPES.items():
            files[name] = quantize(pre, tmp / f"{name}.onnx", calibration, *recipe)
        left = {name: float_ops(path) for name, path in files.items()}
        for batch in args.batches:
            images = np.resize(x, (batch, *x.shape[1:]))
            for name, path in files.items():
                r = p50_ms(path, images, tmp, args.seconds, args.smoke)
                rows.append({"recipe": name, "batch": batch, "p50_ms": round(r["p50_ms"], 3),
                             "float_convs_and_matmuls": left[name], "outputs_ok": r.get("outputs_ok")})
    print(f"{'recipe':<28} {'batch':>5} {'p50 ms':>9} {'float convs/matmuls':>20}")
    for r in rows:
        print(f"{r['recipe']:<28} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['float_convs_and_matmuls']:>20}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
