"""Bounded, seeded fuzzing of what a bundle from a stranger feeds edgecls's readers: random mutations of
manifest.json (through `edgecls info` and `edgecls predict`) and of reference.npz (through `edgecls verify`
on the reference data). Every run ends in exit 0, 1 or 2 — never a traceback — and nothing outside the
bundle changes (a sibling folder, which the mutations name, is snapshotted before and after).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.files import sha256

runner = CliRunner()
MANIFEST_RUNS = 60
REFERENCE_RUNS = 30


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def clean_exit(r, what: str) -> None:
    assert r.exit_code in (0, 1, 2), (what, r.exit_code, r.output[-2000:])
    assert r.exception is None or isinstance(r.exception, SystemExit), (what, repr(r.exception))
    assert "Traceback" not in r.output, (what, r.output[-2000:])


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:5]):
            yield from _paths(v, prefix + (i,))


def _hostile(rng: random.Random, outside: Path, bundle: Path):
    rel = os.path.relpath(outside / "victim.txt", bundle)
    return rng.choice([None, -1, 0, 10**30, 1.5, True, "", "x" * 5000, rel, str(outside / "victim.txt"),
                       "../../..", "a\\b", "C:/x", "history.json", "[red]x[/]\x1b[2J\x1b]8;;http://e\x1b\\",
                       [], {}, [None, 10**9, 10**9, 3], ["../x"], {"file": rel, "sha256": "0" * 64},
                       json.loads("[" * 40 + "]" * 40)])


def _mutate(m: dict, rng: random.Random, outside: Path, bundle: Path) -> dict:
    m = copy.deepcopy(m)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in _paths(m) if p])
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        if rng.random() < 0.25 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = _hostile(rng, outside, bundle)
    return m


def _with_results(m: dict) -> dict:
    """`m` with a current verify row, bench row and decision, so their readers are fuzzed too."""
    art = next(a for a in m["artifacts"] if a["file"] == "model.onnx")
    bound = {"file": "model.onnx", "runtime": "onnx", "device": "cpu", "format": "onnx", "precision": "fp32",
             "sha256": art["sha256"], "bundle_id": m.get("bundle_id") or m["created_at"]}
    m["verify"] = {"at": "now", "gates": {}, "rows": [bound | {"outcome": "pass", "images": 10, "max_abs_diff": 0.0}]}
    m["bench"] = {"rows": [bound | {"batch": 1, "p50_ms": 1.0}]}
    m["decision"] = {"constraints": {"for_batch": 1}, "found": True, "others": [], "ruled_out_by": None,
                     "chosen": {"runtime": "onnx", "precision": "fp32", "file": "model.onnx"}}
    return m


def test_fuzzed_manifests_end_cleanly_and_touch_nothing_outside(exported_copy, tmp_path):
    b = exported_copy
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("the user's own file\n")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    before = snapshot(outside)
    good = _with_results(json.loads((b / "manifest.json").read_text()))
    original = json.dumps(good)
    (b / "manifest.json").write_text(original)
    assert run("info", b).exit_code == 0
    rng = random.Random(29)
    for i in range(MANIFEST_RUNS):
        if i % 5 == 4:  # bytes, not JSON: flips and truncation
            data = bytearray(original.encode())
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            text = bytes(data[: rng.randrange(len(data))] if rng.random() < 0.3 else data)
            (b / "manifest.json").write_bytes(text)
        else:
            (b / "manifest.json").write_text(json.dumps(_mutate(good, rng, outside, b)))
        clean_exit(run("info", b), f"info, mutation {i}")
        if i % 6 == 0:
            clean_exit(run("predict", image, "--bundle", b, "--format", "onnx"), f"predict, mutation {i}")
        assert snapshot(outside) == before, f"mutation {i} changed a file outside the bundle"
        (b / "manifest.json").write_text(original)
        for leftover in (b / ".commit.json",):
            leftover.unlink(missing_ok=True)


def _mutated_npz(good: dict[str, np.ndarray], rng: random.Random) -> bytes:
    kind = rng.choice(["flip", "truncate", "header", "dtype", "drop", "extra", "shape"])
    arrays = dict(good)
    if kind == "dtype":
        name = rng.choice(list(arrays))
        dtype = rng.choice(["<U3", "<f8", "<i1", "|b1", "<c8"])
        try:
            arrays[name] = arrays[name].astype(dtype)
        except ValueError:  # text that is no number (reference.npz's float_kinds): zeros of that type instead
            arrays[name] = np.zeros(arrays[name].shape, dtype)
    elif kind == "drop":
        arrays.pop(rng.choice(list(arrays)))
    elif kind == "extra":
        arrays["more"] = np.zeros(rng.choice([(3,), (2, 2)]), rng.choice(["<f4", "<u1"]))
    elif kind == "shape":
        name = rng.choice(list(arrays))
        arrays[name] = arrays[name].reshape(-1)[: rng.randrange(1, arrays[name].size + 1)]
    buf = io.BytesIO()
    if kind == "header":  # a header that declares far more than the member holds
        with zipfile.ZipFile(buf, "w") as z:
            for name, a in arrays.items():
                head = io.BytesIO()
                shape = tuple(rng.choice([10**rng.randint(1, 12), d]) for d in a.shape)
                np.lib.format.write_array_header_1_0(head, {"descr": a.dtype.str, "fortran_order": False,
                                                             "shape": shape})
                z.writestr(name + ".npy", head.getvalue() + a.tobytes()[:64])
        return buf.getvalue()
    np.savez_compressed(buf, **arrays)
    data = bytearray(buf.getvalue())
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    return bytes(data)


def test_fuzzed_reference_data_ends_cleanly_and_touches_nothing_outside(exported_copy, tmp_path):
    b = exported_copy
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("the user's own file\n")
    before = snapshot(outside)
    with np.load(b / "reference.npz") as z:
        good = {k: z[k] for k in z.files}
    m = json.loads((b / "manifest.json").read_text())
    m["dataset"]["source"] = {"name": "folder", "root": "not-here", "image_size": 16}  # verify reads the reference
    rng = random.Random(30)
    for i in range(REFERENCE_RUNS):
        data = _mutated_npz(good, rng)
        (b / "reference.npz").write_bytes(data)
        mm = copy.deepcopy(m)
        digest = sha256(b / "reference.npz")
        for e in mm["files"]:
            if e["file"] == "reference.npz":
                e["sha256"], e["bytes"] = digest, len(data)
        mm["reference"]["sha256"] = digest
        (b / "manifest.json").write_text(json.dumps(mm))
        clean_exit(run("verify", b, "--runtime", "onnx"), f"verify, reference mutation {i}")
        assert snapshot(outside) == before


@pytest.mark.parametrize("n", [1])
def test_the_fuzz_harness_sees_a_traceback(n):
    """The harness would catch what it looks for: an exception escaping the CLI is not a clean exit."""
    class Boom:
        exit_code, output, exception = 1, "", RuntimeError("boom")

    with pytest.raises(AssertionError):
        clean_exit(Boom(), "self-test")
