"""OpenVINO on CPU (or GPU). fp32 parity requests f32 execution: on CPUs with bf16 support
OpenVINO would otherwise run an fp32 IR in bf16. `precision="bf16"` measures bf16 on purpose."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import EdgeclsError, require
from . import Device, as_float, check_threads


class OpenVINORunner:
    name = "openvino"

    def __init__(self, precision: str = "f32"):
        if precision not in ("f32", "bf16", "f16"):
            raise EdgeclsError(f"--ov-precision {precision}: choose f32, bf16 or f16")
        self.requested = precision
        self.device = self.precision = "?"

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        ov = require("openvino", "openvino")
        check_threads(threads)
        core = ov.Core()
        target = "GPU" if device == Device.gpu else "CPU"
        if target not in core.available_devices:
            raise EdgeclsError(f"--device gpu: OpenVINO sees no GPU device here (devices: "
                               f"{', '.join(core.available_devices)}; needs an Intel GPU and its driver)")
        # one stream, like benchmark_app -hint none -nstreams 1 -nthreads N
        config = {"INFERENCE_PRECISION_HINT": self.requested, "NUM_STREAMS": 1}
        if threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self.core, self.path, self.target, self.config = core, path, target, config
        self._compile(None)
        self.device = target

    def _compile(self, shape) -> None:
        """Compile the model; with `shape`, reshaped to that static input shape first."""
        try:
            model = self.core.read_model(str(self.path))
            if shape is not None:
                model.reshape({model.input(0): list(shape)})
            self.compiled = self.core.compile_model(model, self.target, self.config)
        except RuntimeError as e:
            raise EdgeclsError(f"{self.path}: OpenVINO cannot load it ({str(e).splitlines()[0]})") from e
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        self.request = self.compiled.create_infer_request()

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.request.infer({0: as_float(images)})
        return self.request.get_output_tensor(0).data.copy()

    def bind(self, images: np.ndarray):
        """The leanest call for timing: the model recompiled for this static batch shape (as an app
        with a fixed batch, or benchmark_app -shape, runs it), the input tensor sharing the array's
        memory, set once; the timed call is a synchronous `infer()` with no inputs to convert and
        outputs returned as views (`share_outputs`), not copied: ~10 us less per call than plain
        `infer()`, which matters next to benchmark_app on a 0.2 ms model."""
        import openvino as ov

        self._compile(images.shape)
        self._bound = as_float(images)
        self.request.set_input_tensor(ov.Tensor(self._bound, shared_memory=True))
        return partial(self.request.infer, share_outputs=True)

    def bound_output(self) -> np.ndarray:
        return self.request.get_output_tensor(0).data.copy()

    def native_latency_ms(self) -> float:
        """OpenVINO's own measure of the last inference (InferRequest.latency), in ms."""
        return float(self.request.latency)
