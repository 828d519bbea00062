"""Reporting: console tables (console.py), the HTML/Markdown report (document.py) and its figures.
Reads manifests only."""

from __future__ import annotations

from ..core.lazy import lazy_exports

# name -> submodule, imported on first use: `import edgecls.report` stays light (no TensorFlow)
__getattr__, __all__ = lazy_exports(__name__, {
    "write_report": "document",
})
