import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.bundle import Bundle, sha256
from edgecls.cli import app
from edgecls.errors import EdgeclsError
from edgecls.names import Precision
from edgecls.verify import Gate, Parity, compare, default_gates, verify

runner = CliRunner()


def test_every_artifact_passes_and_is_stored(exported_copy):
    r = verify(exported_copy)
    artifacts = [a for a in Bundle.open(exported_copy).manifest["artifacts"] if a["format"] != "keras"]
    assert len(r.rows) == len(artifacts) == 8
    assert r.passed, [(x.file, x.failures) for x in r.rows]
    for row in r.rows:
        if row.precision == "fp32":
            assert row.agreement >= 0.999 and row.max_abs_diff <= 1e-4
    assert r.keras_accuracy == pytest.approx(Bundle.open(exported_copy).manifest["metrics"]["test"]["accuracy"])
    stored = Bundle.open(exported_copy).manifest["verify"]
    assert stored["passed"] and len(stored["rows"]) == 8 and stored["images"] == 48


def test_openvino_runs_f32_for_fp32_parity(exported_copy):
    r = verify(exported_copy, runtime_names=["openvino"])
    assert {row.compute for row in r.rows} == {"f32"}


def _perturb_onnx(bundle, factor=1.5):
    import onnx
    from onnx import numpy_helper

    path = bundle / "model.onnx"
    m = onnx.load(str(path))
    for init in m.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim == 4:  # the conv kernel
            init.CopyFrom(numpy_helper.from_array((w * factor).astype(w.dtype), init.name))
    onnx.save(m, str(path))
    b = Bundle.open(bundle)
    entry = b.entry("model.onnx")
    entry["sha256"], entry["bytes"] = sha256(path), path.stat().st_size  # a damaged but "valid" artifact
    b.save()


def test_damaged_artifact_fails_the_gate(exported_copy):
    _perturb_onnx(exported_copy)
    r = runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"])
    assert r.exit_code == 1, r.output
    assert "FAIL model.onnx: max abs diff" in r.stderr
    rows = {row["file"]: row for row in Bundle.open(exported_copy).manifest["verify"]["rows"]}
    assert not rows["model.onnx"]["passed"] and rows["model.int8.onnx"]["passed"]


def test_missing_and_tampered_artifacts_others_still_verified(exported_copy):
    (exported_copy / "model.tflite").unlink()
    with open(exported_copy / "openvino" / "model.bin", "r+b") as f:
        f.write(b"\xff\xff\xff\xff")
    r = verify(exported_copy)
    bad = {row.file: row.failures[0] for row in r.rows if row.error}
    assert set(bad) == {"model.tflite", "openvino/model.xml"}
    assert "missing" in bad["model.tflite"] and "model.bin: sha256" in bad["openvino/model.xml"]
    assert sum(row.passed for row in r.rows) == 6 and not r.passed


def test_no_artifacts(bundle_copy):
    with pytest.raises(EdgeclsError, match="no exported artifacts .* run 'edgecls export"):
        verify(bundle_copy)


def test_cli_json_and_usage_errors(exported_copy):
    r = runner.invoke(app, ["verify", str(exported_copy), "--runtime", "tflite", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["passed"] and [row["precision"] for row in res["rows"]] == ["fp32", "fp16", "int8"]
    for args, msg in ((["--runtime", "tensorrt"], "--runtime tensorrt: unknown runtime"),
                      (["--max-drop", "-1"], "--max-drop -1.0"),
                      (["--threads", "0"], "--threads 0"),
                      (["--device", "gpu"], "--device gpu: TensorFlow sees no GPU")):
        r = runner.invoke(app, ["verify", str(exported_copy), *args])
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.output


def test_compare_gates_on_known_arrays():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    same = compare(Parity("onnx", "fp32", "f"), ref.copy(), ref, labels, default_gates()["fp32"])
    assert same.passed and same.agreement == 1 and same.max_abs_diff == 0
    flipped = ref.copy()
    flipped[2] = [0.4, 0.6]  # one of four answers changes
    row = compare(Parity("onnx", "fp32", "f"), flipped, ref, labels, default_gates()["fp32"])
    assert row.agreement == 0.75 and row.max_abs_diff == pytest.approx(0.2)
    assert row.delta_points == pytest.approx(-25)
    assert len(row.failures) == 2 and "agreement 75.00%" in row.failures[0]
    q = compare(Parity("onnx", "int8", "f"), flipped, ref, labels, Gate(max_drop=1.0))  # point estimate
    assert len(q.failures) == 1 and q.failures[0].startswith("accuracy drop 25.00 points (lost 1, gained 0 of 4")
    assert compare(Parity("onnx", "int8", "f"), flipped, ref, labels, Gate(max_drop=30)).passed
    assert (q.lost, q.gained, q.changed, q.images) == (1, 0, 1, 4)


def _answers(n_labelled: int, n_extra: int, lost: int, changed_extra: int, seed: int = 0):
    """Keras probabilities that are right on every labelled image, and an artifact's that change `lost`
    labelled answers (to wrong ones) and `changed_extra` unlabelled ones."""
    rng = np.random.default_rng(seed)
    n = n_labelled + n_extra
    labels = rng.integers(0, 4, n_labelled)
    top = np.concatenate([labels, rng.integers(0, 4, n_extra)])
    ref = np.full((n, 4), 0.1)
    ref[np.arange(n), top] = 0.7
    other = ref.copy()
    flip = np.concatenate([rng.choice(n_labelled, lost, replace=False),
                           n_labelled + rng.choice(n_extra, changed_extra, replace=False)]).astype(int)
    other[flip] = np.roll(ref[flip], 1, axis=1)
    return other, ref, labels


def test_int8_gate_one_changed_answer_in_a_small_split_is_not_evidence():
    probs, ref, labels = _answers(40, 0, lost=1, changed_extra=0)  # the small-folder false failure
    row = compare(Parity("openvino", "int8", "f"), probs, ref, labels, default_gates()[Precision.int8])
    assert row.delta_points == pytest.approx(-2.5) and row.lost == 1
    assert row.passed, row.failures  # a point-estimate gate would fail it (2.5 > 1.0)
    assert row.drop_interval[0] < 1.0 < row.drop_interval[1]


def test_int8_gate_real_damage_fails_even_on_small_data():
    """3% of a few hundred usable images changed: the agreement interval lies below 99%."""
    probs, ref, labels = _answers(40, 160, lost=1, changed_extra=5)
    row = compare(Parity("openvino", "int8", "f"), probs, ref, labels, default_gates()[Precision.int8])
    assert row.changed == 6 and row.images == 200
    assert not row.passed and "top-1 agreement 97.00% (6 of 200 answers changed" in row.failures[0]
    # a large accuracy drop on the held-out images alone fails on its own too
    probs, ref, labels = _answers(300, 0, lost=15, changed_extra=0)
    row = compare(Parity("onnx", "int8", "f"), probs, ref, labels, Gate(max_drop=1.0, evidence=True))
    assert not row.passed and row.drop_interval[0] > 1.0 and "accuracy drop 5.00 points" in row.failures[0]


def test_float_gates_are_unchanged_point_estimates():
    probs, ref, labels = _answers(40, 0, lost=1, changed_extra=0)
    row = compare(Parity("onnx", "fp32", "f"), probs, ref, labels, default_gates()[Precision.fp32])
    assert not row.passed and "top-1 agreement 97.50% < 99.9%" in row.failures[0]


def test_threads_option_in_a_fresh_process(exported_copy):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgecls.cli", "verify", str(exported_copy), "--threads", "1",
                        "--runtime", "onnx", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["passed"]
    assert Bundle.open(exported_copy).manifest["verify"]["threads"] == 1


def test_calibration_from_another_split_is_refused(exported_copy):
    b = Bundle.open(exported_copy)
    test_ids = b.manifest["dataset"]["split"]["test"]
    for a in b.manifest["artifacts"]:
        if a["format"] == "onnx" and a["precision"] == "int8":
            a["calibration"]["ids"] = a["calibration"]["ids"][:-1] + [test_ids[0]]
    b.save()
    r = verify(exported_copy, runtime_names=["onnx"])
    (row,) = [x for x in r.rows if x.precision == "int8"]
    assert not row.passed and "calibration used 1 validation/held-out images" in row.failures[-1]


def test_one_flipped_answer_on_a_small_generated_folder_passes(tmp_path, monkeypatch):
    """The small-folder false failure: one changed answer among ~40 held-out images is not evidence."""
    from edgecls.export import ExportConfig, export
    from edgecls.runtimes.onnx import OnnxRunner
    from edgecls.train import TrainConfig, train

    from .conftest import make_folder

    root = make_folder(tmp_path / "photos", per_class=100, size=(16, 16))
    train(TrainConfig(data=str(root), arch="tiny", epochs=5, image_size=16, out=tmp_path / "b"))
    assert not export(tmp_path / "b", ExportConfig(formats=["onnx"], int8=True, calib_size=32)).failures
    real = OnnxRunner.predict
    flipped = []

    def one_flip(self, images):
        p = real(self, images)
        if self.precision == "int8" and not flipped:  # the first held-out image's answer changes
            p[0] = p[0][::-1]
            flipped.append(1)
        return p

    monkeypatch.setattr(OnnxRunner, "predict", one_flip)
    r = verify(tmp_path / "b", runtime_names=["onnx"])
    (row,) = [x for x in r.rows if x.precision == "int8"]
    assert row.changed == 1 and r.images == 40 and row.lost + row.gained == 1
    assert row.passed and r.passed, row.failures  # the old point-estimate gate failed this (2.5 > 1.0 points)
