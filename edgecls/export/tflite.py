"""TFLite: TensorFlow's TFLiteConverter; fp16 weights with --fp16; int8 full-integer
(TFLITE_BUILTINS_INT8) with uint8 input and output, calibrated on training images.

Each file carries the bundle's labels, input spec, preprocessing and precision in the model's
metadata table (entries named `edgecls.*`, UTF-8 JSON/text), as ONNX and OpenVINO files do;
`edgecls.runtimes.tflite.read_metadata` reads them back without TensorFlow. Each also carries the
standard TFLite image-classifier metadata with labels.txt packed in, so MediaPipe's ImageClassifier
and the TFLite Task Library run it as it is (`tflite_metadata`)."""

from __future__ import annotations

import numpy as np

from ..bundle import atomic_write
from ..names import Precision
from .base import Written
from .tflite_metadata import input_quantization, with_metadata

__all__ = ["FILES", "PRECISIONS", "converter", "export", "with_metadata"]

PRECISIONS = ("fp32", "fp16", "int8")
FILES = {"fp32": "model.tflite", "fp16": "model.fp16.tflite", "int8": "model.int8.tflite"}


def converter(model, precision: Precision, calibration: np.ndarray | None = None, batch: int = 1):
    """TensorFlow's TFLiteConverter for `model` set up for `precision` (the one int8 recipe: full
    integer, uint8 in and out, representative data = `calibration` in batches of `batch`), and
    what it does, for the manifest."""
    from .._tf import tensorflow

    tf = tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    details = {}
    if precision == Precision.fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        details["quantization"] = "float16 weights, float32 compute"
    elif precision == Precision.int8:
        def representative():
            for i in range(0, len(calibration) - batch + 1, batch):
                yield [calibration[i:i + batch].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
        details["quantization"] = "full integer (TFLITE_BUILTINS_INT8), uint8 input and output"
    return conv, details


def export(ctx, precision):
    from .._tf import tensorflow

    tf = tensorflow()
    calibration = ctx.calibration() if precision == Precision.int8 else None
    conv, details = converter(ctx.model, precision, calibration)
    m = ctx.bundle.manifest
    flatbuffer = conv.convert()
    quant = input_quantization(flatbuffer)
    if quant is not None:  # MediaPipe feeds raw bytes: right only for (1.0, 0)
        details["input_quantization"] = {"scale": quant[0], "zero_point": quant[1]}
    atomic_write(ctx.bundle.path / FILES[precision.value],
                 with_metadata(flatbuffer, ctx.metadata(precision), labels=list(m["labels"]),
                               color=m["input"]["color"], version=m["edgecls_version"]))
    return Written(FILES[precision.value], versions={"tensorflow": tf.__version__}, details=details)
