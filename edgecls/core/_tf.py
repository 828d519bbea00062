"""Import TensorFlow quietly, and only when a stage needs it."""

import os
import sys


def tensorflow():
    """Return the `tensorflow` module with its C++ info logs silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .errors import require
    from .quiet import native_output

    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
    else:
        with native_output():  # oneDNN's and absl's start-up lines come from C++ at import
            tf = require("tensorflow", "train")
    tf.get_logger().setLevel("ERROR")
    return tf


def keras():
    """Return Keras 3 (imported after TensorFlow so it picks the TF backend)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    tensorflow()
    import keras as k

    return k
