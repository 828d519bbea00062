"""Latency and throughput per runtime x precision x device x batch size: the bench session.

Each configuration runs in a fresh process, so thread settings take effect (TensorFlow fixes its
pools when it starts), one runtime's libraries do not weigh on another's peak RSS, and no state
carries over; what happens in that process (warm-up, the timed span, the outputs' check) is
`measure.measure_one`. Here: the options, the plan, the interleaved rounds, the environment
beside the numbers, and the recommendation.
"""

from __future__ import annotations

import math
import multiprocessing
import platform
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core import results
from ..core.bundle import Bundle, now
from ..core.errors import EdgeclsError
from ..core.hooks import Hooks
from ..core.names import MAX_BATCH, Device, Precision, Runtime, parse
from ..export import reference
from ..train import recorded
from . import latency
from .decide import Constraints, Decision, decide
from .hardware import detect, int8_note, physical_cores, usable_cores
from .peak import probe
from .timing import (
    TIMED_SPAN,
    in_fresh_process,
    measure_one,
    pool_rounds,
)


@dataclass
class BenchConfig:
    """Options of `edgecls bench`. Empty lists mean "every available one"."""

    runtimes: list[str] = field(default_factory=list)  # registered runtime names
    precisions: list[Precision] = field(default_factory=list)
    device: Device = Device.cpu
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 10  # at least this many untimed runs before timing...
    warmup_time: float = 0.1  # ...and this many seconds, then on until the per-call time settles
    min_runs: int = 50  # timed runs per round, at least...
    min_time: float = 0.5  # ...and at least this many seconds of them
    #: measurements per configuration, each in a fresh process, interleaved with the others: the round is the unit
    #: of evidence; 6 rounds' p50s give a 96.9% interval of the p50 (latency.ROUNDS_FOR_LEVEL)
    rounds: int = latency.ROUNDS_FOR_LEVEL
    constraints: Constraints = field(default_factory=Constraints)  # for the recommendation

    def validate(self) -> None:
        self.runtimes = parse(runtimes.RUNTIMES, self.runtimes, "--runtime")
        self.precisions = parse(Precision, self.precisions, "--precision")
        self.device = Device(self.device)
        if not self.batches:
            raise EdgeclsError("--batch: name at least one batch size, e.g. 1,32")
        for b in self.batches:
            if not 1 <= b <= MAX_BATCH:
                raise EdgeclsError(f"--batch {b}: batch sizes must be between 1 and {MAX_BATCH}")
        runtimes.check_threads(self.threads)
        if self.warmup < 0 or self.warmup_time < 0:
            raise EdgeclsError(f"--warmup {self.warmup} / --warmup-time {self.warmup_time:g}: must be >= 0")
        if self.min_runs < 1:
            raise EdgeclsError(f"--min-runs {self.min_runs}: must be at least 1")
        if not self.min_time > 0:
            raise EdgeclsError(f"--min-time {self.min_time:g}: must be more than 0 seconds (timing runs until "
                               "both --min-runs and --min-time are reached), e.g. 0.5")
        if self.rounds < 1:
            raise EdgeclsError(f"--rounds {self.rounds}: must be at least 1 ({latency.ROUNDS_FOR_LEVEL} or more give "
                               "the p50 a 95% interval across processes)")
        self.constraints.validate(self.batches)
        self._check_tail()

    def _check_tail(self) -> None:
        """A tail percentile the decision relies on needs MLPerf's minimum runs, guaranteed before measuring:
        p99 whenever it is asked for, p90 when --max-latency bounds it."""
        name = self.constraints.percentile
        if name != "p99" and self.constraints.max_latency_ms is None:
            return
        runs, need = self.min_runs * self.rounds, latency.MIN_RUNS[name]
        if runs < need:
            raise EdgeclsError(f"--percentile {name}: too few runs for {name}: --min-runs {self.min_runs} x --rounds "
                               f"{self.rounds} = {runs} timed runs per configuration, {name} needs at least {need} "
                               f"(MLPerf's minimum); use --min-runs {math.ceil(need / self.rounds)}")



def environment(threads: int, explicit: bool) -> dict:
    """The machine and libraries beside the numbers: the CPU and its int8-relevant instruction set,
    the threads every runtime got (and why), the measured matrix-multiply peak, library versions."""
    cpu = detect()
    versions = {}
    dists = [d for name in runtimes.RUNTIMES for d in runtimes.runner_class(name).dists] + ["numpy"]
    for pkg in dists:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    usable = usable_cores()
    return {"cpu": cpu.model, "cpu_info": cpu.to_dict(), "cores": cpu.logical_cores, "usable_cores": usable,
            "threads": threads, "threads_from": "--threads" if explicit else usable["from"],
            "timed_span": TIMED_SPAN, "ci": "p50: order-statistic interval of the median of the rounds' p50s, at "
            "the exact level in each row's p50_ci_level (96.9% for 6 rounds); p90/p99: the pooled runs' "
            f"{latency.LEVEL:.0%} order-statistic interval (independent calls), widened to the rounds' range from "
            f"{latency.MIN_ROUNDS} rounds on (docs/bench.md)",
            "min_runs_for": {k: v for k, v in latency.MIN_RUNS.items() if k != "p50"},
            "peak": probe(threads), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions}


def configurations(bundle: Bundle, cfg: BenchConfig) -> tuple[list[dict], list[str]]:
    """The (runtime, precision, file) configurations to measure, and notes on what was skipped."""
    explicit_rt, explicit_p = bool(cfg.runtimes), bool(cfg.precisions)
    names = cfg.runtimes or [r for r in runtimes.RUNTIMES if runtimes.runner_class(r).by_default]
    precisions = cfg.precisions or [Precision.fp32, Precision.int8]
    todo, notes = [], []
    for name in names:
        cls = runtimes.runner_class(name)
        if not cls.installed():
            if explicit_rt:
                raise EdgeclsError(f"--runtime {name}: its package is not installed "
                                   f"(pip install 'edgecls[{cls.extra}]')")
            notes.append(f"skipped {name}: not installed")
            continue
        for p in precisions:
            art = next((a for a in bundle.manifest["artifacts"] if cls.runs(a) and a["precision"] == p),
                       None)
            if art is None:
                if name == Runtime.keras and p != Precision.fp32:
                    continue
                if explicit_rt and explicit_p:
                    raise EdgeclsError(f"{bundle.path}: no {name} {p.value} artifact; run 'edgecls export"
                                       f"{' --int8' if p == 'int8' else ' --fp16' if p == 'fp16' else ''}' first")
                notes.append(f"skipped {name} {p.value}: not exported")
                continue
            todo.append({"runtime": str(name), "precision": p.value, "file": art["file"],
                         "bytes": art.get("total_bytes", art["bytes"])})
    if not todo:
        raise EdgeclsError(f"{bundle.path}: nothing to benchmark ({'; '.join(notes) or 'no artifacts'})")
    return todo, notes


@dataclass
class BenchResult:
    """What `bench` measured: one row (a dict of `CSV_FIELDS` and more) per configuration x batch, and
    the recommendation made from it and the verify results."""

    at: str
    environment: dict
    config: dict
    notes: list[str]
    rows: list[dict]
    decision: Decision | None = None
    save_error: str | None = None  # the results could not be stored (read-only bundle, trained again meanwhile)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "decision"} | {
            "decision": self.decision.to_dict() if self.decision else None}


def bench(bundle_path: str | Path, cfg: BenchConfig, *, hooks: Hooks | None = None) -> BenchResult:
    """Measure every planned configuration at every batch size; store and return the results.

    With `cfg.rounds` > 1 each configuration is measured that many times, each time in a fresh
    process, the configurations taking turns (round r starts at the r-th), and its timings pooled:
    on a machine whose speed drifts, every configuration then sees the same drift, and the ratios
    between them hold. `hooks.measured(row)` hears each measurement (`edgecls.core.hooks.Hooks`).

    Raises:
        EdgeclsError: bad options, missing artifacts, a device or runtime that is not available.
    """
    import tempfile

    hooks = hooks or Hooks()
    cfg.validate()
    cfg.constraints.device = cfg.device.value  # the decision needs parity shown on the device benchmarked
    bundle = Bundle.open(bundle_path)
    todo, notes = configurations(bundle, cfg)
    for item in todo:
        bundle.checked_path(item["file"])
    x, source = inputs(bundle, limit=max(cfg.batches))  # no more images decoded than a batch needs
    if source != "dataset":
        notes.append(f"inputs: {source}")
    threads = cfg.threads or physical_cores()  # usable cores; the same for every runtime, stated beside the numbers
    rows = []
    session = uuid.uuid4().hex[:12]  # rows of one session share rounds: round k of each was measured side by side
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgecls-bench-") as tmp:
        for batch in cfg.batches:
            images = np.resize(x, (batch, *x.shape[1:]))  # held-out images, repeated if batch > held-out
            path = Path(tmp) / f"batch{batch}.npy"
            np.save(path, images)
            specs = [{"runtime": item["runtime"], "target": runtimes.RUNTIMES.target(item["runtime"]),
                      "path": str(bundle.path / item["file"]), "device": cfg.device.value,
                      "threads": threads, "images": str(path), "warmup": cfg.warmup, "warmup_time": cfg.warmup_time,
                      "min_runs": cfg.min_runs, "min_time": cfg.min_time, "precision": item["precision"],
                      "raw": True} for item in todo]
            measured = [[] for _ in todo]
            for r in range(cfg.rounds):  # round r starts at the r-th configuration: drift hits all alike
                for i in [(r + k) % len(todo) for k in range(len(todo))]:
                    measured[i].append(in_fresh_process(measure_one, specs[i], ctx))
                    if cfg.rounds > 1:
                        hooks.measured(todo[i] | {"batch": batch, "round": r + 1, "rounds": cfg.rounds,
                                               "p50_ms": measured[i][-1]["p50_ms"]})
            for item, runs in zip(todo, measured):
                row = {"runtime": item["runtime"], "precision": item["precision"], "file": item["file"],
                       "file_bytes": item["bytes"], "device": cfg.device.value, "batch": batch,
                       "threads": threads, "session": session, **pool_rounds(runs, batch),
                       "timed": runtimes.runner_class(item["runtime"]).timed}
                rows.append(row)
                if cfg.rounds == 1:
                    hooks.measured(row)
    _speedups(rows)
    env = environment(threads, cfg.threads is not None)
    _efficiency(rows, bundle.manifest["architecture"].get("macs_per_image"), env["peak"])
    notes += _int8_notes(rows, detect())
    notes += [f"{r['runtime']} {r['precision']} batch {r['batch']}: the outputs read while timing differ from a fresh "
              f"runner's predictions for the same images (max |Δp| {r['outputs_max_abs_diff']}, tolerance "
              f"{r['outputs_tolerance']}): its timings are of something else; it is never recommended"
              for r in rows if not r["outputs_ok"]]
    rows[:] = [results.bind(r, bundle.manifest) for r in rows]  # each row names the bytes it measured
    result = BenchResult(now(), env, asdict(cfg), notes, rows)
    old = (bundle.manifest.get("bench") or {}).get("rows", [])
    bundle.manifest["bench"] = result.to_dict() | {"rows": results.merge(old, rows, "bench")}
    result.decision = decide(bundle.manifest, cfg.constraints)
    bundle.manifest["decision"] = result.decision.to_dict()
    if result.decision.chosen is not None:  # bound to its bytes: predict, Classifier and app follow it while current
        chosen = next(a for a in bundle.manifest["artifacts"] if a["file"] == result.decision.chosen.file)
        bundle.manifest["decision"]["chosen"] |= {"sha256": chosen["sha256"],
                                                  "bundle_id": results.identity(bundle.manifest)}
    try:
        bundle.save()
    except EdgeclsError as e:  # the measurements are still returned and shown; the CLI says why they were not kept
        result.save_error = str(e)
    return result


def inputs(bundle: Bundle, limit: int | None = None) -> tuple[np.ndarray, str]:
    """Held-out images to time (every runtime the same batch; at most `limit`), and where they came from:
    the dataset, or the bundle's reference data where the dataset is not here (a device)."""
    try:
        x, _ = recorded.heldout(bundle, limit=limit)
        return x, "dataset"
    except EdgeclsError as e:
        if "reference" not in bundle.manifest:
            raise EdgeclsError(f"{e}; and the bundle has no reference data to benchmark with instead "
                               "(re-export it with 'edgecls export')") from e
        return reference.load(bundle).images, "the bundle's reference images (the dataset is not here)"


def _efficiency(rows: list[dict], macs: int | None, peak: dict | None) -> None:
    """Achieved GOP/s (2 x MACs x images/s) and its share of this CPU's measured peak, per row."""
    for row in rows:
        row["gops"] = 2 * macs * row["throughput_ips"] / 1e9 if macs else None
        ref = peak and peak.get("int8_gops" if row["precision"] == "int8" else "fp32_gops")
        row["peak_fraction"] = row["gops"] / ref if row["gops"] and ref else None


def _int8_notes(rows: list[dict], cpu) -> list[str]:
    """Where int8 is slower than fp32 for one runtime at one batch size: say so, and why."""
    notes = []
    for r in rows:
        if r["precision"] != "int8":
            continue
        fp32 = next((f for f in rows if f["runtime"] == r["runtime"] and f["batch"] == r["batch"]
                     and f["precision"] == "fp32"), None)
        if fp32 and r["p50_ms"] > fp32["p50_ms"]:
            notes.append(int8_note(cpu, r["runtime"], r["batch"], r["p50_ms"] / fp32["p50_ms"], _pays_at(rows, r)))
    return notes


def _pays_at(rows: list[dict], slow: dict) -> int | None:
    """The smallest larger batch at which `slow`'s runtime ran int8 faster than fp32 beyond noise in these rows
    (int8's p50 interval wholly below fp32's; the p50s where a row has no interval), if any."""
    def faster(i8: dict, f32: dict) -> bool:
        hi, lo = (i8.get("p50_ci_ms") or [None, i8["p50_ms"]])[1], (f32.get("p50_ci_ms") or [f32["p50_ms"]])[0]
        return hi < lo

    batches = [r["batch"] for r in rows if r["runtime"] == slow["runtime"] and r["precision"] == "int8"
               and r["batch"] > slow["batch"] and any(
                   f["runtime"] == r["runtime"] and f["batch"] == r["batch"] and f["precision"] == "fp32"
                   and faster(r, f) for f in rows)]
    return min(batches, default=None)


def _speedups(rows: list[dict]) -> None:
    """p50 speed-up of each row vs Keras float32 and vs onnxruntime float32 at the same batch size."""
    for ref_rt, key in (("keras", "speedup_vs_keras"), ("onnx", "speedup_vs_onnx_fp32")):
        for row in rows:
            ref = next((r for r in rows if r["runtime"] == ref_rt and r["precision"] == "fp32"
                        and r["batch"] == row["batch"]), None)
            row[key] = ref["p50_ms"] / row["p50_ms"] if ref else None


CSV_FIELDS = ["runtime", "precision", "device", "batch", "threads", "file", "file_bytes", "load_ms", "first_ms",
              "runs", "mean_ms", "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p90_ok", "p99_ms", "p99_ok",
              "std_ms", "min_ms", "throughput_ips", "native_p50_ms", "peak_rss_mb", "speedup_vs_keras",
              "speedup_vs_onnx_fp32", "outputs_ok", "outputs_max_abs_diff", "compute", "device_ran", "timed"]
BOOLS = {"p90_ok", "p99_ok", "outputs_ok"}


def _flat(r: dict) -> dict:
    ci = r.get("p50_ci_ms") or [None, None]
    return r | {"p50_ci_low_ms": ci[0], "p50_ci_high_ms": ci[1]}


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in map(_flat, rows):
        w.writerow({k: ("" if r.get(k) is None else str(r[k]).lower() if k in BOOLS else r.get(k))
                    for k in CSV_FIELDS})
    return buf.getvalue()


def from_csv(text: str) -> list[dict]:
    import csv
    import io

    numeric = {f for f in CSV_FIELDS
               if f.endswith(("_ms", "_bytes", "_ips", "_mb", "_diff")) or f.startswith("speedup")}
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        out.append({k: (None if v == "" else float(v) if k in numeric else v == "true" if k in BOOLS else
                        int(v) if k in ("batch", "runs", "threads") else v) for k, v in r.items()})
    return out
