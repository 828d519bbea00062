"""Runtimes behind one interface (DESIGN §5), registered by name. No TensorFlow imported here.

A runner takes raw 0-255 NHWC pixels (any numeric dtype) and returns float32 class
probabilities (N, C); quantized uint8 inputs/outputs are handled inside the runner. Each
artifact format is run by the runtime of the same name.
"""

from __future__ import annotations

import enum
import importlib
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import EdgeclsError


class Device(str, enum.Enum):
    cpu = "cpu"
    gpu = "gpu"


class Runner(Protocol):
    name: str  # "keras", "onnx" (onnxruntime), "tflite" (ai-edge-litert), "openvino"
    device: str  # what actually ran: e.g. "CPUExecutionProvider", "CPU", "XNNPACK"
    precision: str  # the execution precision, where the runtime reports it

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None: ...

    def predict(self, images: np.ndarray) -> np.ndarray: ...

    def bind(self, images: np.ndarray) -> Callable[[], object]:
        """Prepare `images` once; return the leanest call that runs the model on them (for bench)."""
        ...

    def bound_output(self) -> np.ndarray:
        """The probabilities the last call returned by `bind` computed (to check what was timed)."""
        ...


#: runtime name -> "module:Class" (imported on use, so `edgecls[onnx]` needs no TensorFlow)
RUNTIMES: dict[str, str] = {
    "keras": "keras:KerasRunner",
    "onnx": "onnx:OnnxRunner",
    "tflite": "tflite:TFLiteRunner",
    "openvino": "openvino:OpenVINORunner",
}


def create(name: str, **options) -> Runner:
    """A new, unloaded runner of the registered runtime `name`."""
    if name not in RUNTIMES:
        raise EdgeclsError(f"unknown runtime {name!r} (choose from {', '.join(RUNTIMES)})")
    module, cls = RUNTIMES[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(**options)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise EdgeclsError(f"--threads {threads}: must be at least 1")


def as_float(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images, dtype=np.float32)
