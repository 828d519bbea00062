"""Training: data sources, the split and tf.data pipeline, the architecture registry, the training plan,
the loop, tf.distribute strategies, the pixel baseline, and `train()` itself (fit.py)."""

from __future__ import annotations

from ..core.lazy import lazy_exports

# name -> submodule, imported on first use: `import edgecls.train` stays light (no TensorFlow)
__getattr__, __all__ = lazy_exports(__name__, {
    "TrainConfig": "fit",
    "TrainResult": "fit",
    "train": "fit",
})
