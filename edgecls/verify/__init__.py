"""Verification: parity of every exported file with Keras (parity.py), per-layer int8 error
(explain.py), golden vectors for native ports (golden.py)."""

from __future__ import annotations

from ..core.lazy import lazy_exports

# name -> submodule, imported on first use: `import edgecls.verify` stays light (no TensorFlow)
__getattr__, __all__ = lazy_exports(__name__, {
    "ParityRow": "parity",
    "VerifyResult": "parity",
    "verify": "parity",
})
