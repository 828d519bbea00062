"""The CLI as a user runs it."""

import json
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


def test_info_missing_bundle(tmp_path):
    assert "no such bundle folder" in _one_line_error(run("info", tmp_path / "x"))


def test_unknown_arch_is_usage_error():
    r = run("train", "--arch", "vgg")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "edgecls.cli", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--image-size" in r.stdout and "Examples" in r.stdout
