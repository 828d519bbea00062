"""Benchmarking: the measurement session (measure.py), the timed loop (timing.py), latency intervals
(latency.py), the machine (hardware.py, peak.py) and the shipping decision (decide.py)."""

from __future__ import annotations

from ..core.lazy import lazy_exports

# name -> submodule, imported on first use: `import edgecls.bench` stays light (no TensorFlow)
__getattr__, __all__ = lazy_exports(__name__, {
    "BenchConfig": "measure",
    "BenchResult": "measure",
    "bench": "measure",
    "Constraints": "decide",
    "Decision": "decide",
    "decide": "decide",
})
