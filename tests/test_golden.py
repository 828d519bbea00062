"""Golden vectors for native ports: the tensors are what Classifier.load() makes of the written images,
the probabilities what each artifact predicts on them, and bad input fails cleanly."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import sha256
from edgecls.core.images import load_image
from edgecls.runtimes.classifier import Classifier
from edgecls.verify import golden as golden_mod
from edgecls.verify.golden import INT8_FLOOR, write_golden

from .conftest import make_folder


def _check_entry(folder, entry):
    assert sha256(folder / entry["file"]) == entry["sha256"]
    if entry["file"].endswith(".npy"):
        a = np.load(folder / entry["file"])
        assert list(a.shape) == entry["shape"] and str(a.dtype) == entry["dtype"]
        return a


def test_golden_tensors_and_probabilities_are_what_the_runtimes_give(exported_bundle, tmp_path):
    out = tmp_path / "golden"
    index = write_golden(exported_bundle, out=out).index
    assert json.loads((out / "golden.json").read_text()) == index
    b = Bundle.open(exported_bundle)
    assert [i["label"] for i in index["images"]] == b.labels()  # 4 images, one per class (stratified)
    files = [out / i["file"]["file"] for i in index["images"]]
    x = np.concatenate([_check_entry(out, i["input"]) for i in index["images"]])
    assert x.dtype == np.float32 and x.shape == (4, *b.input_shape())
    for i in index["images"]:
        _check_entry(out, i["file"])
        u8 = _check_entry(out, i["input_uint8"])  # int8 TFLite input: scale 1, zero point 0
        assert np.array_equal(u8.astype(np.float32), np.load(out / i["input"]["file"]))
    assert {(o["format"], o["precision"]) for o in index["outputs"]} == {
        (a["format"], a["precision"]) for a in b.manifest["artifacts"] if a["format"] != "keras"}
    for o in index["outputs"]:
        clf = Classifier.open(exported_bundle, format=o["format"], precision=o["precision"])
        assert np.array_equal(clf.load(files).astype(np.float32), x)  # the exact tensor the model receives
        probs = _check_entry(out, o["file"])
        np.testing.assert_allclose(clf.predict(x), probs, atol=1e-6, err_msg=o["artifact"])
        assert np.array_equal(np.asarray(o["probabilities"], np.float32), probs)
        assert o["top1"] == [b.labels()[k] for k in probs.argmax(1)]
        assert o["artifact_sha256"] == sha256(exported_bundle / o["artifact"])
        keras = np.asarray(index["keras"]["probabilities"], np.float32)
        if o["precision"] == "int8":
            assert o["tolerance"]["abs"] >= max(INT8_FLOOR, float(np.abs(probs - keras).max()))
        else:
            assert o["tolerance"]["abs"] == {"fp32": 1e-4, "fp16": 1e-2}[o["precision"]]
            assert np.abs(probs - keras).max() <= o["tolerance"]["abs"]


def test_golden_cli_json_and_count(exported_bundle, tmp_path):
    out = tmp_path / "g"
    r = CliRunner().invoke(app, ["golden", str(exported_bundle), "--out", str(out), "--count", "2", "--json"])
    assert r.exit_code == 0, r.output
    index = json.loads(r.stdout)
    assert len(index["images"]) == 2 and len({i["label"] for i in index["images"]}) == 2
    assert (out / "golden.json").is_file()
    r = CliRunner().invoke(app, ["golden", str(exported_bundle), "--out", str(out), "--count", "1"])  # rewrite
    assert r.exit_code == 0, r.output
    assert "golden vectors: 1 images" in r.stdout and len(list((out / "inputs").glob("*.float32.npy"))) == 1


@pytest.mark.parametrize("args,message", [
    (["--count", "0"], "--count 0: must be at least 1"),
    (["--count", "100000"], "--count 100000: the bundle has only"),
])
def test_golden_bad_count(exported_bundle, tmp_path, args, message):
    r = CliRunner().invoke(app, ["golden", str(exported_bundle), "--out", str(tmp_path / "g"), *args])
    assert r.exit_code == 2 and f"error: {message}" in r.stderr
    assert not (tmp_path / "g").exists()


def test_golden_needs_an_exported_artifact(trained_bundle, tmp_path):
    r = CliRunner().invoke(app, ["golden", str(trained_bundle), "--out", str(tmp_path / "g")])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "no exported artifact" in r.stderr and "edgecls export" in r.stderr
    assert not (tmp_path / "g").exists()
    r = CliRunner().invoke(app, ["golden", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such bundle folder" in r.stderr


def test_golden_refuses_an_out_it_would_destroy(exported_copy, tmp_path):
    for out in (exported_copy, exported_copy.parent):
        with pytest.raises(EdgeclsError, match="is the bundle folder or holds it"):
            write_golden(exported_copy, out=out)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(EdgeclsError, match="a folder of other files"):
        write_golden(exported_copy, out=other)
    assert (other / "keep.txt").read_text() == "x"


def test_golden_is_all_or_nothing(exported_copy, monkeypatch):
    def broken(bundle, artifact, x):
        raise EdgeclsError(f"{artifact['file']}: boom")

    monkeypatch.setattr(golden_mod, "_run", broken)
    with pytest.raises(EdgeclsError, match="boom"):
        write_golden(exported_copy)
    assert not (exported_copy / "golden").exists()
    assert not [p for p in exported_copy.iterdir() if "staging" in p.name]


def test_golden_copies_a_folder_datasets_original_files(tmp_path):
    """For an image folder, the golden image is the user's file, byte for byte; the tensor is its decode."""
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train

    root = make_folder(tmp_path / "data", per_class=10, size=(20, 14), fmt="JPEG")
    bundle = tmp_path / "bundle"
    train(TrainConfig(data=str(root), arch="tiny", epochs=1, batch_size=8, image_size=16, out=bundle))
    assert not export(bundle, ExportConfig(formats=["tflite"])).failures
    result = write_golden(bundle, count=2)
    for img in result.index["images"]:
        src = root / img["id"]
        copy = result.folder / img["file"]["file"]
        assert copy.suffix == ".jpg" and copy.read_bytes() == src.read_bytes()
        assert np.array_equal(np.load(result.folder / img["input"]["file"])[0], load_image(src, (16, 16), 3))
    assert [o["artifact"] for o in result.index["outputs"]] == ["model.tflite"]
