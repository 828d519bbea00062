"""Latency and throughput per runtime x precision x device x batch size (DESIGN §7).

Each configuration runs in a fresh process, so thread settings take effect (TensorFlow fixes its
pools when it starts), one runtime's libraries do not weigh on another's peak RSS, and no state
carries over. In that process: load (timed), the input batch prepared once and bound with the
runtime's leanest call path, a first inference (timed), warm-up runs until the per-call time
settles, then timed runs until both `min_runs` and `min_time` are reached. The same work sits
between the two `perf_counter_ns` readings for every runtime: the model's execution alone (inputs
converted and bound before, outputs read and converted after; `runtimes.TimedCall`), with Python's
garbage collector off. Every runtime gets the same batch of held-out images, and the outputs
read during the timed runs are checked against a freshly loaded runner's `predict()`.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from . import latency, reference, runtimes
from .bundle import Bundle, now
from .cpu import detect, int8_note, physical_cores, usable_cores
from .decide import Constraints, Decision, decide
from .errors import EdgeclsError
from .names import Device, Precision, Runtime, parse
from .peak import probe

MAX_BATCH = 4096
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)  # the latency distribution kept per configuration
WARMUP_MAX_S = 3.0  # warm-up stops here even if the per-call time has not settled (recorded)
WARMUP_BLOCK = 5  # calls per warm-up block; settled when a block's median is < 5% below the previous one's
WARMUP_SETTLE = 0.05
#: how far the outputs read while timing may be from a fresh runner's predict() on the same images:
#: the same artifact on the same runtime, so only kernel choice (static vs dynamic shapes, thread
#: split) may differ: float rounding, or for int8 a few steps of the 1/256 output quantization
OUTPUT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-3, "int8": 4 / 256}
TIMED_SPAN = ("the model's execution alone, for every runtime: inputs converted (float32 cast, LiteRT "
              "quantization) and bound before the span, outputs read and converted (dequantization, "
              "copies, Keras .numpy()) after it; garbage collection off")


@dataclass
class BenchConfig:
    """Options of `edgecls bench`. Empty lists mean "every available one"."""

    runtimes: list[Runtime] = field(default_factory=list)
    precisions: list[Precision] = field(default_factory=list)
    device: Device = Device.cpu
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 10  # at least this many untimed runs before timing...
    warmup_time: float = 0.1  # ...and this many seconds, then on until the per-call time settles
    min_runs: int = 50  # timed runs per round, at least...
    min_time: float = 1.0  # ...and at least this many seconds of them
    rounds: int = 3  # measurements per configuration, interleaved with the others, timings pooled
    constraints: Constraints = field(default_factory=Constraints)  # for the recommendation

    def validate(self) -> None:
        self.runtimes = parse(Runtime, self.runtimes, "--runtime")
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
            raise EdgeclsError(f"--rounds {self.rounds}: must be at least 1 ({latency.MIN_ROUNDS} or more give the "
                               "p50 interval its between-process part)")
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


def stats(times_ns: np.ndarray, batch: int, rounds: list[dict] = ()) -> dict:
    """Latency statistics in milliseconds, and throughput in images per second; with each percentile its
    95% interval (`latency.interval`: order statistics, widened to the `rounds`' own values from 3
    rounds on; None below the percentile's minimum runs) and whether there are runs enough for it."""
    ms = np.asarray(times_ns, np.float64) / 1e6
    row = {"runs": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
           "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
           "std_ms": float(ms.std()), "min_ms": float(ms.min()),
           "throughput_ips": float(batch * len(ms) / (ms.sum() / 1e3)),
           "quantiles_ms": {str(q): float(v) for q, v in zip(QUANTILES, np.percentile(ms, QUANTILES))}}
    for name in ("p50", "p90", "p99"):
        row[f"{name}_ci_ms"] = latency.interval(ms, [r[f"{name}_ms"] for r in rounds], name)
        if name != "p50":
            row[f"{name}_ok"] = latency.too_few(name, len(ms)) is None
    return row


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over from the parent across fork+exec, so every spawned worker would report the parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def gc_off():
    """Python's garbage collector off (after one full collection), restored as it was on leaving: a
    collection inside a timed call would charge one runtime (Keras allocates per call) for a pause that
    is Python's, not the runtime's."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def warm_up(call, min_runs: int, min_time: float, max_time: float = WARMUP_MAX_S) -> dict:
    """Untimed runs in blocks of WARMUP_BLOCK until the per-call time settles (a block's median no more
    than WARMUP_SETTLE below the previous block's), after at least `min_runs` calls and `min_time`
    seconds; at most `max_time` seconds (then `settled` is False). What it did, for the row."""
    clock = time.perf_counter_ns
    start, runs, previous, settled = clock(), 0, None, False
    with gc_off():
        while True:
            block = []
            for _ in range(WARMUP_BLOCK):
                t = clock()
                call()
                block.append(clock() - t)
            runs += WARMUP_BLOCK
            median, elapsed = float(np.median(block)), (clock() - start) / 1e9
            if (previous is not None and median >= (1 - WARMUP_SETTLE) * previous and runs >= min_runs
                    and elapsed >= min_time):
                settled = True
                break
            if elapsed >= max_time:
                break
            previous = median
    return {"runs": runs, "seconds": elapsed, "settled": settled, "last_block_p50_ms": median / 1e6}


def timed_runs(call, min_runs: int, min_time: float, native=None, sample=None) -> tuple[np.ndarray, list[float]]:
    """The timing loop: only `call()` between two perf_counter_ns readings, garbage collection off, until
    both `min_runs` calls and `min_time` seconds are reached; `native()` (the runtime's own latency of that
    call, where it reports one) is read after each, outside the timed span, and `sample()` (reading the
    outputs, for their check) after the first call. Returns ns per call and the native ms."""
    clock = time.perf_counter_ns
    times, own = [], []
    min_ns = min_time * 1e9
    with gc_off():
        start = clock()
        while len(times) < min_runs or clock() - start < min_ns:
            t = clock()
            call()
            times.append(clock() - t)
            if native:
                own.append(native())
            if sample and len(times) == 1:
                sample()
    return np.array(times), own


def check_outputs(samples: list[np.ndarray], verified: np.ndarray, precision: str) -> dict:
    """The outputs read while timing against the verified outputs for the same images (MLPerf's TEST01):
    the largest |difference|, top-1 agreement, and whether they are within the precision's tolerance."""
    tol = OUTPUT_TOLERANCE.get(precision, OUTPUT_TOLERANCE["int8"])
    diffs, agree = [], []
    for out in samples:
        out = np.asarray(out, np.float32)
        if out.shape != verified.shape or not np.all(np.isfinite(out)):
            diffs.append(float("inf"))
            agree.append(0.0)
            continue
        diffs.append(float(np.abs(out - verified).max()))
        agree.append(float((out.argmax(-1) == verified.argmax(-1)).mean()))
    worst = max(diffs)
    return {"outputs_checked": True, "outputs_ok": bool(worst <= tol),
            "outputs_max_abs_diff": worst if math.isfinite(worst) else None,
            "outputs_top1_agreement": min(agree), "outputs_tolerance": tol}


def measure_one(spec: dict) -> dict:
    """Measure one configuration in this process (`bench` calls it in a fresh one).

    `spec`: runtime, path (model file), device, threads, images (an .npy batch), warmup (calls),
    warmup_time (s), min_runs, min_time, precision (for the outputs' tolerance); with `raw`, the
    timings themselves too (`times_ns`, `native_ms`).

    The outputs read during the timed runs (after the first and after the last) are compared with
    the predictions of a second runner, freshly loaded from the same file, on the same images: its
    `predict()` is the path `verify` judged, so a timed path that is fast because it computes
    something else (stale or unbound inputs, a wrong binding) shows as `outputs_ok` False.
    """
    cls = runtimes.runner_class(spec["runtime"])
    cls.import_package()  # library import is not "load" time
    runner = cls()
    device = Device(spec["device"])
    t0 = time.perf_counter_ns()
    runner.load(Path(spec["path"]), device=device, threads=spec["threads"])
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    images = np.load(spec["images"])
    call = runner.timed_call(images)
    t0 = time.perf_counter_ns()
    call.run()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    warm = warm_up(call.run, spec["warmup"], spec.get("warmup_time", 0.0))
    samples = []
    times, own = timed_runs(call.run, spec["min_runs"], spec["min_time"], call.native_ms,
                            sample=lambda: samples.append(np.array(call.output(), copy=True)))
    samples.append(np.array(call.output(), copy=True))
    rss = peak_rss_mb()  # before the second runner below adds its own memory
    fresh = cls()
    fresh.load(Path(spec["path"]), device=device, threads=spec["threads"])
    checked = check_outputs(samples, np.asarray(fresh.predict(images), np.float32), spec.get("precision", "int8"))
    row = {"load_ms": load_ms, "first_ms": first_ms, **stats(times, len(images)),
           "device_ran": runner.device_ran, "compute": runner.compute, "peak_rss_mb": rss,
           "warmup_runs": warm["runs"], "warmup_s": warm["seconds"], "warmup_settled": warm["settled"],
           "thread_policy": runner.thread_policy(), **checked}
    if own:
        row["native_p50_ms"] = float(np.median(own))
    if spec.get("raw"):
        row["times_ns"], row["native_ms"] = times.tolist(), own
    return row


def pooled(measured: list[dict], batch: int) -> dict:
    """One row from several measurements of one configuration: statistics over all their timings (the
    intervals widened by the rounds' spread), the median load and first-inference times, the highest
    peak RSS, each round's p50 and warm-up, and the outputs' check over every round (worst case)."""
    times = np.concatenate([m["times_ns"] for m in measured])
    own = [t for m in measured for t in m["native_ms"]]
    diffs = [m.get("outputs_max_abs_diff") for m in measured]
    row = {"load_ms": float(np.median([m["load_ms"] for m in measured])),
           "first_ms": float(np.median([m["first_ms"] for m in measured])), **stats(times, batch, measured),
           "device_ran": measured[0]["device_ran"], "compute": measured[0]["compute"],
           "peak_rss_mb": max(m["peak_rss_mb"] for m in measured),
           "p50_rounds_ms": [m["p50_ms"] for m in measured],
           "warmup_runs": [m.get("warmup_runs") for m in measured],
           "warmup_settled": all(m.get("warmup_settled", False) for m in measured),
           "thread_policy": measured[0].get("thread_policy", {}),
           "outputs_checked": all(m.get("outputs_checked", False) for m in measured),
           "outputs_ok": all(m.get("outputs_ok", False) for m in measured),
           "outputs_max_abs_diff": None if None in diffs else max(diffs),
           "outputs_top1_agreement": min(m.get("outputs_top1_agreement", 0.0) for m in measured),
           "outputs_tolerance": measured[0].get("outputs_tolerance")}
    if own:
        row["native_p50_ms"] = float(np.median(own))
    return row


def isolated(fn, spec: dict, ctx=None):
    """Run `fn(spec)` in a fresh (spawned) process and return its result; its errors are re-raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx or multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, spec).result()


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
            "timed_span": TIMED_SPAN, "ci": f"{latency.LEVEL:.0%} order-statistic interval of the pooled runs, "
            f"widened to the range of the rounds' values from {latency.MIN_ROUNDS} rounds on (docs/bench.md)",
            "min_runs_for": {k: v for k, v in latency.MIN_RUNS.items() if k != "p50"},
            "peak": probe(threads), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions}


def plan(bundle: Bundle, cfg: BenchConfig) -> tuple[list[dict], list[str]]:
    """The (runtime, precision, file) configurations to measure, and notes on what was skipped."""
    explicit_rt, explicit_p = bool(cfg.runtimes), bool(cfg.precisions)
    names = cfg.runtimes or list(runtimes.RUNTIMES)
    precisions = cfg.precisions or [Precision.fp32, Precision.int8]
    todo, notes = [], []
    for name in names:
        cls = runtimes.runner_class(name)
        if not cls.installed():
            if explicit_rt:
                raise EdgeclsError(f"--runtime {name.value}: its package is not installed "
                                   f"(pip install 'edgecls[{cls.extra}]')")
            notes.append(f"skipped {name.value}: not installed")
            continue
        for p in precisions:
            art = next((a for a in bundle.manifest["artifacts"] if a["format"] == name and a["precision"] == p),
                       None)
            if art is None:
                if name == Runtime.keras and p != Precision.fp32:
                    continue
                if explicit_rt and explicit_p:
                    raise EdgeclsError(f"{bundle.path}: no {name.value} {p.value} artifact; run 'edgecls export"
                                       f"{' --int8' if p == 'int8' else ' --fp16' if p == 'fp16' else ''}' first")
                notes.append(f"skipped {name.value} {p.value}: not exported")
                continue
            todo.append({"runtime": name.value, "precision": p.value, "file": art["file"],
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

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "decision"} | {
            "decision": self.decision.to_dict() if self.decision else None}


def bench(bundle_path: str | Path, cfg: BenchConfig, on_progress=None) -> BenchResult:
    """Measure every planned configuration at every batch size; store and return the results.

    With `cfg.rounds` > 1 each configuration is measured that many times, each time in a fresh
    process, the configurations taking turns (round r starts at the r-th), and its timings pooled:
    on a machine whose speed drifts, every configuration then sees the same drift, and the ratios
    between them hold. `on_progress(row)` is called after each measurement.

    Raises:
        EdgeclsError: bad options, missing artifacts, a device or runtime that is not available.
    """
    import tempfile

    cfg.validate()
    bundle = Bundle.open(bundle_path)
    todo, notes = plan(bundle, cfg)
    for item in todo:
        bundle.checked(item["file"])
    x, source = inputs(bundle, limit=max(cfg.batches))  # no more images decoded than a batch needs
    if source != "dataset":
        notes.append(f"inputs: {source}")
    threads = cfg.threads or physical_cores()  # usable cores; the same for every runtime, stated beside the numbers
    rows = []
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgecls-bench-") as tmp:
        for batch in cfg.batches:
            images = np.resize(x, (batch, *x.shape[1:]))  # held-out images, repeated if batch > held-out
            path = Path(tmp) / f"batch{batch}.npy"
            np.save(path, images)
            specs = [{"runtime": item["runtime"], "path": str(bundle.path / item["file"]), "device": cfg.device.value,
                      "threads": threads, "images": str(path), "warmup": cfg.warmup, "warmup_time": cfg.warmup_time,
                      "min_runs": cfg.min_runs, "min_time": cfg.min_time, "precision": item["precision"],
                      "raw": True} for item in todo]
            measured = [[] for _ in todo]
            for r in range(cfg.rounds):  # round r starts at the r-th configuration: drift hits all alike
                for i in [(r + k) % len(todo) for k in range(len(todo))]:
                    measured[i].append(isolated(measure_one, specs[i], ctx))
                    if on_progress and cfg.rounds > 1:
                        on_progress(todo[i] | {"batch": batch, "round": r + 1, "rounds": cfg.rounds,
                                               "p50_ms": measured[i][-1]["p50_ms"]})
            for item, runs in zip(todo, measured):
                row = {"runtime": item["runtime"], "precision": item["precision"], "file": item["file"],
                       "file_bytes": item["bytes"], "device": cfg.device.value, "batch": batch,
                       "threads": threads, **pooled(runs, batch),
                       "timed": runtimes.runner_class(item["runtime"]).timed}
                rows.append(row)
                if on_progress and cfg.rounds == 1:
                    on_progress(row)
    _speedups(rows)
    env = environment(threads, cfg.threads is not None)
    _efficiency(rows, bundle.manifest["architecture"].get("macs_per_image"), env["peak"])
    notes += _int8_notes(rows, detect())
    notes += [f"{r['runtime']} {r['precision']} batch {r['batch']}: the outputs read while timing differ from a fresh "
              f"runner's predictions for the same images (max |Δp| {r['outputs_max_abs_diff']}, tolerance "
              f"{r['outputs_tolerance']}): its timings are of something else; it is never recommended"
              for r in rows if not r["outputs_ok"]]
    result = BenchResult(now(), env, asdict(cfg), notes, rows)
    bundle.manifest["bench"] = result.to_dict()
    result.decision = decide(bundle.manifest, cfg.constraints)
    bundle.manifest["decision"] = result.decision.to_dict()
    bundle.save()
    return result


def inputs(bundle: Bundle, limit: int | None = None) -> tuple[np.ndarray, str]:
    """Held-out images to time (every runtime the same batch; at most `limit`), and where they came from:
    the dataset, or the bundle's reference data where the dataset is not here (a device)."""
    try:
        x, _ = bundle.heldout(limit=limit)
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
            notes.append(int8_note(cpu, r["runtime"], r["batch"], r["p50_ms"] / fp32["p50_ms"]))
    return notes


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
