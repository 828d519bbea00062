"""Verification: parity of every exported file with Keras (parity.py), per-layer int8 error
(explain.py), golden vectors for native ports (golden.py)."""

from __future__ import annotations

import importlib

_LAZY = {  # name -> module: imported on first use, so `import edgecls.verify` stays light (no TensorFlow)
    "ParityRow": "parity",
    "VerifyResult": "parity",
    "verify": "parity",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
