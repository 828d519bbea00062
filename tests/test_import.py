"""`edgecls import`: a Keras model made elsewhere becomes a bundle every later stage treats like a trained one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgecls.core.bundle import Bundle

from .conftest import make_folder
from .test_cli import _one_line_error, run


def brightness_model(k, path: Path, logits: bool = True, size: int = 24, classes: int = 2):
    """A model as a plain Keras script writes it: no normalising layer, it expects (x / 255 - 0.5) and tells
    dark from bright images (make_folder's two classes) by their mean; logits out unless `logits` is False."""
    inp = k.Input((size, size, 3))
    x = k.layers.GlobalAveragePooling2D()(inp)
    out = k.layers.Dense(classes, activation=None if logits else "softmax")(x)
    model = k.Model(inp, out)
    w = np.zeros((3, classes), np.float32)
    w[:, 0], w[:, 1] = -4.0, 4.0
    model.layers[-1].set_weights([w, np.zeros(classes, np.float32)])
    if path.suffix == "":
        model.export(path, verbose=False)
    else:
        model.save(path)
    return model


@pytest.fixture(scope="module")
def keras_mod():
    from edgecls.core._tf import keras

    return keras()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "pets", per_class=12, size=(24, 24))


@pytest.fixture(scope="module")
def script_model(keras_mod, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "script.keras"
    brightness_model(keras_mod, path)
    return path


PREP = ["--scale", 1 / 255, "--offset", -0.5]


def test_import_declared_preprocessing_and_logits(script_model, folder, tmp_path):
    r = run("import", script_model, "--data", folder, "--out", tmp_path / "b", *PREP, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    imp = res["imported"]
    assert imp["source"]["format"] == "keras" and imp["output"]["kind"] == "logits"
    assert imp["preprocessing"]["how"] == "declared"
    assert np.allclose(imp["preprocessing"]["multiply"], 1 / 255) and np.allclose(imp["preprocessing"]["add"], -0.5)
    assert res["metrics"]["test"]["accuracy"] == 1.0 and res["labels"] == ["cat", "dog"]
    assert res["input"]["range"] == [0, 255] and "edgecls_preprocess" in res["input"]["preprocessing"]
    b = Bundle.open(tmp_path / "b")
    m = b.manifest
    assert "training" not in m and m["baseline"]["test_images"] == m["metrics"]["test"]["images"]
    assert {a["file"] for a in m["artifacts"]} == {"model.keras"}
    # the bundle's model takes raw pixels and returns probabilities: the preprocessing and softmax are inside
    from edgecls.runtimes.keras import load_bundle_model, probabilities
    from edgecls.train import recorded

    model = load_bundle_model(b)
    names = [layer.name for layer in model.layers]
    assert names[1] == "edgecls_preprocess" and names[-1] == "edgecls_softmax"
    x, y = recorded.heldout(b)
    p = probabilities(model, x)
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p.argmax(1) == y).all()
    # the same model without its preprocessing is at chance, and the import says so
    r = run("import", script_model, "--data", folder, "--out", tmp_path / "raw", "--raw-pixels")
    assert r.exit_code == 0, r.output
    warnings = Bundle.open(tmp_path / "raw").manifest["imported"]["warnings"]
    assert warnings and "chance" in warnings[0] and "preprocessing" in warnings[0]


def test_import_formats_agree(keras_mod, folder, tmp_path):
    """.keras, .h5 and a SavedModel folder of one model import to the same held-out results; the SavedModel's
    copy lives in the bundle, hashed as parts of model.keras."""
    from edgecls.runtimes.keras import load_bundle_model, probabilities
    from edgecls.train import recorded

    outs = {}
    for name in ("m.keras", "m.h5", "m_savedmodel"):
        brightness_model(keras_mod, tmp_path / name, logits=False)
        r = run("import", tmp_path / name, "--data", folder, "--out", tmp_path / f"b-{name}", *PREP)
        assert r.exit_code == 0, r.output
        b = Bundle.open(tmp_path / f"b-{name}")
        outs[name] = probabilities(load_bundle_model(b), recorded.heldout(b)[0])
        assert b.manifest["imported"]["output"]["kind"] == "probabilities"
    params = {n: Bundle.open(tmp_path / f"b-{n}").manifest["architecture"]["params"] for n in outs}
    assert len(set(params.values())) == 1, params  # a SavedModel's graph variables are counted too
    assert np.allclose(outs["m.keras"], outs["m.h5"], atol=1e-6)
    assert np.allclose(outs["m.keras"], outs["m_savedmodel"], atol=1e-6)
    b = Bundle.open(tmp_path / "b-m_savedmodel")
    keras_entry = b.entry("model.keras")
    assert any(p["file"] == "savedmodel/saved_model.pb" for p in keras_entry["parts"])
    with open(b.path / "savedmodel" / "saved_model.pb", "ab") as f:  # the copy is checked like any file
        f.write(b"\0")
    with pytest.raises(Exception, match="saved_model.pb: sha256"):
        load_bundle_model(Bundle.open(b.path))


def test_import_then_export_verify_bench_predict_report(script_model, folder, tmp_path):
    """The fast path a user takes: import, export, verify, bench, then predict and report follow the answer."""
    b = tmp_path / "b"
    assert run("import", script_model, "--data", folder, "--out", b, *PREP).exit_code == 0
    r = run("export", b, "--format", "onnx")
    assert r.exit_code == 0, r.output
    r = run("verify", b)
    assert r.exit_code == 0, r.output
    r = run("bench", b, "--runtime", "onnx", "--min-runs", 5, "--min-time", 0.01, "--warmup", 1,
            "--warmup-time", 0.01, "--rounds", 1, "--accept-inconclusive")
    assert r.exit_code == 0, r.output
    assert any(line.lstrip().startswith("model.onnx") and "onnx" in line for line in r.stdout.splitlines())
    img = next((folder / "dog").iterdir())
    r = run("predict", img, "--bundle", b)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("model.onnx (onnx fp32): the bundle's recommendation")
    res = json.loads(run("predict", img, "--bundle", b, "--json").stdout)
    assert res["artifact"]["file"] == "model.onnx" and res["predictions"][0]["top"][0]["label"] == "dog"
    r = run("report", b)
    assert r.exit_code == 0, r.output
    md = (b / "report.md").read_text()
    assert "## Import" in md and "Ship `model.onnx`" in md
    assert Bundle.open(b).entry("report.html") is not None


# ---------------------------------------------------------------------------------------------- bad input


def _two_inputs(k, path):
    a, b = k.Input((8, 8, 3)), k.Input((8, 8, 3))
    x = k.layers.GlobalAveragePooling2D()(k.layers.Add()([a, b]))
    k.Model([a, b], k.layers.Dense(2, activation="softmax")(x)).save(path)


def _vector_input(k, path):
    a = k.Input((10,))
    k.Model(a, k.layers.Dense(2, activation="softmax")(a)).save(path)


def _three_classes(k, path):
    brightness_model(k, path, classes=3)


def _no_signature(k, path):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(path))


def _custom_layer(k, path):
    @k.saving.register_keras_serializable(package="user")
    class Doubler(k.layers.Layer):
        def call(self, x):
            return 2 * x

    a = k.Input((24, 24, 3))
    x = k.layers.GlobalAveragePooling2D()(Doubler()(a))
    k.Model(a, k.layers.Dense(2, activation="softmax")(x)).save(path)
    del k.saving.get_custom_objects()["user>Doubler"]  # the importing process has not its code


def _lambda_layer(k, path):
    a = k.Input((24, 24, 3))
    x = k.layers.GlobalAveragePooling2D()(k.layers.Lambda(lambda t: t * 2)(a))
    k.Model(a, k.layers.Dense(2, activation="softmax")(x)).save(path)


@pytest.mark.parametrize("make,name,extra,pattern", [
    (lambda k, p: p.write_text("not a model"), "m.keras", [], "not a Keras model edgecls can load"),
    (None, "m.onnx", [], r"expected a \.keras or \.h5 file or a SavedModel folder"),
    (_vector_input, "m.keras", [], r"input shape \(N, 10\) is not an image batch \(rank 2"),
    (_two_inputs, "m.keras", [], "2 inputs"),
    (_three_classes, "m.keras", PREP, "scores 3 classes, .*has 2"),
    (_no_signature, "sm", [], "no 'serving_default' serving signature"),
    (_custom_layer, "m.keras", PREP, "custom layer 'Doubler' is not built into Keras"),
    (_lambda_layer, "m.keras", PREP, "a Lambda layer holds Python code"),
    (brightness_model, "m.keras", [], "no Rescaling or Normalization layer .*--scale"),
    (brightness_model, "m.keras", ["--mean", "1,2"], r"--mean 1,2: 2 values for a model with 3 input channels"),
    (brightness_model, "m.keras", ["--labels", "{tmp}/labels.txt", *PREP], "only in the file: owl"),
])
def test_import_bad_input(keras_mod, folder, tmp_path, make, name, extra, pattern):
    path = tmp_path / name
    if make is not None:
        make(keras_mod, path)
    else:
        path.write_bytes(b"\x08\x01")
    (tmp_path / "labels.txt").write_text("cat\ndog\nowl\n")
    extra = [str(e).replace("{tmp}", str(tmp_path)) for e in extra]
    r = run("import", path, "--data", folder, "--out", tmp_path / "b", *extra)
    line = _one_line_error(r)
    assert re.search(pattern, line), line
    assert not (tmp_path / "b").exists()  # nothing written


def test_import_labels_reorder(keras_mod, folder, tmp_path):
    """--labels gives the model's output order: a model whose first output is 'dog' is right with it."""
    brightness_model(keras_mod, tmp_path / "m.keras")  # output 0: dark, 1: bright -> folder's cat (dark), dog
    (tmp_path / "labels.txt").write_text("dog\ncat\n")  # wrong order: every answer is flipped
    r = run("import", tmp_path / "m.keras", "--data", folder, "--out", tmp_path / "b", *PREP,
            "--labels", tmp_path / "labels.txt", "--json")
    res = json.loads(r.stdout)
    assert res["labels"] == ["dog", "cat"] and res["metrics"]["test"]["accuracy"] == 0.0


def test_import_existing_bundle_needs_force(script_model, folder, tmp_path):
    out = tmp_path / "b"
    assert run("import", script_model, "--data", folder, "--out", out, *PREP).exit_code == 0
    first = Bundle.open(out).manifest["bundle_id"]
    assert "pass --force" in _one_line_error(run("import", script_model, "--data", folder, "--out", out, *PREP))
    assert Bundle.open(out).manifest["bundle_id"] == first  # untouched
    assert run("import", script_model, "--data", folder, "--out", out, *PREP, "--force").exit_code == 0
    assert Bundle.open(out).manifest["bundle_id"] != first  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left beside it


def test_mean_std_channels_order_baked_exactly(keras_mod, folder, tmp_path):
    """--mean/--std/--channels-order bgr: the bundle's first layer computes (x[bgr] - mean) / std per channel."""
    from edgecls.train.foreign import PREPROCESS_LAYER

    inp = keras_mod.Input((24, 24, 3))
    out = keras_mod.layers.Dense(2, activation="softmax")(keras_mod.layers.GlobalAveragePooling2D()(inp))
    keras_mod.Model(inp, out).save(tmp_path / "m.keras")
    r = run("import", tmp_path / "m.keras", "--data", folder, "--out", tmp_path / "b", "--mean", "10,20,30",
            "--std", "2,4,8", "--channels-order", "bgr")
    assert r.exit_code == 0, r.output
    from edgecls.runtimes.keras import load_bundle_model

    model = load_bundle_model(Bundle.open(tmp_path / "b"))
    layer = model.get_layer(PREPROCESS_LAYER)
    x = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3)).astype(np.float32)
    want = (x[..., ::-1] - np.array([10, 20, 30], np.float32)) / np.array([2, 4, 8], np.float32)
    assert np.allclose(np.asarray(layer(x)), want, atol=1e-4)


# ------------------------------------------------------------------------------- Keras Applications (slow)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MobileNetV3Small", "EfficientNetV2B0", "ResNet50"])
def test_keras_applications_import_export_verify_bench(keras_mod, folder, tmp_path, arch):
    """Keras Applications built with weights=None (no download) at 32x32: their built-in preprocessing is read
    (MobileNetV3, EfficientNetV2), ResNet50's Caffe-style one declared; every format exports, verifies, benches."""
    kwargs = {"minimalistic": True} if arch == "MobileNetV3Small" else {}
    model = getattr(keras_mod.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=2, **kwargs)
    model.save(tmp_path / "m.keras")
    data = make_folder(tmp_path / "data", per_class=12, size=(32, 32))
    extra = ["--mean", "103.939,116.779,123.68", "--channels-order", "bgr"] if arch == "ResNet50" else []
    b = tmp_path / "b"
    r = run("import", tmp_path / "m.keras", "--data", data, "--out", b, *extra, "--json")
    assert r.exit_code == 0, r.output
    imp = json.loads(r.stdout)["imported"]
    assert imp["output"]["kind"] == "probabilities"
    assert imp["preprocessing"]["how"] == ("declared" if arch == "ResNet50" else "inside the model")
    r = run("export", b, "--int8", "--format", "onnx,tflite,openvino", "--calib-size", 8)
    # an int8 file of random weights may fail its gate (exit 1); no format may fail to export
    assert r.exit_code in (0, 1) and not [x for x in r.stderr.splitlines() if x.startswith("error:")], r.output
    m = Bundle.open(b).manifest
    assert {a["file"] for a in m["artifacts"]} >= {"model.onnx", "model.tflite", "openvino/model.xml"}
    r = run("verify", b)
    rows = Bundle.open(b).manifest["verify"]["rows"]
    float_rows = [x for x in rows if x["precision"] == "fp32"]
    assert float_rows and all(x["outcome"] != "fail" for x in float_rows), r.output
    r = run("bench", b, "--runtime", "onnx,tflite,openvino", "--precision", "fp32", "--min-runs", 3,
            "--min-time", 0.01, "--warmup", 1, "--warmup-time", 0.01, "--rounds", 1, "--accept-inconclusive")
    assert r.exit_code in (0, 1), r.output
    assert len(Bundle.open(b).manifest["bench"]["rows"]) == 3


def test_op_a_converter_refuses_fails_that_format_only(folder, tmp_path):
    """A SavedModel whose graph holds an op TFLite has no builtin for (Cumprod): importing it works; export says
    which op and format in one error line and still writes ONNX."""
    import tensorflow as tf

    class Graph(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 24, 24, 3], tf.float32)])
        def serve(self, x):
            f = tf.reduce_mean(x, axis=[1, 2]) / 255.0
            return {"scores": tf.math.cumprod(f, axis=1)[:, :2] * tf.constant([-4.0, 4.0])}

    g = Graph()
    tf.saved_model.save(g, str(tmp_path / "sm"), signatures={"serving_default": g.serve})
    b = tmp_path / "b"
    r = run("import", tmp_path / "sm", "--data", folder, "--out", b, "--raw-pixels", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"]["output"]["kind"] == "logits"  # read from its outputs
    r = run("export", b, "--format", "onnx,tflite")
    assert r.exit_code == 1, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: tflite fp32: the converter refuses TensorFlow op Cumprod: it is not a tflite builtin "
                      "operation; the other formats are unaffected"], r.stderr
    files = {a["file"] for a in Bundle.open(b).manifest["artifacts"]}
    assert "model.onnx" in files and "model.tflite" not in files and not (b / "model.tflite").exists()


def test_force_replaces_only_a_bundle(script_model, folder, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    line = _one_line_error(run("import", script_model, "--data", folder, "--out", tmp_path / "notes", *PREP, "--force"))
    assert "not an edgecls bundle" in line and (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_grey_model_imports_grey_images(keras_mod, folder, tmp_path):
    """A 1-channel model: the folder's images are decoded grey, as the model's input says."""
    inp = keras_mod.Input((24, 24, 1))
    x = keras_mod.layers.Rescaling(1 / 255)(inp)
    out = keras_mod.layers.Dense(2, activation="softmax")(keras_mod.layers.GlobalAveragePooling2D()(x))
    keras_mod.Model(inp, out).save(tmp_path / "grey.keras")
    r = run("import", tmp_path / "grey.keras", "--data", folder, "--out", tmp_path / "b", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["input"]["shape"] == [None, 24, 24, 1] and res["input"]["color"] == "grayscale"
    inside = res["imported"]["preprocessing"]["inside"]  # Keras numbers unnamed layers per process: rescaling_N
    assert len(inside) == 1 and re.fullmatch(r"rescaling(_\d+)? \(Rescaling\)", inside[0]), inside
    from edgecls.train import recorded

    x, _ = recorded.heldout(Bundle.open(tmp_path / "b"))
    assert x.shape[1:] == (24, 24, 1)


def test_pipeline_import_options_need_model(tmp_path):
    line = _one_line_error(run("pipeline", "--scale", "0.5", "--out", tmp_path / "b"))
    assert "add --model FILE" in line and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_pipeline_with_model(script_model, folder, tmp_path):
    """`edgecls pipeline --model`: import, export, verify, bench, report in one command."""
    r = run("pipeline", "--model", script_model, "--data", folder, "--out", tmp_path / "b", *PREP,
            "--accept-inconclusive", "--runtime", "onnx,tflite", "--batch", "1", "--json")
    assert r.exit_code in (0, 1), r.output
    res = json.loads(r.stdout)
    assert "imported" in res["train"] and res["report"].endswith("report.html")
    m = Bundle.open(tmp_path / "b").manifest
    assert m["imported"]["source"]["file"] == "script.keras" and m.get("verify") and m.get("bench")


def test_normalization_with_fixed_statistics_exports_to_onnx(keras_mod, folder, tmp_path):
    """A Normalization layer built with its mean and variance (as EfficientNetV2's built-in preprocessing is):
    read as the model's own preprocessing, and its constants stay inside the ONNX file (one input, images)."""
    import onnxruntime as ort

    inp = keras_mod.Input((24, 24, 3))
    x = keras_mod.layers.Normalization(mean=[127.0] * 3, variance=[64.0**2] * 3)(inp)
    out = keras_mod.layers.Dense(2, activation="softmax")(keras_mod.layers.GlobalAveragePooling2D()(x))
    keras_mod.Model(inp, out).save(tmp_path / "m.keras")
    b = tmp_path / "b"
    r = run("import", tmp_path / "m.keras", "--data", folder, "--out", b, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"]["preprocessing"]["inside"][0].endswith("(Normalization)")
    r = run("export", b, "--format", "onnx")
    assert r.exit_code == 0, r.output
    assert [i.name for i in ort.InferenceSession(str(b / "model.onnx")).get_inputs()] == ["images"]
    assert run("verify", b).exit_code == 0
