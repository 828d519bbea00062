"""Inference latency per runtime x precision at batch 1 and 32 (pytest-benchmark), on the digits model.

Each benchmark times the runtime's timed call (`Runner.timed_call(...).run`: the model's execution
alone, inputs bound before), as `edgecls bench` does, with garbage collection off as there. Runtimes
share this process here (pytest-benchmark's own loop); `edgecls bench` isolates each in a fresh
process, and is the number the docs quote.
"""

import numpy as np
import pytest

from edgecls import runtimes
from edgecls.bench.timing import gc_off
from edgecls.core.bundle import Bundle
from edgecls.train import recorded

from .conftest import SMOKE

FILES = {("keras", "fp32"): "model.keras", ("onnx", "fp32"): "model.onnx", ("onnx", "int8"): "model.int8.onnx",
         ("tflite", "fp32"): "model.tflite", ("tflite", "int8"): "model.int8.tflite",
         ("openvino", "fp32"): "openvino/model.xml", ("openvino", "int8"): "openvino/model.int8.xml"}


@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("runtime,precision", list(FILES))
def test_inference(benchmark, digits_run, runtime, precision, batch):
    b = Bundle.open(digits_run["bundle"])
    x, _ = recorded.heldout(b)
    runner = runtimes.create(runtime)
    runner.load(b.checked_path(FILES[(runtime, precision)]))
    images = np.resize(x, (batch, *x.shape[1:]))
    call = runner.timed_call(images)
    benchmark.group = f"inference batch {batch}"
    benchmark.extra_info.update(runtime=runtime, precision=precision, batch=batch)
    rounds = 5 if SMOKE else 200 if runtime != "keras" else 50
    with gc_off():
        benchmark.pedantic(call.run, warmup_rounds=2 if SMOKE else 10, rounds=rounds, iterations=1)
    np.testing.assert_allclose(call.output(), runner.predict(images), atol=1e-4)  # it timed the real work
