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


def probabilities(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """A loaded Keras model's float32 probabilities for raw uint8 images, `batch` at a time."""
    return np.concatenate([np.asarray(model(images[i:i + batch].astype(np.float32), training=False))
                           for i in range(0, len(images), batch)]).astype(np.float32)


def load_bundle_model(bundle):
    """A bundle's model.keras, after its sha256 check, loaded in Keras' safe mode."""
    return load_model(bundle.checked_path("model.keras"))
