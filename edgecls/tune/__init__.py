"""`edgecls tune`: the most accurate verified file within a device's latency and size limits.

space.py (the candidates), target.py (latency measured on another device, hash-bound), select.py (points,
the Pareto front, the pick), search.py (the budgeted, resumable search that calls the stages)."""

from __future__ import annotations

from ..core.lazy import lazy_exports

# name -> submodule, imported on first use: `import edgecls.tune` stays light (no TensorFlow)
__getattr__, __all__ = lazy_exports(__name__, {
    "TuneConfig": "search",
    "TuneResult": "search",
    "tune": "search",
})
