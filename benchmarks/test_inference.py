"""Inference latency per runtime x precision at batch 1 and 32 (pytest-benchmark), on the digits model.

Each benchmark times the runtime's leanest bound call, as `edgecls bench` does. Runtimes share this
process here (pytest-benchmark's own loop); `edgecls bench` isolates each in a fresh process.
"""

import numpy as np
import pytest

from edgecls import runtimes
from edgecls.bundle import Bundle

FILES = {("keras", "fp32"): "model.keras", ("onnx", "fp32"): "model.onnx", ("onnx", "int8"): "model.int8.onnx",
         ("tflite", "fp32"): "model.tflite", ("tflite", "int8"): "model.int8.tflite",
         ("openvino", "fp32"): "openvino/model.xml", ("openvino", "int8"): "openvino/model.int8.xml"}


@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("runtime,precision", list(FILES))
def test_inference(benchmark, digits_run, runtime, precision, batch):
    b = Bundle.open(digits_run["bundle"])
    x, _ = b.heldout()
    runner = runtimes.create(runtime)
    runner.load(b.checked(FILES[(runtime, precision)]))
    call = runner.bind(np.resize(x, (batch, *x.shape[1:])))
    benchmark.group = f"inference batch {batch}"
    benchmark.extra_info.update(runtime=runtime, precision=precision, batch=batch)
    benchmark.pedantic(call, warmup_rounds=10, rounds=200 if runtime != "keras" else 50, iterations=1)
