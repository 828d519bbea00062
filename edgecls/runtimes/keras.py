"""Keras (TensorFlow) baseline: the model call in a compiled tf.function, not `predict()`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeclsError
from . import Device, as_float, check_threads


class KerasRunner:
    name = "keras"

    def __init__(self):
        self.device = "CPU"
        self.precision = "fp32"

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        from .._tf import keras, tensorflow

        check_threads(threads)
        tf = tensorflow()
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
            self.device = "GPU"
        try:
            self.model = keras().models.load_model(path, compile=False, safe_mode=True)
        except Exception as e:
            raise EdgeclsError(f"{path}: cannot load Keras model ({type(e).__name__}: {e})") from e
        model = self.model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._tf = tf

    def bind(self, images: np.ndarray):
        """The compiled tf.function model call on a prepared tensor (not `predict()`'s per-call overhead)."""
        with self._tf.device("/GPU:0" if self.device == "GPU" else "/CPU:0"):
            x = self._tf.constant(as_float(images))
        call = self._call

        def run():
            self._last = call(x).numpy()  # .numpy() waits for the result (matters on GPU)

        return run

    def bound_output(self) -> np.ndarray:
        return self._last

    def predict(self, images: np.ndarray) -> np.ndarray:
        with self._tf.device("/GPU:0" if self.device == "GPU" else "/CPU:0"):
            return self._call(self._tf.constant(as_float(images))).numpy()
