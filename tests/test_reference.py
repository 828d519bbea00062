"""Reference data in the bundle: verify and bench on a device without TensorFlow or the dataset."""

import shutil

import numpy as np
import pytest

from edgecls import runtimes
from edgecls.bench.measure import BenchConfig, bench
from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import sha256
from edgecls.export.reference import load
from edgecls.runtimes.keras import load_bundle_model
from edgecls.train import recorded
from edgecls.verify.parity import verify


def test_export_stores_reference_data(exported_bundle):
    b = Bundle.open(exported_bundle)
    ref, section = load(b), b.manifest["reference"]
    assert section["images"] == len(ref.images) == len(b.manifest["dataset"]["split"]["test"])  # 48 < 256
    assert ref.images.dtype == np.uint8 and ref.images.shape[1:] == b.input_shape()
    assert section["sha256"] == sha256(exported_bundle / "reference.npz")
    keras = load_bundle_model(b)
    np.testing.assert_allclose(ref.keras_probabilities, np.asarray(keras(ref.images.astype("float32"))), atol=1e-5)
    x, y = recorded.heldout(b)
    by_id = dict(zip(b.manifest["dataset"]["split"]["test"], zip(x, y)))
    for i, im, label in zip(section["ids"], ref.images, ref.labels):
        np.testing.assert_array_equal(by_id[i][0], im)
        assert by_id[i][1] == label


def _device(bundle, monkeypatch):
    """What a device looks like: TensorFlow is not installed, the training data is not here."""
    monkeypatch.setattr(runtimes.runner_class("keras"), "installed", classmethod(lambda cls: False))
    b = Bundle.open(bundle)
    b.manifest["dataset"]["source"] = {"name": "folder", "root": "../nowhere", "image_size": 16}
    b.save()


def test_verify_on_a_device_uses_the_reference(exported_copy, monkeypatch):
    on_host = verify(exported_copy, runtime_names=["onnx"])
    _device(exported_copy, monkeypatch)
    r = verify(exported_copy, runtime_names=["onnx"])
    assert r.source == "reference" and r.images == r.heldout_images == 48 and r.passed
    assert r.keras_accuracy == on_host.keras_accuracy  # the same held-out images here
    for a, b in zip(on_host.rows, r.rows):
        assert a.evidence.accuracy == b.evidence.accuracy
    assert {x["source"] for x in Bundle.open(exported_copy).manifest["verify"]["rows"]} == {"reference"}


def test_bench_on_a_device_times_the_reference_images(exported_copy, monkeypatch):
    _device(exported_copy, monkeypatch)
    r = bench(exported_copy, BenchConfig(runtimes=["onnx"], precisions=["fp32"], min_runs=3, min_time=0.01, warmup=0,
                                         rounds=1))
    assert r.rows and any("reference images" in n for n in r.notes)


def test_a_tampered_reference_is_refused_by_name(exported_copy, monkeypatch):
    _device(exported_copy, monkeypatch)
    with open(exported_copy / "reference.npz", "r+b") as f:
        f.seek(60)
        f.write(b"\0\0\0")
    with pytest.raises(EdgeclsError, match=r"reference\.npz: sha256 .* does not match"):
        verify(exported_copy, runtime_names=["onnx"])


def test_no_reference_and_no_data_says_what_is_missing(exported_copy, monkeypatch):
    from typer.testing import CliRunner

    _device(exported_copy, monkeypatch)
    b = Bundle.open(exported_copy)
    del b.manifest["reference"]
    b.save()
    r = CliRunner().invoke(app, ["verify", str(exported_copy)])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "cannot verify here: TensorFlow is not installed" in r.stderr and "no reference data" in r.stderr


def test_reference_size_is_bounded(bundle_copy):
    from edgecls.export import ExportConfig, export

    with pytest.raises(EdgeclsError, match="--reference-size 0"):
        export(bundle_copy, ExportConfig(formats=["onnx"], reference_size=0))
    export(bundle_copy, ExportConfig(formats=["onnx"], reference_size=8))
    assert len(load(Bundle.open(bundle_copy)).images) == 8
    shutil.rmtree(bundle_copy)
