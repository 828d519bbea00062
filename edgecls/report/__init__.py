"""Reporting: console tables (console.py), the HTML/Markdown report (document.py) and its figures.
Reads manifests only."""

from __future__ import annotations

import importlib

_LAZY = {  # name -> module: imported on first use, so `import edgecls.report` stays light (no TensorFlow)
    "write_report": "document",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
