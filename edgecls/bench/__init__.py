"""Benchmarking: the measurement session (measure.py), the timed loop (timing.py), latency intervals
(latency.py), the machine (hardware.py, peak.py) and the shipping decision (decide.py)."""

from __future__ import annotations

import importlib

_LAZY = {  # name -> module: imported on first use, so `import edgecls.bench` stays light (no TensorFlow)
    "BenchConfig": "measure",
    "BenchResult": "measure",
    "bench": "measure",
    "Constraints": "decide",
    "Decision": "decide",
    "decide": "decide",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
