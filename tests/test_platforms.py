"""Emulated platforms (`verify --platform`, `platform setup`): the commands, the cache's states, the
disagreement rule — without emulation — and one emulated verify end to end (slow)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core import results
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import owner_tag, sha256
from edgecls.platforms import ARM64, cache, cpu_models, emulator, packages, platform

runner = CliRunner()


# --- names ---------------------------------------------------------------------------------------------

def test_unknown_platform_and_cpu_list_the_known_ones():
    with pytest.raises(EdgeclsError, match="unknown platform.*known: arm64"):
        platform("riscv64")
    with pytest.raises(EdgeclsError, match=r"--cpu cortex-x9: unknown CPU model for arm64 \(known: neoverse-v1"):
        cpu_models(ARM64, "neoverse-v1,cortex-x9")
    assert cpu_models(ARM64, None) == ["neoverse-v1", "cortex-a72"]  # default: two, richest and plainest
    assert cpu_models(ARM64, " cortex-a72 ,cortex-a72") == ["cortex-a72"]


def test_cli_rejects_unknown_platform_and_cpu_before_any_work(exported_copy, tmp_path):
    r = runner.invoke(app, ["verify", str(exported_copy), "--platform", "sparc"])
    assert r.exit_code == 2 and "error: --platform sparc: unknown platform (known: arm64)" in r.output
    r = runner.invoke(app, ["verify", str(exported_copy), "--platform", "arm64", "--cpu", "pentium",
                            "--cache-dir", str(tmp_path)])
    assert r.exit_code == 2 and "cortex-a72" in r.output and "pentium" in r.output
    r = runner.invoke(app, ["verify", str(exported_copy), "--cpu", "cortex-a72"])
    assert r.exit_code == 2 and "--cpu, --cache-dir and --timeout go with --platform" in r.output


def test_no_cache_says_which_command_builds_it(exported_copy, tmp_path):
    r = runner.invoke(app, ["verify", str(exported_copy), "--platform", "arm64", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 2
    assert "arm64 emulation cache is missing" in r.output and "edgecls platform setup arm64" in r.output
    assert "Traceback" not in r.output


def test_a_browser_runtime_is_not_run_under_a_platform(exported_copy, tmp_path):
    from edgecls.platforms.verify import verify_platform

    with pytest.raises(EdgeclsError, match="--runtime web-onnx: not run under --platform"):
        verify_platform(exported_copy, "arm64", runtime_names="web-onnx", cache_dir=tmp_path)


# --- the commands ----------------------------------------------------------------------------------------

def test_pip_commands_ask_for_aarch64_wheels_of_exact_versions(tmp_path):
    cmd = packages.pip_download(ARM64, tmp_path, {"openvino": "2026.4.1", "numpy": "2.4.6"})
    assert cmd[1:4] == ["-m", "pip", "download"]
    for flag in ("--only-binary=:all:", "--no-deps"):
        assert flag in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and cmd[cmd.index("--implementation") + 1] == "cp"
    tags = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert "manylinux_2_35_aarch64" in tags and "manylinux2014_aarch64" in tags  # openvino's wheel: 2_35
    assert all(t.endswith("_aarch64") for t in tags)
    assert cmd[-2:] == ["numpy==2.4.6", "openvino==2026.4.1"]
    install = packages.pip_install(ARM64, tmp_path / "site", [tmp_path / "b.whl", tmp_path / "a.whl"])
    assert "--no-index" in install and install[install.index("--target") + 1] == str(tmp_path / "site")
    assert install[-2:] == [str(tmp_path / "a.whl"), str(tmp_path / "b.whl")]


def test_apt_commands_never_touch_the_systems_configuration(tmp_path):
    update, install = packages.apt_commands(tmp_path, "arm64", packages.USERLAND)
    opts = dict(o.split("=", 1) for o in install if "=" in o and "::" in o)
    assert opts["Dir::Etc::SourceList"] == str(tmp_path / "sources.list")
    assert opts["Dir::Etc::SourceParts"] == "/dev/null" and opts["Dir::State::status"] == str(tmp_path / "status")
    assert opts["Dir::State::Lists"].startswith(str(tmp_path)) and opts["Dir::Cache"].startswith(str(tmp_path))
    assert opts["APT::Architecture"] == "arm64"
    assert update[-1] == "update" and "--download-only" in install and install[-2:] == list(packages.USERLAND)
    _, download = packages.apt_download(tmp_path, "amd64", "qemu-user")
    assert download[-2:] == ["download", "qemu-user"]
    line = packages.sources_line("amd64", packages.QEMU_SUITE)
    assert line.startswith("deb [arch=amd64 signed-by=") and line.rstrip().endswith("debian trixie main")


def test_the_pins_are_the_hosts_versions_and_their_aarch64_requirements():
    import importlib.metadata as md

    pins, missing = packages.closure(["jsonschema", "no-such-dist-edgecls"])
    assert pins["jsonschema"] == md.version("jsonschema") and "rpds-py" in pins  # followed, host's version
    assert "no-such-dist-edgecls" in missing
    want = packages.wanted()
    assert want["base"]["numpy"] == np.__version__
    for runtime, versions in packages.runtime_versions(want).items():
        assert versions == md.version(packages.RUNTIME_DISTS[runtime])


def _state(tmp_path) -> cache.State:
    folder = tmp_path / "arm64"
    m = {"python": {"binary": "rootfs/usr/bin/python3.11"}, "qemu": {"binary": "qemu/qemu-aarch64"}}
    return cache.State(folder, "complete", [], m)


def test_the_emulated_command_is_one_qemu_process_with_only_the_cache_and_edgecls_on_its_path(tmp_path):
    state = _state(tmp_path)
    argv, env = emulator.command(state, "cortex-a72", tmp_path / "code", tmp_path / "job.json")
    assert argv == [str(state.folder / "qemu/qemu-aarch64"), "-L", str(state.folder / "rootfs"), "-cpu", "cortex-a72",
                    str(state.folder / "rootfs/usr/bin/python3.11"), "-m", "edgecls.platforms.job",
                    str(tmp_path / "job.json")]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(state.folder / "site"), str(tmp_path / "code")]
    assert env["PATH"] == "/usr/bin:/bin" and "VIRTUAL_ENV" not in env  # nothing of the host's Python
    code = emulator.copy_code(tmp_path / "copy")
    assert (code / "edgecls" / "verify" / "parity.py").is_file()
    assert not list((code / "edgecls").rglob("__pycache__"))


def test_a_job_that_dies_or_overruns_is_an_error_with_its_last_line(tmp_path):
    die = emulator.Job("cortex-a72", ["sh", "-c", "echo 'illegal instruction' >&2; exit 132"], dict(os.environ),
                       tmp_path / "die")
    late = emulator.Job("neoverse-v1", ["sleep", "30"], dict(os.environ), tmp_path / "late")
    for j in (die, late):
        j.folder.mkdir()
    emulator.run_jobs([die, late], parallel=2, timeout=1)
    assert die.error == "the cortex-a72 run ended (exit 132) without a result: illegal instruction"
    assert late.error == "timed out after 1 s" and late.seconds < 10


# --- the rule ---------------------------------------------------------------------------------------------

def _row(cpu, outcome, compute="fp32", asked="", file="m.onnx", runtime="onnx"):
    return {"file": file, "runtime": runtime, "platform": "arm64", "cpu": cpu, "compute": compute,
            "compute_requested": asked, "outcome": outcome}


def test_a_verdict_holds_only_when_the_cpu_models_agree():
    rows = [_row("neoverse-v1", "pass"), _row("cortex-a72", "pass"),
            _row("neoverse-v1", "pass", file="m.int8.tflite", runtime="tflite"),
            _row("cortex-a72", "fail", file="m.int8.tflite", runtime="tflite"),
            _row("neoverse-v1", "inconclusive", file="m.xml", runtime="openvino", compute="f32", asked="f32")]
    v = results.platform_verdicts(rows)
    k = lambda r: results.key(r, "platform_verify")  # noqa: E731
    assert v[k(rows[0])] == v[k(rows[1])] == "pass"
    assert v[k(rows[2])] == v[k(rows[3])] == results.DISAGREEMENT  # not a parity result either way
    assert v[k(rows[4])] == "inconclusive (one CPU model)"


def test_the_devices_default_precision_is_compared_only_between_cpus_that_ran_the_same_precision():
    rows = [_row("neoverse-v1", "fail", compute="f16", asked="default", runtime="openvino", file="m.xml"),
            _row("cortex-a72", "pass", compute="f32", asked="default", runtime="openvino", file="m.xml"),
            _row("neoverse-n2", "fail", compute="f16", asked="default", runtime="openvino", file="m.xml")]
    v = results.platform_verdicts(rows)
    assert v[results.key(rows[0], "platform_verify")] == "fail"  # v1 and n2 agree in f16
    assert v[results.key(rows[1], "platform_verify")] == "pass (one CPU model)"


def test_rows_are_kept_per_cpu_model_and_requested_precision():
    old = [_row("neoverse-v1", "pass"), _row("cortex-a72", "pass")]
    new = [_row("cortex-a72", "fail")]
    merged = results.merge(old, new, "platform_verify")
    assert sorted((r["cpu"], r["outcome"]) for r in merged) == [("cortex-a72", "fail"), ("neoverse-v1", "pass")]
    # an OpenVINO row written before the requested precision was recorded is the f32 row
    a = {"file": "m.xml", "runtime": "openvino", "device": "cpu"}
    assert results.key(a, "verify") == results.key(a | {"compute_requested": "f32"}, "verify")
    assert results.key(a, "verify") != results.key(a | {"compute_requested": "default"}, "verify")


def test_openvino_gets_one_run_per_requested_precision_the_others_one():
    from edgecls.verify.parity import option_sets

    assert option_sets("openvino", {"compute": "f32,default"}) == [{"compute": "f32"}, {"compute": "default"}]
    assert option_sets("onnx", {"compute": "f32,default"}) == [{}]
    assert option_sets("openvino", None) == [{}]


# --- the cache's states -------------------------------------------------------------------------------------

def _fake_builders(monkeypatch, calls: list, versions: dict | None = None):
    """Replace the apt/pip/dpkg steps with ones writing a few small files (the cache logic is what is tested)."""

    def userland(p, stage, work, mirror, log):
        calls.append("userland")
        py = stage / "rootfs/usr/bin/python3.11"
        py.parent.mkdir(parents=True)
        py.write_bytes(b"python")
        return {"suite": "bookworm", "mirror": mirror, "packages": [],
                "python": {"binary": "rootfs/usr/bin/python3.11", "version": "3.11.2", "sha256": sha256(py)}}

    def qemu(p, stage, work, mirror, log):
        calls.append("qemu")
        q = stage / "qemu/qemu-aarch64"
        q.parent.mkdir()
        q.write_bytes(b"qemu")
        return {"version": "1:10.0", "binary": "qemu/qemu-aarch64", "sha256": sha256(q), "bytes": 4}

    def wheels(p, stage, work, want, log):
        calls.append("wheels")
        (stage / "site").mkdir()
        (stage / "site/numpy.py").write_text("x = 1\n")
        runtimes = versions if versions is not None else packages.runtime_versions(want)
        return {"base": want["base"], "pins": {}, "files": [], "missing": {}}, runtimes

    monkeypatch.setattr(cache, "_userland", userland)
    monkeypatch.setattr(cache, "_qemu", qemu)
    monkeypatch.setattr(cache, "_wheels", wheels)


def test_setup_builds_then_is_a_no_op(tmp_path, monkeypatch):
    calls = []
    _fake_builders(monkeypatch, calls)
    first = cache.setup(ARM64, tmp_path, needs_bytes=0)
    assert first.built and first.state.status == "complete" and calls == ["userland", "qemu", "wheels"]
    m = json.loads((tmp_path / "arm64" / cache.MANIFEST).read_text())
    assert m["complete"] and m["parts"]["site"] == {"files": 1, "bytes": 6} and m["bytes"] == 16
    again = cache.setup(ARM64, tmp_path, needs_bytes=0)
    assert not again.built and calls == ["userland", "qemu", "wheels"]  # nothing fetched
    assert cache.setup(ARM64, tmp_path, offline=True).state.usable  # offline with a complete cache: fine


def test_a_half_built_or_damaged_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    calls = []
    _fake_builders(monkeypatch, calls)
    cache.setup(ARM64, tmp_path, needs_bytes=0)
    (tmp_path / "arm64/site/numpy.py").unlink()  # a file gone since (a full disk, a hand edit)
    state = cache.inspect(ARM64, tmp_path)
    assert state.status == "incomplete" and "site/ holds 0 files" in state.reasons[0]
    # an interrupted build: its staging folder (its process gone) and no manifest in the cache
    stale = tmp_path / f".arm64.staging-4194301@{owner_tag().split('@')[1]}-x"
    stale.mkdir()
    (tmp_path / "arm64" / cache.MANIFEST).unlink()
    assert cache.inspect(ARM64, tmp_path).status == "incomplete"
    with pytest.raises(EdgeclsError, match="--offline: the arm64 cache cannot be used: .*no readable cache.json"):
        cache.setup(ARM64, tmp_path, offline=True)
    rebuilt = cache.setup(ARM64, tmp_path, needs_bytes=0)
    assert rebuilt.built and rebuilt.state.usable and not stale.exists()
    assert any("no readable cache.json" in why for why in rebuilt.replaced)
    assert any("interrupted build" in why for why in rebuilt.replaced)


def test_a_cache_for_other_runtime_versions_is_rebuilt_saying_so(tmp_path, monkeypatch, exported_copy):
    calls = []
    want = packages.wanted()
    host = packages.runtime_versions(want)
    if not host:
        pytest.skip("no runtime installed here")
    runtime = next(iter(host))
    _fake_builders(monkeypatch, calls, versions=host | {runtime: "0.0.1"})
    cache.setup(ARM64, tmp_path, needs_bytes=0)
    state = cache.inspect(ARM64, tmp_path)
    assert state.status == "outdated" and f"{runtime} 0.0.1 (host {host[runtime]})" in state.reasons[0]
    r = runner.invoke(app, ["verify", str(exported_copy), "--platform", "arm64", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 2 and "the arm64 emulation cache is outdated: built for other versions" in r.output
    assert "edgecls platform setup arm64" in r.output
    _fake_builders(monkeypatch, calls)
    result = cache.setup(ARM64, tmp_path, needs_bytes=0)
    assert result.built and result.state.usable
    assert any("built for other versions" in why and runtime in why for why in result.replaced)


def test_a_runtime_with_no_aarch64_wheel_is_named_and_skipped(tmp_path, monkeypatch, exported_copy):
    from edgecls.platforms.verify import verify_platform

    calls = []
    _fake_builders(monkeypatch, calls)
    real = cache._wheels

    def no_openvino(p, stage, work, want, log):
        wheels, runtimes = real(p, stage, work, want, log)
        runtimes.pop("openvino", None)
        wheels["missing"] = {"openvino": "no aarch64 wheel for CPython 3.11 (pip download (openvino) failed)"}
        return wheels, runtimes

    monkeypatch.setattr(cache, "_wheels", no_openvino)
    state = cache.setup(ARM64, tmp_path, needs_bytes=0).state
    assert state.usable and "openvino" not in state.runtimes()  # the others are usable: not "outdated"
    with pytest.raises(EdgeclsError, match=r"no exported file to verify on arm64 with runtime\(s\) openvino "
                                           r"\(openvino: no aarch64 wheel for CPython 3.11"):
        verify_platform(exported_copy, "arm64", runtime_names="openvino", cache_dir=tmp_path)
    r = runner.invoke(app, ["platform", "status", "arm64", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0 and "openvino: not in the cache: no aarch64 wheel" in r.output


def test_no_space_is_one_clear_error_and_nothing_is_kept(tmp_path, monkeypatch):
    calls = []
    _fake_builders(monkeypatch, calls)
    with pytest.raises(EdgeclsError, match=r"no space for the arm64 cache: .* MB free, a build needs about"):
        cache.setup(ARM64, tmp_path, needs_bytes=1 << 62)
    assert calls == [] and not (tmp_path / "arm64").exists()

    def full(p, stage, work, mirror, log):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "_userland", full)
    with pytest.raises(EdgeclsError, match="no space left while building the arm64 cache; nothing was kept|"
                                           "no space left while building"):
        cache.setup(ARM64, tmp_path, needs_bytes=0)
    assert not (tmp_path / "arm64").exists() and not list(tmp_path.glob(".arm64.*"))


def test_cli_setup_offline_with_nothing_cached_fails_clearly(tmp_path):
    r = runner.invoke(app, ["platform", "setup", "arm64", "--offline", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 2
    assert "error: --offline: the arm64 cache cannot be used: no cache at" in r.output
    r = runner.invoke(app, ["platform", "setup", "mips"])
    assert r.exit_code == 2 and "known: arm64" in r.output
    r = runner.invoke(app, ["platform", "status", "arm64", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 1 and "missing" in r.output


# --- end to end, emulated (slow) ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def arm64_cache(tmp_path_factory) -> Path:
    """The arm64 cache, built once per test run ($EDGECLS_PLATFORM_CACHE: a CI cache kept between runs);
    skipped, saying why, where apt or pip cannot reach their registries."""
    root = Path(os.environ.get(cache.ENV) or tmp_path_factory.mktemp("platforms"))
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb not installed: the arm64 cache is built on Debian or Ubuntu")
    try:
        cache.setup(ARM64, root)
    except EdgeclsError as e:
        pytest.skip(f"the arm64 cache could not be built here (apt/pip cannot reach the packages?): {e}")
    return root


@pytest.mark.slow
def test_verify_one_runtime_on_one_emulated_cpu_model_end_to_end(exported_copy, arm64_cache):
    r = runner.invoke(app, ["verify", str(exported_copy), "--platform", "arm64", "--cpu", "cortex-a72",
                            "--runtime", "onnx", "--cache-dir", str(arm64_cache), "--json", "--timeout", "900"])
    assert r.exit_code in (0, 1), r.output
    out = json.loads(r.stdout)
    assert out["environment"]["cortex-a72"]["machine"] == "aarch64"  # it really ran as arm64
    assert out["rows"] and all(row["cpu"] == "cortex-a72" and row["platform"] == "arm64" for row in out["rows"])
    onnx = [row for row in out["rows"] if row["runtime"] == "onnx"]
    assert {row["precision"] for row in onnx} >= {"fp32", "int8"}
    for row in onnx:
        assert not row["error"], row["failures"]
        assert row["verdict"] == f"{row['outcome']} (one CPU model)"
        assert row["vs_native"]["images"] == row["images"] and row["vs_native"]["changed"] <= row["images"]
        if row["precision"] == "fp32":
            assert row["vs_native"]["max_abs_diff"] < 1e-4  # the same float model on another ISA
    m = json.loads((exported_copy / "manifest.json").read_text())
    stored = results.current(m, "platform_verify")
    assert {(s["file"], s["cpu"]) for s in stored} == {(row["file"], "cortex-a72") for row in onnx}
    assert all(s["sha256"] for s in stored)  # bound to the bytes judged
    # the host's rows are untouched; info/report show both
    assert not any(s.get("platform") for s in results.rows(m, "verify"))
    r2 = runner.invoke(app, ["verify", str(exported_copy), "--runtime", "onnx"])
    assert "cortex-a72" not in r2.output  # a plain verify stays this machine's


def test_golden_records_each_platforms_outputs_beside_this_machines(exported_bundle, tmp_path):
    """`golden --platform`: what the emulated run returns is saved per platform x CPU model, with its distance
    from this machine's (the emulation itself is the slow test's; here a stand-in returns known outputs)."""
    from edgecls.verify.golden import write_golden

    seen = {}

    def outputs(x, artifacts):
        seen["x"], seen["files"] = x, [a["file"] for a in artifacts]
        from edgecls import runtimes

        onnx = next(a for a in artifacts if a["file"] == "model.onnx")

        r = runtimes.create("onnx")
        r.load(exported_bundle / onnx["file"], threads=1)
        p = np.asarray(r.predict(x), np.float32)
        return [{"platform": "arm64", "cpu": "cortex-a72", "file": "model.onnx", "runtime": "onnx",
                 "compute": "fp32", "probabilities": p + 1e-3},
                {"platform": "arm64", "cpu": "cortex-a72", "file": "model.tflite", "error": "crashed"}]

    result = write_golden(exported_bundle, tmp_path / "golden", count=3, platform_outputs=outputs)
    assert seen["x"].shape[0] == 3 and "model.onnx" in seen["files"]
    (entry,) = result.index["platform_outputs"]
    assert entry["platform"] == "arm64" and entry["cpu"] == "cortex-a72" and entry["artifact"] == "model.onnx"
    saved = np.load(tmp_path / "golden" / entry["file"]["file"])
    assert entry["file"]["file"] == "outputs/arm64-cortex-a72/onnx-fp32.npy" and saved.shape[0] == 3
    assert entry["vs_this_machine"]["max_abs_diff"] == pytest.approx(1e-3, abs=1e-6)
    assert any("arm64/cortex-a72 model.tflite: crashed" in s for s in result.index["skipped"])


def test_a_cpu_model_whose_run_crashed_fails_its_files_and_disagrees_with_one_that_passed(tmp_path):
    from edgecls.platforms.verify import _rows

    art = {"file": "model.onnx", "format": "onnx", "precision": "fp32"}
    crashed = emulator.Job("neoverse-v1", [], {}, tmp_path, error="the neoverse-v1 run ended (signal 11) without a "
                                                                  "result: Segmentation fault")
    (row,) = _rows(crashed, [(art, "onnx", "")], None, "now", "arm64", "qemu-user 10")
    assert row["outcome"] == "fail" and row["error"] and "arm64/neoverse-v1: the neoverse-v1 run ended (signal 11)" \
        in row["failures"][0]
    other = _row("cortex-a72", "pass", file="model.onnx")
    v = results.platform_verdicts([row, other])
    assert v[results.key(other, "platform_verify")] == results.DISAGREEMENT
