"""Results are bound to the bytes they judged: stale rows ignored and said so, merged per artifact, never
saved into a bundle that changed under them."""

import errno
import json
import shutil
import subprocess
import sys

from typer.testing import CliRunner

from edgecls.bench.decide import Constraints, decide
from edgecls.cli import app
from edgecls.core import results
from edgecls.core.bundle import Bundle

runner = CliRunner()


def test_reexport_makes_old_rows_stale_and_the_decision_ignores_them(exported_copy):
    from edgecls.bench.measure import BenchConfig, bench
    from edgecls.export import ExportConfig, export

    assert runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"]).exit_code == 0
    bench(exported_copy, BenchConfig(runtimes=["onnx"], warmup=1, min_runs=5, min_time=0.01, rounds=1))
    before = Bundle.open(exported_copy).manifest
    old_sha = before["artifacts"][[a["file"] for a in before["artifacts"]].index("model.int8.onnx")]["sha256"]
    # export int8 again with other calibration: new bytes, nobody verified them
    assert not export(exported_copy, ExportConfig(formats=["onnx"], int8=True, calib_size=16)).failures
    m = Bundle.open(exported_copy).manifest
    new_sha = next(a for a in m["artifacts"] if a["file"] == "model.int8.onnx")["sha256"]
    assert new_sha != old_sha
    stale = [r for r in results.rows(m, "verify") if r["file"] == "model.int8.onnx"]
    assert stale and all(r.get("stale") and results.binding(r, m) == results.Binding.stale for r in stale)
    d = decide(m, Constraints())
    int8 = next(x for x in [d.chosen, *d.others] if x and x.file == "model.int8.onnx")
    assert int8 is not d.chosen and int8.reason == "not verified: stale: the file changed since (run it again)"
    assert any("model.int8.onnx): stale" in line for line in d.ignored)
    # info and verify say what they ignore
    info = runner.invoke(app, ["info", str(exported_copy)])
    assert "stale (run verify again)" in info.stdout and "verify result ignored: onnx int8" in info.stdout
    r = runner.invoke(app, ["verify", str(exported_copy), "--runtime", "tflite"])
    assert "not re-verified here, and ignored: onnx int8 (model.int8.onnx): stale" in r.stdout
    # golden takes the int8 tolerance only from a row of these bytes
    from edgecls.verify.golden import _int8_tolerance

    art = next(a for a in m["artifacts"] if a["file"] == "model.int8.onnx")
    import numpy as np

    tol = _int8_tolerance(Bundle.open(exported_copy), art, np.zeros((1, 2)), np.zeros((1, 2)), {})
    assert "edgecls verify" not in tol["basis"]


def test_verify_of_one_runtime_keeps_the_others(exported_copy):
    assert runner.invoke(app, ["verify", str(exported_copy)]).exit_code == 0
    before = {(r["file"], r["runtime"]): r["at"] for r in Bundle.open(exported_copy).manifest["verify"]["rows"]}
    assert len(before) == 8
    assert runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"]).exit_code == 0
    after = {(r["file"], r["runtime"]): r for r in Bundle.open(exported_copy).manifest["verify"]["rows"]}
    assert set(after) == set(before)
    assert all(after[k]["at"] == before[k] for k in after if k[1] != "onnx")


def test_concurrent_verify_runs_keep_both(exported_copy):
    procs = [subprocess.Popen([sys.executable, "-m", "edgecls.cli", "verify", str(exported_copy), "--runtime", rt,
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rt in ("onnx", "tflite")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    m = Bundle.open(exported_copy).manifest
    assert {r["runtime"] for r in results.current(m, "verify")} == {"onnx", "tflite"}
    expected = {a["file"] for a in m["artifacts"] if a["format"] in ("onnx", "tflite")}
    assert {r["file"] for r in results.current(m, "verify")} == expected and len(expected) == 5


def test_a_retrain_during_verify_is_not_merged_into_the_new_bundle(exported_copy, monkeypatch):
    """The bundle is replaced (trained again) while verify runs: its results belong to the old model."""
    from edgecls.core.hooks import Hooks
    from edgecls.train.fit import TrainConfig, train
    from edgecls.verify.parity import verify

    swapped = []

    class Retrain(Hooks):
        def row(self, row):
            if not swapped:
                train(TrainConfig(data="synthetic", arch="tiny", epochs=1, batch_size=32, out=exported_copy))
                swapped.append(1)

    result = verify(exported_copy, runtime_names=["onnx"], hooks=Retrain())
    assert result.rows and result.save_error and "was replaced (trained again) while this command ran" in \
        result.save_error
    m = Bundle.open(exported_copy).manifest
    assert "verify" not in m and not any(a["format"] == "onnx" for a in m["artifacts"])


def test_read_only_bundle_prints_results_then_one_error(exported_copy, monkeypatch):
    import edgecls.core.bundle as bundle_mod

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(bundle_mod, "atomic_write", read_only)
    r = runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"])
    assert r.exit_code == 2 and "parity vs Keras" in r.stdout, r.output
    lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "cannot save the results (Read-only file system)" in lines[0]
    assert "Traceback" not in r.output


def test_rows_of_an_older_edgecls_are_unbound(exported_copy):
    assert runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"]).exit_code == 0
    m = json.loads((exported_copy / "manifest.json").read_text())
    for r in m["verify"]["rows"]:
        del r["sha256"]
    (exported_copy / "manifest.json").write_text(json.dumps(m))
    info = runner.invoke(app, ["info", str(exported_copy)])
    assert info.exit_code == 0 and "unbound (run verify again)" in info.stdout
    d = decide(Bundle.open(exported_copy).manifest, Constraints())
    assert not d.found and "unbound: no hash recorded" in d.others[0].reason


def test_copy_of_bundle_keeps_its_identity(exported_copy, tmp_path):
    """Copying a bundle folder elsewhere (to a device) keeps its results current: same bytes, same bundle."""
    assert runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"]).exit_code == 0
    dest = tmp_path / "copied"
    shutil.copytree(exported_copy, dest)
    m = Bundle.open(dest).manifest
    assert len(results.current(m, "verify")) == 2


def test_bench_into_a_read_only_bundle_prints_results_then_one_error(exported_copy, monkeypatch):
    import edgecls.core.bundle as bundle_mod

    assert runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"]).exit_code == 0

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(bundle_mod, "atomic_write", read_only)
    r = runner.invoke(app, ["bench", str(exported_copy), "--runtime", "onnx", "--min-runs", "3", "--min-time",
                            "0.01", "--rounds", "1", "--warmup", "0"])
    assert r.exit_code == 2 and "threads for every runtime" in r.stdout, r.output
    lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "cannot save the results (Read-only file system)" in lines[0]
