"""Is an imported model treated exactly like a trained one? A bundle's own model.keras imported as if foreign.

Takes a trained bundle (or trains one: --data, --arch), imports its model.keras with `edgecls import` on the
same data and split options (same seed, fractions, limit: the same held-out, validation and calibration
images), then exports (float + int8), verifies and benches both bundles with the same settings, and compares,
per exported file: the parity outcome and accuracy (must be identical), and the p50 with its 95% interval
(must overlap: the same work, timed twice), and the recommendation.

    .venv/bin/python -m benchmarks.import_parity --data digits --arch small          # train, then compare
    .venv/bin/python -m benchmarks.import_parity --bundle models/photos-efficientnet-lite0 --json out.json
    .venv/bin/python -m benchmarks.import_parity --smoke                              # CI: tiny, quick

Not a timed test: a measurement, quoted in docs/measurements.md with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _prepare(bundle: Path, bench_cfg) -> None:
    """Export float + int8, verify and bench `bundle` where it has not been."""
    from edgecls.bench.measure import bench
    from edgecls.core.bundle import Bundle
    from edgecls.export import ExportConfig, export
    from edgecls.verify.parity import verify

    m = Bundle.open(bundle).manifest
    if len(m["artifacts"]) == 1:
        export(bundle, ExportConfig(int8=True))
    verify(bundle)
    bench(bundle, bench_cfg)


def _rows(bundle: Path) -> dict:
    from edgecls.core import results
    from edgecls.core.bundle import Bundle

    m = Bundle.open(bundle).manifest
    formats = {a["file"]: a["format"] for a in m["artifacts"]}
    verify = {r["file"]: r for r in results.current(m, "verify") if r.get("runtime") == formats.get(r["file"])}
    bench = {r["file"]: r for r in results.current(m, "bench") if r["batch"] == 1 and r["runtime"] != "keras"}
    chosen = (m.get("decision") or {}).get("chosen") or {}
    return {"verify": verify, "bench": bench, "chosen": chosen.get("file"),
            "accuracy": m["metrics"]["test"]["accuracy"]}


def compare(original: Path, imported: Path) -> dict:
    a, b = _rows(original), _rows(imported)
    files = sorted(set(a["verify"]) | set(b["verify"]))
    out = []
    for f in files:
        va, vb = a["verify"].get(f, {}), b["verify"].get(f, {})
        ba, bb = a["bench"].get(f, {}), b["bench"].get(f, {})
        ca, cb = ba.get("p50_ci_ms"), bb.get("p50_ci_ms")
        overlap = bool(ca and cb and ca[0] <= cb[1] and cb[0] <= ca[1])
        out.append({"file": f, "outcome": [va.get("outcome"), vb.get("outcome")],
                    "accuracy": [va.get("accuracy"), vb.get("accuracy")],
                    "same_outcome": va.get("outcome") == vb.get("outcome"),
                    "same_accuracy": va.get("accuracy") == vb.get("accuracy"),
                    "p50_ms": [ba.get("p50_ms"), bb.get("p50_ms")], "p50_ci_ms": [ca, cb],
                    "p50_ratio": bb["p50_ms"] / ba["p50_ms"] if ba.get("p50_ms") and bb.get("p50_ms") else None,
                    "within_noise": overlap})
    return {"files": out, "keras_accuracy": [a["accuracy"], b["accuracy"]], "chosen": [a["chosen"], b["chosen"]],
            "all_outcomes_equal": all(r["same_outcome"] for r in out),
            "all_latencies_within_noise": all(r["within_noise"] for r in out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, help="a trained bundle (default: train one with --data/--arch)")
    p.add_argument("--data", default="digits")
    p.add_argument("--arch", default="small")
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny and quick (CI)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from edgecls.bench.hardware import detect
    from edgecls.bench.measure import BenchConfig
    from edgecls.core.bundle import Bundle
    from edgecls.train.fit import TrainConfig, train
    from edgecls.train.importer import ImportConfig, import_model

    if args.smoke:
        args.data, args.arch, args.epochs, args.rounds = "synthetic", "tiny", 3, 1
    cfg = BenchConfig(min_runs=20 if args.smoke else 50, min_time=0.05 if args.smoke else 0.2, rounds=args.rounds)
    with tempfile.TemporaryDirectory(prefix="edgecls-import-parity-") as tmp:
        original = args.bundle or Path(tmp) / "original"
        t0 = time.perf_counter()
        if args.bundle is None:
            train(TrainConfig(data=args.data, arch=args.arch, epochs=args.epochs, limit=args.limit, out=original))
        m = Bundle.open(original).manifest
        tc = m["training"]["config"]
        data = tc["data"] if m["dataset"]["name"] != "folder" else str((original / tc["data"]).resolve())
        imported = Path(tmp) / "imported"
        import_model(ImportConfig(model=original / "model.keras", data=data, out=imported, seed=tc["seed"],
                                  test_split=tc["test_split"], val_split=tc["val_split"], limit=tc["limit"]))
        same_split = (Bundle.open(imported).split_ids("test") == Bundle.open(original).split_ids("test"))
        _prepare(original, cfg)
        _prepare(imported, cfg)
        result = compare(original, imported) | {
            "bundle": str(args.bundle or f"{args.data}-{args.arch} (trained here)"), "same_split": same_split,
            "seconds": round(time.perf_counter() - t0, 1), "cpu": detect().to_dict(),
            "bench": {"rounds": cfg.rounds, "min_runs": cfg.min_runs, "min_time": cfg.min_time}}
    for r in result["files"]:
        ci = " vs ".join(f"{c[0]:.3f}-{c[1]:.3f}" if c else "-" for c in r["p50_ci_ms"])
        print(f"{r['file']:<26} outcome {r['outcome'][0]}/{r['outcome'][1]}  accuracy {r['accuracy'][0]}/"
              f"{r['accuracy'][1]}  p50 CI {ci} ms  {'within noise' if r['within_noise'] else 'APART'}")
    print(f"same split: {result['same_split']}; chosen: {result['chosen'][0]} / {result['chosen'][1]}; outcomes "
          f"equal: {result['all_outcomes_equal']}; latencies within noise: {result['all_latencies_within_noise']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result["all_outcomes_equal"] and result["same_split"] else 1


if __name__ == "__main__":
    sys.exit(main())
