"""OpenVINO IR, converted from the ONNX file (the same graph onnxruntime runs, through OpenVINO's
most mature frontend, with no TensorFlow frontend involved). Saved with fp32 weights
(`compress_to_fp16=False`: save_model's default would silently halve them); fp16 with --fp16;
int8 with NNCF post-training quantization on the same calibration images."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import require
from ..core.names import Precision
from .accuracy import Recipe
from .base import LayerTable, WrittenFiles
from .onnx import fp32_file

PRECISIONS = ("fp32", "fp16", "int8")
RUNTIME = "openvino"
STEMS = {"fp32": "model", "fp16": "model.fp16", "int8": "model.int8"}
FILES = {precision: f"openvino/{stem}.xml" for precision, stem in STEMS.items()}  # each with its .bin


def _save(ov, model, ctx, precision, compress: bool, root: Path | None = None) -> tuple[str, str]:
    for key, value in ctx.metadata(precision).items():
        model.set_rt_info(value, ["edgecls", key.split(".", 1)[1]])
    # into the artifact's private staging folder (or a candidate's): the pair is swapped into the
    # bundle as a unit, with its manifest entry, only after both files are on disk and checked
    folder = (root or ctx.out) / "openvino"
    folder.mkdir(parents=True, exist_ok=True)
    stem = STEMS[precision.value]
    ov.save_model(model, str(folder / f"{stem}.xml"), compress_to_fp16=compress)
    return f"openvino/{stem}.xml", f"openvino/{stem}.bin"


def export(ctx, precision):
    ov = require("openvino", "openvino")
    model = ov.convert_model(str(fp32_file(ctx)))
    versions = {"openvino": ov.__version__, "source": "ONNX"}
    details = {"weights": {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision.value]}
    if precision == Precision.int8:
        nncf = require("nncf", "train")
        images = ctx.calibration()
        model = nncf.quantize(model, _calibration(nncf, images), subset_size=len(images))
        versions["nncf"] = nncf.__version__
        details["quantization"] = "NNCF post-training quantization (default preset), fast bias correction"
    xml, bin_ = _save(ov, model, ctx, precision, compress=precision == Precision.fp16)
    return WrittenFiles(xml, parts=[bin_], versions=versions, details=details)


def _calibration(nncf, images):
    return nncf.Dataset(list(images), lambda x: x[None].astype("float32"))


# --------------------------------------------------------------------------- accuracy-aware int8

RECIPE = "NNCF quantize_with_accuracy_control"


def int8_weight_ops(model) -> set[str]:
    """Friendly names of the Convolution/MatMul ops whose weights are still int8."""
    import openvino as ov

    found = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            node = op.input_value(1).get_node()
            while node.get_type_name() != "Constant" and node.get_input_size():
                node = node.input_value(0).get_node()
            if node.get_element_type() in (ov.Type.i8, ov.Type.u8):
                found.add(op.get_friendly_name())
    return found


def fake_quantize_ops(model) -> set[str]:
    return {o.get_friendly_name() for o in model.get_ordered_ops() if o.get_type_name() == "FakeQuantize"}


AGREEMENT = 0.997  # what accuracy control aims for: top-1 agreement with Keras, a margin above the 99% floor


def _validate(compiled, items) -> tuple[float, list[float]]:
    """NNCF's validation_fn: top-1 agreement with the reference answers given as labels (a fraction:
    higher is better) and the per-image hits."""
    import numpy as np

    items = list(items)
    out = compiled.output(0)
    hits: list[float] = []
    for i in range(0, len(items), 64):
        x = np.stack([img for img, _ in items[i:i + 64]]).astype(np.float32)
        y = np.array([label for _, label in items[i:i + 64]])
        hits += (compiled(x)[out].argmax(1) == y).astype(float).tolist()
    return float(np.mean(hits)) if hits else 0.0, hits


def accuracy_aware(ctx, selection, workdir):
    """One candidate: NNCF's accuracy control on the selection images, its metric the agreement with Keras'
    answers (max_drop in its units, a fraction: the smaller of --max-drop and 1 - AGREEMENT), which
    reverts the quantized groups that cost most to float until the metric is within max_drop. A result
    with no int8 layer left (NNCF's answer when it cannot reach the target) is not an int8 file: no
    candidate then."""
    import logging

    import openvino as ov

    nncf = require("nncf", "train")
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    images = ctx.calibration()
    source = ov.convert_model(str(fp32_file(ctx)))
    plain = nncf.quantize(source, _calibration(nncf, images), subset_size=len(images))
    # the metric is agreement with the Keras model's answers (the float model scores 1.0), so NNCF restores
    # what the gate's agreement floor needs, not only accuracy; target AGREEMENT (above the 99% floor)
    answers = selection.keras.argmax(1)
    validation = nncf.Dataset(list(zip(selection.images, answers)), lambda it: it[0][None].astype("float32"))
    log = logging.getLogger("nncf")
    level = log.level
    log.setLevel(logging.WARNING)  # its INFO lines name each step; the diff below says what was reverted
    try:
        model = nncf.quantize_with_accuracy_control(
            ov.convert_model(str(fp32_file(ctx))), _calibration(nncf, images), validation, _validate,
            max_drop=min(ctx.cfg.max_drop / 100, 1 - AGREEMENT), subset_size=len(images),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=8, ranking_subset_size=min(300, len(selection.images)), num_ranking_workers=1))
    finally:
        log.setLevel(level)
    left = int8_weight_ops(model)
    reverted = sorted((int8_weight_ops(plain) - left) | (fake_quantize_ops(plain) - fake_quantize_ops(model)))
    if not left and not fake_quantize_ops(model):
        return  # everything reverted: NNCF could not reach max_drop with any int8 layer
    _save(ov, model, ctx, Precision.int8, compress=False, root=workdir)
    yield Recipe(RECIPE, reverted, workdir, {"int8_weight_ops_left": len(left), "nncf": nncf.__version__})


def quantized_ops(path) -> int:
    """FakeQuantize operations and int8 weight constants in an IR (0: NNCF left it float)."""
    ov = require("openvino", "openvino")
    model = ov.Core().read_model(str(path))
    return sum(op.get_type_name() == "FakeQuantize" or (op.get_type_name() == "Constant" and
               op.get_element_type() in (ov.Type.i8, ov.Type.u8)) for op in model.get_ops())


def explain_layers(bundle, artifact: dict, images, workdir: Path, data_dir: str | None) -> LayerTable:
    """`verify --explain`: the fp32 and int8 IR with every activation FakeQuantize (and its float producer)
    added as outputs (`Model.add_outputs`); cumulative."""
    import numpy as np

    from ..core.stats import sqnr_db
    from .base import float_file

    ov = require("openvino", "openvino")
    table = LayerTable("OpenVINO Model.add_outputs (FakeQuantize outputs vs float producers)", "cumulative")
    core = ov.Core()
    fm = core.read_model(str(float_file(bundle, artifact["format"])))
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
    x = images.astype(np.float32)
    rq, rf = core.compile_model(qm, "CPU", cfg)(x), core.compile_model(fm, "CPU", cfg)(x)
    for i, (_, name) in enumerate(pairs):
        f, q = rf[nf + i], rq[nq + i]
        table.rows.append((name, list(f.shape[1:]), sqnr_db(f, q)))
    return table
