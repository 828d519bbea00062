"""OpenVINO on CPU (or GPU). fp32 parity requests f32 execution: on CPUs with bf16 support
OpenVINO would otherwise run an fp32 IR in bf16 (and in f16 on ARM CPUs with fp16 arithmetic).
`compute="bf16"` measures bf16 on purpose; `compute="default"` sets no precision and reports what the
device chose (`compute` after load), so the row names it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.names import Device, Precision, Runtime
from . import Runner, TimedCall, as_float, check_threads

COMPUTE = ("f32", "bf16", "f16", "default")


class OpenVINORunner(Runner):
    name = Runtime.openvino
    preference = 2
    package = "openvino"
    dists = ("openvino",)
    extra = "openvino"
    options = {"compute": COMPUTE}  # INFERENCE_PRECISION_HINT: f32 for parity, bf16/f16 on purpose
    timed = "InferRequest.infer() (input tensor shared, set once; static batch shape)"
    own_latency = True
    devices = (Device.cpu, Device.gpu)

    def __init__(self, compute: str = "f32"):
        super().__init__(compute=compute)
        self.requested = compute

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        ov = self.import_package()
        check_threads(threads)
        core = ov.Core()
        target = "GPU" if device == Device.gpu else "CPU"
        if target not in core.available_devices:
            raise EdgeclsError(f"--device gpu: OpenVINO sees no GPU device here (devices: "
                               f"{', '.join(core.available_devices)}; needs an Intel GPU and its driver)")
        # one stream, like benchmark_app -hint none -nstreams 1 -nthreads N
        config = {"NUM_STREAMS": 1}
        if self.requested != "default":  # default: what this device picks for an fp32 IR, reported as compute
            config["INFERENCE_PRECISION_HINT"] = self.requested
        if threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self.core, self.path, self.target, self.config = core, path, target, config
        self._compile(None)
        self.device_ran = target

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
        self.compute = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        self.precision = _file_precision(model)
        self.request = self.compiled.create_infer_request()

    def thread_policy(self) -> dict:
        out = {}
        for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING",
                    "SCHEDULING_CORE_TYPE", "PERFORMANCE_HINT"):
            try:
                out[key.lower()] = str(self.compiled.get_property(key))
            except RuntimeError:  # not a property of this device
                pass
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.request.infer({0: as_float(images)})
        return self.request.get_output_tensor(0).data.copy()

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """The model recompiled for this static batch shape (as an app with a fixed batch, or
        benchmark_app -shape, runs it), the input tensor sharing the array's memory, set once; the
        timed call is a synchronous `infer()` with no inputs to convert and outputs returned as views
        (`share_outputs`), not copied: less overhead per call than plain `infer()`, which matters next
        to benchmark_app on a small model (docs/bench.md). `native_ms` is OpenVINO's own InferRequest.latency."""
        import openvino as ov

        self._compile(images.shape)
        bound = as_float(images)
        self.request.set_input_tensor(ov.Tensor(bound, shared_memory=True))
        request = self.request
        return TimedCall(partial(request.infer, share_outputs=True),
                         lambda: (bound, request.get_output_tensor(0).data.copy())[1],
                         lambda: float(request.latency))


def _file_precision(model) -> Precision:
    """What the IR holds: its edgecls.precision entry, else int8 if it has FakeQuantize nodes."""
    try:
        return Precision(str(model.get_rt_info(["edgecls", "precision"])))
    except (RuntimeError, ValueError):  # not exported by edgecls
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        return Precision.int8 if quantized else Precision.fp32
