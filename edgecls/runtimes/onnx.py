"""onnxruntime: CPUExecutionProvider, or CUDAExecutionProvider (onnxruntime-gpu) with --device gpu."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.names import Device, Precision, Runtime
from . import Runner, TimedCall, as_float, check_threads


class OnnxRunner(Runner):
    name = Runtime.onnx
    preference = 1  # the embeddable Classifier's first choice when no format is named
    package = "onnxruntime"
    dists = ("onnxruntime", "onnxruntime-gpu")
    extra = "onnx"
    timed = "runtime inference call (inputs bound once)"
    devices = (Device.cpu, Device.gpu)

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        ort = self.import_package()
        check_threads(threads)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # onnxruntime's default, set explicitly so the policy read back (thread_policy) is what ran: the
        # intra-op threads spin between calls instead of sleeping (OpenVINO's and XNNPACK's pools do too)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
        if device == Device.gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EdgeclsError("--device gpu: onnxruntime has no CUDAExecutionProvider here "
                                   "(install onnxruntime-gpu in place of onnxruntime, on a machine with CUDA)")
            providers = ["CUDAExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            # from the (hash-checked) bytes, not the path: no ONNX external data can be read from beside it
            self.session = ort.InferenceSession(Path(path).read_bytes(), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgeclsError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e
        self.device_ran = self.session.get_providers()[0]
        if device == Device.gpu and self.device_ran != "CUDAExecutionProvider":
            raise EdgeclsError(f"--device gpu: onnxruntime fell back to {self.device_ran} (no usable CUDA device)")
        self.input = self.session.get_inputs()[0].name
        # our exports say what they hold; another ONNX file is read once more to look for quantization
        meta = self.session.get_modelmeta().custom_metadata_map
        self.precision = Precision(meta.get("edgecls.precision") or ("int8" if any(
            n.op_type in ("QLinearConv", "DequantizeLinear") for n in _nodes(path)) else "fp32"))
        self.compute = "fp32"

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: as_float(images)})[0]

    def thread_policy(self) -> dict:
        o = self.session.get_session_options()
        return {"intra_op_threads": o.intra_op_num_threads or "onnxruntime default (physical cores)",
                "inter_op_threads": o.inter_op_num_threads or "onnxruntime default",
                "intra_op_spinning": o.get_session_config_entry("session.intra_op.allow_spinning") == "1",
                "execution_mode": str(o.execution_mode).rsplit(".", 1)[-1]}

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """Input and a preallocated output bound once (IOBinding), so a run neither copies the input
        nor allocates the output. With CUDA both stay on the GPU."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        bound = as_float(images)
        out = self.session.get_outputs()[0]
        dims = out.shape[1:]
        if self.device_ran == "CUDAExecutionProvider":
            bound = ort.OrtValue.ortvalue_from_numpy(bound, "cuda", 0)
            binding.bind_ortvalue_input(self.input, bound)
            binding.bind_output(out.name, "cuda")
        else:
            binding.bind_cpu_input(self.input, bound)
            if out.type == "tensor(float)" and all(isinstance(d, int) for d in dims):
                result = np.empty((len(images), *dims), np.float32)
                binding.bind_output(out.name, "cpu", 0, np.float32, list(result.shape), result.ctypes.data)
                return TimedCall(partial(self.session.run_with_iobinding, binding, None), result.copy)
            binding.bind_output(out.name, "cpu")  # a symbolic or non-float output: ORT allocates it
        # `bound` must outlive the binding: the closure keeps it
        return TimedCall(partial(self.session.run_with_iobinding, binding, None),
                         lambda: (bound, binding.copy_outputs_to_cpu()[0])[1])


def _nodes(path: Path):
    try:
        import onnx
    except ImportError:  # a device install has onnxruntime but maybe not onnx
        return []
    return onnx.load(str(path), load_external_data=False).graph.node
