"""The embeddable API and `edgecls predict`: exported artifacts without TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.runtimes.classifier import Classifier
from edgecls.train import recorded


def _save_heldout(bundle, folder, n=4):
    x, y = recorded.heldout(Bundle.open(bundle), limit=n)
    paths = []
    for i, im in enumerate(x):
        p = folder / f"img{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths, y


@pytest.mark.parametrize("fmt,precision", [("onnx", "fp32"), ("onnx", "int8"), ("tflite", "int8"),
                                           ("openvino", "fp32")])
def test_classifier_matches_labels(exported_bundle, tmp_path, fmt, precision):
    clf = Classifier.open(exported_bundle, format=fmt, precision=precision)
    paths, y = _save_heldout(exported_bundle, tmp_path)
    results = clf.classify(paths, top=2)
    assert [len(r) for r in results] == [2] * len(paths)
    labels = Bundle.open(exported_bundle).labels()
    assert sum(r[0][0] == labels[k] for r, k in zip(results, y)) >= len(y) - 1
    assert all(r[0][1] >= r[1][1] for r in results)


def test_classifier_errors(exported_copy):
    with pytest.raises(EdgeclsError, match="no onnx fp16 artifact .*exported: onnx fp32"):
        Classifier.open(exported_copy, format="onnx", precision="fp16")
    with pytest.raises(EdgeclsError, match="needs TensorFlow"):
        Classifier.open(exported_copy, format="keras")
    clf = Classifier.open(exported_copy)
    assert clf.artifact["file"] == "model.onnx"  # default: the first of onnx, openvino, tflite
    with pytest.raises(EdgeclsError, match=r"input shape \(2, 8, 8, 3\): expected \(N, 16, 16, 3\)"):
        clf.predict(np.zeros((2, 8, 8, 3), np.uint8))
    with open(exported_copy / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgeclsError, match="model.int8.onnx: sha256"):
        Classifier.open(exported_copy, format="onnx", precision="int8")


def test_predict_cli_without_tensorflow(exported_bundle, tmp_path):
    paths, y = _save_heldout(exported_bundle, tmp_path, n=3)
    (tmp_path / "bad.png").write_text("no")
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from edgecls.cli import main; sys.argv = ['edgecls'] + sys.argv[1:]; main()")
    base = [sys.executable, "-c", code, "predict", "--bundle", str(exported_bundle), "--format", "tflite",
            "--precision", "int8"]
    r = subprocess.run(base + [str(p) for p in paths] + ["--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    labels = Bundle.open(exported_bundle).labels()
    assert res["artifact"]["file"] == "model.int8.tflite" and "--format tflite" in res["artifact"]["why"]
    assert [x["top"][0]["label"] for x in res["predictions"]] == [labels[k] for k in y]
    r = subprocess.run(base + [str(tmp_path / "bad.png")], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.png: not an image file" in r.stderr and "Traceback" not in r.stderr
