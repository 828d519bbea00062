"""Run a job (job.py) in the emulated userland: one qemu-user process per CPU model, no binfmt, no chroot.

    PYTHONPATH=SITE:CODE qemu-aarch64 -L ROOTFS -cpu MODEL ROOTFS/usr/bin/python3.11 -m edgecls.platforms.job JOB

A subprocess the emulated Python started would not be emulated (no binfmt), so the whole job is one
process. CODE is a copy of this edgecls's pure-Python package: the host's site-packages (x86 wheels,
TensorFlow) are never on the emulated path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import State

EDGECLS = Path(__file__).resolve().parent.parent  # the edgecls package folder


def copy_code(dest: Path) -> Path:
    """A copy of the edgecls package (Python sources and package data, no caches) under `dest`; returns
    the folder to put on PYTHONPATH."""
    shutil.copytree(EDGECLS, dest / "edgecls", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
    return dest


def command(state: State, cpu: str, code: Path, job_file: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of one emulated job on CPU model `cpu`."""
    argv = [str(state.qemu()), "-L", str(state.folder / "rootfs"), "-cpu", cpu, str(state.python()),
            "-m", "edgecls.platforms.job", str(job_file)]
    return argv, _env(f"{state.folder / 'site'}{os.pathsep}{code}")


def native_command(code: Path, job_file: Path) -> tuple[list[str], dict[str, str]]:
    """The same job in the host's Python: the comparison the emulated outputs are held against."""
    return [sys.executable, "-m", "edgecls.platforms.job", str(job_file)], _env(str(code), host=True)


def _env(pythonpath: str, host: bool = False) -> dict[str, str]:
    keep = ("HOME", "TMPDIR", "LANG") + (("PATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH") if host else ())
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return env | {"PYTHONPATH": pythonpath, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                  "TF_CPP_MIN_LOG_LEVEL": "2"} | ({} if host else {"PATH": "/usr/bin:/bin"})


@dataclass
class Job:
    name: str  # the CPU model, or "native"
    argv: list[str]
    env: dict[str, str]
    folder: Path
    result: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def write_job(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(spec | {"out": str(folder)}))
    return path


def run_jobs(jobs: list[Job], parallel: int, timeout: float | None = None) -> list[Job]:
    """Run `jobs`, at most `parallel` at a time; each gets its result and outputs, or its error (exit code and
    the last line it wrote, or the timeout). Ctrl-C ends them all."""
    import numpy as np

    pending, running = list(jobs), []
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                j = pending.pop(0)
                log = open(j.folder / "stderr.txt", "wb")
                proc = subprocess.Popen(j.argv, env=j.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                running.append((j, proc, time.monotonic(), log))
            time.sleep(0.2)
            for item in list(running):
                j, proc, start, log = item
                late = timeout is not None and time.monotonic() - start > timeout
                if proc.poll() is None and not late:
                    continue
                if late and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    j.error = f"timed out after {timeout:.0f} s"
                running.remove(item)
                log.close()
                j.seconds = time.monotonic() - start
                if j.error is None:
                    _collect(j, proc.returncode, np)
    finally:
        for _job, proc, _, log in running:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    return jobs


def _collect(j: Job, code: int, np) -> None:
    try:
        j.result = json.loads((j.folder / "result.json").read_text())
        with np.load(j.folder / "outputs.npz") as z:
            j.outputs = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        lines = [ln for ln in (j.folder / "stderr.txt").read_text(errors="replace").splitlines() if ln.strip()]
        why = f"signal {-code}" if code < 0 else f"exit {code}"
        j.error = f"the {j.name} run ended ({why}) without a result" + (f": {lines[-1][:300]}" if lines else "")
        return
    if j.result.get("error"):
        j.error = j.result["error"]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
