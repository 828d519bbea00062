"""`edgecls verify --explain`: where each int8 artifact loses precision, layer by layer.

For every int8 artifact, a row per layer: its output shape and the signal-to-quantization-noise
ratio (SQNR, dB: ``20 log10(|float| / |float - int8|)``, lower is worse) of the int8 model's
activation against the float model's, measured with each vendor's own tool on a small sample of
the bundle's held-out images:

Each format module measures its own table (`explain_layers`, beside its accuracy-aware int8 recipe,
which ranks layers with the same tool): ONNX with onnxruntime's `qdq_loss_debug`, OpenVINO by adding
the FakeQuantize outputs (`Model.add_outputs`), TFLite with TensorFlow's `QuantizationDebugger` (needs
TensorFlow and the calibration images; where either is missing the table says so). A format without
one gets a table that says so.

A row is flagged where the error jumps: SQNR below `FLOOR_DB`, or more than `JUMP_DB` below the
previous row's.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.names import Precision, parse
from ..core.stats import SQNR_CAP_DB
from ..export.base import FORMATS, format_module
from ..train import recorded

FLOOR_DB = 20.0
JUMP_DB = 6.0
CAP_DB = SQNR_CAP_DB  # an exact tensor (zero noise) reads as this
EXACT_DB = 100.0  # above this a tensor was not quantized (int8 noise is ~50 dB at best): no jump from it
DEFAULT_IMAGES = 32


@dataclass
class LayerError:
    layer: str  # the format's own name (ONNX tensor, TFLite tensor, OpenVINO op)
    keras_layer: str  # the Keras layer(s) it comes from, where the name tells
    shape: list[int] | None  # per image
    sqnr_db: float
    flag: str = ""  # why the row is flagged, or ""


@dataclass
class Explanation:
    format: str
    precision: str
    file: str
    tool: str
    measure: str  # "cumulative" or "local"
    images: int
    layers: list[LayerError] = field(default_factory=list)
    note: str = ""  # why there is no table (a missing package, data), or ""

    @property
    def flagged(self) -> list[LayerError]:
        return [r for r in self.layers if r.flag]

    def to_dict(self) -> dict:
        return asdict(self)


def keras_layer(name: str) -> str:
    """'small_1/c1_relu_1/Relu;small_1/c1_1/convolution1' -> 'c1_relu+c1' (tf2onnx and TFLite names)."""
    found = []
    for part in name.split(";"):
        for layer in re.findall(r"^[^/]+_1/(.+?)_1/", part):
            if layer not in found:
                found.append(layer)
    return "+".join(found)


def flag(rows: list[LayerError]) -> list[LayerError]:
    """Mark the rows where the error jumps (below FLOOR_DB, or JUMP_DB below the previous row, unless that
    one was exact: an unquantized tensor is no baseline)."""
    prev = None
    for r in rows:
        if r.sqnr_db < FLOOR_DB:
            r.flag = f"below {FLOOR_DB:.0f} dB"
        elif prev is not None and prev < EXACT_DB and prev - r.sqnr_db > JUMP_DB:
            r.flag = f"{prev - r.sqnr_db:.1f} dB below the previous layer"
        prev = r.sqnr_db
    return rows


def int8_artifacts(bundle: Bundle, runtime_names=None) -> list[dict]:
    """The bundle's int8 artifacts of the selected runtimes; EdgeclsError when there is none."""
    from .. import runtimes

    names = parse(runtimes.RUNTIMES, runtime_names, "--runtime") or list(runtimes.RUNTIMES)
    found = [a for a in bundle.manifest["artifacts"] if a["precision"] == Precision.int8
             and any(runtimes.runner_class(n).runs(a) for n in names)]
    if not found:
        raise EdgeclsError(f"{bundle.path}: --explain needs an int8 artifact and there is none "
                           f"(run 'edgecls export {bundle.path} --int8' first)")
    return found


def sample(bundle: Bundle, n: int = DEFAULT_IMAGES, data_dir: str | None = None) -> np.ndarray:
    """`n` of the bundle's reference images (held-out), else of its held-out split."""
    from ..export import reference

    if "reference" in bundle.manifest:
        return reference.load(bundle).images[:n]
    return recorded.heldout(bundle, data_dir=data_dir, limit=n)[0]


def explain(bundle_path: str | Path, runtime_names=None, *, images: int = DEFAULT_IMAGES,
            data_dir: str | None = None) -> list[Explanation]:
    """A per-layer error table for every int8 artifact (of the selected runtimes).

    An artifact whose tool cannot run here (no TensorFlow for TFLite, no float file) gets an
    explanation with a `note` and no rows; the others are still explained.

    Raises:
        EdgeclsError: no bundle, no int8 artifact, bad --runtime.
    """
    bundle = Bundle.open(bundle_path)
    artifacts = int8_artifacts(bundle, runtime_names)
    x = sample(bundle, images, data_dir)
    out = []
    for a in artifacts:
        e = Explanation(a["format"], a["precision"], a["file"], tool="", measure="", images=len(x))
        tool = getattr(format_module(a["format"]), "explain_layers", None) if a["format"] in FORMATS else None
        if tool is None:
            e.note = f"no per-layer tool for {a['format']} files"
        else:
            with tempfile.TemporaryDirectory(prefix="edgecls-explain-") as tmp:
                try:
                    table = tool(bundle, a, x, Path(tmp), data_dir)
                except EdgeclsError as err:
                    e.note = str(err)
                else:
                    e.tool, e.measure, e.note = table.tool, table.measure, table.note
                    e.layers = [LayerError(name, keras_layer(name), shape, round(min(CAP_DB, float(db)), 2))
                                for name, shape, db in table.rows]
        flag(e.layers)
        out.append(e)
    return out
