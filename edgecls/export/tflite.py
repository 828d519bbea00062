"""TFLite: TensorFlow's TFLiteConverter; fp16 weights with --fp16; int8 full-integer
(TFLITE_BUILTINS_INT8) with uint8 input and output, calibrated on training images."""

from __future__ import annotations

import numpy as np

from ..bundle import atomic_write

PRECISIONS = ("fp32", "fp16", "int8")
FILES = {"fp32": "model.tflite", "fp16": "model.fp16.tflite", "int8": "model.int8.tflite"}


def export(ctx, precision):
    from .. import export as exp
    from .._tf import tensorflow

    tf = tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(ctx.model)
    details = {}
    if precision == exp.Precision.fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        details["quantization"] = "float16 weights, float32 compute"
    elif precision == exp.Precision.int8:
        images = ctx.calibration()

        def representative():
            for x in images:
                yield [x[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
        details["quantization"] = "full integer (TFLITE_BUILTINS_INT8), uint8 input and output"
    atomic_write(ctx.bundle.path / FILES[precision.value], conv.convert())
    return exp.Written(FILES[precision.value], versions={"tensorflow": tf.__version__}, details=details)
