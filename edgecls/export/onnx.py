"""ONNX: tf2onnx from the Keras model (opset 17, dynamic batch, input `images`, output
`probabilities`); int8 with onnxruntime's static QDQ quantization, per-channel weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import atomic_target
from ..errors import require
from ..names import Precision
from .base import Written

OPSET = 17
PRECISIONS = ("fp32", "int8")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def _versions() -> dict:
    import onnx
    import tf2onnx

    return {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": OPSET}


def _save(model, ctx, precision, path: Path) -> None:
    import onnx

    onnx.helper.set_model_props(model, ctx.metadata(precision))
    onnx.checker.check_model(model, full_check=True)
    with atomic_target(path) as tmp:
        onnx.save(model, str(tmp))


def convert_fp32(ctx, path: Path):
    from .._tf import tensorflow

    tf = tensorflow()
    tf2onnx = require("tf2onnx", "train")
    h, w, c = ctx.input_shape
    spec = (tf.TensorSpec((None, h, w, c), tf.float32, name="images"),)
    model = ctx.model

    @tf.function(input_signature=spec)
    def serve(images):
        return {"probabilities": model(images, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    _save(proto, ctx, Precision.fp32, path)


class _Calibration:
    """onnxruntime's CalibrationDataReader over the calibration images, one at a time."""

    def __init__(self, images: np.ndarray):
        self.it = iter(images)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"images": x[None].astype(np.float32)}


def export(ctx, precision):
    path = ctx.bundle.path / FILES[precision.value]
    if precision == Precision.fp32:
        convert_fp32(ctx, path)
        ctx.wrote_onnx_fp32(path)
        return Written(FILES["fp32"], versions=_versions())
    import onnx

    ort = require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = ctx.workdir / "pre.onnx"
    quant_pre_process(str(ctx.onnx_fp32()), str(pre), skip_symbolic_shape=False)
    out = ctx.workdir / "int8.onnx"
    quantize_static(str(pre), str(out), _Calibration(ctx.calibration()), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    _save(onnx.load(str(out)), ctx, precision, path)
    return Written(FILES["int8"], versions={**_versions(), "onnxruntime": ort.__version__},
                       details={"quantization": "static QDQ, S8S8, per-channel weights, MinMax calibration"})
