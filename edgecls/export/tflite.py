"""TFLite: TensorFlow's TFLiteConverter; fp16 weights with --fp16; int8 full-integer
(TFLITE_BUILTINS_INT8) with uint8 input and output, calibrated on training images.

Each file carries the bundle's labels, input spec, preprocessing and precision in the model's
metadata table (entries named `edgecls.*`, UTF-8 JSON/text), as ONNX and OpenVINO files do;
`edgecls.runtimes.tflite.read_metadata` reads them back without TensorFlow. Each also carries the
standard TFLite image-classifier metadata with labels.txt packed in, so MediaPipe's ImageClassifier
and the TFLite Task Library run it as it is (`tflite_metadata`)."""

from __future__ import annotations

import numpy as np

from ..core.errors import ConversionFailed
from ..core.files import atomic_write
from ..core.names import Precision
from ..core.stats import sqnr_db
from .base import LayerTable, WebRuntime, WrittenFiles
from .tflite_metadata import input_quantization, with_metadata

__all__ = ["FILES", "PRECISIONS", "accuracy_aware", "converter", "debugger", "export", "with_full_range",
           "with_metadata"]

PRECISIONS = ("fp32", "fp16", "int8")
FILES = {"fp32": "model.tflite", "fp16": "model.fp16.tflite", "int8": "model.int8.tflite"}
RUNTIME = "tflite"
WEB = WebRuntime("@litertjs/core", {
    ("@litertjs/core", "dist/index.js"): "runtime/litertjs/core/index.js",
    ("@litertjs/wasm-utils", "dist/index.js"): "runtime/litertjs/wasm-utils/index.js",
    # LiteRT.js picks one by the browser's features: threads (with relaxed SIMD and cross-origin
    # isolation), relaxed SIMD alone, or neither (compat)
    **{("@litertjs/core", f"wasm/litert_wasm_{v}internal.{ext}"): f"runtime/litertjs/wasm/litert_wasm_{v}internal.{ext}"
       for v in ("", "threaded_", "compat_") for ext in ("js", "wasm")},
    # LiteRT.js imports its helper by a bare name: without a bundler the page maps it
}, import_map={"imports": {"@litertjs/wasm-utils": "./runtime/litertjs/wasm-utils/index.js"}})


def converter(model, precision: Precision, calibration: np.ndarray | None = None, batch: int = 1):
    """TensorFlow's TFLiteConverter for `model` set up for `precision` (the one int8 recipe: full
    integer, uint8 in and out, representative data = `calibration` in batches of `batch`), and
    what it does, for the manifest."""
    from ..core._tf import tensorflow

    tf = tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    details = {}
    if precision == Precision.fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        details["quantization"] = "float16 weights, float32 compute"
    elif precision == Precision.int8:
        images = with_full_range(calibration)

        def representative():
            for i in range(0, len(images) - batch + 1, batch):
                yield [images[i:i + batch].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
        details["quantization"] = "full integer (TFLITE_BUILTINS_INT8), uint8 input and output"
    return conv, details


def with_full_range(calibration: np.ndarray) -> np.ndarray:
    """`calibration` with one pixel of its first image set to 0 and one to 255 where its pixels do not already
    reach both ends: the converter sets the uint8 input's scale from the calibrated input range, and only the
    full 0-255 range gives scale 1.0, zero point 0 (raw pixels, as MediaPipe and the web app feed them). One
    pixel each barely moves the ranges of the layers behind the input."""
    if not len(calibration) or (calibration.min() == 0 and calibration.max() == 255):
        return calibration
    out = np.array(calibration, copy=True)
    out[0, 0, 0, :], out[0, 0, -1, :] = 0, 255
    return out


def _write(ctx, precision: Precision, flatbuffer: bytes, path, details: dict) -> None:
    """`flatbuffer` with edgecls's and the standard TFLite metadata, written atomically to `path`."""
    m = ctx.bundle.manifest
    quant = input_quantization(flatbuffer)
    if quant is not None:  # MediaPipe feeds raw bytes: right only for (1.0, 0)
        details["input_quantization"] = {"scale": quant[0], "zero_point": quant[1]}
    atomic_write(path, with_metadata(flatbuffer, ctx.metadata(precision), labels=list(m["labels"]),
                                     color=m["input"]["color"], version=m["edgecls_version"]))


def export(ctx, precision):
    from ..core._tf import tensorflow

    tf = tensorflow()
    calibration = ctx.calibration() if precision == Precision.int8 else None
    conv, details = converter(ctx.model, precision, calibration)
    _write(ctx, precision, conv.convert(), ctx.out / FILES[precision.value], details)
    return WrittenFiles(FILES[precision.value], versions={"tensorflow": tf.__version__}, details=details)


# --------------------------------------------------------------------------- accuracy-aware int8

RECIPE = "TFLite QuantizationDebugger ranking + selective quantization (denylisted_nodes)"


def samples(images: np.ndarray):
    def generate():
        for x in images:
            yield [x[None].astype(np.float32)]

    return generate


def debugger(model, calibration: np.ndarray, images: np.ndarray, denylist: list[str] | None = None):
    """TensorFlow's QuantizationDebugger over a fresh int8 converter of the Keras `model` (calibrated on
    `calibration`), its per-layer statistics measured on `images`; ``run()`` already called."""
    from ..core._tf import tensorflow

    tf = tensorflow()
    conv, _ = converter(model, Precision.int8, calibration)  # the debugger changes it: never reused
    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist or None)
    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=samples(images),
                                                    debug_options=opts)
    dbg.run()
    return dbg


def per_op_debugger(dbg, images: np.ndarray, metrics: dict):
    """A second debugger over `dbg`'s debug model *content* with `metrics(float, quant, scale, zero_point)`
    computed per op output (the converter path reuses intermediate buffers and misreads them);
    ``run()`` already called."""
    from ..core._tf import tensorflow

    tf = tensorflow()
    out = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=dbg.get_debug_quantized_model(), debug_dataset=samples(images),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=metrics))
    out.run()
    return out


def _channel_sqnr(f, q, scale, zero) -> float:
    """The lower of the tensor's SQNR and its median channel's (last axis): an outlier channel that
    sets the range hides the others' loss from the whole-tensor figure."""
    f, d = np.asarray(f, np.float64), (np.asarray(q).astype(np.int32) - zero) * scale
    per = [sqnr_db(f[..., c], d[..., c]) for c in range(f.shape[-1])] if f.ndim > 1 else []
    return min([sqnr_db(f, d)] + ([float(np.median(per))] if per else []))


def layer_rows(dbg) -> list[dict]:
    """The debugger's per-layer CSV as dicts, with `rmse/scale` (about 0.29 is ideal rounding noise)."""
    import csv
    import io

    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    for r in rows:
        scale = float(r["scale"]) or 1.0
        r["rmse/scale"] = float(r["mean_squared_error"]) ** 0.5 / scale
    return rows


_PASSTHROUGH = {"MAX_POOL_2D", "RESHAPE", "SQUEEZE", "TRANSPOSE", "EXPAND_DIMS"}


def _readers(flatbuffer: bytes) -> dict[str, list[tuple[str, list[str]]]]:
    """tensor name -> (op type, output tensor names) of each op that reads it (an int8 model's graph)."""
    from ..core._tf import tensorflow

    interp = tensorflow().lite.Interpreter(model_content=flatbuffer)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for op in interp._get_ops_details():  # the public API has no graph walk
        outs = [names[o] for o in op["outputs"] if o in names]
        for i in op["inputs"]:
            if i >= 0 and i in names:
                out.setdefault(names[i], []).append((op["op_name"], outs))
    return out


def float_set(readers: dict, tensor: str) -> set[str]:
    """Output tensors to denylist so that `tensor` stays float: its op and every op that reads it,
    following data-movement readers (pooling, reshapes) to the next compute op (a quantized reader
    would quantize it again with the same range)."""
    deny, todo = {tensor}, [tensor]
    while todo:
        for op, outs in readers.get(todo.pop(), []):
            new = [o for o in outs if o not in deny]
            deny.update(new)
            if op in _PASSTHROUGH:
                todo += new
    return deny


def quantize_except(dbg, denylist: list[str]) -> bytes:
    """The calibrated model quantized with `denylist` (output tensor names) left in float, uint8 input
    and output: the call TFLiteConverter itself makes, plus the denylist. The input must keep
    scale 1.0 and zero point 0 (raw pixels, as MediaPipe feeds them)."""
    from tensorflow.lite.python import convert as tfl_convert  # what the converter calls internally

    from ..core._tf import tensorflow

    tf = tensorflow()
    flat = tfl_convert.mlir_quantize(dbg.calibrated_model, input_data_type=tf.uint8, output_data_type=tf.uint8,
                                     denylisted_nodes=denylist)
    quant = input_quantization(flat)
    if quant is None or abs(quant[0] - 1.0) > 1e-6 or quant[1] != 0:
        raise ConversionFailed(f"selective TFLite int8: input quantization {quant}, expected scale 1.0, zero point 0")
    return flat


def accuracy_aware(ctx, selection, workdir):
    """Candidates leaving in float the op outputs with the worst local error on selection images
    (NumericVerify rmse/scale, the TF guide's measure), each with the ops that read them (else they
    would be re-quantized with the same range), 1, 2, 4, ... of them."""
    from ..core._tf import tensorflow
    from .accuracy import Recipe, doubling_prefixes

    tf = tensorflow()
    dbg = debugger(ctx.model, ctx.calibration(), selection.ranking())
    per_op = per_op_debugger(dbg, selection.ranking(), {"sqnr": _channel_sqnr})
    rows = [r for r in layer_rows(per_op) if r["tensor_name"]]
    score = {r["tensor_name"]: float(r["sqnr"]) for r in rows}
    ranked = sorted(score, key=score.get)
    readers = _readers(quantize_except(dbg, []))
    quantized = set(ranked)
    for i, tensors in enumerate(doubling_prefixes(ranked)):
        deny = sorted(set().union(*(float_set(readers, t) for t in tensors)) & quantized)
        if quantized <= set(deny):  # nothing left in int8
            break
        root = workdir / f"candidate-{i}"
        root.mkdir()
        details = {}
        _write(ctx, Precision.int8, quantize_except(dbg, deny), root / FILES["int8"], details)
        yield Recipe(RECIPE, deny, root, {"float_tensors": list(tensors),
                                             "ranked_by": "SQNR dB, min of tensor and median channel",
                                             "worst_db": [round(score[t], 1) for t in tensors],
                                             "tensorflow": tf.__version__})


def quantized_ops(path) -> int:
    """Integer (int8/uint8) tensors in a .tflite file (0: the converter left it float)."""
    from ..runtimes.tflite import TFLiteRunner

    interp = TFLiteRunner.import_package().Interpreter(model_path=str(path))
    return sum(t["dtype"] in (np.int8, np.uint8) for t in interp.get_tensor_details())


def explain_layers(bundle, artifact: dict, images: np.ndarray, workdir, data_dir: str | None) -> LayerTable:
    """`verify --explain`: TensorFlow's QuantizationDebugger on the export's own calibration images (their ids
    are recorded); local (each op fed the quantized input), as that tool measures. Needs TensorFlow and the
    calibration images: where either is missing the table says so."""
    from .. import runtimes
    from ..core.errors import EdgeclsError
    from ..core.quiet import silenced
    from ..runtimes.keras import load_bundle_model
    from ..train import recorded

    table = LayerTable("TensorFlow Lite QuantizationDebugger (layer_direct_compare_metrics)", "local")
    if not runtimes.runner_class("keras").installed():
        table.note = ("TensorFlow is not installed: the TFLite per-layer table needs its QuantizationDebugger "
                      "(pip install 'edgecls[train]')")
        return table
    from ..core._tf import tensorflow

    tf = tensorflow()
    ids = set(artifact.get("calibration", {}).get("ids", []))
    train = bundle.split_ids("train")
    try:  # the same calibration images as the export
        _, calibration, _ = recorded.select(bundle, "train", data_dir=data_dir, exclude=set(train) - ids)
    except EdgeclsError as err:
        table.note = f"the calibration images are not available here ({err}); the TFLite table needs them"
        return table
    t8 = artifact.get("int8") or {}
    deny = t8.get("float_layers") if "TFLite" in t8.get("recipe", "") else None
    metric = {"sqnr": lambda f, q, s, z: sqnr_db(f, (q.astype(np.int32) - z) * s)}
    with silenced():
        dbg = per_op_debugger(debugger(load_bundle_model(bundle), calibration, images, deny), images, metric)
        interp = tf.lite.Interpreter(model_path=str(bundle.checked_path(artifact["file"])))
    shapes = {t["name"]: [int(d) for d in t["shape"][1:]] for t in interp.get_tensor_details()}
    for r in layer_rows(dbg):
        table.rows.append((r["tensor_name"], shapes.get(r["tensor_name"]), float(r["sqnr"])))
    return table
