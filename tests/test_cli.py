"""The CLI as a user runs it."""

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecls.cli import app

from .conftest import make_folder

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_train_end_to_end_json(tmp_path):
    r = run("train", "--data", "synthetic", "--arch", "tiny", "--epochs", "2", "--out", tmp_path / "b", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["bundle"] == str(tmp_path / "b") and len(res["history"]) == 2
    assert 0 <= res["metrics"]["test"]["accuracy"] <= 1
    assert "epoch   1/2" in r.stderr and "val_acc" in r.stderr  # the epoch trace


def test_train_folder_and_info(tmp_path):
    make_folder(tmp_path / "pets", per_class=10)
    r = run("train", "--data", tmp_path / "pets", "--arch", "tiny", "--epochs", "1", "--image-size", "16",
            "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "held-out accuracy" in r.stdout and "confusion matrix" in r.stdout
    r = run("info", tmp_path / "b")
    assert r.exit_code == 0 and "model.keras" in r.stdout and "ok" in r.stdout
    info = json.loads(run("info", tmp_path / "b", "--json").stdout)
    assert info["labels"] == ["cat", "dog"] and info["input"]["shape"] == [None, 16, 16, 3]


def test_default_out_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("train", "--data", "synthetic", "--arch", "tiny", "--epochs", "1").exit_code == 0
    assert (tmp_path / "models" / "synthetic-tiny" / "manifest.json").is_file()


@pytest.mark.parametrize("setup,args,pattern", [
    (None, ["--data", "{tmp}/nope"], "no such dataset or folder"),
    ("empty", ["--data", "{tmp}/d"], "no images found"),
    ("oneclass", ["--data", "{tmp}/d"], "only one class"),
    ("corrupt", ["--data", "{tmp}/d"], r"d/dog/bad\.png: not an image file.*--skip-bad"),
    (None, ["--epochs", "0"], "--epochs 0: must be at least 1"),
    (None, ["--val-split", "0"], "--val-split 0.0"),
    (None, ["--data", "fashion-mnist", "--data-dir", "{tmp}"], "apt-get install dataset-fashion-mnist"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, setup, args, pattern):
    d = tmp_path / "d"
    if setup == "empty":
        (d / "cat").mkdir(parents=True)
    elif setup == "oneclass":
        make_folder(d, classes=("cat",))
    elif setup == "corrupt":
        make_folder(d)
        (d / "dog" / "bad.png").write_text("nope")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--data" not in args:
        args += ["--data", "synthetic"]
    r = run("train", *args, "--arch", "tiny", "--out", tmp_path / "out")
    line = _one_line_error(r)
    import re

    assert re.search(pattern, line), line
    assert not (tmp_path / "out").exists()


def test_skip_bad_reports_count(tmp_path):
    make_folder(tmp_path / "d", per_class=10)
    (tmp_path / "d" / "dog" / "bad.png").write_text("nope")
    r = run("train", "--data", tmp_path / "d", "--skip-bad", "--arch", "tiny", "--epochs", "1", "--image-size", "12",
            "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable file(s)" in r.stderr


def test_bomb_image_in_a_training_folder(tmp_path):
    """A decompression bomb is a bad image like the others: refused by name, or skipped with --skip-bad."""
    from .conftest import write_png_bomb

    make_folder(tmp_path / "d", per_class=10)
    write_png_bomb(tmp_path / "d" / "cat" / "bomb.png")
    args = ["train", "--data", tmp_path / "d", "--arch", "tiny", "--epochs", "1", "--image-size", "12"]
    line = _one_line_error(run(*args, "--out", tmp_path / "a"))
    assert "bomb.png" in line and "pixel" in line and "--skip-bad" in line
    assert not (tmp_path / "a").exists()
    r = run(*args, "--skip-bad", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable file(s)" in r.stderr
    skipped = json.loads((tmp_path / "b" / "manifest.json").read_text())["dataset"]["skipped"]
    assert len(skipped) == 1 and "bomb.png" in skipped[0]


def test_info_missing_bundle(tmp_path):
    assert "no such bundle folder" in _one_line_error(run("info", tmp_path / "x"))


def test_unknown_arch_is_usage_error():
    r = run("train", "--arch", "vgg")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "edgecls.cli", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--image-size" in r.stdout and "Examples" in r.stdout


@pytest.mark.parametrize("args,pattern", [
    (["--image-size", "0"], "--image-size 0: must be between 8 and 1024"),
    (["--image-size", "-5"], "--image-size -5: must be between 8 and 1024"),
    (["--image-size", "100000"], "--image-size 100000"),
    (["--epochs", "-1"], "--epochs -1: must be at least 1"),
    (["--epochs", "99999999"], "--epochs 99999999: at most"),
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "10000000"], "--batch-size 10000000: at most"),
    (["--lr", "0"], "--lr 0.0: must be between 0 and 1"),
    (["--patience", "0"], "--patience 0: must be at least 1"),
    (["--seed", "-1"], "--seed -1: must be between 0 and"),
    (["--width", "0"], "--width 0.0: must be between"),
    (["--limit", "0"], "--limit 0: must be a positive number"),
    (["--test-split", "1"], "--test-split 1.0: must be between 0 and 1"),
    (["--out", "/proc/edgecls-bundle"], "--out /proc/edgecls-bundle: cannot write there"),
])
def test_train_option_holes(tmp_path, args, pattern):
    import re

    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    r = run("train", "--data", "synthetic", "--arch", "tiny", *args, *out)
    assert re.search(pattern, _one_line_error(r))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command,args,pattern", [
    ("export", ["--calib-size", "0"], "--calib-size 0: must be at least 1"),
    ("export", ["--format", "pdf"], "--format pdf: unknown format"),
    ("verify", ["--threads", "0"], "--threads 0: must be at least 1"),
    ("verify", ["--max-drop", "-1"], "--max-drop -1: must be between 0 and 100"),
    ("verify", ["--max-drop", "1000"], "--max-drop 1000: must be between 0 and 100"),
    ("verify", ["--runtime", "coreml"], "--runtime coreml: unknown runtime"),
    ("verify", ["--ov-precision", "int4"], "--compute int4: choose f32, bf16, f16"),
    ("bench", ["--batch", "0"], "--batch 0: batch sizes must be between 1 and"),
    ("bench", ["--batch", "1000000"], "--batch 1000000: batch sizes must be between 1 and"),
    ("bench", ["--batch", "a"], "--batch 'a': expected comma-separated whole numbers"),
    ("bench", ["--precision", "int4"], "--precision int4: unknown precision"),
    ("bench", ["--rounds", "0"], "--rounds 0: must be at least 1"),
    ("bench", ["--min-time", "-1"], "--min-time -1: must be more than 0 seconds"),
    ("bench", ["--json", "/proc/edgecls/bench.json", "--runtime", "onnx", "--precision", "fp32",
               "--min-runs", "1", "--min-time", "0.01", "--warmup", "0", "--rounds", "1"],
     "--json /proc/edgecls/bench.json: cannot write"),
])
def test_option_holes_on_a_bundle(exported_copy, command, args, pattern):
    import re

    before = (exported_copy / "manifest.json").read_bytes()
    r = run(command, exported_copy, *args)
    assert re.search(pattern, _one_line_error(r))
    if "--json" not in args:  # refused before any work: the bundle is as it was
        assert (exported_copy / "manifest.json").read_bytes() == before


def test_predict_holes(exported_copy, tmp_path):
    assert "--top 0" in _one_line_error(run("predict", tmp_path / "x.png", "--bundle", exported_copy, "--top", "0"))
    (tmp_path / "bad.png").write_text("not an image")
    assert "bad.png" in _one_line_error(run("predict", tmp_path / "bad.png", "--bundle", exported_copy))
    line = _one_line_error(run("predict", tmp_path / "none.png", "--bundle", exported_copy))
    assert "none.png" in line


def test_pipeline_bad_bench_option_fails_before_training(tmp_path):
    r = run("pipeline", "--data", "synthetic", "--arch", "tiny", "--out", tmp_path / "b", "--batch", "0")
    assert "--batch 0" in _one_line_error(r) and not (tmp_path / "b").exists()


def test_bench_recommends_and_exits_1_when_nothing_qualifies(exported_copy):
    fast = ["--min-runs", "3", "--min-time", "0.01", "--warmup", "0", "--rounds", "1", "--runtime", "onnx,tflite"]
    r = run("bench", exported_copy, *fast)
    assert r.exit_code == 0 and "recommendation: none yet" in r.stdout  # not verified: parity unknown
    assert run("verify", exported_copy).exit_code == 0
    r = run("bench", exported_copy, *fast)  # float files are shown on every reachable image + variants: one ships
    assert r.exit_code == 0 and re.search(r"ship model\.\S+ \((onnx|tflite) fp(32|16), parity pass\)", r.stdout)
    assert "--images DIR" in r.stdout  # what would decide the int8 files, whose 48 + 9 unseen images cannot
    fast.append("--accept-inconclusive")
    r = run("bench", exported_copy, *fast)
    assert r.exit_code == 0, r.output
    assert re.search(r"ship model\.\S+ \((onnx|tflite) (fp32|fp16|int8), parity (pass|inconclusive)\): p50",
                     r.stdout)
    exported = [a for a in json.loads((exported_copy / "manifest.json").read_text())["artifacts"]
                if a["format"] != "keras"]
    assert r.stdout.count("  not ") == len(exported) - 1  # one line per other artifact, with its reason
    assert "not openvino/model.xml (openvino fp32): not benchmarked at batch 1" in r.stdout
    r = run("bench", exported_copy, *fast, "--json", "-")
    assert json.loads(r.stdout)["decision"]["found"]  # stdout is the JSON alone; the decision went to stderr
    r = run("bench", exported_copy, *fast, "--max-size", "1")
    assert r.exit_code == 1 and "nothing to ship" in r.stdout and "ruled out by --max-size" in r.stdout
    from edgecls.core.bundle import Bundle

    m = Bundle.open(exported_copy).manifest
    assert m["decision"]["found"] is False and m["decision"]["ruled_out_by"] == "--max-size"
    env = m["bench"]["environment"]
    assert env["threads"] >= 1 and env["threads_from"].startswith("physical cores")


@pytest.mark.parametrize("args,msg", [(["--max-latency", "0"], "--max-latency 0.0: must be a positive"),
                                      (["--max-size", "-1"], "--max-size -1.0: must be a positive"),
                                      (["--for-batch", "8"], "--for-batch 8: not among the measured batch sizes")])
def test_bench_impossible_constraints_exit_2_before_measuring(exported_copy, args, msg):
    before = (exported_copy / "manifest.json").read_bytes()
    assert msg in _one_line_error(run("bench", exported_copy, *args))
    assert (exported_copy / "manifest.json").read_bytes() == before
