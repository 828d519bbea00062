"""Latency and throughput per runtime x precision x device x batch size (DESIGN §7).

Each configuration runs in a fresh process, so thread settings take effect (TensorFlow fixes its
pools when it starts), one runtime's libraries do not weigh on another's peak RSS, and no state
carries over. In that process: load (timed), the input batch prepared once and bound with the
runtime's leanest call path, a first inference (timed), warm-up runs, then timed runs until both
`min_runs` and `min_time` are reached. Only the runtime call sits between the two
`perf_counter_ns` readings. Every runtime gets the same batch of held-out images.
"""

from __future__ import annotations

import multiprocessing
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from . import reference, results, runtimes
from .bundle import Bundle, now
from .cpu import detect, int8_note, physical_cores
from .decide import Constraints, Decision, decide
from .errors import EdgeclsError
from .names import Device, Precision, Runtime, parse
from .peak import probe

MAX_BATCH = 4096
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)  # the latency distribution kept per configuration


@dataclass
class BenchConfig:
    """Options of `edgecls bench`. Empty lists mean "every available one"."""

    runtimes: list[Runtime] = field(default_factory=list)
    precisions: list[Precision] = field(default_factory=list)
    device: Device = Device.cpu
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 10
    min_runs: int = 50
    min_time: float = 1.0  # seconds
    rounds: int = 1  # measurements per configuration, interleaved with the others, timings pooled
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
        if self.warmup < 0 or self.min_runs < 1 or self.min_time < 0:
            raise EdgeclsError("--warmup must be >= 0, --min-runs >= 1 and --min-time >= 0")
        if self.rounds < 1:
            raise EdgeclsError(f"--rounds {self.rounds}: must be at least 1")
        self.constraints.validate(self.batches)


def stats(times_ns: np.ndarray, batch: int) -> dict:
    """Latency statistics in milliseconds, and throughput in images per second."""
    ms = np.asarray(times_ns, np.float64) / 1e6
    return {"runs": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "std_ms": float(ms.std()), "min_ms": float(ms.min()),
            "throughput_ips": float(batch * len(ms) / (ms.sum() / 1e3)),
            "quantiles_ms": {str(q): float(v) for q, v in zip(QUANTILES, np.percentile(ms, QUANTILES))}}


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


def timed_runs(call, min_runs: int, min_time: float, native=None) -> tuple[np.ndarray, list[float]]:
    """The timing loop: only `call()` between two perf_counter_ns readings, until both `min_runs` calls
    and `min_time` seconds are reached; `native()` (the runtime's own latency of that call, where it
    reports one) is read after each, outside the timed span. Returns ns per call and the native ms."""
    clock = time.perf_counter_ns
    times, own = [], []
    min_ns = min_time * 1e9
    start = clock()
    while len(times) < min_runs or clock() - start < min_ns:
        t = clock()
        call()
        times.append(clock() - t)
        if native:
            own.append(native())
    return np.array(times), own


def measure_one(spec: dict) -> dict:
    """Measure one configuration in this process (`bench` calls it in a fresh one).

    `spec`: runtime, path (model file), device, threads, images (an .npy batch), warmup,
    min_runs, min_time; with `raw`, the timings themselves too (`times_ns`, `native_ms`).
    """
    cls = runtimes.runner_class(spec["runtime"])
    cls.import_package()  # library import is not "load" time
    runner = cls()
    t0 = time.perf_counter_ns()
    runner.load(Path(spec["path"]), device=Device(spec["device"]), threads=spec["threads"])
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    images = np.load(spec["images"])
    call = runner.timed_call(images)
    t0 = time.perf_counter_ns()
    call.run()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(spec["warmup"]):
        call.run()
    times, own = timed_runs(call.run, spec["min_runs"], spec["min_time"], call.native_ms)
    timed = call.output()
    if len(timed) != len(images) or not np.allclose(timed, runner.predict(images), atol=1e-4):
        raise EdgeclsError(f"{spec['path']}: the timed {spec['runtime']} call did not compute what predict() does "
                           "on the same images; its timings would not mean anything")
    row = {"load_ms": load_ms, "first_ms": first_ms, **stats(times, len(images)),
           "device_ran": runner.device_ran, "compute": runner.compute,
           "peak_rss_mb": peak_rss_mb()}
    if own:
        row["native_p50_ms"] = float(np.median(own))
    if spec.get("raw"):
        row["times_ns"], row["native_ms"] = times.tolist(), own
    return row


def pooled(measured: list[dict], batch: int) -> dict:
    """One row from several measurements of one configuration: statistics over all their timings,
    the median load and first-inference times, the highest peak RSS, and each round's p50."""
    times = np.concatenate([m["times_ns"] for m in measured])
    own = [t for m in measured for t in m["native_ms"]]
    row = {"load_ms": float(np.median([m["load_ms"] for m in measured])),
           "first_ms": float(np.median([m["first_ms"] for m in measured])), **stats(times, batch),
           "device_ran": measured[0]["device_ran"], "compute": measured[0]["compute"],
           "peak_rss_mb": max(m["peak_rss_mb"] for m in measured),
           "p50_rounds_ms": [m["p50_ms"] for m in measured]}
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
    return {"cpu": cpu.model, "cpu_info": cpu.to_dict(), "cores": cpu.logical_cores, "threads": threads,
            "threads_from": "--threads" if explicit else "physical cores",
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
    threads = cfg.threads or physical_cores()  # the same for every runtime, stated beside the numbers
    rows = []
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgecls-bench-") as tmp:
        for batch in cfg.batches:
            images = np.resize(x, (batch, *x.shape[1:]))  # held-out images, repeated if batch > held-out
            path = Path(tmp) / f"batch{batch}.npy"
            np.save(path, images)
            specs = [{"runtime": item["runtime"], "path": str(bundle.path / item["file"]), "device": cfg.device.value,
                      "threads": threads, "images": str(path), "warmup": cfg.warmup, "min_runs": cfg.min_runs,
                      "min_time": cfg.min_time, "raw": True} for item in todo]
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
    rows[:] = [results.bind(r, bundle.manifest) for r in rows]  # each row names the bytes it measured
    result = BenchResult(now(), env, asdict(cfg), notes, rows)
    old = (bundle.manifest.get("bench") or {}).get("rows", [])
    bundle.manifest["bench"] = result.to_dict() | {"rows": results.merge(old, rows, "bench")}
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
              "runs", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "throughput_ips",
              "native_p50_ms", "peak_rss_mb", "speedup_vs_keras", "speedup_vs_onnx_fp32", "compute",
              "device_ran", "timed"]


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def from_csv(text: str) -> list[dict]:
    import csv
    import io

    numeric = {f for f in CSV_FIELDS if f.endswith(("_ms", "_bytes", "_ips", "_mb")) or f.startswith("speedup")}
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        out.append({k: (None if v == "" else float(v) if k in numeric else
                        int(v) if k in ("batch", "runs", "threads") else v) for k, v in r.items()})
    return out
