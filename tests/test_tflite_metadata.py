"""Standard TFLite image-classifier metadata in every exported .tflite, and a real consumer of it (MediaPipe)."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.export.tflite_metadata import read_standard, with_metadata
from edgecls.runtimes.tflite import read_metadata
from edgecls.train import recorded

TFLITE = {"fp32": "model.tflite", "fp16": "model.fp16.tflite", "int8": "model.int8.tflite"}


@pytest.mark.parametrize("precision", list(TFLITE))
def test_standard_metadata_parsed_with_the_vendored_schema(exported_bundle, precision):
    b = Bundle.open(exported_bundle)
    path = exported_bundle / TFLITE[precision]
    md = read_standard(path)
    assert md["color"] == "RGB" and md["mean"] == [0.0] and md["std"] == [1.0]  # raw 0..255 pixels go in
    assert md["input_stats"] == (0.0, 255.0)
    assert md["output_stats"] == ((0.0, 255.0) if precision == "int8" else (0.0, 1.0))
    assert md["associated_files"] == [("labels.txt", "TENSOR_AXIS_LABELS")]
    assert md["min_parser_version"] == "1.0.0" and md["version"] == b.manifest["edgecls_version"]
    assert zipfile.ZipFile(path).namelist() == ["labels.txt"] == md["zip"]  # a zip appended after the flatbuffer
    assert md["labels"] == b.labels()
    assert json.loads(read_metadata(path)["edgecls.labels"]) == b.labels()  # edgecls's own entries still there


def test_standard_metadata_is_idempotent_and_grayscale_is_described(exported_bundle, tmp_path):
    src = (exported_bundle / "model.int8.tflite").read_bytes()
    once = with_metadata(src, {"edgecls.precision": "int8"}, labels=["a", "b", "c", "d"], color="grayscale")
    twice = with_metadata(once, {"edgecls.precision": "int8"}, labels=["a", "b", "c", "d"], color="grayscale")
    assert once == twice
    path = tmp_path / "gray.tflite"
    path.write_bytes(twice)
    md = read_standard(path)
    assert md["color"] == "GRAYSCALE" and md["zip"] == ["labels.txt"] and md["labels"] == ["a", "b", "c", "d"]
    assert read_metadata(path)["edgecls.precision"] == "int8"
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(with_metadata(src, {}))  # no labels: no standard metadata, and the old zip is dropped
    assert read_standard(plain) == {} and not zipfile.is_zipfile(plain)


def test_standard_metadata_refuses_a_label_with_a_line_break(exported_bundle):
    src = (exported_bundle / "model.tflite").read_bytes()
    with pytest.raises(EdgeclsError, match="cannot contain a line break"):
        with_metadata(src, {}, labels=["ok", "two\nlines"])


def test_int8_input_is_raw_pixels_for_mediapipe(exported_bundle):
    """MediaPipe copies uint8 pixels in as they are: right only with input scale 1, zero point 0."""
    a = next(a for a in Bundle.open(exported_bundle).manifest["artifacts"]
             if a["format"] == "tflite" and a["precision"] == "int8")
    assert a["input_quantization"] == {"scale": 1.0, "zero_point": 0}


@pytest.mark.slow
def test_mediapipe_image_classifier_runs_every_tflite(exported_bundle, tmp_path):
    """A real consumer of the standard metadata: MediaPipe's ImageClassifier loads each .tflite,
    names the bundle's labels and gives edgecls's top-1 (and its probabilities) on the held-out images."""
    mp = pytest.importorskip("mediapipe", reason="mediapipe not installed: pip install 'edgecls[test-device]'")
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    from edgecls.runtimes.classifier import Classifier

    b = Bundle.open(exported_bundle)
    labels = b.labels()
    x, _ = recorded.heldout(b)
    files = []
    for i, img in enumerate(x):  # PNG files at the model's size: both sides decode the same pixels
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(files[-1])
    for precision, name in TFLITE.items():
        clf = Classifier.open(exported_bundle, format="tflite", precision=precision)
        ours = clf.predict(clf.load(files))
        opts = vision.ImageClassifierOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=str(exported_bundle / name)), max_results=len(labels))
        with vision.ImageClassifier.create_from_options(opts) as mpc:
            results = [mpc.classify(mp.Image.create_from_file(str(f))) for f in files]
        theirs = np.zeros_like(ours)
        for row, r in zip(theirs, results):
            cats = r.classifications[0].categories
            assert {c.category_name for c in cats} == set(labels)
            for c in cats:
                assert c.category_name == labels[c.index]
                row[c.index] = c.score
        top = [r.classifications[0].categories[0].index for r in results]
        # MediaPipe's first category has edgecls's highest probability (equal scores may come in either order)
        assert all(ours[i, k] == ours[i].max() for i, k in enumerate(top)), precision
        tied = sum((p == p.max()).sum() > 1 for p in ours)
        assert (np.array(top) == ours.argmax(1)).sum() >= len(files) - tied
        assert np.abs(theirs - ours).max() <= (1e-6 if precision == "int8" else 1e-4), precision


def test_int8_input_is_raw_pixels_even_when_calibration_never_reaches_0_or_255():
    """A folder of low-contrast photos (pixels 30-200): the converter would set the input scale from that range
    (e.g. 0.67); one pixel each of 0 and 255 in the calibration keeps it at scale 1, zero point 0."""
    from edgecls.core.names import Precision
    from edgecls.export.tflite import converter, with_full_range
    from edgecls.export.tflite_metadata import input_quantization
    from edgecls.train.models import build

    rng = np.random.default_rng(0)
    calib = rng.integers(30, 201, (8, 12, 12, 3), dtype=np.uint8)
    full = with_full_range(calib)
    assert full.min() == 0 and full.max() == 255 and (full != calib).sum() <= 6 and calib.min() == 30
    assert with_full_range(full) is full  # already with_full_range: untouched
    conv, _ = converter(build("tiny", (12, 12, 3), 2), Precision.int8, calib)
    assert input_quantization(conv.convert()) == (1.0, 0)
