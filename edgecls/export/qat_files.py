"""One QAT model, three int8 files: export's hook for `--qat`.

`prepare(ctx)` runs the QAT phase once per export (`edgecls.export.qat`) and converts its model twice with
TensorFlow's TFLiteConverter, which reads the learned ranges (no calibration data): with uint8 input and output
(the TFLite file, as the post-training one) and with float32 input and output around the same int8 graph. From
that second flatbuffer tf2onnx writes the ONNX file: every int8 tensor of the flatbuffer becomes a
QuantizeLinear/DequantizeLinear pair with its scale and zero point, and every int8 weight a DequantizeLinear of
the int8 constant with its per-channel scales, so the ONNX file carries the TFLite file's scales (BatchNorm
already folded by the converter); its activation pairs are then moved to uint8 (`uint8_activations`: the same
numbers, the kernels onnxruntime runs as int8). OpenVINO reads that QDQ graph (Q/DQ become its FakeQuantize) as it reads
every ONNX file, or, where its CPU plugin cannot compile it (1-channel inputs), the same flatbuffer through its
TFLite frontend. Each file then goes through export's self-check and gate like any int8 file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.errors import require
from ..core.names import Format, Precision
from ..train import recorded
from . import qat
from .base import WrittenFiles

MAX_TRAIN_IMAGES = 20_000  # the fine-tune's images: a stratified, seeded sample of the training split beyond
METHOD = "quantization-aware fine-tuning (TF-MOT default 8-bit scheme on a tf_keras twin)"


class Prepared:
    """The QAT phase's result: the two flatbuffers (in the export's scratch folder) and its record."""

    def __init__(self, workdir: Path, record: dict):
        self.workdir, self.record = workdir, record
        self.tflite_uint8 = workdir / "qat.uint8.tflite"
        self.tflite_float_io = workdir / "qat.float-io.tflite"
        self.onnx = workdir / "qat.onnx"


def applies(ctx, fmt: Format) -> bool:
    """Whether the int8 file of `fmt` is made from the QAT model in this export."""
    return fmt in getattr(ctx, "qat_formats", ())


def prepare(ctx) -> Prepared:
    """Run the QAT phase (once per export) and convert its model; cached on `ctx`.

    Raises:
        QatFailed: a layer that cannot be rebuilt, a diverging fine-tune (nothing written to the bundle).
    """
    done = getattr(ctx, "qat_prepared", None)
    if done is not None:
        return done
    cfg, bundle = ctx.cfg, ctx.bundle
    settings = cfg.qat_settings
    qat.check_rebuildable(ctx.model, str(bundle.path / "model.keras"))
    seed = bundle.manifest["dataset"]["split"]["seed"]
    n_train = len(bundle.split_ids("train"))
    _, train_x, _ = recorded.select(bundle, "train", data_dir=cfg.data_dir, seed=seed,
                                    limit=min(n_train, MAX_TRAIN_IMAGES))
    # the epoch is chosen on the int8 selection set (half the validation split, and half of --images), which
    # verify leaves out for this file (`int8.selected_on`); the other half judges it, never having chosen it
    selection = ctx.int8_images().selection
    n_val = len(selection.ids)
    val_x, val_y, more = selection.images[:n_val], selection.labels, selection.images[n_val:]
    training = bundle.manifest.get("training") or {}
    base_lr = float((training.get("config") or {}).get("lr") or (training.get("distribute") or {}).get("learning_rate")
                    or 1e-3)  # the training run's --lr (an imported model has none: 1e-3)
    twin = qat.twin(ctx.model, str(bundle.path / "model.keras"))
    qmodel = qat.quantized(twin)
    qat.calibrate_ranges(qmodel, twin, train_x)
    tune = qat.fine_tune(qmodel, ctx.model, train_x, val_x, val_y, settings, base_lr, cfg.max_drop, unlabelled=more)
    t0 = time.perf_counter()
    out = Prepared(ctx.workdir, {})
    out.tflite_uint8.write_bytes(qat.converter(qmodel, uint8_io=True).convert())
    out.tflite_float_io.write_bytes(qat.converter(qmodel, uint8_io=False).convert())
    convert_s = time.perf_counter() - t0
    out.record = {"method": METHOD, "mode": cfg.qat.value, **tune.to_dict(), "convert_seconds": round(convert_s, 2),
                  "train_split": "train", "early_stopping_on": "the int8 selection set: half the validation split (and "
                  "variants of it) and half of --images, by top-1 agreement with the float model; verify leaves "
                  "these images out",
                  "target": "the float model's probabilities (distillation)", "versions": qat.versions()}
    ctx.qat_prepared = out
    return out


def _onnx_from_tflite(ctx, prepared: Prepared):
    """The QDQ ONNX graph of the float-io QAT flatbuffer, its input and output named as every edgecls ONNX file's
    (`images`, `probabilities`)."""
    tf2onnx = require("tf2onnx", "train")
    from .onnx import OPSET

    proto, _ = tf2onnx.convert.from_tflite(str(prepared.tflite_float_io), opset=OPSET)
    return uint8_activations(_rename_io(proto))


def uint8_activations(proto):
    """`proto` with its activations' QuantizeLinear/DequantizeLinear pairs moved from int8 to uint8 (the same scale,
    the zero point plus 128: the same numbers), weights left int8. TFLite's int8 scheme gives int8 activations
    (S8S8), for which onnxruntime's x86 CPU provider leaves some convolutions in float (15 of 49 in
    EfficientNet-Lite0); with uint8 ones (U8S8, as edgecls's post-training file picks where it matters) every
    convolution runs as an int8 kernel (`edgecls.export.onnx.float_ops`)."""
    from onnx import TensorProto, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    made, moved = {}, set()
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            continue  # a weight or a bias: stays int8 / int32
        zp = inits.get(node.input[2])
        if zp is None or zp.data_type != TensorProto.INT8:
            continue
        if zp.name not in made:
            made[zp.name] = f"{zp.name}_uint8"
            shifted = numpy_helper.to_array(zp).astype(np.int16) + 128
            graph.initializer.append(numpy_helper.from_array(shifted.astype(np.uint8), made[zp.name]))
        node.input[2] = made[zp.name]
        if node.op_type == "QuantizeLinear":
            moved.add(node.output[0])
    used = {i for node in graph.node for i in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    infos = [v for v in graph.value_info if v.name not in moved]  # their element type changed: inferred again
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return proto


def _rename_io(proto):
    """`proto` (tf2onnx's graph of a flatbuffer) with its input and output named `images` and `probabilities`
    and a dynamic batch axis called `batch`."""
    graph = proto.graph
    rename = {graph.input[0].name: "images", graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    graph.input[0].name, graph.output[0].name = "images", "probabilities"
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def _tflite(ctx, prepared: Prepared) -> WrittenFiles:
    from ..core._tf import tensorflow
    from .tflite import FILES, _write

    details = {"quantization": "full integer from the QAT model's learned ranges (no calibration), uint8 input "
                               "and output"}
    _write(ctx, Precision.int8, prepared.tflite_uint8.read_bytes(), ctx.out / FILES["int8"], details)
    return WrittenFiles(FILES["int8"], versions={"tensorflow": tensorflow().__version__, **qat.versions()},
                        details=details)


def _onnx_model(ctx, prepared: Prepared):
    import onnx

    if not prepared.onnx.is_file():
        onnx.save(_onnx_from_tflite(ctx, prepared), str(prepared.onnx))
    return onnx.load(str(prepared.onnx))


def _onnx(ctx, prepared: Prepared) -> WrittenFiles:
    import onnxruntime as ort

    from .onnx import FILES, _save, _versions

    _save(_onnx_model(ctx, prepared), ctx, Precision.int8, ctx.out / FILES["int8"])
    return WrittenFiles(FILES["int8"], versions={**_versions(), "onnxruntime": ort.__version__, **qat.versions()},
                        details={"quantization": "QDQ from the QAT model's int8 TFLite graph (tf2onnx "
                                                 "from_tflite): the TFLite file's scales, per-channel int8 weights, "
                                                 "activations moved to uint8 (zero point + 128: the same numbers, "
                                                 "U8S8 kernels)"})


def _openvino(ctx, prepared: Prepared) -> WrittenFiles:
    """The IR from the QDQ ONNX graph (as every edgecls IR comes from ONNX); where OpenVINO's CPU plugin cannot
    compile that graph, from the same float-io flatbuffer through OpenVINO's TFLite frontend (the same scales).
    The case seen: a 1-channel input, where tf2onnx leaves a Reshape between the input's Q and DQ and OpenVINO
    2026.4 finds no int8 convolution for it ("No suitable implementations")."""
    ov = require("openvino", "openvino")
    from .openvino import _save

    _onnx_model(ctx, prepared)
    model, source = openvino_model(prepared.onnx, prepared.tflite_float_io)
    xml, bin_ = _save(ov, model, ctx, Precision.int8, compress=False)
    return WrittenFiles(xml, parts=[bin_], versions={"openvino": ov.__version__, "source": source, **qat.versions()},
                        details={"weights": "int8", "quantization": "the QAT model's int8 scales as FakeQuantize "
                                                                    "(no NNCF calibration)"})


def openvino_model(onnx_path: Path, tflite_path: Path):
    """(OpenVINO model, where it came from): the QDQ ONNX graph at `onnx_path` if OpenVINO's CPU plugin compiles it,
    else the float-io flatbuffer at `tflite_path` through OpenVINO's TFLite frontend."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    try:
        ov.Core().compile_model(model, "CPU")
    except RuntimeError as e:
        why = str(e).strip().splitlines()[-1][:120]
        return ov.convert_model(str(tflite_path)), ("TFLite (the QAT flatbuffer, OpenVINO's TFLite frontend): "
                                                    f"OpenVINO could not compile the QDQ ONNX graph ({why})")
    return model, "ONNX (the QAT QDQ graph)"


WRITERS = {Format.tflite: _tflite, Format.onnx: _onnx, Format.openvino: _openvino}


def export(ctx, fmt: Format) -> WrittenFiles:
    """Write `fmt`'s int8 file from the QAT model into `ctx.out` (the staging folder)."""
    return WRITERS[Format(fmt)](ctx, prepare(ctx))


NO_CALIBRATION = {"images": 0, "note": "none: the int8 ranges were learned by quantization-aware fine-tuning"}


def no_candidates(ctx, selection, workdir):
    """The QAT file has no accuracy-aware retry on top (it is judged as it is)."""
    return iter(())


def record(ctx, tuned: dict) -> dict:
    """The artifact's `int8` record, saying the file came from the QAT model and how it was made."""
    tuned = dict(tuned, recipe=METHOD, qat=dict(ctx.qat_prepared.record, why=getattr(ctx, "qat_why", "--qat")))
    tuned["selected_on"] = dict(tuned.get("selected_on") or {}, note="the QAT phase chose its epoch on these images "
                                "too; verify leaves them out")
    return tuned
