"""A bundle from a stranger cannot touch anything outside it (issue #29).

Each test builds the hostile bundle itself (a copy of the tiny session bundle, changed the way an attacker
would: the manifest's hash updated where the attack needs the file to pass its check) and shows that the
attack ends in a clean refusal (exit 2, one `error:` line naming the entry) or a bounded, correct run, and
that nothing outside the bundle changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import JOURNAL, Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import LOCK, sha256

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *words, code=2) -> str:
    """The run ended in exit `code` with one `error:` line holding `words`, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle: Path, m: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(m, indent=1))


def rehash(m: dict, file: str, path: Path) -> None:
    """What an attacker does after changing a file: record its new hash, so the hash check passes."""
    for key in ("artifacts", "files"):
        for e in m.get(key, []):
            if e["file"] == file:
                e["sha256"], e["bytes"] = sha256(path), path.stat().st_size
    if (m.get("reference") or {}).get("file") == file:
        m["reference"]["sha256"] = sha256(path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the bundle with a file an attacker would like to overwrite, move or read."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim.txt").write_text("the user's own file\n")
    (d / "secret.txt").write_text("private\n")
    return d


# -- the commit journal ---------------------------------------------------------------------------


def _journal(bundle: Path, renames: list) -> None:
    (bundle / JOURNAL).write_text(json.dumps({"renames": renames, "manifest": (bundle / "manifest.json").read_text()}))


@pytest.mark.parametrize("attack", ["dst-dotdot", "dst-absolute", "src-outside", "src-symlink", "dst-unrecorded",
                                    "dst-manifest", "stage-symlink"])
def test_a_journal_reaching_outside_is_refused_and_nothing_changes(bundle_copy, outside, attack):
    b = bundle_copy
    stage = b / ".stage-1@abcdef-x"
    stage.mkdir()
    (stage / "history.json").write_text('{"evil": 1}')
    victim = outside / "victim.txt"
    rel_victim = os.path.relpath(victim, b)
    renames = {"dst-dotdot": [[".stage-1@abcdef-x/history.json", rel_victim]],
               "dst-absolute": [[".stage-1@abcdef-x/history.json", str(victim)]],
               "src-outside": [[os.path.relpath(outside / "secret.txt", b), "history.json"]],
               "src-symlink": [[".stage-1@abcdef-x/link", "history.json"]],
               "dst-unrecorded": [[".stage-1@abcdef-x/history.json", "bin/run.sh"]],
               "dst-manifest": [[".stage-1@abcdef-x/history.json", "manifest.json"]],
               "stage-symlink": [[".stage-2@abcdef-y/secret.txt", "history.json"]]}[attack]
    _journal(b, renames)
    (stage / "link").symlink_to(outside / "secret.txt")
    (b / ".stage-2@abcdef-y").symlink_to(outside, target_is_directory=True)
    before, inside = snapshot(outside), snapshot(b)
    line = refused(run("info", b), JOURNAL)
    assert "refused, nothing was changed" in line
    after = {k: v for k, v in snapshot(b).items() if k != LOCK}  # the lock file may be created
    assert snapshot(outside) == before and after == inside  # nothing moved, written or deleted
    with pytest.raises(EdgeclsError, match="commit journal"):
        Bundle.open(b)
    assert snapshot(outside) == before


def test_a_journal_of_this_bundle_is_still_finished(bundle_copy):
    """A killed writer's own journal (staged file -> a file its manifest records) is replayed as before."""
    b = bundle_copy
    stage = b / ".stage-1@abcdef-x"
    stage.mkdir()
    (stage / "history.json").write_text('{"new": true}')
    m = manifest(b)
    rehash(m, "history.json", stage / "history.json")
    (b / JOURNAL).write_text(json.dumps({"renames": [[".stage-1@abcdef-x/history.json", "history.json"]],
                                         "manifest": json.dumps(m)}))
    assert run("info", b).exit_code == 0
    assert json.loads((b / "history.json").read_text()) == {"new": True}
    assert not (b / JOURNAL).exists() and not stage.exists()


# -- the lock ------------------------------------------------------------------------------------


def test_a_symlinked_lock_is_refused_and_its_target_kept(bundle_copy, outside):
    victim = outside / "victim.txt"
    (bundle_copy / LOCK).symlink_to(victim)
    before = victim.read_bytes()
    refused(run("info", bundle_copy), LOCK, "symbolic link")
    with pytest.raises(EdgeclsError, match="symbolic link"):
        Bundle.open(bundle_copy).put("notes.txt", "x")
    assert victim.read_bytes() == before


def test_filelock_is_one_that_never_follows_a_symlink():
    from importlib.metadata import version

    from packaging.version import Version

    assert Version(version("filelock")) >= Version("3.20.1")
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"filelock>=3.20.1"' in text


# -- the manifest itself --------------------------------------------------------------------------


def test_deeply_nested_or_huge_manifests_are_refused_cleanly(bundle_copy):
    mpath = bundle_copy / "manifest.json"
    text = mpath.read_text().rstrip()
    assert text.endswith("}")
    mpath.write_text(text[:-1] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}\n")  # RecursionError before
    refused(run("info", bundle_copy), "manifest.json", "nested")
    with open(mpath, "w") as f:
        f.write('{"pad": "' + "x" * (17 << 20) + '"}')
    refused(run("info", bundle_copy), "manifest.json", "over the limit")


@pytest.mark.parametrize("shape", [[None, 60000, 60000, 3], [None, 16, 16, 4], [None, 16, 16], [None, 0, 16, 3],
                                   [None, 16, 16, 3, 1]])
def test_an_unbounded_input_shape_is_refused_before_anything_is_allocated(bundle_copy, shape):
    m = manifest(bundle_copy)
    m["input"]["shape"] = shape
    write_manifest(bundle_copy, m)
    refused(run("info", bundle_copy), "manifest.json", "input/shape")


def test_manifest_strings_cannot_fake_output(bundle_copy):
    """Rich markup and terminal escapes in a label or name print as written (no green "ok", no hyperlink)."""
    m = manifest(bundle_copy)
    fake = "[green]all files ok[/green]\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\\x1b[2J"
    m["architecture"]["name"] = fake
    m["dataset"]["name"] = fake
    write_manifest(bundle_copy, m)
    r = run("info", bundle_copy)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "[green]all files ok[/green]" in r.stdout


# -- what a runtime loads ------------------------------------------------------------------------


def test_onnx_external_data_is_refused(exported_copy):
    import onnx

    b = exported_copy
    model = onnx.load(str(b / "model.onnx"))
    onnx.save_model(model, str(b / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=1024)
    assert (b / "weights.data").is_file()
    m = manifest(b)
    rehash(m, "model.onnx", b / "model.onnx")
    write_manifest(b, m)
    r = run("info", b)
    assert r.exit_code == 1 and "ONNX external data" in r.output and "weights.data" in r.output, r.output
    from edgecls.runtime import Classifier

    with pytest.raises(EdgeclsError, match="external data"):
        Classifier.open(b, format="onnx")


def test_the_onnx_runtime_loads_only_the_checked_bytes(exported_copy, monkeypatch):
    """Even unseen by the manifest check (no `onnx` package on a device), onnxruntime gets the file's bytes,
    from which no external data can be resolved."""
    import onnx

    from edgecls.runtimes.onnx import OnnxRunner

    b = exported_copy
    onnx.save_model(onnx.load(str(b / "model.onnx")), str(b / "ext.onnx"), save_as_external_data=True,
                    location="ext.data", size_threshold=1024)
    with pytest.raises(EdgeclsError, match="onnxruntime cannot load it"):
        OnnxRunner().load(b / "ext.onnx")


def test_an_input_shape_other_than_the_models_is_refused(exported_copy, tmp_path):
    b = exported_copy
    m = manifest(b)
    m["input"]["shape"] = [None, 8, 8, 3]  # the model takes 16 x 16 x 3
    write_manifest(b, m)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    refused(run("predict", img, "--bundle", b, "--format", "onnx"), "model.onnx", "manifest does not describe")


def test_fewer_labels_than_outputs_is_refused(exported_copy, tmp_path):
    b = exported_copy
    m = manifest(b)
    m["labels"] = m["labels"][:2]
    write_manifest(b, m)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    refused(run("predict", img, "--bundle", b, "--format", "onnx"), "2 labels")


def test_a_malformed_tflite_file_is_refused_cleanly(exported_copy, tmp_path):
    b = exported_copy
    m = manifest(b)
    art = next(a for a in m["artifacts"] if a["format"] == "tflite" and a["precision"] == "fp32")
    path = b / art["file"]
    data = bytearray(path.read_bytes())
    data[4:8] = b"TFL3"
    for i in range(8, min(len(data), 400), 7):
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    rehash(m, art["file"], path)
    write_manifest(b, m)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    refused(run("predict", img, "--bundle", b, "--format", "tflite"), art["file"])


def test_a_tflite_file_with_shared_offsets_is_refused_quickly(tmp_path):
    """Thousands of subgraphs naming one subgraph's tables: refused from the lazy count, not unpacked."""
    import time

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgecls.apps.web.fixbatch import fixed_batch

    bld = flatbuffers.Builder(1024)
    schema.TensorStartShapeSignatureVector(bld, 4)
    for v in (3, 16, 16, -1):
        bld.PrependInt32(v)
    sig = bld.EndVector()
    schema.TensorStart(bld)
    schema.TensorAddShapeSignature(bld, sig)
    tensor = schema.TensorEnd(bld)
    n = 1000
    schema.SubGraphStartTensorsVector(bld, n)
    for _ in range(n):
        bld.PrependUOffsetTRelative(tensor)
    tensors = bld.EndVector()
    schema.SubGraphStart(bld)
    schema.SubGraphAddTensors(bld, tensors)
    graph = schema.SubGraphEnd(bld)
    schema.ModelStartSubgraphsVector(bld, n)
    for _ in range(n):
        bld.PrependUOffsetTRelative(graph)
    graphs = bld.EndVector()
    schema.ModelStart(bld)
    schema.ModelAddVersion(bld, 3)
    schema.ModelAddSubgraphs(bld, graphs)
    bld.Finish(schema.ModelEnd(bld), file_identifier=b"TFL3")
    src = tmp_path / "bomb.tflite"
    src.write_bytes(bytes(bld.Output()))
    assert src.stat().st_size < 20_000  # a million tensors once unpacked
    t0 = time.perf_counter()
    with pytest.raises(EdgeclsError, match="shared offsets"):
        fixed_batch(src, tmp_path / "out.tflite")
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out.tflite").exists()


# -- reference.npz ---------------------------------------------------------------------------------


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _npy_header_only(shape, dtype="<u1") -> bytes:
    """An .npy member whose header declares `shape` but holds a few bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 16


def _offline_reference(b: Path, data: bytes) -> None:
    """Put `data` as reference.npz, rehash it, and point the dataset at a folder that is not here, so
    `verify` reads the reference."""
    (b / "reference.npz").write_bytes(data)
    m = manifest(b)
    rehash(m, "reference.npz", b / "reference.npz")
    m["dataset"]["source"] = {"name": "folder", "root": "not-here", "image_size": 16}
    write_manifest(b, m)


def _reference_cases(b: Path) -> dict[str, bytes]:
    with np.load(b / "reference.npz") as z:
        good = {k: z[k] for k in z.files}
    n = len(good["labels"])
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", _npy_header_only((n, 16, 16, 3)) + b"\0" * (300 << 20))  # 300 MB of zeros
    header = io.BytesIO()
    with zipfile.ZipFile(header, "w") as z:
        z.writestr("images.npy", _npy_header_only((10**6, 10**6, 16, 3)))
        z.writestr("labels.npy", _npy_header_only((n,), "<i8"))
        z.writestr("keras_probabilities.npy", _npy_header_only((n, 4), "<f4"))
    return {"declared 10^12 elements": header.getvalue(),
            "zip bomb": bomb.getvalue(),
            "string labels": _npz(**(good | {"labels": np.array(["a"] * n)})),
            "labels out of range": _npz(**(good | {"labels": good["labels"] + 100})),
            "negative labels": _npz(**(good | {"labels": good["labels"] - 100})),
            "fewer labels": _npz(**(good | {"labels": good["labels"][:-1]})),
            "wrong image shape": _npz(**(good | {"images": good["images"][:, :8]})),
            "pickled objects": _npz(**(good | {"extra": np.array([{"a": 1}], dtype=object)})),
            "no images": _npz(labels=good["labels"], keras_probabilities=good["keras_probabilities"])}


def test_hostile_reference_data_is_refused_from_its_headers(exported_copy):
    import tracemalloc

    from edgecls.export import reference

    b = exported_copy
    for name, data in _reference_cases(b).items():
        _offline_reference(b, data)
        tracemalloc.start()
        with pytest.raises(EdgeclsError, match="reference"):
            reference.load(Bundle.open(b))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 64 << 20, (name, peak)
    r = run("verify", b, "--runtime", "onnx")
    refused(r, "reference.npz")


def test_reference_data_with_new_fields_passes_the_reader(exported_copy):
    """The one reader checks what it knows and passes the rest through (new fields of later versions)."""
    from edgecls.export import reference

    b = exported_copy
    with np.load(b / "reference.npz") as z:
        good = {k: z[k] for k in z.files}
    _offline_reference(b, _npz(**good, ids=np.arange(len(good["labels"]))))
    arrays = reference.read_npz(b / "reference.npz", {"images": ("u", (None, 16, 16, 3))}, max_bytes=64 << 20)
    assert set(arrays) == set(good) | {"ids"} and {"images", "labels", "keras_probabilities"} <= set(arrays)
    assert len(reference.load(Bundle.open(b)).images) == len(good["images"])


# -- dataset ids ---------------------------------------------------------------------------------


def _folder_bundle(b: Path, root: str, ids: list[str], classes: list[str]) -> None:
    m = manifest(b)
    m["dataset"]["source"] = {"name": "folder", "root": root, "image_size": 16}
    m["dataset"]["classes"] = classes
    m["dataset"]["split"].update({"test": ids})
    write_manifest(b, m)


def test_dataset_ids_cannot_name_a_file_elsewhere(exported_copy, tmp_path):
    """A stranger's ids ('..', absolute, a symlinked class folder) never make golden/app copy a file from
    elsewhere; an absolute recorded root is refused unless --data-dir says where the data is."""
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        (data / c).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 40, np.uint8)).save(data / c / "0.png")
    private = tmp_path / "private" / "cat"
    private.mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(private / "photo.png")
    (data / "dog" / "link").symlink_to(private, target_is_directory=True)
    b = exported_copy
    rel_root = os.path.relpath(data, b)
    out = tmp_path / "golden"
    for root, ids, words in [
        (rel_root, ["../private/cat/photo.png", "dog/0.png"], ["'..'"]),
        (rel_root, [str(private / "photo.png"), "dog/0.png"], ["absolute"]),
        (rel_root, ["dog/link/photo.png", "cat/0.png"], ["symbolic link"]),
        (rel_root, ["private/cat/photo.png", "cat/0.png"], ["not one of the bundle's classes"]),
        ("/", [str(private / "photo.png")[1:], "cat/0.png"], ["absolute path", "--data-dir"]),
    ]:
        _folder_bundle(b, root, ids, ["cat", "dog"])
        refused(run("golden", b, "--out", out, "--count", "2"), *words)
        assert not out.exists()
    _folder_bundle(b, "/", ["cat/0.png", "dog/0.png"], ["cat", "dog"])  # absolute root, but the user says where
    r = run("golden", b, "--out", out, "--count", "2", "--data-dir", data)
    assert r.exit_code == 0, r.output


# -- the web app ---------------------------------------------------------------------------------


def test_the_app_build_never_writes_through_an_unhashed_golden_index(exported_copy, tmp_path, monkeypatch):
    """golden/golden.json is not in the manifest: its '..' entries through a deep in-bundle symlink must not
    make `edgecls app` copy bundle bytes over a file outside."""
    from edgecls.apps.web import npm

    monkeypatch.setattr(npm, "missing_npm", lambda: None)
    monkeypatch.setattr(npm, "copy_runtime", lambda fmt, stage: [])
    b = exported_copy
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    g = b / "golden"
    (g / "a" / "b" / "c").mkdir(parents=True)
    (g / "d1").symlink_to(g / "a" / "b" / "c", target_is_directory=True)
    (g / "victim.txt").write_text("attacker bytes\n")
    rel = "d1/../../../victim.txt"  # read: golden/victim.txt; written: <stage>/golden/d1/../../../ = tmp_path
    digest = hashlib.sha256(b"attacker bytes\n").hexdigest()
    art = next(a for a in manifest(b)["artifacts"] if a["format"] == "onnx" and a["precision"] == "fp32")
    (g / "golden.json").write_text(json.dumps({
        "images": [{"file": {"file": rel, "sha256": digest}, "input": {"file": rel, "sha256": digest}}],
        "outputs": [{"artifact": art["file"], "artifact_sha256": art["sha256"]}]}))
    refused(run("app", b, "--out", tmp_path / "app", "--format", "onnx"), "golden.json", "outside the golden folder")
    assert victim.read_text() == "the user's own file\n" and not (tmp_path / "app").exists()


def test_the_app_says_what_it_may_load(tmp_path):
    """A Content-Security-Policy in index.html and from the serve helper: own files and wasm only."""
    import urllib.request

    from edgecls.apps.web.build import csp
    from edgecls.apps.web.serve import AppServer

    policy = csp('{"imports": {}}')
    assert "default-src 'none'" in policy and "script-src 'self' 'wasm-unsafe-eval' 'sha256-" in policy
    assert "object-src 'none'" in policy and "base-uri 'none'" in policy and "*" not in policy
    static = (Path(__file__).parent.parent / "edgecls" / "apps" / "web" / "static" / "index.html").read_text()
    assert '<meta http-equiv="Content-Security-Policy" content="{{csp}}">' in static
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "config.json").write_text(json.dumps({"csp": policy}))
    with AppServer(tmp_path, lifetime=30) as s:
        with urllib.request.urlopen(s.url + "index.html") as resp:
            assert resp.headers["Content-Security-Policy"] == policy
    (tmp_path / "config.json").write_text(json.dumps({"csp": "default-src *"}))  # a folder cannot loosen it
    with AppServer(tmp_path, lifetime=30) as s:
        with urllib.request.urlopen(s.url + "index.html") as resp:
            assert resp.headers["Content-Security-Policy"] == csp()


def test_report_markdown_shows_labels_as_text(bundle_copy):
    from edgecls.report.document import write_report

    m = manifest(bundle_copy)
    evil = '<img src=x onerror="alert(1)">'
    m["labels"][0] = m["dataset"]["classes"][0] = m["metrics"]["test"]["per_class"][0]["label"] = evil
    m["name"] = "tiny" + evil
    write_manifest(bundle_copy, m)
    write_report(bundle_copy)
    md = (bundle_copy / "report.md").read_text()
    assert "<img" not in md and md.count("&lt;img src=x") == 2


# -- images and weights --------------------------------------------------------------------------


def test_16_bit_images_are_scaled_in_pillow(tmp_path):
    """A 16-bit PNG is scaled to 8 bits without a float64 copy of its pixels (27 bytes a pixel before)."""
    import tracemalloc

    from edgecls.core.images import load_image

    side = 1500
    arr = (np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    tracemalloc.start()
    out = load_image(tmp_path / "deep.png", (side, side), 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    expect = np.clip(np.rint(arr.astype(np.float64) * (255 / 65535)), 0, 255).astype(np.uint8)
    assert np.abs(out[..., 0].astype(int) - expect).max() <= 1
    assert peak < 4 * side * side, peak  # the uint8 result and a little, never 8 bytes a pixel


def test_a_refused_weights_file_does_not_change_how_the_next_is_read(tmp_path):
    """A crafted .pth that mutates the storage-type object it is given (pickle BUILD) and is refused leaves
    no trace: the next, legitimate file reads as it would alone."""
    import pickle

    from edgecls.train.weights import WeightsError, read_state_dict

    from .legacy_pth import MAGIC_NUMBER, _Storage, _Tensor, write_legacy

    good = write_legacy(tmp_path / "good.pth", {"w": _Tensor(_Storage("0", np.arange(6, dtype="float32")), (2, 3))})
    # magic, protocol, sys info, then an object that sets FloatStorage's name to DoubleStorage (BUILD)
    evil = (pickle.dumps(MAGIC_NUMBER, 2) + pickle.dumps(1001, 2) + pickle.dumps({"little_endian": True}, 2)
            + b"\x80\x02ctorch\nFloatStorage\n}X\x04\x00\x00\x00nameX\r\x00\x00\x00DoubleStoragesb.")
    (tmp_path / "evil.pth").write_bytes(evil)
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "evil.pth")
    assert read_state_dict(good)["w"].dtype == np.float32
    np.testing.assert_array_equal(read_state_dict(good)["w"], np.arange(6, dtype="float32").reshape(2, 3))


def test_zero_strides_cannot_claim_gigabytes(tmp_path):
    from edgecls.train.weights import WeightsError, read_state_dict

    from .legacy_pth import _Storage, _Tensor, write_legacy

    s = _Storage("0", np.arange(1, dtype="float32"))
    path = write_legacy(tmp_path / "w.pth", {"w": _Tensor(s, (1 << 15, 1 << 15), stride=(0, 0))})
    assert path.stat().st_size < 1000
    with pytest.raises(WeightsError, match="zero or overlapping strides"):
        read_state_dict(path)


# -- readers and a concurrent writer -------------------------------------------------------------


def test_a_reader_never_reports_a_commit_made_after_it_opened_as_damage(bundle_copy):
    """verify during export, info during a commit: the reader checks under the lock, and a file another
    command committed since it read the manifest is taken from a fresh snapshot, not called tampered."""
    reader = Bundle.open(bundle_copy)
    writer = Bundle.open(bundle_copy)
    writer.put("history.json", '{"rewritten": true}')
    assert reader.checked_path("history.json") == bundle_copy / "history.json"
    assert reader.entry("history.json")["sha256"] == sha256(bundle_copy / "history.json")
    later = Bundle.open(bundle_copy)
    Bundle.open(bundle_copy).put("history.json", '{"again": true}')
    assert later.info().intact
    (bundle_copy / "history.json").write_text("tampered")  # a real change is still caught
    with pytest.raises(EdgeclsError, match="does not match the manifest"):
        Bundle.open(bundle_copy).checked_path("history.json")
    assert not Bundle.open(bundle_copy).info().intact


def test_the_lock_is_reentrant_in_one_thread(tmp_path):
    """A reader's check under the lock inside a writer's block (one thread) must not deadlock on itself."""
    from edgecls.core.files import manifest_lock

    (tmp_path / "b").mkdir()
    with manifest_lock(tmp_path / "b"):
        with manifest_lock(tmp_path / ".." / tmp_path.name / "b"):  # another spelling of the same folder
            pass
    assert (tmp_path / "b" / LOCK).is_file()


def test_the_decision_prints_a_bundles_file_names_as_written(monkeypatch):
    """A file name, a reason or an ignored line from a stranger's manifest cannot restyle the verdict."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from edgecls.report import console

    buf = io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=buf, width=300, force_terminal=True))
    chosen = SimpleNamespace(file="[bold green]ship model.onnx[/] x.onnx", runtime="onnx", precision="fp32",
                             outcome="pass", accuracy=None, delta_points=0.0, p50_ci_ms=None, tail_ms=None,
                             p50_ms=1.0, size_kb=1.0)
    other = SimpleNamespace(file="[red]y.tflite[/]", runtime="tflite", precision="int8", reason="[green]fine[/]")
    d = SimpleNamespace(constraints={"percentile": "p90", "for_batch": 1}, chosen=chosen, others=[other],
                        why="the fastest", level="", ignored=["[green]all files ok[/]"], ruled_out_by="")
    console.render_decision(d)
    text = buf.getvalue()
    assert "[bold green]ship model.onnx[/] x.onnx" in text and "[red]y.tflite[/]" in text
    assert "[green]fine[/]" in text and "[green]all files ok[/]" in text
