import sys

import numpy as np
import pytest

from edgecls import runtimes
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError, MissingDependency
from edgecls.core.names import Device
from edgecls.train import recorded

FILES = {"keras": "model.keras", "onnx": "model.onnx", "tflite": "model.int8.tflite",
         "openvino": "openvino/model.xml", "web-onnx": "model.onnx", "web-tflite": "model.int8.tflite"}


@pytest.mark.parametrize("name", list(runtimes.RUNTIMES))
def test_runner_takes_raw_pixels_returns_probabilities(exported_bundle, name):
    if not runtimes.runner_class(name).installed():
        pytest.skip(f"{name}: not installed here (web-*: Chromium, Playwright, Node.js/npm)")
    b = Bundle.open(exported_bundle)
    x, _ = recorded.heldout(b)
    runner = runtimes.create(name)
    # TensorFlow fixes its thread pools when it starts (already, in this test process): see below
    runner.load(b.checked_path(FILES[name]), threads=None if name == "keras" else 1)
    assert runner.name == name and runner.device_ran != "?" and runner.precision in ("fp32", "int8")
    assert runner.compute in ("fp32", "f32")
    for batch in (x[:1], x[:7], x[:7].astype(np.float32)):  # uint8 or float input, any batch
        p = runner.predict(batch)
        assert p.dtype == np.float32 and p.shape == (len(batch), 4)
        assert np.allclose(p.sum(1), 1, atol=0.05)


@pytest.mark.parametrize("name,file", [*FILES.items(), ("onnx", "model.int8.onnx"), ("tflite", "model.tflite"),
                                       ("openvino", "openvino/model.int8.xml")])
def test_bound_call_computes_what_predict_does(exported_bundle, name, file):
    """bench times `timed_call(...).run`: it must run the model on the bound images, every time."""
    b = Bundle.open(exported_bundle)
    x, _ = recorded.heldout(b)
    runner = runtimes.create(name)
    runner.load(b.checked_path(file), threads=None if name == "keras" else 1)
    outputs = []
    for batch in (x[:5], x[5:10]):
        call = runner.timed_call(batch)
        call.run()
        outputs.append(call.output())
        np.testing.assert_allclose(outputs[-1], runner.predict(batch), atol=1e-5)
        call.run()  # the same buffers again: still the right answer
        np.testing.assert_allclose(call.output(), outputs[-1], atol=1e-5)
    assert outputs[0].shape == (5, 4) and not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("name", list(runtimes.RUNTIMES))
def test_gpu_without_gpu_is_a_clear_error(exported_bundle, name):
    runner = runtimes.create(name)
    with pytest.raises(EdgeclsError, match="--device gpu: "):
        runner.load(exported_bundle / FILES[name], device=Device.gpu)


@pytest.mark.parametrize("name", list(runtimes.RUNTIMES))
def test_bad_threads(exported_bundle, name):
    with pytest.raises(EdgeclsError, match="--threads 0: must be at least 1"):
        runtimes.create(name).load(exported_bundle / FILES[name], threads=0)


@pytest.mark.parametrize("name", ["onnx", "tflite", "openvino"])
def test_truncated_file_is_refused(exported_copy, name):
    path = exported_copy / FILES[name]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EdgeclsError, match="cannot load it"):
        runtimes.create(name).load(path)


def test_unknown_runtime():
    with pytest.raises(EdgeclsError, match="'tensorrt': unknown runtime"):
        runtimes.create("tensorrt")


def test_missing_package_names_the_extra(monkeypatch, exported_bundle):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(MissingDependency, match=r"pip install 'edgecls\[openvino\]'"):
        runtimes.create("openvino").load(exported_bundle / FILES["openvino"])


def test_tflite_quantization_round_trip(exported_bundle):
    r = runtimes.create("tflite")
    r.load(exported_bundle / "model.int8.tflite")
    x = np.array([0, 1, 127, 255], np.float32)
    assert np.array_equal(r.quantize(x), x.astype(np.uint8))  # scale 1, zero point 0


def test_no_tensorflow_needed_for_device_runtimes():
    import subprocess

    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from edgecls import runtimes\n"
            "for n in ('onnx', 'tflite', 'openvino'): runtimes.create(n)\n"
            "import edgecls.runtimes.onnx, edgecls.runtimes.tflite, edgecls.runtimes.openvino\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr


def test_keras_threads_honoured_in_a_fresh_process(exported_bundle):
    import subprocess

    code = ("import sys; from edgecls import runtimes; r = runtimes.create('keras'); "
            "r.load(sys.argv[1], threads=1); import tensorflow as tf; "
            "print(tf.config.threading.get_intra_op_parallelism_threads())")
    r = subprocess.run([sys.executable, "-c", code, str(exported_bundle / "model.keras")], capture_output=True,
                       text=True)
    assert r.stdout.strip().splitlines()[-1] == "1", r.stderr


def test_onnx_precision_known_without_the_onnx_package(monkeypatch, exported_bundle):
    monkeypatch.setitem(sys.modules, "onnx", None)  # a device install has onnxruntime only
    for name, precision in (("model.onnx", "fp32"), ("model.int8.onnx", "int8")):
        r = runtimes.create("onnx")
        r.load(exported_bundle / name)
        assert r.precision == precision


def test_keras_batches_are_sized_by_the_models_layer_outputs():
    """An eager Keras call keeps every layer's output until it returns: a model that upsizes its input inside
    (as a backbone at 224 px does) gets smaller batches, a small one the full batch, and the answers do not
    depend on the batching."""
    import numpy as np

    from edgecls.core._tf import keras
    from edgecls.runtimes.keras import ACTIVATION_BYTES, batch_size, outputs_per_image, probabilities

    k = keras()
    inp = k.Input((16, 16, 3))
    big = k.layers.Conv2D(32, 3, padding="same")(k.layers.Resizing(256, 256)(inp))
    model = k.Model(inp, k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling2D()(big)))
    values = outputs_per_image(model)
    assert values == 16 * 16 * 3 + 256 * 256 * 3 + 256 * 256 * 32 + 32 + 3
    assert batch_size(model) == ACTIVATION_BYTES // (4 * values) < 256
    small = k.Model(inp, k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling2D()(inp)))
    assert batch_size(small) == 256 and batch_size(small, cap=8) == 8
    x = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    assert np.allclose(probabilities(model, x), probabilities(model, x, batch=1), atol=1e-6)
