"""Native start-up chatter stays off the terminal; real warnings still reach it."""

import os
import subprocess
import sys

from edgecls.core.quiet import native_output

CHATTER = ("All log messages before absl::InitializeLog", "oneDNN custom operations", "XNNPACK delegate")


def test_native_output_drops_chatter_and_replays_warnings(capfd):
    with native_output():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1795952628.673501    2460 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1795952628.673501    2460 foo.cc:1] a real warning\n")
        os.write(2, b"E0000 something failed\n")
    err = capfd.readouterr().err
    assert "a real warning" in err and "something failed" in err
    assert not any(c in err for c in CHATTER)


def test_fds_are_restored_even_on_error(capfd):
    try:
        with native_output():
            raise ValueError("boom")
    except ValueError:
        pass
    os.write(2, b"after\n")
    assert "after" in capfd.readouterr().err


def test_cli_and_bench_subprocesses_print_no_chatter(exported_copy, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    for args in (["train", "--data", "synthetic", "--arch", "tiny", "--epochs", "1", "--out", str(tmp_path / "b")],
                 ["bench", str(exported_copy), "--runtime", "tflite,keras", "--min-runs", "2", "--min-time", "0.01",
                  "--rounds", "1"]):
        r = subprocess.run([sys.executable, "-m", "edgecls.cli", *args], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert not any(c in r.stderr + r.stdout for c in CHATTER), r.stderr
