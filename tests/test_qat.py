"""Quantization-aware fine-tuning (`edgecls export --int8 --qat`, issue #31): the fake-quant arithmetic against the
converters' int8 kernels, one QAT model exported to all three formats and verified, and the bad inputs."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow_model_optimization")
pytest.importorskip("tf_keras")

from edgecls.cli import app  # noqa: E402
from edgecls.core.bundle import Bundle  # noqa: E402
from edgecls.core.errors import EdgeclsError  # noqa: E402
from edgecls.export import (  # noqa: E402
    ExportConfig,
    export,
    qat,  # noqa: E402
)

runner = CliRunner()


def _keras_conv(channels=3, activation="relu6"):
    from edgecls.core._tf import keras

    k = keras()
    inp = k.Input((12, 12, channels), name="images")
    x = k.layers.Rescaling(1 / 128, offset=-1.0, name="rescale")(inp)
    x = k.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.ReLU(6.0, name="relu")(x) if activation == "relu6" else x
    model = k.Model(inp, x, name="convnet")
    rng = np.random.default_rng(0)
    model.get_layer("conv").set_weights([rng.normal(0, 0.3, (3, 3, channels, 8)).astype(np.float32)])
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 0.5, 8), rng.normal(0, 0.2, 8),
                                       rng.uniform(0.5, 2, 8)])
    return model


def _int8_output_scale(flatbuffer: bytes) -> float:
    """The scale of the int8 tensor a float-io flatbuffer dequantizes into its output."""
    from edgecls.core._tf import tensorflow

    interp = tensorflow().lite.Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    out = interp.get_output_details()[0]["index"]
    deq = next(op for op in interp._get_ops_details() if op["op_name"] == "DEQUANTIZE" and out in op["outputs"])
    return float(tensors[deq["inputs"][0]]["quantization"][0])


@pytest.mark.slow
def test_fake_quant_matches_the_tflite_and_onnx_int8_kernels(tmp_path):
    """A tensor through the QAT model's fake quantization (Conv + folded BatchNorm + ReLU6, per-channel weights)
    equals the TFLite int8 kernel's output within one quantization step, and so does the ONNX QDQ file made from
    that flatbuffer (onnxruntime)."""
    import onnxruntime as ort
    import tf2onnx

    from edgecls.export.qat_files import _rename_io, uint8_activations

    model = _keras_conv()
    qmodel = qat.quantized(qat.twin(model))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (64, 12, 12, 3)).astype(np.float32)
    qmodel(x, training=True)  # the moving-average quantizers learn their ranges
    qat.pin_input_range(qmodel)
    fake = np.asarray(qmodel(x, training=False))
    assert np.abs(fake - np.asarray(model(x))).max() > 1e-4  # int8 rounding is simulated, not skipped
    flat = qat.converter(qmodel, uint8_io=False).convert()
    step = _int8_output_scale(flat)
    from edgecls.core._tf import tensorflow

    interp = tensorflow().lite.Interpreter(model_content=flat)
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    tfl = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert np.abs(tfl - fake).max() <= step * 1.001, (np.abs(tfl - fake).max(), step)
    path = tmp_path / "f.tflite"
    path.write_bytes(flat)
    proto, _ = tf2onnx.convert.from_tflite(str(path), opset=17)
    _rename_io(proto)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"images": x})[0]
    assert np.abs(onnx_out - fake).max() <= step * 1.001
    assert {n.op_type for n in proto.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    # the activations moved to uint8 (zero point + 128) compute the same numbers; weights stay int8
    import onnx

    moved = uint8_activations(proto)
    inits = {i.name: i for i in moved.graph.initializer}
    q_zps = {inits[n.input[2]].data_type for n in moved.graph.node if n.op_type == "QuantizeLinear"}
    w_zps = {inits[n.input[2]].data_type for n in moved.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(n.input) > 2}
    assert q_zps == {onnx.TensorProto.UINT8} and onnx.TensorProto.INT8 in w_zps, (q_zps, w_zps)
    sess = ort.InferenceSession(moved.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"images": x})[0] - fake).max() <= step * 1.001


def _residual_model():
    """Conv-BN-ReLU, then two branches summed by an Add whose sum reaches far beyond -6..6 (as EfficientNet's
    residual Adds do): the case a range left at TF-MOT's initial -6..6 clips."""
    from edgecls.core._tf import keras

    k = keras()
    inp = k.Input((16, 16, 3))
    x = k.layers.Rescaling(1 / 8.0)(inp)  # 0..32: sums well past 6
    x = k.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU()(x)
    y = k.layers.Conv2D(8, 1, use_bias=False)(x)
    y = k.layers.BatchNormalization()(y)
    x = k.layers.Add()([x, y])
    x = k.layers.GlobalAveragePooling2D()(x)
    out = k.layers.Softmax()(k.layers.Dense(4)(x))
    model = k.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":  # non-trivial statistics, as a trained model has
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 1, b.shape), rng.normal(0, 1, mean.shape),
                               rng.uniform(0.5, 2, var.shape)])
    return model


def test_calibration_sets_every_activation_range_and_keeps_the_weights_own():
    """Before fine-tuning, every moving-average quantizer (activations, Add and Rescaling outputs; told apart by
    TF-MOT's quantizer type, not guessed) holds the range its input reached, the residual Add's included (a probe
    once missed the deeper ones and left them clipping at -6..6), and every weight quantizer the weights' own
    symmetric range (not -6..6), so the int8-simulated model agrees with the float one from the first step."""
    from edgecls.core._tf import keras

    model = _residual_model()
    twin = qat.twin(model)
    qmodel = qat.quantized(twin)
    x = np.random.default_rng(1).integers(0, 256, (64, 16, 16, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    moving, direct = qat.quantizer_ranges(qmodel)
    assert len(moving) >= 5 and len(direct) >= 4, (len(moving), len(direct))
    before = np.abs(np.asarray(qmodel(x, training=False)) - ref).max()
    assert qat.calibrate_ranges(qmodel, twin, x, batch=16) == len(moving)
    qat.pin_input_range(qmodel)
    add = next(layer for layer in model.layers if type(layer).__name__ == "Add")
    out = np.asarray(keras().Model(model.input, add.output)(x))
    assert out.max() > 12  # the case: a sum beyond -6..6
    q_add = next(layer for layer in qmodel.layers if type(getattr(layer, "layer", None)).__name__ == "Add")
    lo, hi = (float(q_add._output_quantizer_vars[k].numpy()) for k in ("min_var", "max_var"))
    assert (lo, hi) == pytest.approx((min(out.min(), 0), out.max()), rel=1e-5)
    for _, found in moving:  # every activation range moved off TF-MOT's initial -6..6
        assert float(found["max_var"].numpy().max()) != 6.0 or float(found["min_var"].numpy().min()) != -6.0
    for layer in qmodel.layers:
        for weight, _, found in getattr(layer, "_weight_vars", ()):
            w = np.abs(weight.numpy())
            own = w.reshape(-1, w.shape[-1]).max(0) if found["max_var"].shape.rank else w.max()
            assert np.allclose(found["max_var"].numpy(), own, rtol=1e-5), (layer.name, found["max_var"].numpy())
            assert np.allclose(found["min_var"].numpy(), -own, rtol=1e-5)
    after = np.abs(np.asarray(qmodel(x, training=False)) - ref).max()
    assert after < before, (before, after)
    probs = np.asarray(qmodel(x, training=False))
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_depthwise_kernels_are_quantized_per_channel_in_the_simulation_and_in_the_file():
    """TF-MOT gives a DepthwiseConv2D kernel (H, W, C, 1) one range for all C channels (its per-axis quantizer
    takes the depth multiplier as the axis); edgecls swaps in one range per channel, as post-training int8 has.
    Channels of very different scales then keep their precision, and the converter carries it to the file: the
    int8 depthwise kernel has C scales, and the file agrees with the simulation."""
    from edgecls.core._tf import keras, tensorflow

    k = keras()
    inp = k.Input((12, 12, 3))
    x = k.layers.Rescaling(1 / 128, offset=-1.0)(inp)
    x = k.layers.Conv2D(6, 1, use_bias=False, kernel_initializer=k.initializers.GlorotUniform(seed=0))(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = k.layers.BatchNormalization()(x)
    out = k.layers.ReLU(6.0)(x)
    model = k.Model(inp, out)
    rng = np.random.default_rng(3)
    dw = next(layer for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D")
    scales = np.array([0.01, 0.03, 0.1, 0.3, 1.0, 3.0], np.float32)  # channels 300x apart
    dw.set_weights([rng.normal(0, 1, (3, 3, 6, 1)).astype(np.float32) * scales[None, None, :, None]])
    twin = qat.twin(model)
    qmodel = qat.quantized(twin)
    x = rng.integers(0, 256, (32, 12, 12, 3)).astype(np.float32)
    qat.calibrate_ranges(qmodel, twin, x)
    qat.pin_input_range(qmodel)
    wrapper = next(layer for layer in qmodel.layers
                   if type(getattr(layer, "layer", None)).__name__ == "DepthwiseConv2D")
    (kernel, _, found), = wrapper._weight_vars
    own = np.abs(kernel.numpy()).reshape(-1, 6).max(0)
    assert found["max_var"].shape == (6,) and np.allclose(found["max_var"].numpy(), own, rtol=1e-5)
    assert not [w for w in wrapper.weights if w.shape == (1,)]  # the per-tensor range is gone, not left unused
    fake = np.asarray(qmodel(x, training=False))
    ref = np.asarray(model(x))
    small = np.abs(fake[..., 0] - ref[..., 0]).max() / (np.abs(ref[..., 0]).max() + 1e-9)
    assert small < 0.2, small  # one range for all six channels would round the 0.01 channel's weights to 0
    flat = qat.converter(qmodel, uint8_io=False).convert()
    interp = tensorflow().lite.Interpreter(model_content=flat)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    op = next(o for o in interp._get_ops_details() if o["op_name"] == "DEPTHWISE_CONV_2D")
    weights = tensors[op["inputs"][1]]
    assert weights["dtype"] == np.int8 and len(weights["quantization_parameters"]["scales"]) == 6


def test_activation_ranges_start_from_calibration_not_from_plus_minus_six():
    """`tiny`: every activation range is the one its layer's float output reached (0..1 after Rescaling, the
    hidden Dense layer's and the logits' ranges), and the int8-simulated outputs come closer to float."""
    import tf_keras as tfk

    from edgecls.train import models

    model = models.build("tiny", (28, 28, 1), 5)
    twin = qat.twin(model)
    qmodel = qat.quantized(twin)
    x = np.random.default_rng(0).integers(0, 256, (48, 28, 28, 1)).astype(np.float32)
    ref = np.asarray(model(x))
    before = np.abs(np.asarray(qmodel(x, training=False)) - ref).max()
    moving, _ = qat.quantizer_ranges(qmodel)
    assert qat.calibrate_ranges(qmodel, twin, x, batch=16) == len(moving) >= 4
    kinds = set()
    for name, found in moving:
        layer = twin.get_layer(name)
        kinds.add(type(layer).__name__)
        out = np.asarray(tfk.Model(twin.input, layer.output)(x))
        got = float(found["min_var"].numpy()), float(found["max_var"].numpy())
        assert got == pytest.approx((min(out.min(), 0), max(out.max(), 0)), rel=1e-5, abs=1e-6), (name, got)
    assert {"Rescaling", "Dense"} <= kinds, kinds
    qat.pin_input_range(qmodel)
    after = np.abs(np.asarray(qmodel(x, training=False)) - ref).max()
    assert after < before, (before, after)


@pytest.mark.slow
@pytest.mark.parametrize("arch,shape", [("tiny", (28, 28, 1)), ("small", (32, 32, 3)), ("mobile", (28, 28, 1))])
def test_every_scratch_cnn_makes_three_int8_files_that_agree(arch, shape, tmp_path):
    """The QAT model of each scratch CNN converts to an int8 flatbuffer, its QDQ ONNX graph and an OpenVINO model
    (from the ONNX graph, or for 1-channel inputs from the flatbuffer) that give the same answers."""
    import onnx
    import onnxruntime as ort
    import openvino as ov
    import tf2onnx

    from edgecls.export.qat_files import _rename_io, openvino_model
    from edgecls.train import models

    qmodel = qat.quantized(qat.twin(models.build(arch, shape, 5)))
    x = np.random.default_rng(0).integers(0, 256, (32, *shape)).astype(np.float32)
    qmodel(x, training=True)
    qat.pin_input_range(qmodel)
    tfl = tmp_path / "q.tflite"
    tfl.write_bytes(qat.converter(qmodel, uint8_io=False).convert())
    proto, _ = tf2onnx.convert.from_tflite(str(tfl), opset=17)
    onnx.save(_rename_io(proto), str(tmp_path / "q.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    p_onnx = sess.run(None, {"images": x})[0]
    model, source = openvino_model(tmp_path / "q.onnx", tfl)
    assert source.startswith("TFLite" if shape[2] == 1 else "ONNX"), source
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) > 0
    p_ov = ov.Core().compile_model(model, "CPU")(x)[0]
    p_keras = np.asarray(qmodel(x, training=False))
    assert np.abs(p_onnx - p_keras).max() < 0.02 and np.abs(p_ov - p_onnx).max() < 0.02


def test_a_layer_that_cannot_be_rebuilt_is_named():
    from edgecls.core._tf import keras

    k = keras()
    inp = k.Input((8, 8, 3), name="images")
    x = k.layers.Conv2D(4, 3, name="conv")(inp)
    x = k.layers.LayerNormalization(name="odd_norm")(x)
    model = k.Model(inp, x)
    with pytest.raises(qat.NotRebuildable, match=r"model.keras: layer 'odd_norm' \(LayerNormalization\) cannot"):
        qat.twin(model)
    swish = k.Model(inp, k.layers.Conv2D(4, 3, activation="swish", name="sw")(inp))
    with pytest.raises(qat.NotRebuildable, match="'sw'.*activation 'silu'"):
        qat.check_rebuildable(swish, "model.keras")


def test_a_dense_with_softmax_is_rebuilt_as_dense_and_softmax():
    """A user's model often ends in Dense(activation="softmax"), which TF-MOT does not quantize inside the layer:
    the twin is the Dense (linear) and a Softmax layer after it, with the same outputs."""
    from edgecls.core._tf import keras

    model = _outlier_model(keras())
    t = qat.twin(model)
    assert [type(x).__name__ for x in t.layers][-2:] == ["Dense", "Softmax"]
    x = np.random.default_rng(0).integers(0, 256, (8, 24, 24, 3)).astype(np.float32)
    assert np.allclose(np.asarray(model(x)), np.asarray(t(x)), atol=1e-6)


def test_an_imported_model_inside_edgecls_preprocessing_is_inlined(tmp_path):
    """`edgecls import` with declared preprocessing and logits wraps the user's model (a nested functional model)
    between a 1x1 preprocessing convolution and a Softmax: the twin inlines it, with the same outputs, and TF-MOT
    quantizes every layer of it."""
    from edgecls.core._tf import keras
    from edgecls.runtimes.keras import load_bundle_model

    from .conftest import make_folder
    from .test_import import brightness_model

    k = keras()
    folder = make_folder(tmp_path / "pets", per_class=12, size=(24, 24))
    brightness_model(k, tmp_path / "user.keras")
    r = runner.invoke(app, ["import", str(tmp_path / "user.keras"), "--data", str(folder), "--out",
                            str(tmp_path / "b"), "--scale", str(1 / 255), "--offset", "-0.5"])
    assert r.exit_code == 0, r.output
    model = load_bundle_model(Bundle.open(tmp_path / "b"))
    assert any(type(layer).__name__ == "Functional" for layer in model.layers)
    t = qat.twin(model)
    kinds = [type(layer).__name__ for layer in t.layers]
    assert kinds == ["InputLayer", "Conv2D", "GlobalAveragePooling2D", "Dense", "Softmax"], kinds
    x = np.random.default_rng(0).integers(0, 256, (8, 24, 24, 3)).astype(np.float32)
    assert np.allclose(np.asarray(model(x)), np.asarray(t(x)), atol=1e-6)
    q = qat.quantized(t)
    assert sum(type(layer).__name__ == "QuantizeWrapperV2" for layer in q.layers) == 4


def test_a_sequential_model_is_rebuilt_as_it_is_and_inside_an_import():
    """A user's Sequential model, as the bundle's model itself or wrapped by `edgecls import`'s preprocessing: the
    same outputs."""
    from edgecls.core._tf import keras

    k = keras()
    seq = k.Sequential([k.Input((12, 12, 3)), k.layers.Rescaling(1 / 255), k.layers.Conv2D(4, 3, activation="relu"),
                        k.layers.GlobalAveragePooling2D(), k.layers.Dense(3, activation="softmax")])
    inp = k.Input((12, 12, 3), name="images")
    wrapped = k.Model(inp, seq(k.layers.Conv2D(3, 1, name="edgecls_preprocess")(inp)))
    x = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3)).astype(np.float32)
    for model in (seq, wrapped):
        t = qat.twin(model)
        assert "Sequential" not in [type(layer).__name__ for layer in t.layers]
        assert np.allclose(np.asarray(model(x)), np.asarray(t(x)), atol=1e-5)


def test_qat_needs_int8_and_one_mode(bundle_copy):
    with pytest.raises(EdgeclsError, match="--qat on: .*add --int8"):
        ExportConfig(qat="on").validate()
    with pytest.raises(EdgeclsError, match="--qat-time-limit"):
        ExportConfig(int8=True, qat="on", qat_settings=qat.QatSettings(time_limit=0)).validate()
    before = sorted(p.name for p in bundle_copy.rglob("*"))
    r = runner.invoke(app, ["export", str(bundle_copy), "--qat"])
    assert r.exit_code == 2 and "error:" in r.output and "add --int8" in r.output, r.output
    r = runner.invoke(app, ["export", str(bundle_copy), "--int8", "--qat", "--qat-auto"])
    assert r.exit_code == 2 and "give one" in r.output
    assert sorted(p.name for p in bundle_copy.rglob("*")) == before


def test_a_bundle_with_an_unknown_layer_is_refused_before_anything_is_written(bundle_copy, monkeypatch):
    from edgecls.core._tf import keras

    k = keras()
    inp = k.Input(Bundle.open(bundle_copy).input_shape(), name="images")
    x = k.layers.Conv2D(4, 3, name="conv")(inp)
    x = k.layers.GaussianNoise(0.1, name="noise")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    odd = k.Model(inp, k.layers.Dense(4, activation="softmax")(x))
    monkeypatch.setattr("edgecls.export.load_bundle_model", lambda bundle: odd)
    before = {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()}
    r = runner.invoke(app, ["export", str(bundle_copy), "--int8", "--qat"])
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "layer 'noise' (GaussianNoise) cannot be rebuilt" in r.output
    assert "Traceback" not in r.output
    assert {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_diverging_qat_stops_with_the_bundle_untouched(bundle_copy):
    def content():  # the bundle's files; .manifest.lock is the OS lock any reader of the bundle takes
        return {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file() and p.name != ".manifest.lock"}

    before = content()
    # an infinite learning rate: the weights and the loss go NaN in the first steps
    cfg = ExportConfig(int8=True, qat="on", qat_settings=qat.QatSettings(lr_fraction=float("inf"), max_epochs=1))
    with pytest.raises(qat.QatFailed, match="quantization-aware fine-tuning (diverged|collapsed).*untouched"):
        export(bundle_copy, cfg)
    assert content() == before


@pytest.mark.slow
def test_qat_export_of_tiny_in_all_three_formats_verifies(bundle_copy):
    from edgecls.export.onnx import float_ops
    from edgecls.export.qat_files import METHOD
    from edgecls.runtimes.tflite import TFLiteRunner
    from edgecls.verify.parity import verify

    r = runner.invoke(app, ["export", str(bundle_copy), "--int8", "--qat", "--qat-epochs", "3"])
    assert r.exit_code in (0, 1) and "from quantization-aware fine-tuning" in r.output, r.output
    manifest = Bundle.open(bundle_copy).manifest
    int8 = {a["format"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
    assert set(int8) == {"onnx", "tflite", "openvino"}
    for a in int8.values():
        t = a["int8"]
        assert t["recipe"] == METHOD and a["calibration"]["images"] == 0
        assert a["check"]["quantized_ops"] > 0
        made = t["qat"]
        assert 1 <= made["epochs"] <= 3 and made["seconds"] > 0 and made["settings"]["max_epochs"] == 3
        assert made["train_images"] == len(Bundle.open(bundle_copy).split_ids("train")) and made["stopped"]
        assert "tensorflow_model_optimization" in a["versions"]
        # the epoch was chosen on the int8 selection set, which verify leaves out
        sel = t["selected_on"]
        assert made["selection_images"]["validation"] == len(sel["ids"]) > 0 and "chose its epoch" in sel["note"]
    # one QAT model: the ONNX and OpenVINO files carry the TFLite file's scales, so they agree closely
    tfl = TFLiteRunner.import_package().Interpreter(model_path=str(bundle_copy / "model.int8.tflite"))
    assert tfl.get_input_details()[0]["quantization"] == (1.0, 0)  # raw pixels, as MediaPipe feeds them
    # uint8 activations: onnxruntime runs every convolution of the QAT ONNX file as an int8 kernel
    assert float_ops(bundle_copy / "model.int8.onnx") == 0
    res = verify(bundle_copy)
    rows = {(row.file, row.runtime): row for row in res.rows}
    for a in int8.values():
        row = next(v for (f, _), v in rows.items() if f == a["file"])
        assert row.outcome.value in ("pass", "inconclusive"), (a["file"], row.failures)
        assert row.judged_on["excluded_selection"] == len(a["int8"]["selected_on"]["ids"])
    saved = json.loads((bundle_copy / "manifest.json").read_text())
    assert any((a.get("int8") or {}).get("qat") for a in saved["artifacts"])


@pytest.mark.slow
def test_qat_auto_leaves_a_passing_post_training_file_alone(bundle_copy, tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(bundle_copy, dest)
    result = export(dest, ExportConfig(int8=True, qat="auto", formats=["tflite"]))
    a = next(a for a in result.artifacts if a["precision"] == "int8")
    assert a["int8"]["outcome"] != "fail" and "qat" not in a["int8"] and a["calibration"]["images"] > 0


def _outlier_model(k, size: int = 24, rescale: bool = True):
    """A user's Keras model (probabilities out) whose int8 loses its answer: a 1x1 convolution
    puts the images' brightness (about -0.5..0.5, which tells the two classes apart) in one channel beside a
    constant 500 in the other, so one per-tensor int8 range (scale about 2) rounds the brightness to zero and every
    int8 answer becomes the first class. The outlier-channel failure of post-training activation ranges, in
    miniature."""
    inp = k.Input((size, size, 3), name="images")
    x = k.layers.Rescaling(1 / 255, offset=-0.5, name="rescale")(inp) if rescale else inp
    x = k.layers.Conv2D(2, 1, name="mix")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    out = k.layers.Dense(2, activation="softmax", name="head")(x)
    model = k.Model(inp, out)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 1] = 1 / 3
    model.get_layer("mix").set_weights([kernel, np.array([500.0, 0.0], np.float32)])
    head = np.zeros((2, 2), np.float32)
    head[1] = (-20.0, 20.0)
    # a small lean to the first class: where int8 has lost the brightness, every answer is that class (an exact tie
    # would count as agreeing with the float model)
    model.get_layer("head").set_weights([head, np.array([0.5, 0.0], np.float32)])
    return model


@pytest.mark.slow
def test_qat_auto_runs_when_post_training_int8_misses_the_gate_and_says_so(tmp_path, monkeypatch):
    """`--qat-auto` on a model whose post-training int8 file changes about half the answers (`_outlier_model`),
    its accuracy-aware recipes spent (here: none left, as on a model where no layer kept in float helps): QAT runs
    on its own, for the failing file only, bounded by --qat-time-limit, and the file it makes replaces the failing
    one, recorded with why QAT ran, its epochs and time. QAT's ranges follow the float activations (moving
    averages), so it cannot mend an outlier channel: that file still misses the gate and the export says so."""
    import edgecls.export.tflite
    from edgecls.core._tf import keras

    from .conftest import make_folder

    folder = make_folder(tmp_path / "pets", per_class=100, size=(24, 24))
    _outlier_model(keras(), rescale=False).save(tmp_path / "user.keras")  # it expects x / 255 - 0.5: declared
    b = tmp_path / "b"
    r = runner.invoke(app, ["import", str(tmp_path / "user.keras"), "--data", str(folder), "--out", str(b),
                            "--scale", str(1 / 255), "--offset", "-0.5"])
    assert r.exit_code == 0, r.output
    assert Bundle.open(b).manifest["metrics"]["test"]["accuracy"] == 1.0  # the float model is right
    monkeypatch.setattr(edgecls.export.tflite, "accuracy_aware", lambda ctx, selection, workdir: iter(()))

    plain = tmp_path / "plain"  # without --qat-auto: the post-training file fails, and nothing else happens
    shutil.copytree(b, plain)
    r = runner.invoke(app, ["export", str(plain), "--int8", "--format", "tflite"])
    assert r.exit_code == 1, r.output
    ptq = next(a for a in Bundle.open(plain).manifest["artifacts"] if a["precision"] == "int8")
    assert ptq["int8"]["outcome"] == "fail" and "qat" not in ptq["int8"]

    r = runner.invoke(app, ["export", str(b), "--int8", "--format", "tflite", "--qat-auto", "--qat-time-limit", "20",
                            "--qat-epochs", "2"])
    assert "Traceback" not in r.output and "quantization-aware" in r.output, r.output
    a = next(a for a in Bundle.open(b).manifest["artifacts"] if a["precision"] == "int8")
    made = a["int8"]["qat"]
    assert made["why"].startswith("--qat auto: post-training int8 of tflite missed the gate"), made
    assert 1 <= made["epochs"] <= 2 and 0 < made["seconds"] and made["settings"]["time_limit"] == 20
    assert a["calibration"]["images"] == 0 and a["sha256"] != ptq["sha256"]
    assert a["int8"]["outcome"] == "fail" and r.exit_code == 1
