"""The project's vocabularies as `StrEnum`s, converted once at the edge (CLI, manifest) and used everywhere.

Because they are `str` enums, a member compares equal to its value (``Precision.int8 == "int8"``) and
serialises to it in JSON, so the manifest keeps plain strings.

Two kinds of vocabulary: *closed* ones (`Precision`, `Device`) are what the manifest's schema and every
runtime know, and the CLI offers them as Typer choices; *open* ones (formats, runtimes, and the dataset
and architecture names) are registries (`core.registry.Registry`) that a new module extends, so the
CLI takes them as strings and checks them against the registry when the command runs. `Format` and
`Runtime` below are only the names edgecls ships, for code that means one of them; they are not the
list of what is allowed (that is `export.FORMATS`, `runtimes.RUNTIMES`).
"""

from __future__ import annotations

import enum

from .errors import EdgeclsError
from .registry import Registry

MAX_BATCH = 4096  # the largest batch size any option takes (training and bench)


class Format(enum.StrEnum):
    """The file formats edgecls ships (the registry `export.FORMATS` may hold more)."""

    onnx = "onnx"
    tflite = "tflite"
    openvino = "openvino"


class Runtime(enum.StrEnum):
    """The runtimes edgecls ships: the three formats' own, Keras (the reference), and the web app's (in
    Chromium). The registry `runtimes.RUNTIMES` may hold more."""

    keras = "keras"
    onnx = "onnx"
    tflite = "tflite"
    openvino = "openvino"
    web_onnx = "web-onnx"  # onnxruntime-web (WebAssembly) in headless Chromium, .onnx files
    web_tflite = "web-tflite"  # LiteRT.js (WebAssembly) in headless Chromium, .tflite files


class Precision(enum.StrEnum):
    """What an artifact holds: float32 weights and compute, float16 weights, or int8 quantized."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Device(enum.StrEnum):
    cpu = "cpu"
    gpu = "gpu"


def parse(kind: type[enum.Enum] | Registry, values: str | list[str] | None, option: str) -> list:
    """Comma-separated names (or a list) as members of `kind` (an enum: its members; a registry: its names, as
    strings); "all" or empty gives []."""
    if values is None or (not isinstance(values, str) and len(values) == 0):
        return []
    items = [v.strip() for v in values.split(",")] if isinstance(values, str) else [str(v) for v in values]
    items = [v for v in items if v]
    if items == ["all"]:
        return []
    registry = isinstance(kind, Registry)
    allowed = kind.names() if registry else [m.value for m in kind]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        what = kind.kind if registry else kind.__name__.lower()
        raise EdgeclsError(f"{option} {','.join(bad) or '(none)'}: unknown {what} "
                           f"(choose from {', '.join(allowed)}, or all)")
    return list(items) if registry else [kind(v) for v in items]
