"""Re-exports imported on first use: `from edgecls.train import train` without importing TensorFlow-heavy
modules when the package itself is imported (a device app, the CLI's --help)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, table: dict[str, str]):
    """A module `__getattr__` for `package` serving each name of `table` (name -> submodule) from its
    submodule, imported when the name is first used; and the `__all__` list.

    Example (in a package's __init__.py):
        >>> __getattr__, __all__ = lazy_exports(__name__, {"train": "fit"})
    """
    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(table)


__all__ = ["lazy_exports"]
