import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.bench.measure import BenchConfig, bench, from_csv, to_csv
from edgecls.bench.timing import stats
from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.hooks import Hooks
from edgecls.train import recorded

runner = CliRunner()
FAST = {"warmup": 1, "warmup_time": 0.0, "min_runs": 5, "min_time": 0.01, "rounds": 1}
FIELDS = {"load_ms", "first_ms", "runs", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms", "min_ms",
          "throughput_ips", "file_bytes", "peak_rss_mb", "device_ran", "compute", "speedup_vs_keras",
          "speedup_vs_onnx_fp32", "timed", "batch", "threads"}


def test_stats_match_numpy():
    t = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], np.int64) * 1_000_000  # ns
    s = stats(t, batch=8)
    ms = t / 1e6
    assert s["runs"] == 10 and s["mean_ms"] == pytest.approx(ms.mean())
    assert s["p50_ms"] == pytest.approx(np.percentile(ms, 50))
    assert s["p90_ms"] == pytest.approx(np.percentile(ms, 90)) and s["p99_ms"] == pytest.approx(np.percentile(ms, 99))
    assert s["std_ms"] == pytest.approx(ms.std()) and s["min_ms"] == 1.0
    assert s["throughput_ips"] == pytest.approx(8 * 10 / (ms.sum() / 1e3))


@pytest.mark.slow
def test_bench_every_runtime_and_precision(exported_copy):
    r = bench(exported_copy, BenchConfig(batches=[1, 3], threads=1, **FAST))
    got = {(row["runtime"], row["precision"], row["batch"]) for row in r.rows}
    expected = {(rt, p, b) for rt in ("onnx", "tflite", "openvino") for p in ("fp32", "int8") for b in (1, 3)}
    assert got == expected | {("keras", "fp32", 1), ("keras", "fp32", 3)}
    for row in r.rows:
        assert FIELDS <= set(row), FIELDS - set(row)
        assert row["runs"] >= 5 and 0 < row["min_ms"] <= row["p50_ms"] <= row["p99_ms"]
        assert row["throughput_ips"] > 0 and row["peak_rss_mb"] > 10 and row["threads"] == 1
    ov = [row for row in r.rows if row["runtime"] == "openvino"]
    assert all(row["native_p50_ms"] > 0 for row in ov)  # OpenVINO's own latency, shown beside
    keras1 = next(row for row in r.rows if row["runtime"] == "keras" and row["batch"] == 1)
    assert keras1["speedup_vs_keras"] == 1.0 and "tf.function" in keras1["timed"]
    env = r.environment
    assert env["cores"] >= 1 and env["cpu"] and "onnxruntime" in env["versions"]
    assert Bundle.open(exported_copy).manifest["bench"]["rows"] == r.rows


def test_cli_bench_json_and_csv_round_trip(exported_copy, tmp_path):
    csv_path, json_path = tmp_path / "b.csv", tmp_path / "b.json"
    r = runner.invoke(app, ["bench", str(exported_copy), "--runtime", "onnx", "--precision", "fp32,int8",
                            "--batch", "2", "--warmup", "1", "--min-runs", "3", "--min-time", "0.01", "--rounds", "1",
                            "--csv", str(csv_path), "--json", str(json_path)])
    assert r.exit_code == 0, r.output
    assert "p50 ms" in r.stdout and "onnx" in r.stdout
    data = json.loads(json_path.read_text())
    rows = from_csv(csv_path.read_text())
    assert len(rows) == len(data["rows"]) == 2
    for a, b in zip(rows, data["rows"]):
        assert a["p50_ms"] == pytest.approx(b["p50_ms"]) and a["batch"] == b["batch"] == 2
        assert a["runtime"] == b["runtime"] and a["precision"] == b["precision"]
    assert from_csv(to_csv(data["rows"])) == rows


@pytest.mark.parametrize("args,msg", [
    (["--runtime", "tensorrt"], "--runtime tensorrt: unknown runtime"),
    (["--precision", "int4"], "--precision int4: unknown precision"),
    (["--batch", "0"], "--batch 0: batch sizes must be between 1 and 4096"),
    (["--batch", "x"], "--batch 'x': expected comma-separated whole numbers"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--rounds", "0"], "--rounds 0: must be at least 1"),
    (["--min-time", "0"], "--min-time 0: must be more than 0 seconds"),
    (["--min-runs", "0"], "--min-runs 0: must be at least 1"),
    (["--percentile", "p99"], "--percentile p99: too few runs for p99: --min-runs 50 x --rounds 6 = 300 timed runs "
                              "per configuration, p99 needs at least 662 (MLPerf's minimum); use --min-runs 111"),
    (["--max-latency", "5", "--min-runs", "10"], "too few runs for p90: --min-runs 10 x --rounds 6 = 60"),
    (["--runtime", "onnx", "--precision", "fp16"], "no onnx fp16 artifact"),
])
def test_bad_options_exit_2(exported_copy, args, msg):
    r = runner.invoke(app, ["bench", str(exported_copy), *args])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.output


def test_rounds_take_turns_and_pool_the_timings(exported_copy, monkeypatch):
    """--rounds N: configuration i is measured N times, round r starting at configuration r, and its
    row's statistics are over all N measurements' timings."""
    from edgecls.bench import measure as bench_mod

    order, fake = [], {}

    def fake_isolated(fn, spec, ctx=None):
        key = (Path(spec["path"]).name, len(np.load(spec["images"])))
        order.append(key[0])
        n = fake.setdefault(key, 0)
        fake[key] += 1
        times = np.full(4, (n + 1) * 1_000_000)  # round k: four calls of k ms
        return {"load_ms": 10.0 * (n + 1), "first_ms": 1.0, **stats(times, key[1]), "device_ran": "CPU",
                "compute": "fp32", "peak_rss_mb": 50.0 + n, "times_ns": times.tolist(), "native_ms": [],
                "outputs_checked": True, "outputs_ok": True, "outputs_max_abs_diff": 0.0,
                "outputs_top1_agreement": 1.0, "outputs_tolerance": 1e-4}

    monkeypatch.setattr(bench_mod, "in_fresh_process", fake_isolated)
    progress = []

    class Progress(Hooks):
        def measured(self, row):
            progress.append(row)

    r = bench(exported_copy, BenchConfig(runtimes=["onnx"], batches=[2], **FAST | {"rounds": 3}), hooks=Progress())
    assert order == ["model.onnx", "model.int8.onnx", "model.int8.onnx", "model.onnx", "model.onnx",
                     "model.int8.onnx"]
    assert [(p["round"], p["rounds"]) for p in progress] == [(1, 3), (1, 3), (2, 3), (2, 3), (3, 3), (3, 3)]
    for row in r.rows:
        assert row["runs"] == 12 and row["p50_rounds_ms"] == [1.0, 2.0, 3.0]
        assert row["mean_ms"] == pytest.approx(2.0) and row["p50_ms"] == pytest.approx(2.0)
        assert row["min_ms"] == 1.0 and row["load_ms"] == 20.0 and row["peak_rss_mb"] == 52.0
        assert row["throughput_ips"] == pytest.approx(2 * 12 / 0.024)
        assert "times_ns" not in row and "native_p50_ms" not in row
        assert row["p50_ci_ms"] == [1.0, 3.0]  # three rounds: their range (1, 2, 3 ms) widens the interval


def test_rounds_for_real(exported_copy):
    r = bench(exported_copy, BenchConfig(runtimes=["openvino"], precisions=["fp32"], threads=1, **FAST | {"rounds": 2}))
    (row,) = r.rows
    assert len(row["p50_rounds_ms"]) == 2 and row["runs"] >= 10 and row["native_p50_ms"] > 0
    assert r.config["rounds"] == 2


def test_gpu_without_gpu(exported_copy):
    with pytest.raises(EdgeclsError, match="--device gpu: onnxruntime has no CUDAExecutionProvider"):
        from edgecls.core.names import Device

        bench(exported_copy, BenchConfig(runtimes=["onnx"], device=Device.gpu, **FAST))


def test_nothing_exported(bundle_copy):
    r = bench(bundle_copy, BenchConfig(**FAST))  # only the Keras model: still a baseline
    assert [row["runtime"] for row in r.rows] == ["keras"] and "skipped onnx fp32: not exported" in r.notes


def _spec(bundle, tmp_path, runtime="onnx", file="model.onnx", precision="fp32", n=4):
    x, _ = recorded.heldout(Bundle.open(bundle))
    np.save(tmp_path / "x.npy", x[:n])
    return {"runtime": runtime, "path": str(bundle / file), "device": "cpu", "threads": 1,
            "images": str(tmp_path / "x.npy"), "precision": precision, **FAST}


@pytest.mark.parametrize("runtime,file,precision", [
    ("onnx", "model.onnx", "fp32"), ("onnx", "model.int8.onnx", "int8"), ("tflite", "model.int8.tflite", "int8"),
    ("openvino", "openvino/model.xml", "fp32"), ("openvino", "openvino/model.int8.xml", "int8")])
def test_the_outputs_read_while_timing_match_a_fresh_runner(exported_bundle, tmp_path, runtime, file, precision):
    from edgecls.bench import timing as bench_mod

    row = bench_mod.measure_one(_spec(exported_bundle, tmp_path, runtime, file, precision, n=3))
    assert row["outputs_checked"] and row["outputs_ok"], row
    assert row["outputs_max_abs_diff"] <= bench_mod.OUTPUT_TOLERANCE[precision]
    assert row["outputs_top1_agreement"] == 1.0 and row["thread_policy"]


def test_a_timed_call_that_is_fast_because_it_computes_something_else_is_flagged(exported_bundle, tmp_path,
                                                                                  monkeypatch):
    """MLPerf's TEST01: a timed path that skips the work and returns wrong outputs is caught by comparing the
    outputs read while timing with a freshly loaded runner's predictions for the same images."""
    from edgecls.bench import timing as bench_mod
    from edgecls.runtimes import TimedCall
    from edgecls.runtimes.onnx import OnnxRunner

    spec = _spec(exported_bundle, tmp_path)
    honest = bench_mod.measure_one(spec)
    assert honest["outputs_ok"] and honest["outputs_max_abs_diff"] <= 1e-4

    def fast_and_wrong(self, images):
        wrong = np.full((len(images), 4), 0.25, np.float32)
        return TimedCall(lambda: None, lambda: wrong)  # no inference at all: very fast

    monkeypatch.setattr(OnnxRunner, "timed_call", fast_and_wrong)
    cheat = bench_mod.measure_one(spec)
    assert cheat["p50_ms"] < honest["p50_ms"]
    assert cheat["outputs_checked"] and not cheat["outputs_ok"] and cheat["outputs_max_abs_diff"] > 0.1
    row = bench_mod.pool_rounds([cheat | {"times_ns": [1000] * 5, "native_ms": []}, honest | {"times_ns": [2000] * 5,
                                                                                        "native_ms": []}], 4)
    assert row["outputs_ok"] is False  # one bad round flags the configuration


def test_the_output_check_in_numbers():
    from edgecls.bench.timing import check_outputs

    ref = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    ok = check_outputs([ref + 1e-5, ref], ref, "fp32")
    assert ok["outputs_ok"] and ok["outputs_max_abs_diff"] == pytest.approx(1e-5, abs=1e-7)
    assert not check_outputs([ref, ref[::-1]], ref, "int8")["outputs_ok"]  # the last sample went wrong
    bad = check_outputs([ref[:1]], ref, "fp32")  # wrong shape
    assert not bad["outputs_ok"] and bad["outputs_max_abs_diff"] is None


def test_garbage_collection_is_off_inside_the_timed_span_and_restored():
    import gc

    from edgecls.bench.timing import timed_runs, warm_up

    seen = []

    def allocating():  # makes cyclic garbage on every call, as an eager framework does
        seen.append(gc.isenabled())
        junk = [[] for _ in range(2000)]
        for a, b in zip(junk, junk[1:]):
            a.append(b)
            b.append(a)

    assert gc.isenabled()
    warm_up(allocating, min_runs=5, min_time=0)
    timed_runs(allocating, min_runs=20, min_time=0.01)
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        timed_runs(allocating, min_runs=2, min_time=0.001)
        assert not gc.isenabled()  # restored as it was: off
    finally:
        gc.enable()


def test_warm_up_runs_until_the_per_call_time_settles(monkeypatch):
    """On a scripted clock (a real sleep oversleeps under load): slow first calls, then steady."""
    from edgecls.bench import timing
    from edgecls.bench.timing import WARMUP_BLOCK, warm_up

    now = [0]
    monkeypatch.setattr(timing.time, "perf_counter_ns", lambda: now[0])

    def call_taking(seconds):
        def call():
            now[0] += int(next(seconds) * 1e9)
        return call

    durations = iter([0.02] * 5 + [0.01] * 5 + [0.002] * 1000)
    w = warm_up(call_taking(durations), min_runs=1, min_time=0)
    assert w["settled"] and w["runs"] == 4 * WARMUP_BLOCK and w["last_block_p50_ms"] == pytest.approx(2)
    faster = iter(0.01 * 0.8 ** (k // WARMUP_BLOCK) for k in range(10_000))  # each block 20% faster
    w = warm_up(call_taking(faster), min_runs=1, min_time=0, max_time=0.1)
    assert not w["settled"] and w["seconds"] >= 0.1


def test_intervals_and_tails_on_a_real_bench(exported_copy):
    r = bench(exported_copy, BenchConfig(runtimes=["onnx"], precisions=["fp32"], threads=1, warmup=1, warmup_time=0,
                                         min_runs=25, min_time=0.01, rounds=3))
    (row,) = r.rows
    lo, hi = row["p50_ci_ms"]
    assert row["runs"] >= 75 and lo <= row["p50_ms"] <= hi and lo <= min(row["p50_rounds_ms"])
    assert hi >= max(row["p50_rounds_ms"]) and hi < 10 * row["p50_ms"]
    assert row["p90_ok"] and row["p90_ci_ms"][0] <= row["p90_ms"] <= row["p90_ci_ms"][1]
    assert row["p99_ok"] == (row["runs"] >= 662) and (row["p99_ci_ms"] is None) == (not row["p99_ok"])
    assert row["outputs_ok"] and row["warmup_runs"] and len(row["warmup_runs"]) == 3
    assert row["thread_policy"]["intra_op_threads"] == 1 and row["thread_policy"]["intra_op_spinning"] is True
    env = r.environment
    assert env["usable_cores"]["cores"] >= 1 and "model's execution alone" in env["timed_span"]


def test_timed_runs_time_the_call_itself():
    """A call of known duration (2 ms): the loop must put it between the two clock readings."""
    import time

    from edgecls.bench.timing import timed_runs

    times, own = timed_runs(lambda: time.sleep(0.002), min_runs=15, min_time=0)
    assert len(times) == 15 and own == []
    assert 2e6 <= np.median(times) < 2e7  # ns: at least the sleep, not the whole loop's bookkeeping
    calls = []
    times, own = timed_runs(lambda: calls.append(1), min_runs=3, min_time=0.05, native=lambda: 0.5)
    assert len(times) == len(calls) >= 3 and own == [0.5] * len(calls)  # min_time keeps it going
    assert sum(times) < 0.05e9  # only the calls are timed, not the 50 ms the loop ran for


def test_every_benchmark_file_has_a_smoke_run():
    """CI's `make bench-smoke` runs every file in benchmarks/: pytest suites, and the scripts smoke.py lists."""
    from benchmarks.smoke import SCRIPTS, uncovered

    assert uncovered() == []
    for name in SCRIPTS:
        assert "--smoke" in SCRIPTS[name]
