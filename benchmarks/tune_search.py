"""`edgecls tune` on a real folder, as a user runs it: wall time, the pick, every candidate (issue: tune).

Writes the folder of a `benchmarks.small_data` case (64x64 RGB PNGs; fashion-1000 needs
`apt-get install dataset-fashion-mnist`, photos-4cls `apt-get install tuxpaint-stamps-default`), runs
`edgecls tune` on it in a subprocess (the CLI, exactly), and prints one table from the bundle's tune.json:
each candidate's status, cost, and its best file's accuracy (95% interval), p50 and size — the fully
trained candidates are what `edgecls pipeline --arch ...` would give by hand, so the table compares the
pick with every hand choice the search trained.

    .venv/bin/python -m benchmarks.tune_search --case fashion-1000 --max-latency 3 --max-size 2 --budget 20m \\
        --json docs/tune-fashion-1000.json

The machine's CPU and its int8-relevant instructions are recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.small_data import CASES, write_folder


def table(t: dict) -> str:
    rows = ["| candidate | status | cost s | best file | accuracy (95%) | p50 ms | KB | why |", "|" + "---|" * 8]
    for c in t["candidates"]:
        pts = [p for p in c.get("points", []) if p.get("accuracy") is not None]
        best = max(pts, key=lambda p: (p["qualifies"], p["accuracy"]), default=None)
        acc = (f"{best['accuracy']:.3f} [{best['accuracy_ci'][0]:.3f}-{best['accuracy_ci'][1]:.3f}]" if best else "")
        rows.append(f"| {c['candidate']} | {c.get('status', '')} | {c.get('cost_s', 0):.0f} | "
                    f"{best['file'] if best else ''} | {acc} | {best['p50_ms']:.3f} | {best['size_kb']:.0f} | "
                    f"{c.get('why', '')[:120]} |" if best else
                    f"| {c['candidate']} | {c.get('status', '')} | {c.get('cost_s', 0):.0f} | | | | | "
                    f"{c.get('why', '')[:160]} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="fashion-1000", choices=[c.name for c in CASES])
    ap.add_argument("--max-latency", type=float, required=True)
    ap.add_argument("--max-size", type=float, default=None)
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--candidates", default=None)
    ap.add_argument("--accept-inconclusive", action="store_true",
                    help="small folders: parity can rarely be *shown* on a few dozen images")
    ap.add_argument("--work", type=Path, default=None, help="keep the folder and bundles here (resumable)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="CI: digits-200, the `tiny` candidate, screening only")
    args = ap.parse_args(argv)
    if args.smoke:
        args.case, args.candidates, args.budget = "digits-200", "tiny", "5m"
    from edgecls.bench.hardware import detect

    case = next(c for c in CASES if c.name == args.case)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgecls-tune-"))
    data = work / case.name
    if not data.is_dir():
        write_folder(case, data)
    cmd = [sys.executable, "-m", "edgecls.cli", "tune", "--data", str(data), "--max-latency", str(args.max_latency),
           "--budget", args.budget, "--out", str(work / f"{case.name}-tuned")]
    cmd += ["--max-size", str(args.max_size)] if args.max_size else []
    cmd += ["--candidates", args.candidates] if args.candidates else []
    cmd += ["--accept-inconclusive"] if args.accept_inconclusive else []
    cmd += ["--screen-only"] if args.smoke else []
    t0 = time.monotonic()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    wall = time.monotonic() - t0
    sys.stderr.write(proc.stderr[-6000:])
    tune_json = work / f"{case.name}-tuned" / "tune.json"
    if not tune_json.is_file():
        tune_json = work / f"{case.name}-tuned.tune" / "tune.json"
    t = json.loads(tune_json.read_text()) if tune_json.is_file() else {"candidates": []}
    cpu = detect().to_dict()
    print(f"{case.name}: exit {proc.returncode}, wall {wall:.0f} s (budget {args.budget}); "
          f"CPU {cpu.get('model')} ({', '.join(cpu.get('features', []))})")
    if t.get("pick"):
        p = t["pick"]
        print(f"pick: {p['candidate']} {p['file']} accuracy {p['accuracy']:.3f} {p['accuracy_ci']} p50 "
              f"{p['p50_ms']:.3f} ms {p['size_kb']:.0f} KB — {p['why']}")
    print(table(t))
    if args.json:
        args.json.write_text(json.dumps({"case": case.name, "command": cmd[2:], "exit": proc.returncode,
                                         "wall_s": round(wall, 1), "cpu": cpu, "tune": t}, indent=1, default=str))
    # exit 1 is an answer (no candidate met the limits); anything else is the run itself failing
    return proc.returncode if proc.returncode not in (0, 1) else 0


if __name__ == "__main__":
    raise SystemExit(main())
