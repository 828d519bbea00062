"""Does "ship this file" hold still? `edgecls bench` + the decision, run several times on one bundle.

Trains, exports (float and int8) and verifies a bundle once (or takes an existing one), then runs
`bench` with the pipeline's settings (6 interleaved rounds) `--runs` times on the same bundle and
reports, per run, the chosen file, the files tied with it and the p50 of each; and in the end how
often the answer changed. The answer *holds* when a run ships the same file as the most frequent
choice, or declares a tie that contains it (the same declared tie). Target: it holds in >= 4 of 5
runs, and every disagreement is between files the rule called tied.

    .venv/bin/python -m benchmarks.decision_stability                        # digits, 5 runs
    .venv/bin/python -m benchmarks.decision_stability --data fashion-mnist --runs 5 --json out.json
    .venv/bin/python -m benchmarks.decision_stability --smoke                # CI: tiny, 2 quick runs

Not a timed test: a measurement, quoted in docs/measurements.md with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def prepare(data: str, arch: str, out: Path, epochs: int | None) -> Path:
    """Train, export float + int8, verify: the bundle every run decides on."""
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train
    from edgecls.verify.parity import verify

    train(TrainConfig(data=data, arch=arch, out=out, epochs=epochs))
    export(out, ExportConfig(int8=True))
    verify(out)
    return out


def one_run(bundle: Path, cfg_kw: dict) -> dict:
    from edgecls.bench.decide import Constraints
    from edgecls.bench.measure import BenchConfig, bench

    t0 = time.perf_counter()
    r = bench(bundle, BenchConfig(constraints=Constraints(accept_inconclusive=cfg_kw.pop("accept", False)),
                                  **cfg_kw))
    d = r.decision
    p50 = {row["file"]: row["p50_ms"] for row in r.rows if row["batch"] == 1 and row["runtime"] != "keras"}
    return {"chosen": d.chosen.file if d.chosen else None, "tied": d.tied, "why": d.why,
            "ruled_out_by": d.ruled_out_by, "p50_ms": p50, "seconds": round(time.perf_counter() - t0, 1)}


def summarise(runs: list[dict]) -> dict:
    """The most frequent choice, and in how many runs the answer held: the same file shipped, or the same
    tie declared (the tie of the most frequent answer, when it names two files or more)."""
    counts = collections.Counter(r["chosen"] for r in runs)
    mode, _ = counts.most_common(1)[0]
    ties = collections.Counter(frozenset(r["tied"] or []) for r in runs if r["chosen"] == mode)
    modal_tie = ties.most_common(1)[0][0] if ties else frozenset()
    held = sum(1 for r in runs if r["chosen"] == mode or (len(modal_tie) > 1 and frozenset(r["tied"]) == modal_tie))
    changes = sum(1 for a, b in zip(runs, runs[1:]) if a["chosen"] != b["chosen"])
    # a disagreement is explained when the rule called the two files tied in that run (or in the modal runs)
    unexplained = [r["chosen"] for r in runs if r["chosen"] != mode and not (
        mode in (r["tied"] or []) or r["chosen"] in modal_tie)]
    return {"runs": len(runs), "mode": mode, "held": held, "choices": dict(counts), "changes": changes,
            "disagreements_not_tied": unexplained, "target_met": held >= max(1, len(runs) - 1) and not unexplained}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--arch", default="small")
    ap.add_argument("--bundle", type=Path, help="an exported, verified bundle to reuse (default: make one)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="tiny data, 2 quick runs (CI: the script still runs)")
    args = ap.parse_args(argv)
    from edgecls.bench.hardware import detect
    from edgecls.pipeline import PipelineConfig

    bench_cfg = PipelineConfig().bench  # the pipeline's own settings: what a user gets from `edgecls pipeline`
    cfg_kw = {"batches": [1], "rounds": bench_cfg.rounds, "min_runs": bench_cfg.min_runs,
              "min_time": bench_cfg.min_time, "warmup": bench_cfg.warmup}
    if args.smoke:
        args.data, args.arch, args.runs, args.epochs = "synthetic", "tiny", 2, 2
        cfg_kw.update(min_runs=5, min_time=0.01, rounds=1, warmup=1, accept=True, runtimes=["onnx", "tflite"])
    with tempfile.TemporaryDirectory(prefix="edgecls-stability-") as tmp:
        bundle = args.bundle or prepare(args.data, args.arch, Path(tmp) / "b", args.epochs)
        runs = []
        for i in range(args.runs):
            runs.append(one_run(bundle, dict(cfg_kw)))
            r = runs[-1]
            print(f"run {i + 1}: ship {r['chosen']} (tied: {', '.join(r['tied']) or '-'}) "
                  f"[{r['seconds']} s]; {r['why'] or r['ruled_out_by']}", flush=True)
    summary = summarise(runs)
    cpu = detect()
    from edgecls.core.bundle import Bundle

    label = Bundle.open(bundle).manifest["dataset"]["name"] if args.bundle else args.data
    print(f"{label}: the answer held in {summary['held']} of {summary['runs']} runs (mode {summary['mode']}; "
          f"choices {summary['choices']}; changed {summary['changes']} times between consecutive runs; "
          f"disagreements between files not called tied: {summary['disagreements_not_tied'] or 'none'}); "
          f"target >= {max(1, args.runs - 1)}: {'met' if summary['target_met'] else 'NOT met'}")
    print(f"CPU: {cpu.model}; {', '.join(cpu.features) or 'no int8 dot-product instructions'}")
    if args.json:
        args.json.write_text(json.dumps({"data": label, "cpu": cpu.to_dict(), "bench": cfg_kw, "runs": runs,
                                         "summary": summary}, indent=1, default=str))
    return 0 if summary["target_met"] or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
