"""onnxruntime: CPUExecutionProvider, or CUDAExecutionProvider (onnxruntime-gpu) with --device gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeclsError, require
from . import Device, as_float, check_threads


class OnnxRunner:
    name = "onnx"

    def __init__(self):
        self.device = self.precision = "?"

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        check_threads(threads)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if device == Device.gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EdgeclsError("--device gpu: onnxruntime has no CUDAExecutionProvider here "
                                   "(install onnxruntime-gpu in place of onnxruntime, on a machine with CUDA)")
            providers = ["CUDAExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgeclsError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e
        self.device = self.session.get_providers()[0]
        if device == Device.gpu and self.device != "CUDAExecutionProvider":
            raise EdgeclsError(f"--device gpu: onnxruntime fell back to {self.device} (no usable CUDA device)")
        self.input = self.session.get_inputs()[0].name
        # our exports say what they hold; another ONNX file is read once more to look for quantization
        meta = self.session.get_modelmeta().custom_metadata_map
        self.precision = meta.get("edgecls.precision") or ("int8" if any(
            n.op_type in ("QLinearConv", "DequantizeLinear") for n in _nodes(path)) else "fp32")

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: as_float(images)})[0]

    def bind(self, images: np.ndarray):
        """The leanest call for timing: input and output bound once (IOBinding), no per-call copies."""
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input, as_float(images))
        binding.bind_output(self.session.get_outputs()[0].name, "cpu")
        run, opts = self.session.run_with_iobinding, None

        def call():
            run(binding, opts)

        return call


def _nodes(path: Path):
    try:
        import onnx
    except ImportError:  # a device install has onnxruntime but maybe not onnx
        return []
    return onnx.load(str(path), load_external_data=False).graph.node
