"""The manifest: its schema, its documentation, concurrent writers, portable paths, the staged swap."""

import json
import multiprocessing
import re
from pathlib import Path

import pytest

from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import exchange, staged_bundle
from edgecls.core.manifest import SCHEMA, describe
from edgecls.runtimes.keras import load_bundle_model
from edgecls.train import recorded


def test_docs_carry_the_schema_field_by_field():
    doc = (Path(__file__).parent.parent / "docs" / "bundle.md").read_text()
    assert describe() in doc, "docs/bundle.md is out of date: paste edgecls.core.manifest.describe() into it"
    assert "| `training.plan.total_steps` | integer |" in describe()
    assert "| `artifacts[].sha256` | string | yes |" in describe()


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(schema=99), "unsupported manifest schema 99"),
    (lambda m: m.pop("labels"), "invalid manifest at (top level): 'labels' is a required property"),
    (lambda m: m["artifacts"][0].update(sha256="xyz"), "invalid manifest at artifacts/0/sha256"),
    (lambda m: m["input"].update(shape="16x16"), "invalid manifest at input/shape"),
])
def test_a_manifest_off_its_schema_is_refused_by_name(bundle_copy, change, message):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))
    with pytest.raises(EdgeclsError, match=rf"manifest\.json: .*{message.replace('(', '.').replace(')', '.')}"):
        Bundle.open(bundle_copy)
    assert SCHEMA == 4


def test_schema_2_bundles_are_still_read(bundle_copy):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps(m | {"schema": 2}))
    assert Bundle.open(bundle_copy).split_ids("test") == m["dataset"]["split"]["test"]


def test_many_split_ids_go_to_a_hashed_file(tmp_path, monkeypatch):
    import edgecls.train.fit as T
    from edgecls.train import output
    from edgecls.verify.parity import agreement_images

    monkeypatch.setattr(output, "INLINE_IDS", 100)  # synthetic has 240 images
    r = T.train(T.TrainConfig(data="synthetic", arch="tiny", epochs=1, out=tmp_path / "b"))
    b = Bundle.open(r.bundle)
    split = b.manifest["dataset"]["split"]
    assert split["ids_file"] == "split.json" and "test" not in split
    assert b.entry("split.json")["sha256"]
    assert len(b.split_ids("test")) == 48 and len(recorded.heldout(b)[0]) == 48
    assert len(agreement_images(b)) == len(b.split_ids("val"))  # never-trained images beside the held-out ones
    # every stage reads the ids from the file too: int8 export (its judging set), verify, --explain
    from edgecls.export import ExportConfig, export
    from edgecls.verify.explain import explain
    from edgecls.verify.parity import verify

    assert not export(r.bundle, ExportConfig(formats=["onnx", "tflite"], int8=True, calib_size=32)).failures
    v = verify(r.bundle)
    assert v.heldout_images == 48 and v.images == 48 + len(b.split_ids("val"))
    assert not any("calibration" in f for row in v.rows for f in row.failures)
    explained = explain(r.bundle)
    assert {e.format for e in explained} == {"onnx", "tflite"} and all(e.layers and not e.note for e in explained)
    (r.bundle / "split.json").write_text('{"train": [], "val": [], "test": [0]}')
    with pytest.raises(EdgeclsError, match=r"split\.json: sha256 .* does not match"):
        recorded.heldout(Bundle.open(r.bundle))


def test_no_absolute_path_of_the_training_machine(tmp_path):
    from edgecls.train.fit import TrainConfig, train

    from .conftest import make_folder

    root = make_folder(tmp_path / "photos" / "pets", per_class=10)
    out = tmp_path / "models" / "pets"
    train(TrainConfig(data=str(root), arch="tiny", epochs=1, image_size=12, out=out))
    text = (out / "manifest.json").read_text()
    assert str(tmp_path) not in text
    m = json.loads(text)
    assert m["dataset"]["source"]["root"] == "../../photos/pets"
    # the bundle and its images moved together: still found
    (tmp_path / "elsewhere").mkdir()
    for name in ("photos", "models"):
        (tmp_path / name).rename(tmp_path / "elsewhere" / name)
    x, y = recorded.heldout(Bundle.open(tmp_path / "elsewhere" / "models" / "pets"))
    assert len(x) == len(m["dataset"]["split"]["test"])


def _write_section(args):
    path, key, n = args
    for i in range(n):
        b = Bundle.open(path)
        b.manifest[key] = {"at": str(i), "environment": {}, "rows": [], "images": i, "passed": True}
        b.save()


def test_two_writers_at_once_keep_both_results(bundle_copy):
    """verify and bench writing one bundle at the same time: read-modify-write under the lock."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_write_section, [(bundle_copy, "verify", 15), (bundle_copy, "bench", 15)])
    m = Bundle.open(bundle_copy).manifest
    assert m["verify"]["images"] == 14 and m["bench"]["at"] == "14"


def test_merge_keeps_the_other_writers_artifacts(bundle_copy):
    a, b = Bundle.open(bundle_copy), Bundle.open(bundle_copy)
    a.record({"format": "onnx", "precision": "fp32", "file": "a.onnx", "bytes": 1, "sha256": "0" * 64})
    a.save()
    b.record({"format": "tflite", "precision": "fp32", "file": "b.tflite", "bytes": 1, "sha256": "1" * 64})
    b.save()  # b read the manifest before a saved: a's artifact must survive
    files = {e["file"] for e in Bundle.open(bundle_copy).manifest["artifacts"]}
    assert {"a.onnx", "b.tflite", "model.keras"} <= files


def test_staged_swap_exchanges_in_one_step(tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    other = tmp_path / "other"
    other.mkdir()
    assert exchange(dest, other)  # this Linux machine swaps atomically: the folder is never missing
    assert (other / "old.txt").exists() and not (dest / "old.txt").exists()
    with staged_bundle(dest) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "other"]  # nothing left behind


# -- a bundle is a trust boundary: every path it names stays inside it ------------------------------------


def _tamper(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def _entry_for(path: Path) -> dict:
    from edgecls.core.files import sha256

    return {"bytes": path.stat().st_size, "sha256": sha256(path)}


@pytest.mark.parametrize("where,change", [
    ("artifacts[0].file", lambda m, out: m["artifacts"][0].update(file="../outside.bin", **_entry_for(out))),
    ("artifacts[0].file", lambda m, out: m["artifacts"][0].update(file=str(out), **_entry_for(out))),
    ("files[0].file", lambda m, out: m["files"][0].update(file="../outside.bin", **_entry_for(out))),
    ("reference.file", lambda m, out: m.update(reference={"file": "../outside.bin", "images": 1, "ids": [0],
                                                          "sha256": "0" * 64, "selection": "x",
                                                          "keras_accuracy": 1.0})),
    ("dataset.split.ids_file", lambda m, out: m["dataset"]["split"].update(ids_file="../outside.bin")),
])
def test_a_path_leaving_the_bundle_is_refused_by_name(bundle_copy, where, change):
    """A manifest naming a file outside the bundle (.., absolute) is refused, even when the outside file's
    hash matches: `info` and `verify` never load or judge it."""
    from typer.testing import CliRunner

    from edgecls.cli import app

    outside = bundle_copy.parent / "outside.bin"
    outside.write_bytes(b"not part of the bundle")
    _tamper(bundle_copy, lambda m: change(m, outside))
    with pytest.raises(EdgeclsError, match=rf"manifest\.json: {re.escape(where)} .* is outside the bundle"):
        Bundle.open(bundle_copy)
    for command in ("info", "verify"):
        r = CliRunner().invoke(app, [command, str(bundle_copy)])
        assert r.exit_code == 2, r.output
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0], r.stderr
        assert "Traceback" not in r.output and "ok" not in r.stdout


def test_a_symlink_leaving_the_bundle_is_refused(bundle_copy):
    import os

    outside = bundle_copy.parent / "history-elsewhere.json"
    (bundle_copy / "history.json").rename(outside)
    os.symlink(outside, bundle_copy / "history.json")  # same content, so the hash matches
    with pytest.raises(EdgeclsError, match=r"files\[0\]\.file 'history\.json' is outside the bundle \(a symbolic"):
        Bundle.open(bundle_copy)
    (bundle_copy / "history.json").unlink()
    (bundle_copy / "inner.json").write_bytes(outside.read_bytes())
    os.symlink("inner.json", bundle_copy / "history.json")  # a link that stays inside is fine
    assert Bundle.open(bundle_copy).info().intact


def test_keras_model_is_loaded_in_safe_mode(bundle_copy):
    """A model.keras carrying a Lambda (arbitrary Python in the archive) is refused, hash or not."""
    from edgecls.core._tf import keras
    from edgecls.core.files import sha256

    k = keras()
    inp = k.Input((16, 16, 3))
    model = k.Model(inp, k.layers.Lambda(lambda x: x * 2)(inp))
    model.save(bundle_copy / "model.keras")
    _tamper(bundle_copy, lambda m: m["artifacts"][0].update(sha256=sha256(bundle_copy / "model.keras"),
                                                            bytes=(bundle_copy / "model.keras").stat().st_size))
    with pytest.raises(EdgeclsError, match=r"model\.keras: cannot load Keras model .*(safe|unsafe)"):
        load_bundle_model(Bundle.open(bundle_copy))


def test_info_is_a_scriptable_integrity_check(bundle_copy):
    """A byte appended to a recorded file: exit 1, naming it; --json carries the verdict per file."""
    from typer.testing import CliRunner

    from edgecls.cli import app

    r = CliRunner().invoke(app, ["info", str(bundle_copy), "--json"])
    assert r.exit_code == 0, r.output
    integrity = json.loads(r.stdout)["integrity"]
    assert integrity["intact"] and {f["file"] for f in integrity["files"]} >= {"model.keras", "history.json"}
    with open(bundle_copy / "history.json", "ab") as f:
        f.write(b"\n")
    r = CliRunner().invoke(app, ["info", str(bundle_copy), "--json"])
    assert r.exit_code == 1
    verdicts = {f["file"]: f for f in json.loads(r.stdout)["integrity"]["files"]}
    assert not verdicts["history.json"]["ok"] and "does not match" in verdicts["history.json"]["problem"]
    assert verdicts["model.keras"]["ok"]
    r = CliRunner().invoke(app, ["info", str(bundle_copy)])
    assert r.exit_code == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "history.json" in lines[0]
    assert "model.keras" not in lines[0]
