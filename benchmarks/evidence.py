"""Evidence sized to each question (issue: the seed's own case ends with a file to ship).

Runs `edgecls pipeline` as a user would — on digits (`make demo`), and on folders cut as
`benchmarks/small_data.py` cuts them (digits-200, the 149-photo folder, the 1,000-image
Fashion-MNIST folder, optionally with `--images` pointing at other Fashion-MNIST images) — and
prints, per run: the exit code, the verify outcome counts (pass / inconclusive / fail), the file
shipped (or why nothing is), which images judged the float and int8 files, and the wall time.
`--tree DIR` runs another checkout (e.g. the code before the change) for a before/after table.

    .venv/bin/python -m benchmarks.evidence --cases demo digits-200 --json out.json
    .venv/bin/python -m benchmarks.evidence --cases fashion-1000 --arch efficientnet-lite0 --images 10000
    .venv/bin/python -m benchmarks.evidence --verify-time models/digits-small --repeat 3

Judges nothing: it reports; docs/measurements.md keeps the numbers with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.small_data import CASES, _source, write_folder

ROOT = Path(__file__).resolve().parent.parent


def _other_images(case_name: str, folder: Path, out: Path, n: int) -> Path:
    """`n` images of the case's source that are not in `folder` (its files are named by source index)."""
    from PIL import Image

    case = next(c for c in CASES if c.name == case_name)
    x, y, _ = _source(case.source)
    used = {int(p.stem) for p in folder.rglob("*.png")}
    pool = [i for i in np.flatnonzero(np.isin(y, case.classes)) if i not in used]
    pick = np.random.default_rng(1).choice(pool, min(n, len(pool)), replace=False)
    out.mkdir(parents=True, exist_ok=True)
    for i in pick:
        Image.fromarray(x[i]).resize((64, 64), Image.Resampling.BILINEAR).convert("RGB").save(out / f"u{i}.png")
    return out


def run(data: str, out: Path, tree: Path, extra: list[str], timeout: int) -> dict:
    cmd = [sys.executable, "-m", "edgecls.cli", "pipeline", "--data", data, "--out", str(out), "--json", *extra]
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"data": data, "extra": extra, "timed_out": timeout}
    row = {"data": data, "extra": extra, "exit": p.returncode, "seconds": round(time.perf_counter() - t0, 1)}
    try:
        res = json.loads(p.stdout)
    except json.JSONDecodeError:
        row["error"] = p.stderr.strip().splitlines()[-1:] or ["?"]
        return row
    v, d = res["verify"], res["recommendation"]
    row.update(counts=v["counts"], shipped=(d["chosen"] or {}).get("file"), ruled_out_by=d.get("ruled_out_by"),
               rows={r["file"]: {"outcome": r["outcome"], "judged_on": (r.get("judged_on") or {}).get("kinds"),
                                 "changed": r.get("changed"), "images": r.get("images")} for r in v["rows"]},
               int8=[{"file": a["file"], "recipe": (a.get("int8") or {}).get("recipe"),
                      "attempts": len((a.get("int8") or {}).get("attempts", [])),
                      "selected_on": ((a.get("int8") or {}).get("selected_on") or {}).get("kinds")}
                     for a in res["export"]["artifacts"] if a["precision"] == "int8"])
    return row


def verify_time(bundle: str, tree: Path, repeat: int) -> dict:
    """Wall and CPU seconds of `edgecls verify BUNDLE` (a fresh process each time) on a copy of the bundle."""
    import resource
    import shutil

    times, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "b"
        shutil.copytree(bundle, copy)
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgecls.cli", "verify", str(copy)], cwd=tree, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=str(tree)), check=False)
            times.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"bundle": bundle, "tree": str(tree), "wall_s": [round(t, 2) for t in times],
            "cpu_s": [round(c, 2) for c in cpu], "median_wall_s": round(float(np.median(times)), 2),
            "median_cpu_s": round(float(np.median(cpu)), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="*", default=["demo", "digits-200"],
                    help="demo (digits, as make demo), or small_data case names (folders)")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--images", type=int, default=0, help="also run with --images of this many other images")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--verify-time", default=None, help="time verify on this bundle instead")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="CI: time verify once on the --verify-time bundle")
    args = ap.parse_args(argv)
    if args.smoke:
        args.repeat = 1
    if args.verify_time:
        rows = [verify_time(args.verify_time, args.tree, args.repeat)]
    else:
        rows = []
        work = Path(tempfile.mkdtemp(prefix="edgecls-evidence-"))
        for name in args.cases:
            extra = ["--batch", "1"] + (["--arch", args.arch] if args.arch else [])
            if name == "demo":
                rows.append({"case": name, **run("digits", work / "demo", args.tree, extra[2:] + ["--batch", "1,32"],
                                                 args.timeout)})
                continue
            folder = write_folder(next(c for c in CASES if c.name == name), work / name)
            rows.append({"case": name, **run(str(folder), work / f"{name}-b", args.tree, extra, args.timeout)})
            if args.images:
                other = _other_images(name, folder, work / f"{name}-more", args.images)
                rows.append({"case": f"{name} --images {args.images}",
                             **run(str(folder), work / f"{name}-bi", args.tree, extra + ["--images", str(other)],
                                   args.timeout)})
    text = json.dumps(rows, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
