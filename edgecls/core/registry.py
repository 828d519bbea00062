"""One shape for every registry (runtimes, export formats, dataset sources, architectures).

A registry maps a name to where its object lives, ``"package.module:attribute"`` (or
``"package.module"`` for a module), and imports it only when it is looked up: listing the names
imports nothing, so a device install (`edgecls[onnx]`) never imports TensorFlow, OpenVINO or LiteRT
to say which runtimes exist. An entry may also carry *facts*: what others need to know about the
name without importing it (a dataset's default image size, a pretrained architecture's weights), as
timm keeps a model's facts in its ``default_cfgs``. An unknown name is one error that names the
option and the choices.

Registries are open: names are plain strings (the built-in ones are also `core.names` members, which
compare equal to them), and `register` adds one — a third-party format, runtime, dataset or
architecture is one module and one `register` call; the CLI validates every such option against the
registry at run time, not against a closed enum.

Example:
    >>> ARCHITECTURES = Registry("architecture", "--arch", {"tiny": "edgecls.train.models:tiny"})
    >>> ARCHITECTURES.get("tiny")           # the function, imported now
    >>> SOURCES.register("blobs", "mypkg.blobs:load", image_size=24)   # facts: SOURCES.facts("blobs")
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from .errors import EdgeclsError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> a lazily imported object, and the facts declared with it."""

    def __init__(self, kind: str, option: str, entries: dict[str, str] | None = None,
                 facts: dict[str, dict] | None = None):
        self.kind, self.option = kind, option
        self._entries: dict[str, str] = {}
        self._facts: dict[str, dict] = {}
        for name, target in (entries or {}).items():
            self.register(name, target, **(facts or {}).get(str(name), {}))

    def register(self, name: str, target: str, **facts) -> None:
        """Add (or replace) `name`: "package.module:attribute" or "package.module", with its facts."""
        self._entries[str(name)] = target
        self._facts[str(name)] = dict(facts)

    def unregister(self, name: str) -> None:
        """Remove `name` (a test's throw-away entry)."""
        self._entries.pop(str(name), None)
        self._facts.pop(str(name), None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name) -> bool:
        return str(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name) -> str:
        """`name` as a registered name; an unknown one is an EdgeclsError naming the option and the choices."""
        self.target(name)
        return str(name)

    def target(self, name) -> str:
        """Where `name` lives, without importing it; an unknown name is an EdgeclsError."""
        try:
            return self._entries[str(name)]
        except KeyError:
            raise EdgeclsError(f"{self.option} {str(name)!r}: unknown {self.kind} "
                               f"(choose from {', '.join(self.names())})") from None

    def facts(self, name) -> dict:
        """What the entry declares about `name` (no import); {} when it declares nothing."""
        self.target(name)
        return self._facts[str(name)]

    def get(self, name) -> T:
        """The registered object (its module imported now)."""
        module, _, attr = self.target(name).partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attr) if attr else loaded


__all__ = ["Registry"]
