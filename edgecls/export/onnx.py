"""ONNX: tf2onnx from the Keras model (opset 17, dynamic batch, input `images`, output
`probabilities`); int8 with onnxruntime's static QDQ quantization, per-channel int8 weights.

Activations are int8 (S8S8, onnxruntime's recommended default) unless onnxruntime's CPU provider
would then leave operators in float that uint8 activations let it run as int8 kernels (some
depthwise convolutions and residual adds have no int8-activation kernel and run in float between
DequantizeLinear/QuantizeLinear pairs; measured in docs/measurements.md). The choice counts the
convolutions and matrix products left in float in onnxruntime's own optimized graph of each
candidate (`float_ops`); it is recorded in the manifest (`activations`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..core.errors import require
from ..core.files import atomic_target
from ..core.names import Precision
from .base import LayerTable, WebRuntime, WrittenFiles

OPSET = 17
PRECISIONS = ("fp32", "int8")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
RUNTIME = "onnx"
FP32_KEY = "onnx-fp32"  # the fp32 graph, kept in the export's context for OpenVINO and the graph's MACs
WEB = WebRuntime("onnxruntime-web", {
    ("onnxruntime-web", "dist/ort.wasm.min.mjs"): "runtime/onnxruntime-web/ort.wasm.min.mjs",
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.mjs"): "runtime/onnxruntime-web/ort-wasm-simd-threaded.mjs",
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.wasm"): "runtime/onnxruntime-web/ort-wasm-simd-threaded.wasm",
})


def _versions() -> dict:
    import onnx
    import tf2onnx

    return {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": OPSET}


def _save(model, ctx, precision, path: Path) -> None:
    import onnx

    onnx.helper.set_model_props(model, ctx.metadata(precision))
    onnx.checker.check_model(model, full_check=True)
    with atomic_target(path) as tmp:
        onnx.save(model, str(tmp))


def convert_fp32(ctx, path: Path):
    from ..core._tf import tensorflow

    tf = tensorflow()
    tf2onnx = require("tf2onnx", "train")
    h, w, c = ctx.input_shape
    spec = (tf.TensorSpec((None, h, w, c), tf.float32, name="images"),)
    model = ctx.model

    @tf.function(input_signature=spec)
    def serve(images):
        return {"probabilities": model(images, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    _bind_captures(proto, serve.get_concrete_function())
    _save(proto, ctx, Precision.fp32, path)


def _bind_captures(proto, concrete) -> None:
    """Constants the traced model captured (e.g. a Normalization layer built with fixed mean and variance, as
    Keras Applications' EfficientNetV2 has) become graph inputs in tf2onnx's from_function, which no caller
    feeds: turn each back into an initializer holding its value, so the file has one input, `images`."""
    import onnx

    values = {}
    for value, placeholder in concrete.graph.captures:
        if value.dtype.name != "resource" and hasattr(value, "numpy"):
            values[placeholder.name] = value.numpy()
    extra = [i for i in proto.graph.input if i.name in values]
    for i in extra:
        proto.graph.input.remove(i)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(values[i.name], i.name))


def fp32_file(ctx) -> Path:
    """The fp32 ONNX file of this export: the bundle's if written in this run, else a scratch one."""
    path = ctx.kept(FP32_KEY)
    if path is None:
        path = ctx.workdir / "model.onnx"
        convert_fp32(ctx, path)
        ctx.keep(FP32_KEY, path)
    return path


def _reader(images: np.ndarray):
    """onnxruntime's CalibrationDataReader over `images`, one at a time (a one-shot iterator)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # subclassed: qdq_loss_debug iterates it
        def __init__(self):
            self.it = iter(images)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"images": x[None].astype(np.float32)}

    return Reader()


def _quantize(ctx, out: Path, exclude: list[str] | None = None, activations: str | None = None) -> Path:
    """quantize_static of the pre-processed fp32 graph to `out`: QDQ, per-channel int8 weights, MinMax;
    activations `activations` ("int8" or "uint8"; default: `activation_type(ctx)`). The calibration ranges
    are cached, so a re-quantization with `exclude` (node names kept in float) is a graph rewrite only."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = ctx.workdir / "pre.onnx"
    if not pre.is_file():
        quant_pre_process(str(fp32_file(ctx)), str(pre), skip_symbolic_shape=False)
    cache = ctx.workdir / "onnx-calibration.json"
    reader = None if cache.is_file() else _reader(ctx.calibration())
    act = activations or activation_type(ctx)["activations"]
    quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8 if act == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                    nodes_to_exclude=exclude or [])
    return out


def float_ops(path: Path) -> int:
    """Convolutions and matrix products (the arithmetic: Conv, MatMul, Gemm) that onnxruntime's CPU provider
    leaves in float in its optimized graph of the QDQ model at `path` (0: every one runs as an int8 kernel).
    Element-wise operators are not counted: a float Mul (the input's rescaling) costs little, and uint8
    activations are slower than int8 ones where every convolution fuses either way (docs/measurements.md)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    return sum(n.op_type in _COMPUTE | _FUSED for n in graph.node)


def _candidate(ctx, activations: str) -> Path:
    """Where `activation_type` quantizes the default int8 file with `activations` ("int8" or "uint8")."""
    return ctx.workdir / f"int8.{activations}.onnx"


def activation_type(ctx) -> dict:
    """The activation type of this export's ONNX int8 files, chosen once: int8 unless onnxruntime leaves
    operators in float with it that uint8 activations let it run as int8 kernels. The chosen default file
    stays at `_candidate(ctx, choice)`."""
    import json

    record = ctx.workdir / "onnx-activations.json"
    if record.is_file():
        return json.loads(record.read_text())
    left = {"int8": float_ops(_quantize(ctx, _candidate(ctx, "int8"), activations="int8"))}
    choice = "int8"
    if left["int8"]:
        left["uint8"] = float_ops(_quantize(ctx, _candidate(ctx, "uint8"), activations="uint8"))
        choice = "uint8" if left["uint8"] < left["int8"] else "int8"
    out = {"activations": choice, "float_ops_left": left,
           "why": "onnxruntime runs every convolution and matrix product as an int8 kernel with int8 activations"
           if not left["int8"] else
           f"onnxruntime's CPU provider leaves {left['int8']} convolutions and matrix products in float with int8 "
           f"activations, {left['uint8']} with uint8: {choice} kept"}
    record.write_text(json.dumps(out))
    return out


def export(ctx, precision):
    path = ctx.out / FILES[precision.value]
    if precision == Precision.fp32:
        convert_fp32(ctx, path)
        ctx.keep(FP32_KEY, path)
        return WrittenFiles(FILES["fp32"], versions=_versions())
    import onnx

    ort = require("onnxruntime", "onnx")
    choice = activation_type(ctx)
    out = ctx.workdir / "int8.onnx"  # the chosen default file, already quantized (the accuracy-aware tools read it)
    shutil.copyfile(_candidate(ctx, choice["activations"]), out)
    _save(onnx.load(str(out)), ctx, precision, path)
    kind = "U8S8" if choice["activations"] == "uint8" else "S8S8"
    return WrittenFiles(FILES["int8"], versions={**_versions(), "onnxruntime": ort.__version__},
                        details={"quantization": f"static QDQ, {kind}, per-channel weights, MinMax calibration",
                                 "activations": choice})


# --------------------------------------------------------------------------- accuracy-aware int8

RECIPE = "onnxruntime qdq_loss_debug ranking + quantize_static(nodes_to_exclude)"
_FOLDED = {"Relu", "Clip"}  # QDQ folds these into their producer's output Q/DQ
_COMPUTE = {"Conv", "MatMul", "Gemm"}
_FUSED = {"FusedConv", "FusedMatMul", "FusedGemm", "NhwcFusedConv"}  # the same, after onnxruntime fused an activation
_PASSTHROUGH = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"}


def tensor_errors(float_path: Path, qdq_path: Path, images: np.ndarray, workdir: Path) -> dict:
    """{tensor: {"qdq_err", "xmodel_err"}} in dB (SQNR, lower is worse) from onnxruntime's qdq_loss_debug:
    `qdq_err` the tensor's own Q/DQ noise, `xmodel_err` the float model vs the QDQ model up to it.
    `float_path` must be the float graph the QDQ model was made from (quant_pre_process output)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    fa, qa = workdir / "float.aug.onnx", workdir / "qdq.aug.onnx"
    modify_model_output_intermediate_tensors(str(float_path), str(fa))
    modify_model_output_intermediate_tensors(str(qdq_path), str(qa))
    f_act = collect_activations(str(fa), _reader(images))  # a fresh reader per pass: each is one-shot
    q_act = collect_activations(str(qa), _reader(images))
    return compute_activation_error(create_activation_matching(q_act, f_act))


def float_set(graph, tensor: str) -> set[str]:
    """Node names to exclude so that `tensor` stays float: its producer (the Conv/MatMul behind a folded
    Relu/Clip, not the Relu alone) and every node that reads it, following data-movement readers
    (pooling, reshapes) on to the next compute node: a quantized reader would quantize it again
    with the same range."""
    producer = {o: n for n in graph.node for o in n.output}
    names = set()
    node = producer.get(tensor)
    while node is not None:
        names.add(node.name)
        node = producer.get(node.input[0]) if node.op_type in _FOLDED and node.input else None
    todo = [tensor]
    while todo:
        t = todo.pop()
        for n in graph.node:
            if t in n.input and n.name not in names:
                names.add(n.name)
                if n.op_type in _PASSTHROUGH | _FOLDED:
                    todo += list(n.output)
    return names


def accuracy_aware(ctx, selection, workdir: Path):
    """Candidates keeping the tensors with the worst own Q/DQ noise (qdq_err on selection images) in
    float, 1, 2, 4, ... of them, re-quantized from the cached calibration."""
    import onnx

    from .accuracy import Recipe, doubling_prefixes

    pre = ctx.workdir / "pre.onnx"
    errors = tensor_errors(pre, ctx.workdir / "int8.onnx", selection.ranking(), workdir)
    graph = onnx.load(str(pre)).graph
    compute = {n.name for n in graph.node if n.op_type in _COMPUTE}
    noise = {t: float(e.get("qdq_err", np.inf)) for t, e in errors.items()}
    ranked = sorted((t for t in noise if np.isfinite(noise[t])), key=noise.get)
    for i, tensors in enumerate(doubling_prefixes(ranked)):
        exclude = sorted(set().union(*(float_set(graph, t) for t in tensors)))
        if compute <= set(exclude):  # nothing left in int8: that is the float model, not an int8 recipe
            break
        root = workdir / f"candidate-{i}"
        root.mkdir()
        out = _quantize(ctx, workdir / f"candidate-{i}.onnx", exclude)
        _save(onnx.load(str(out)), ctx, Precision.int8, root / FILES["int8"])
        yield Recipe(RECIPE, exclude, root, {"float_tensors": list(tensors), "ranked_by": "qdq_err (dB)",
                                                "worst_db": [round(noise[t], 1) for t in tensors]})


QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def quantized_ops(path: Path) -> int:
    """Quantization nodes in an ONNX file (0: the quantizer left it float)."""
    import onnx

    return sum(n.op_type in QUANTIZED_OPS for n in onnx.load(str(path)).graph.node)


def explain_layers(bundle, artifact: dict, images: np.ndarray, workdir: Path, data_dir: str | None) -> LayerTable:
    """`verify --explain`: onnxruntime's qdq_loss_debug on the fp32 graph (as quant_pre_process gives it) and
    the QDQ file; cumulative (the float model vs the QDQ model up to each tensor)."""
    require("onnxruntime", "onnx")
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..core.quiet import silenced
    from .base import float_file

    table = LayerTable("onnxruntime qdq_loss_debug (xmodel_err)", "cumulative")
    pre = workdir / "pre.onnx"
    with silenced():
        quant_pre_process(str(float_file(bundle, artifact['format'])), str(pre), skip_symbolic_shape=False)
        errors = tensor_errors(pre, bundle.checked_path(artifact["file"]), images, workdir)
    graph = onnx.load(str(pre)).graph
    shapes = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim][1:]
              for v in [*graph.value_info, *graph.output]}
    inputs = {i.name for i in graph.input}
    for node in graph.node:
        for t in node.output:
            if t in errors and t not in inputs and "xmodel_err" in errors[t]:
                table.rows.append((t, shapes.get(t), float(errors[t]["xmodel_err"])))
    return table
