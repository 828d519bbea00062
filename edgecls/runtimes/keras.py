"""Keras (TensorFlow) baseline: the model call in a compiled tf.function, not `predict()`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.names import Device, Precision, Runtime
from . import Runner, TimedCall, as_float, check_threads


class KerasRunner(Runner):
    name = Runtime.keras
    package = "tensorflow"
    dists = ("tensorflow-cpu", "tensorflow", "keras")
    extra = "train"
    timed = "compiled tf.function model call (output read by .numpy() after the span)"
    devices = (Device.cpu, Device.gpu)
    precision = Precision.fp32
    compute = "fp32"
    device_ran = "CPU"

    @classmethod
    def import_package(cls):
        from ..core._tf import tensorflow

        return tensorflow()  # quietly: its C++ start-up lines are filtered

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        check_threads(threads)
        tf = self.import_package()
        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError as e:
                if tf.config.threading.get_intra_op_parallelism_threads() != threads:
                    raise EdgeclsError("--threads: TensorFlow already started in this process with another "
                                       "thread count; run keras in a fresh process") from e
        if device == Device.gpu:
            if not tf.config.list_physical_devices("GPU"):
                raise EdgeclsError("--device gpu: TensorFlow sees no GPU (install the 'tensorflow[and-cuda]' "
                                   "build in place of tensorflow-cpu, on a machine with CUDA)")
            self.device_ran = "GPU"
        self.model = model = load_model(path)
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._tf = tf

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """The compiled tf.function model call on a prepared tensor (not `predict()`'s per-call overhead).
        On CPU eager execution is synchronous: the call returns with the result computed. On GPU the
        span ends with a device sync, not with `.numpy()`'s copy to the host, which `output()` does
        after the span, as the other runtimes read their outputs."""
        tf = self._tf
        with tf.device(self._device()):
            x = tf.constant(as_float(images))
        call, last = self._call, {}
        sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
        if self.device_ran == "GPU" and sync is not None:
            def run():
                last["out"] = call(x)
                sync()
        else:
            def run():
                last["out"] = call(x)

        return TimedCall(run, lambda: last["out"].numpy())

    def thread_policy(self) -> dict:
        t = self._tf.config.threading
        return {"intra_op_threads": t.get_intra_op_parallelism_threads() or "TensorFlow default (all cores)",
                "inter_op_threads": t.get_inter_op_parallelism_threads() or "TensorFlow default"}

    def _device(self) -> str:
        return "/GPU:0" if self.device_ran == "GPU" else "/CPU:0"

    def predict_all(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        return super().predict_all(images, min(batch, batch_size(self.model, batch)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        with self._tf.device(self._device()):
            return self._call(self._tf.constant(as_float(images))).numpy()


def load_model(path: Path):
    """Load a .keras file (safe mode, not compiled); EdgeclsError naming the file if it cannot be.

    An imported SavedModel's graph layer (`edgecls.core.savedmodel`) loads the ``savedmodel/`` folder beside
    the file, never one from elsewhere."""
    from ..core import savedmodel
    from ..core._tf import keras

    savedmodel.layer_class()  # registered before loading: safe mode admits it by name
    try:
        with savedmodel.base(Path(path).parent):
            return keras().models.load_model(path, compile=False, safe_mode=True)
    except EdgeclsError:
        raise
    except Exception as e:  # Keras raises many types for a bad archive
        raise EdgeclsError(f"{path}: cannot load Keras model ({type(e).__name__}: {e})") from e


#: bytes of layer outputs one eager call may hold for its whole batch: a functional model's eager call keeps every
#: layer's output until it returns, and TensorFlow's allocator keeps its peak for the rest of the process (a batch
#: of 256 through EfficientNet-Lite0 at 160 px, 41 MB of outputs an image, held 12 GB)
ACTIVATION_BYTES = 1 << 30
UNKNOWN_WIDTH_BATCH = 32  # a model whose layer outputs have no static size (an imported SavedModel's graph)


def outputs_per_image(model) -> int | None:
    """Values per image of all the model's layer outputs together (nested models included); None where a layer's
    output size is not static."""
    total, stack = 0, [model]
    while stack:
        for layer in getattr(stack.pop(), "layers", []):
            if getattr(layer, "layers", None):
                stack.append(layer)
            try:
                outputs = layer.output
            except (AttributeError, ValueError):  # a layer never called in a graph (a SavedModel's)
                return None
            for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
                shape = tuple(out.shape)[1:]
                if any(d is None for d in shape):
                    return None
                total += int(np.prod(shape, dtype=np.int64))
    return total or None


def batch_size(model, cap: int = 256) -> int:
    """Images one model call takes: `cap`, or fewer so that the batch's layer outputs stay within ACTIVATION_BYTES
    (float32)."""
    values = outputs_per_image(model)
    if values is None:
        return min(cap, UNKNOWN_WIDTH_BATCH)
    return max(1, min(cap, ACTIVATION_BYTES // (4 * values)))


def probabilities(model, images: np.ndarray, batch: int | None = None) -> np.ndarray:
    """A loaded Keras model's float32 probabilities for raw uint8 images, `batch` at a time (default: as many as
    `batch_size` allows)."""
    batch = batch or batch_size(model)
    return np.concatenate([np.asarray(model(images[i:i + batch].astype(np.float32), training=False))
                           for i in range(0, len(images), batch)]).astype(np.float32)


def load_bundle_model(bundle):
    """A bundle's model.keras, after its sha256 check, loaded in Keras' safe mode."""
    return load_model(bundle.checked_path("model.keras"))
