"""Crash consistency: kill -9 `train`, `export --int8`, `verify` and `bench` at seeded random moments and
check that the bundle is always a bundle: the old one, the new one, or (export commits artifact by
artifact) a consistent step between them — never a mix within a file or a file that does not match
the manifest.

The way SQLite and file systems are tested: run the command on a small bundle (the `tiny`
architecture on the `synthetic` dataset, as the tests use), SIGKILL it (its whole process group:
bench measures in child processes) after a random delay drawn from [0, its uninterrupted duration],
then check:

- `edgecls info BUNDLE` exits 0: the manifest is valid and every recorded file matches its sha256
  (a commit journal a killed writer left is finished by that open: counted as `journals_finished`);
- the state: `old` (nothing changed), `new` (what the uninterrupted run changed, all of it) or
  `step` (some of it, consistent: export's artifacts commit one at a time);
- leftovers: temporary files and staging folders the kill left (`stray_after_kill`) are cleared by
  what the next writer does (`Bundle.open` + `remove_stale`): any left after that is a failure.

Usage:
    python -m benchmarks.crash_consistency --kills 20 --json crash.json
    python -m benchmarks.crash_consistency --kills 3 --commands export,verify   # a short run

CPU-light by default: each command on this bundle takes a few seconds to a quarter of a minute.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "export", "verify", "bench")
STRAY = re.compile(r"^\.(?:.*\.)?(?:tmp|stage|staging|old)-|^\.commit\.json$")


def _env() -> dict:
    path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _argv(command: str, bundle: Path) -> list[str]:
    base = [sys.executable, "-m", "edgecls.cli"]
    if command == "train":  # over an existing bundle, with another seed: the new bundle differs from the old
        return base + ["train", "--data", "synthetic", "--arch", "tiny", "--epochs", "2", "--batch-size", "32",
                       "--seed", "1", "--out", str(bundle)]
    if command == "export":
        return base + ["export", str(bundle), "--int8", "--calib-size", "32", "--reference-size", "16"]
    if command == "verify":
        return base + ["verify", str(bundle)]
    return base + ["bench", str(bundle), "--min-runs", "5", "--min-time", "0.05", "--warmup", "1"]


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=timeout)


def _items(bundle: Path) -> dict:
    """What a command can change: each recorded file's sha256, and each top-level section."""
    m = json.loads((bundle / "manifest.json").read_text())
    out = {f"file:{e['file']}": e["sha256"] for key in ("artifacts", "files") for e in m.get(key, [])}
    out.update({f"section:{k}": json.dumps(v, sort_keys=True) for k, v in m.items()
                if k not in ("artifacts", "files", "updated_at")})
    return out


def _changed(before: dict, now: dict) -> set[str]:
    return {k for k in before.keys() | now.keys() if before.get(k) != now.get(k)}


def _strays(bundle: Path) -> list[str]:
    found = [p.relative_to(bundle.parent).as_posix() for folder in (bundle, bundle / "openvino") if folder.is_dir()
             for p in folder.iterdir() if STRAY.match(p.name)]
    return found + [p.name for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}.")
                    and STRAY.match(p.name)]


def _next_writer_cleans(bundle: Path) -> None:
    """What the next writer of the bundle does before writing (Bundle.save, staged_bundle)."""
    code = ("import sys; from pathlib import Path; from edgecls.core.bundle import Bundle\n"
            "from edgecls.core.files import manifest_lock, remove_stale\n"
            "p = Path(sys.argv[1]); Bundle.open(p)\n"
            "with manifest_lock(p): remove_stale(p)\n"
            "remove_stale(p.parent, prefix=f'.{p.name}.')\n")
    r = _run([sys.executable, "-c", code, str(bundle)])
    if r.returncode:
        raise RuntimeError(r.stderr[-1000:])


def prepare(work: Path) -> dict[str, dict]:
    """The bundle before each command and the uninterrupted run of each: {command: {before, seconds, changed}}."""
    states: dict[str, dict] = {}
    base = work / "trained" / "b"
    r = _run(_argv("train", base)[:-4] + ["--seed", "0", "--out", str(base)])
    if r.returncode:
        raise RuntimeError(f"train failed: {r.stderr[-2000:]}")
    before = base
    for command in COMMANDS:
        after = work / f"after-{command}" / "b"
        shutil.copytree(before, after)
        t0 = time.perf_counter()
        r = _run(_argv(command, after))
        seconds = time.perf_counter() - t0
        if r.returncode not in (0, 1):  # 1: a gate failed (a 2-epoch tiny model's int8), still a complete run
            raise RuntimeError(f"{command} failed ({r.returncode}): {r.stderr[-2000:]}")
        states[command] = {"before": before, "seconds": seconds,
                           "changed": _changed(_items(before), _items(after))}
        before = after if command != "train" else base  # export starts from the seed-0 bundle
    return states


def kill_once(command: str, state: dict, work: Path, delay: float) -> dict:
    """Copy the bundle, start `command`, SIGKILL its process group after `delay` s, check the bundle."""
    folder = Path(tempfile.mkdtemp(prefix=f"{command}-", dir=work))
    bundle = folder / "b"
    shutil.copytree(state["before"], bundle)
    old = _items(bundle)
    p = subprocess.Popen(_argv(command, bundle), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(delay)
    finished = p.poll() is not None
    if not finished:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    out = {"command": command, "delay_s": round(delay, 3), "killed": not finished, "failures": []}
    out["journal_left"] = (bundle / ".commit.json").exists()
    out["stray_after_kill"] = _strays(bundle)
    info = _run([sys.executable, "-m", "edgecls.cli", "info", str(bundle), "--json"])
    if info.returncode != 0:
        out["failures"].append(f"info exit {info.returncode}: {(info.stderr or info.stdout).strip()[-500:]}")
        out["state"] = "broken"
    else:
        changed = _changed(old, _items(bundle))
        out["state"] = "old" if not changed else "new" if changed == state["changed"] else "step"
        if changed - state["changed"]:  # a change the uninterrupted run does not make (train: all of them)
            out["state"] = "new" if command == "train" else "step"
    try:
        _next_writer_cleans(bundle)
    except RuntimeError as e:
        out["failures"].append(f"the next writer could not open the bundle: {e}")
    left = _strays(bundle)
    if left:
        out["failures"].append(f"left after the next writer's clean-up: {left}")
    shutil.rmtree(folder, ignore_errors=True)
    return out


def run(kills: int, seed: int, commands: list[str], work: Path, log=print) -> dict:
    t0 = time.perf_counter()
    states = prepare(work)
    rng = random.Random(seed)
    results: dict[str, dict] = {}
    for command in commands:
        st = states[command]
        rows = []
        for i in range(kills):
            rows.append(row := kill_once(command, st, work, rng.uniform(0, st["seconds"])))
            log(f"{command} {i + 1}/{kills}: kill at {row['delay_s']:.2f}s -> {row['state']}"
                + (" (journal finished)" if row["journal_left"] else "")
                + (f" strays {len(row['stray_after_kill'])}" if row["stray_after_kill"] else "")
                + (f" FAIL {row['failures']}" if row["failures"] else ""))
        states_seen: dict[str, int] = {}
        for r in rows:
            states_seen[r["state"]] = states_seen.get(r["state"], 0) + 1
        results[command] = {
            "uninterrupted_s": round(st["seconds"], 2), "kills": sum(r["killed"] for r in rows),
            "finished_before_kill": sum(not r["killed"] for r in rows), "states": states_seen,
            "journals_finished": sum(r["journal_left"] for r in rows),
            "kills_leaving_strays": sum(bool(r["stray_after_kill"]) for r in rows),
            "failures": [f for r in rows for f in r["failures"]], "rows": rows}
    return {"date": _dt.date.today().isoformat(), "seed": seed, "kills_per_command": kills,
            "seconds": round(time.perf_counter() - t0, 1), "commands": results,
            "failures": sum(len(r["failures"]) for r in results.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="kills per command (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated, of " + ", ".join(COMMANDS))
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--smoke", action="store_true", help="one kill of verify: the harness still runs (CI)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.kills, a.commands = 1, "verify"
    commands = [c for c in a.commands.split(",") if c]
    if a.kills < 1 or not set(commands) <= set(COMMANDS):
        ap.error(f"--kills must be >= 1 and --commands among {', '.join(COMMANDS)}")
    with tempfile.TemporaryDirectory(prefix="edgecls-crash-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(a.kills, a.seed, commands, work)
    print(f"\n{'command':8} {'kills':>5} {'states':32} {'journals':>8} {'strays':>6} {'failures':>8}")
    for c, r in result["commands"].items():
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        print(f"{c:8} {r['kills']:>5} {states:32} {r['journals_finished']:>8} {r['kills_leaving_strays']:>6} "
              f"{len(r['failures']):>8}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
