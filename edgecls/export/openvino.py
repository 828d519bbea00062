"""OpenVINO IR, converted from the ONNX file (the same graph onnxruntime runs, through OpenVINO's
most mature frontend, with no TensorFlow frontend involved). Saved with fp32 weights
(`compress_to_fp16=False`: save_model's default would silently halve them); fp16 with --fp16;
int8 with NNCF post-training quantization on the same calibration images."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import require
from ..names import Precision
from .base import Written

PRECISIONS = ("fp32", "fp16", "int8")
STEMS = {"fp32": "model", "fp16": "model.fp16", "int8": "model.int8"}


def _save(ov, model, ctx, precision, compress: bool) -> tuple[str, str]:
    for key, value in ctx.metadata(precision).items():
        model.set_rt_info(value, ["edgecls", key.split(".", 1)[1]])
    folder = ctx.bundle.path / "openvino"
    folder.mkdir(exist_ok=True)
    stem = STEMS[precision.value]
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=compress)
        os.replace(tmp / "model.bin", folder / f"{stem}.bin")
        os.replace(tmp / "model.xml", folder / f"{stem}.xml")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f"openvino/{stem}.xml", f"openvino/{stem}.bin"


def export(ctx, precision):
    ov = require("openvino", "openvino")
    model = ov.convert_model(str(ctx.onnx_fp32()))
    versions = {"openvino": ov.__version__, "source": "ONNX"}
    details = {"weights": {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision.value]}
    if precision == Precision.int8:
        nncf = require("nncf", "train")
        images = ctx.calibration()
        dataset = nncf.Dataset(list(images), lambda x: x[None].astype("float32"))
        model = nncf.quantize(model, dataset, subset_size=len(images))
        versions["nncf"] = nncf.__version__
        details["quantization"] = "NNCF post-training quantization (default preset), fast bias correction"
    xml, bin_ = _save(ov, model, ctx, precision, compress=precision == Precision.fp16)
    return Written(xml, parts=[bin_], versions=versions, details=details)
