"""The project's vocabularies as `StrEnum`s, converted once at the edge (CLI, manifest) and used everywhere.

Because they are `str` enums, a member compares equal to its value (``Precision.int8 == "int8"``) and
serialises to it in JSON, so the manifest keeps plain strings.
"""

from __future__ import annotations

import enum

from .errors import EdgeclsError

MAX_BATCH = 4096  # the largest batch size any option takes (training and bench)


class Format(enum.StrEnum):
    """An exported file format (each is run by the runtime of the same name)."""

    onnx = "onnx"
    tflite = "tflite"
    openvino = "openvino"


class Runtime(enum.StrEnum):
    """A runtime: the three formats' own, Keras (the reference), and the web app's (in Chromium)."""

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


def parse(kind: type[enum.Enum], values: str | list[str] | None, option: str) -> list:
    """Comma-separated names (or a list) as members of `kind`; "all" or empty gives []."""
    if values is None or (not isinstance(values, str) and len(values) == 0):
        return []
    items = [v.strip() for v in values.split(",")] if isinstance(values, str) else [str(v) for v in values]
    items = [v for v in items if v]
    if items == ["all"]:
        return []
    allowed = [m.value for m in kind]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise EdgeclsError(f"{option} {','.join(bad) or '(none)'}: unknown {kind.__name__.lower()} "
                           f"(choose from {', '.join(allowed)}, or all)")
    return [kind(v) for v in items]
