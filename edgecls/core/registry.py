"""One shape for every registry (runtimes, export formats, dataset sources, architectures).

A registry maps a name to where its object lives, ``"package.module:attribute"`` (or
``"package.module"`` for a module), and imports it only when it is looked up: listing the names
imports nothing, so a device install (`edgecls[onnx]`) never imports TensorFlow, OpenVINO or LiteRT
to say which runtimes exist. An unknown name is one error that names the option and the choices.

Example:
    >>> ARCHITECTURES = Registry("architecture", "--arch", {"tiny": "edgecls.train.models:tiny"})
    >>> ARCHITECTURES.get("tiny")           # the function, imported now
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from .errors import EdgeclsError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> a lazily imported object."""

    def __init__(self, kind: str, option: str, entries: dict[str, str]):
        self.kind, self.option = kind, option
        self._entries = dict(entries)

    def register(self, name: str, target: str) -> None:
        """Add (or replace) `name`: "package.module:attribute" or "package.module"."""
        self._entries[name] = target

    def names(self) -> list[str]:
        return [str(getattr(n, "value", n)) for n in self._entries]

    def __iter__(self) -> Iterator:
        return iter(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def target(self, name) -> str:
        """Where `name` lives, without importing it; an unknown name is an EdgeclsError."""
        try:
            return self._entries[name]
        except KeyError:
            raise EdgeclsError(f"{self.option} {getattr(name, 'value', name)!r}: unknown {self.kind} "
                               f"(choose from {', '.join(self.names())})") from None

    def get(self, name) -> T:
        """The registered object (its module imported now)."""
        module, _, attr = self.target(name).partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attr) if attr else loaded


__all__ = ["Registry"]
