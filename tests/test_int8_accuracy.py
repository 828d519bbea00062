"""Accuracy-aware int8 export (edgecls/export/accuracy.py) and `verify --explain` (edgecls/explain.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.files import file_entry
from edgecls.export import ExportConfig, export
from edgecls.export.accuracy import doubling_prefixes
from edgecls.runtimes.keras import load_bundle_model
from edgecls.verify.explain import FLOOR_DB, LayerError, flag

runner = CliRunner()


def with_outlier(path, factor: float = 1000.0) -> None:
    """Give the bundle's `tiny` model an activation outlier that changes nothing in float: conv channel 0
    (and its bias) x factor, the dense weights reading that channel / factor (ReLU and max-pooling
    commute with a positive scale). Per-tensor int8 then spends its whole range on that channel and
    rounds the other 15 to nothing: the default recipe of every format misses the gate."""
    b = Bundle.open(path)
    m = load_bundle_model(b)
    conv, dense = m.get_layer("conv"), m.get_layer("dense")
    k, bias = conv.get_weights()
    k[..., 0] *= factor
    bias[0] *= factor
    conv.set_weights([k, bias])
    w, db = dense.get_weights()
    w[0::k.shape[-1]] /= factor  # Flatten puts channels last: every 16th input row is channel 0
    dense.set_weights([w, db])
    m.save(str(b.path / "model.keras"))
    entry = file_entry(b.path / "model.keras", b.path)
    next(a for a in b.manifest["artifacts"] if a["file"] == "model.keras").update(entry)
    b.save()


def test_default_recipe_chosen_on_one_set_and_judged_on_another(exported_bundle):
    """Every int8 artifact records the selection set (half the validation split: images the model never trained
    on choose the recipe) and the judging set (the other half: it judges the kept file), disjoint, never a
    training or held-out image; verify leaves the selection set out when it judges the file."""
    from edgecls.export.accuracy import _ids_hash

    m = Bundle.open(exported_bundle).manifest
    int8 = [a for a in m["artifacts"] if a["precision"] == "int8"]
    assert {a["format"] for a in int8} == {"onnx", "tflite", "openvino"}
    split = m["dataset"]["split"]
    for a in int8:
        t = a["int8"]
        assert t["outcome"] in ("pass", "inconclusive") and t["recipe"] == "default" and t["float_layers"] == []
        assert t["attempts"][0]["recipe"] == "default" and t["attempts"][0]["outcome"] != "fail"
        chosen_on, judged_on = set(t["selected_on"]["ids"]), set(split["val"]) - set(t["selected_on"]["ids"])
        assert chosen_on < set(split["val"]) and len(chosen_on) == (len(split["val"]) + 1) // 2
        assert t["selected_on"]["images"] == len(chosen_on) == t["selection_evidence"]["images"]
        assert t["selected_on"]["ids_sha256"] == _ids_hash(sorted(chosen_on))
        assert t["judged_on"]["images"] == len(judged_on) == t["evidence"]["images"]
        assert t["judged_on"]["ids_sha256"] == _ids_hash(sorted(judged_on))
        assert not chosen_on & set(split["train"]) and not chosen_on & set(split["test"])
        assert t["cost"]["bytes_ratio"] == 1.0


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "openvino"])
def test_outlier_model_default_misses_gate_accuracy_aware_passes(bundle_copy, fmt):
    with_outlier(bundle_copy)
    result = export(bundle_copy, ExportConfig(formats=[fmt], int8=True, calib_size=64))
    assert not result.failures and result.passed
    art = next(a for a in result.artifacts if a["precision"] == "int8")
    t = art["int8"]
    first, last = t["attempts"][0], t["attempts"][-1]
    assert first["recipe"] == "default" and first["outcome"] != "pass" and first["drop_points"] > 5
    # ~100 selection images cannot *show* parity, but the kept recipe is no longer failing and changes fewer answers
    assert t["recipe"] != "default" and last["outcome"] != "fail" and t["float_layers"]
    assert last["changed"] < first["changed"]
    assert t["outcome"] != "fail" and t["evidence"]["drop_points"] < first["drop_points"]
    assert t["cost"]["default_bytes"] > 0 and t["cost"]["latency_ratio"] > 0
    assert 0 < t["cost"]["bytes_ratio"] != 1.0
    # the installed file is the accuracy-aware one, hashed as recorded
    assert Bundle.open(bundle_copy).checked_path(art["file"]).stat().st_size == art["bytes"]


def test_no_recipe_reaches_the_gate_best_kept_marked_failing_exit_1(bundle_copy, monkeypatch):
    from edgecls.export import onnx as onnx_export

    with_outlier(bundle_copy)
    monkeypatch.setattr(onnx_export, "accuracy_aware", lambda ctx, selection, workdir: iter(()))
    r = runner.invoke(app, ["export", str(bundle_copy), "--format", "onnx", "--int8", "--calib-size", "64"])
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.stdout and "no int8 recipe passed" in r.stderr
    assert f"see why: edgecls verify {bundle_copy} --explain" in r.stderr  # where to look next
    entry = Bundle.open(bundle_copy).entry("model.int8.onnx")
    assert entry["int8"]["outcome"] == "fail" and entry["int8"]["recipe"] == "default"


@pytest.mark.parametrize("value", ["-0.5", "100.5", "nan"])
def test_export_max_drop_out_of_range_exit_2_before_work(bundle_copy, value):
    r = runner.invoke(app, ["export", str(bundle_copy), "--int8", "--max-drop", value])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error: --max-drop") and "between 0 and 100" in r.stderr
    assert not (bundle_copy / "model.onnx").exists()


def test_doubling_prefixes_then_all():
    assert list(doubling_prefixes(list("abcdefg"))) == [["a"], ["a", "b"], list("abcd"), list("abcdefg")]
    assert list(doubling_prefixes([])) == []


def test_flags_mark_low_and_jumping_layers():
    rows = flag([LayerError("x", "", [4], 200.0), LayerError("a", "", [4], 45.0), LayerError("b", "", [4], 41.0),
                 LayerError("c", "", [4], 30.0), LayerError("d", "", [4], 12.0)])
    assert [r.flag for r in rows][:3] == ["", "", ""]  # no jump from an exact (unquantized) tensor
    rows = rows[1:]
    assert "11.0 dB below the previous" in rows[2].flag and f"below {FLOOR_DB:.0f} dB" == rows[3].flag


def test_verify_explain_json_has_layers_per_int8_artifact(exported_copy):
    r = runner.invoke(app, ["verify", str(exported_copy), "--explain", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["rows"] and {e["format"] for e in out["explain"]} == {"onnx", "tflite", "openvino"}
    for e in out["explain"]:
        assert e["precision"] == "int8" and e["images"] > 0 and len(e["layers"]) >= 3, e
        assert e["measure"] in ("cumulative", "local") and e["tool"]
        for layer in e["layers"]:
            assert np.isfinite(layer["sqnr_db"]) and isinstance(layer["flag"], str)
        expected = flag([LayerError(x["layer"], "", None, x["sqnr_db"]) for x in e["layers"]])
        assert [x.flag for x in expected] == [x["flag"] for x in e["layers"]]


def test_verify_explain_table_after_accuracy_aware_export(bundle_copy):
    with_outlier(bundle_copy)
    assert export(bundle_copy, ExportConfig(formats=["onnx"], int8=True, calib_size=64)).passed
    r = runner.invoke(app, ["verify", str(bundle_copy), "--explain"])
    assert r.exit_code == 0, r.output
    assert "per-layer SQNR vs float" in r.stdout and "model.int8.onnx" in r.stdout


def test_verify_explain_without_int8_is_exit_2(bundle_copy):
    assert export(bundle_copy, ExportConfig(formats=["onnx"])).passed
    r = runner.invoke(app, ["verify", str(bundle_copy), "--explain"])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error: ")
    assert "--explain needs an int8 artifact" in r.stderr
    assert "verify" not in Bundle.open(bundle_copy).manifest  # nothing ran


def test_explain_says_when_tensorflow_is_missing(exported_copy, monkeypatch):
    from edgecls import runtimes
    from edgecls.core.names import Runtime
    from edgecls.verify.explain import explain

    monkeypatch.setattr(runtimes.runner_class(Runtime.keras), "installed", classmethod(lambda cls: False))
    (e,) = explain(exported_copy, "tflite")
    assert e.layers == [] and "TensorFlow is not installed" in e.note
