"""The timed loop of one configuration, and its statistics (`bench` runs it in fresh processes).

In one process: load (timed), the input batch prepared once and bound with the runtime's leanest
call path, a first inference (timed), warm-up runs until the per-call time settles, then timed runs
until both `min_runs` and `min_time` are reached. The same work sits between the two
`perf_counter_ns` readings for every runtime: the model's execution alone (inputs converted and
bound before, outputs read and converted after; `runtimes.TimedCall`), with Python's garbage
collector off. The outputs read during the timed runs are checked against a freshly loaded
runner's `predict()`. Then `pool_rounds` makes one row of several rounds.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core.names import Device
from . import latency

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


def stats(times_ns: np.ndarray, batch: int, rounds: list[dict] = (), group: int = 1) -> dict:
    """Latency statistics in milliseconds, and throughput in images per second.

    The p50 of 2 rounds or more is the median of the rounds' p50s and its interval the order-statistic
    interval of that median (`latency.round_interval`), at the exact level in `p50_ci_level` (96.9% for 6
    rounds); with one round, the within-process interval (`p50_ci_level` None). p90/p99: the pooled calls'
    order-statistic interval, widened to the rounds' values from 3 rounds on (None below the percentile's
    minimum runs), with whether there are runs enough. `group` > 1: each timing is the mean of that many
    calls (a browser's coarse clock), so p90/p99 are quantiles of group means and are labelled so."""
    ms = np.asarray(times_ns, np.float64) / 1e6
    pooled_p50 = float(np.percentile(ms, 50))
    per_round = [r["p50_ms"] for r in rounds]
    row = {"runs": int(len(ms)), "mean_ms": float(ms.mean()),
           "p50_ms": float(np.median(per_round)) if len(per_round) >= 2 else pooled_p50,
           "p50_pooled_ms": pooled_p50,
           "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
           "std_ms": float(ms.std()), "min_ms": float(ms.min()),
           "throughput_ips": float(batch * len(ms) / (ms.sum() / 1e3)),
           "quantiles_ms": {str(q): float(v) for q, v in zip(QUANTILES, np.percentile(ms, QUANTILES))},
           "p50_ci_level": latency.interval_level(len(per_round)),
           "p50_ci_basis": (f"median of {len(per_round)} rounds' p50s" if len(per_round) >= 2
                            else "one process's calls (leaves out the spread between processes)")}
    for name in ("p50", "p90", "p99"):
        row[f"{name}_ci_ms"] = latency.interval(ms, [r[f"{name}_ms"] for r in rounds], name)
        if name != "p50":
            row[f"{name}_ok"] = latency.too_few(name, len(ms)) is None
    if group > 1:
        row["tails_of"] = f"means of groups of {group} calls (a single call's tail is not measured)"
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
    if spec.get("target") and spec["runtime"] not in runtimes.RUNTIMES:  # registered in the parent, not here
        runtimes.RUNTIMES.register(spec["runtime"], spec["target"])
    cls = runtimes.runner_class(spec["runtime"])
    cls.import_package()  # library import is not "load" time
    runner = cls()
    device = Device(spec["device"])
    t0 = time.perf_counter_ns()
    runner.load(Path(spec["path"]), device=device, threads=spec["threads"])
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    images = np.load(spec["images"])
    call = runner.timed_call(images)
    extra = {}
    if call.measure is not None:  # timed where it runs (a browser page), by its clock: the same statistics
        m = call.measure(spec["warmup"], spec.get("warmup_time", 0.0), spec["min_runs"], spec["min_time"])
        first_ms, warm, times, own, samples = m["first_ms"], m["warmup"], np.asarray(m["times_ns"]), [], m["samples"]
        extra = {"timer": m["timer"]} if "timer" in m else {}
    else:
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
    group = int(extra.get("timer", {}).get("calls_per_timing") or 1)
    row = {"load_ms": load_ms, "first_ms": first_ms, **stats(times, len(images), group=group),
           "device_ran": runner.device_ran, "compute": runner.compute, "peak_rss_mb": rss,
           "warmup_runs": warm["runs"], "warmup_s": warm["seconds"], "warmup_settled": warm["settled"],
           "thread_policy": runner.thread_policy(), **checked, **extra}
    if own:
        row["native_p50_ms"] = float(np.median(own))
    if spec.get("raw"):
        row["times_ns"], row["native_ms"] = times.tolist(), own
    return row


def pool_rounds(measured: list[dict], batch: int) -> dict:
    """One row from several measurements of one configuration: statistics over all their timings (the p50
    and its interval from the rounds' p50s: `stats`), the median load and first-inference times, the highest
    peak RSS, each round's p50 and warm-up, and the outputs' check over every round (worst case)."""
    times = np.concatenate([m["times_ns"] for m in measured])
    own = [t for m in measured for t in m["native_ms"]]
    diffs = [m.get("outputs_max_abs_diff") for m in measured]
    row = {"load_ms": float(np.median([m["load_ms"] for m in measured])),
           "first_ms": float(np.median([m["first_ms"] for m in measured])),
           **stats(times, batch, measured, int(measured[0].get("timer", {}).get("calls_per_timing") or 1)),
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
    if "timer" in measured[0]:  # timed by the runtime's own clock (a browser page): its resolution and grouping
        row["timer"] = measured[0]["timer"]
    return row


def in_fresh_process(fn, spec: dict, ctx=None):
    """Run `fn(spec)` in a fresh (spawned) process and return its result; its errors are re-raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx or multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, spec).result()
