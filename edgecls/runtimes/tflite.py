"""LiteRT (ai-edge-litert) Interpreter with the XNNPACK delegate on CPU. Not TensorFlow's deprecated one."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.names import Device, Precision, Runtime
from ..core.quiet import native_output
from . import Runner, TimedCall, check_threads


class TFLiteRunner(Runner):
    name = Runtime.tflite
    preference = 3
    package = "ai_edge_litert.interpreter"
    dists = ("ai-edge-litert",)
    extra = "tflite"
    timed = "Interpreter.invoke() (input quantized and set once before, output dequantized after, as litert-benchmark)"
    _batch = None

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        interp = self.import_package()
        check_threads(threads)
        if device == Device.gpu:
            raise EdgeclsError("--device gpu: the LiteRT Python package runs on CPU only (its GPU delegate "
                               "is for Android/iOS builds); use --device cpu for tflite")
        try:
            with native_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = interp.Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except Exception as e:  # a malformed flatbuffer makes LiteRT raise ValueError, RuntimeError, UnicodeDecodeError
            raise EdgeclsError(f"{path}: LiteRT cannot load it ({type(e).__name__}: "
                               f"{(str(e).splitlines() or [''])[0][:200]})") from e
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.metadata = read_metadata(path)
        integer = self.inp["dtype"] in (np.uint8, np.int8)
        # what the file holds (edgecls.precision says fp16 for fp16 weights); float parts run in float32
        # (fp16 weights are expanded at load)
        self.precision = Precision(self.metadata.get("edgecls.precision") or ("int8" if integer else "fp32"))
        self.compute = "fp32"
        self.device_ran = _delegate(self.interpreter)
        self._batch = int(self.inp["shape"][0])
        self._threads = threads

    def _resize(self, n: int) -> None:
        if n != self._batch:
            shape = list(self.inp["shape"])
            shape[0] = n
            self.interpreter.resize_tensor_input(self.inp["index"], shape)
            self.interpreter.allocate_tensors()
            self._batch = n

    def quantize(self, images: np.ndarray) -> np.ndarray:
        """Raw pixels to the input tensor's dtype (uint8/int8 via its scale and zero point)."""
        dtype = self.inp["dtype"]
        if dtype == np.float32:
            return np.ascontiguousarray(images, dtype=np.float32)
        scale, zero = self.inp["quantization"]
        info = np.iinfo(dtype)
        q = np.rint(np.asarray(images, np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        if self.out["dtype"] == np.float32:
            return out
        scale, zero = self.out["quantization"]
        return (out.astype(np.float32) - zero) * scale

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """The input tensor set once, then only `invoke()` (as litert-benchmark)."""
        self._resize(len(images))
        self.interpreter.set_tensor(self.inp["index"], self.quantize(images))
        return TimedCall(self.interpreter.invoke,
                         lambda: self.dequantize(self.interpreter.get_tensor(self.out["index"])))

    def thread_policy(self) -> dict:
        return {"num_threads": self._threads or "LiteRT default", "delegate": self.device_ran}

    def predict(self, images: np.ndarray) -> np.ndarray:
        self._resize(len(images))
        self.interpreter.set_tensor(self.inp["index"], self.quantize(images))
        self.interpreter.invoke()
        return self.dequantize(self.interpreter.get_tensor(self.out["index"]))


def _delegate(interpreter) -> str:
    """Where the graph runs: XNNPACK when its delegate took the ops over, else LiteRT's built-in kernels."""
    try:
        ops = interpreter._get_ops_details()  # LiteRT's op listing; delegated ops show as DELEGATE nodes
    except AttributeError:
        return "CPU (delegate unknown)"
    return "XNNPACK (CPU)" if any(op.get("op_name") == "DELEGATE" for op in ops) else "CPU (built-in kernels)"


MAX_METADATA = 1024  # metadata entries read from a .tflite file (an edgecls export has 6)


def read_metadata(path: Path) -> dict[str, str]:
    """The `edgecls.*` entries of a .tflite file's metadata table (labels, input, preprocessing,
    precision), read with the flatbuffer schema LiteRT ships: no TensorFlow needed. {} for a file
    that has none (not exported by edgecls). The file is memory-mapped: only the pages holding the
    table and those entries are read, not the weights."""
    import mmap

    from ai_edge_litert import schema_py_generated as schema

    entries = {}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            model = schema.Model.GetRootAs(buf, 0)
            if model.MetadataLength() > MAX_METADATA:
                raise ValueError(f"{model.MetadataLength():,} metadata entries (a file has a handful)")
            for i in range(model.MetadataLength()):
                meta = model.Metadata(i)
                name = meta.Name().decode()
                if name.startswith("edgecls."):
                    entries[name] = model.Buffers(meta.Buffer()).DataAsNumpy().tobytes().decode()
            model = meta = None  # no view into the map may outlive it
    except (IndexError, UnicodeDecodeError, AttributeError, ValueError, TypeError, struct.error) as e:
        raise EdgeclsError(f"{path}: unreadable TFLite metadata ({e})") from e
    return entries
