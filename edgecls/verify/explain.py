"""`edgecls verify --explain`: where each int8 artifact loses precision, layer by layer.

For every int8 artifact, a row per layer: its output shape and the signal-to-quantization-noise
ratio (SQNR, dB: ``20 log10(|float| / |float - int8|)``, lower is worse) of the int8 model's
activation against the float model's, measured with each vendor's own tool on a small sample of
the bundle's held-out images:

- ONNX: onnxruntime's `qdq_loss_debug` on the fp32 graph (as quant_pre_process gives it) and the
  QDQ file; *cumulative* (the float model vs the QDQ model up to that tensor).
- OpenVINO: the fp32 and int8 IR with every FakeQuantize (and the float producer) added as outputs
  (`Model.add_outputs`); *cumulative*.
- TFLite: TensorFlow's `QuantizationDebugger` (needs TensorFlow and the calibration images; where
  either is missing the table says so); *local* (each op fed the quantized input), as that tool
  measures.

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
from ..core.names import Format, Precision, Runtime, parse
from ..core.stats import SQNR_CAP_DB, sqnr_db
from ..runtimes.keras import load_bundle_model
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
    names = parse(Runtime, runtime_names, "--runtime") or [f.value for f in Format]
    found = [a for a in bundle.manifest["artifacts"] if a["precision"] == Precision.int8 and a["format"] in names]
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
    tools = {"onnx": _onnx, "tflite": _tflite, "openvino": _openvino}
    out = []
    for a in artifacts:
        e = Explanation(a["format"], a["precision"], a["file"], tool="", measure="", images=len(x))
        with tempfile.TemporaryDirectory(prefix="edgecls-explain-") as tmp:
            try:
                tools[a["format"]](bundle, a, x, Path(tmp), e, data_dir)
            except EdgeclsError as err:
                e.note = str(err)
        flag(e.layers)
        out.append(e)
    return out


def _float_file(bundle: Bundle, fmt: str) -> Path:
    a = next((a for a in bundle.manifest["artifacts"] if a["format"] == fmt and a["precision"] == "fp32"), None)
    if a is None:
        raise EdgeclsError(f"no fp32 {fmt} file in the bundle to compare with (run 'edgecls export')")
    return bundle.checked_path(a["file"])


def _onnx(bundle, artifact, x, tmp, e, data_dir) -> None:
    from ..core.errors import require

    require("onnxruntime", "onnx")
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..core.quiet import silenced
    from ..export.onnx import tensor_errors

    e.tool, e.measure = "onnxruntime qdq_loss_debug (xmodel_err)", "cumulative"
    pre = tmp / "pre.onnx"
    with silenced():
        quant_pre_process(str(_float_file(bundle, "onnx")), str(pre), skip_symbolic_shape=False)
        errors = tensor_errors(pre, bundle.checked_path(artifact["file"]), x, tmp)
    graph = onnx.load(str(pre)).graph
    shapes = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim][1:]
              for v in [*graph.value_info, *graph.output]}
    inputs = {i.name for i in graph.input}
    for node in graph.node:
        for t in node.output:
            if t in errors and t not in inputs and "xmodel_err" in errors[t]:
                e.layers.append(LayerError(t, keras_layer(t), shapes.get(t), round(min(CAP_DB, float(
                    errors[t]["xmodel_err"])), 2)))


def _tflite(bundle, artifact, x, tmp, e, data_dir) -> None:
    from .. import runtimes
    from ..core.quiet import silenced

    e.tool, e.measure = "TensorFlow Lite QuantizationDebugger (layer_direct_compare_metrics)", "local"
    if not runtimes.runner_class(Runtime.keras).installed():
        e.note = ("TensorFlow is not installed: the TFLite per-layer table needs its QuantizationDebugger "
                  "(pip install 'edgecls[train]')")
        return
    from ..core._tf import tensorflow
    from ..export.tflite import debugger, direct, layer_rows

    tf = tensorflow()
    record = artifact.get("calibration", {})
    ids = set(record.get("ids", []))
    train = bundle.split_ids("train")
    try:  # the same calibration images as the export (their ids are recorded)
        _, calibration, _ = recorded.select(bundle, "train", data_dir=data_dir, exclude=set(train) - ids)
    except EdgeclsError as err:
        e.note = f"the calibration images are not available here ({err}); the TFLite table needs them"
        return
    t8 = artifact.get("int8") or {}
    deny = t8.get("float_layers") if "TFLite" in t8.get("recipe", "") else None
    metric = {"sqnr": lambda f, q, s, z: sqnr_db(f, (q.astype(np.int32) - z) * s)}
    with silenced():
        dbg = direct(debugger(load_bundle_model(bundle), calibration, x, deny), x, metric)
        interp = tf.lite.Interpreter(model_path=str(bundle.checked_path(artifact["file"])))
    shapes = {t["name"]: [int(d) for d in t["shape"][1:]] for t in interp.get_tensor_details()}
    for r in layer_rows(dbg):
        name = r["tensor_name"]
        e.layers.append(LayerError(name, keras_layer(name), shapes.get(name), round(float(r["sqnr"]), 2)))


def _openvino(bundle, artifact, x, tmp, e, data_dir) -> None:
    from ..core.errors import require

    ov = require("openvino", "openvino")
    e.tool, e.measure = "OpenVINO Model.add_outputs (FakeQuantize outputs vs float producers)", "cumulative"
    core = ov.Core()
    fm = core.read_model(str(_float_file(bundle, "openvino")))
    qm = core.read_model(str(bundle.checked_path(artifact["file"])))
    fqs = [o for o in qm.get_ordered_ops() if o.get_type_name() == "FakeQuantize"]
    fqs = [fq for fq in fqs if fq.input_value(0).get_node().get_type_name() != "Constant"]  # activations only
    srcs = [fq.input_value(0).get_node().get_friendly_name() for fq in fqs]
    known = {o.get_friendly_name() for o in fm.get_ordered_ops()}
    pairs = [(fq, s) for fq, s in zip(fqs, srcs) if s in known]
    nq, nf = len(qm.outputs), len(fm.outputs)
    qm.add_outputs([(fq.get_friendly_name(), 0) for fq, _ in pairs])
    fm.add_outputs([(s, 0) for _, s in pairs])
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    xf = x.astype(np.float32)
    rq, rf = core.compile_model(qm, "CPU", cfg)(xf), core.compile_model(fm, "CPU", cfg)(xf)
    for i, (_, name) in enumerate(pairs):
        f, q = rf[nf + i], rq[nq + i]
        e.layers.append(LayerError(name, keras_layer(name), list(f.shape[1:]), round(sqnr_db(f, q), 2)))
