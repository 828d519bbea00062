"""Training: data sources, the split and tf.data pipeline, the architecture registry, the training plan,
the loop, tf.distribute strategies, the pixel baseline, and `train()` itself (fit.py)."""

from __future__ import annotations

import importlib

_LAZY = {  # name -> module: imported on first use, so `import edgecls.train` stays light (no TensorFlow)
    "TrainConfig": "fit",
    "TrainHooks": "fit",
    "TrainResult": "fit",
    "train": "fit",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
