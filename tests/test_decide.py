"""The recommendation: parity shown, bound to the bytes, ties within noise broken by size, then tail."""

import copy

import pytest

from edgecls.bench.decide import Constraints, decide
from edgecls.core.errors import EdgeclsError

BUNDLE = "b" * 32


def _art(fmt, precision, file, kb):
    return {"format": fmt, "precision": precision, "file": file, "bytes": kb * 1024, "total_bytes": kb * 1024,
            "sha256": (file.encode().hex() * 64)[:64]}


def _verify_row(art, outcome, acc, lost=0, gained=0, n=400):
    return {"file": art["file"], "runtime": art["format"], "device": "cpu", "format": art["format"],
            "precision": art["precision"], "outcome": outcome, "accuracy": acc, "keras_accuracy": 0.98,
            "failures": ["changed answers 3.00% (12 of 400; 95% interval 1.72 to 5.18%): shown > 1%"]
            if outcome == "fail" else [], "undecided": [], "lost": lost, "gained": gained, "heldout_images": n,
            "images": n, "sha256": art["sha256"], "bundle_id": BUNDLE}


def _bench_row(art, batch, p50, p90, p99, ci=None):
    return {"file": art["file"], "runtime": art["format"], "precision": art["precision"], "device": "cpu",
            "batch": batch, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p50_ci_ms": ci,
            "sha256": art["sha256"], "bundle_id": BUNDLE}


def _manifest():
    """Constructed results: ORT int8 fastest but fails parity; TFLite int8 small and quick; OV fp32 big and slow
    with a tight tail; TFLite fp32 medium."""
    a = {k: _art(*v) for k, v in {"keras": ("keras", "fp32", "model.keras", 400),
                                  "ort8": ("onnx", "int8", "model.int8.onnx", 40),
                                  "tfl8": ("tflite", "int8", "model.int8.tflite", 35),
                                  "tfl": ("tflite", "fp32", "model.tflite", 130),
                                  "ov": ("openvino", "fp32", "openvino/model.xml", 140)}.items()}
    verify = [_verify_row(a["ort8"], "fail", 0.95, 12, 0), _verify_row(a["tfl8"], "pass", 0.978, 1, 0),
              _verify_row(a["tfl"], "pass", 0.98), _verify_row(a["ov"], "pass", 0.98)]
    bench = [_bench_row(a[k], b, *t) for k, b, *t in (
        ("ort8", 1, 0.05, 0.06, 0.07), ("tfl8", 1, 0.08, 0.30, 0.90), ("tfl", 1, 0.10, 0.12, 0.15),
        ("ov", 1, 0.20, 0.21, 0.22), ("keras", 1, 1.0, 1.1, 1.2), ("tfl8", 32, 3.0, 3.1, 3.2),
        ("tfl", 32, 2.0, 2.1, 2.2), ("ov", 32, 1.5, 1.6, 1.7), ("ort8", 32, 1.0, 1.1, 1.2))]
    return {"created_at": "2026-12-01T00:00:00+00:00", "bundle_id": BUNDLE, "artifacts": list(a.values()),
            "verify": {"rows": verify}, "bench": {"rows": bench}}


def _choice(m=None, **kw):
    d = decide(copy.deepcopy(m or _manifest()), Constraints(**kw))
    return (d.chosen.runtime, d.chosen.precision) if d.chosen else d.ruled_out_by


def test_fastest_that_passes_parity():
    d = decide(_manifest(), Constraints())
    assert (d.chosen.runtime, d.chosen.precision) == ("tflite", "int8")
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("onnx", "int8")].startswith("fails parity: changed answers 3.00%")
    assert why[("tflite", "fp32")].startswith("slower beyond noise: p50 0.100 ms, 1.25x the fastest")
    assert "keras" not in {x.runtime for x in d.others}
    assert d.why.startswith("the fastest at batch 1")


@pytest.mark.parametrize("kw,expected", [
    ({"for_batch": 32}, ("openvino", "fp32")),  # ORT int8 is fastest at 32 but fails parity
    ({"max_latency_ms": 0.2}, ("tflite", "fp32")),  # tflite int8's p90 0.30 is over
    ({"max_latency_ms": 0.25, "percentile": "p99"}, ("tflite", "fp32")),  # tflite int8's p99 0.90 is over
    ({"max_size_kb": 100}, ("tflite", "int8")),
    ({"max_size_kb": 30}, "--max-size"),
    ({"runtimes": ["openvino"]}, ("openvino", "fp32")),
    ({"max_latency_ms": 0.01}, "--max-latency"),
])
def test_each_constraint_changes_the_choice(kw, expected):
    assert _choice(**kw) == expected


def test_max_drop_is_judged_on_the_interval_as_verify_does():
    m = _manifest()
    m["verify"]["rows"][1].update(lost=16, gained=0, accuracy=0.94)  # tflite int8: -4 points on 400 images
    d = decide(copy.deepcopy(m), Constraints(max_drop=1.0))
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("tflite", "int8")].startswith("--max-drop: accuracy drop 4.00 points (lost 16, gained 0 of 400")
    assert _choice(m, max_drop=1.0) == ("tflite", "fp32")
    m["verify"]["rows"][1].update(lost=3, gained=0)  # -0.75 points on 400: neither shown nor refuted
    d = decide(copy.deepcopy(m), Constraints(max_drop=1.0))
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("tflite", "int8")].startswith("int8 not shown to be within 1.00 points on 400 held-out images")
    assert _choice(m, max_drop=1.0, accept_inconclusive=True) == ("tflite", "int8")
    assert _choice(m, max_drop=5.0) == ("tflite", "int8")


def test_inconclusive_parity_ships_only_when_accepted():
    m = _manifest()
    m["verify"]["rows"][1].update(outcome="inconclusive", undecided=["changed answers 0.75% (...)"])
    assert _choice(m) == ("tflite", "fp32")
    d = decide(copy.deepcopy(m), Constraints())
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert "int8 parity not shown on 400 images" in why[("tflite", "int8")]
    assert _choice(m, accept_inconclusive=True) == ("tflite", "int8")


def test_results_of_other_bytes_are_ignored_and_said_so():
    """Re-export after verify: the stored rows judged other bytes; the new file is not shipped on them."""
    m = _manifest()
    next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")["sha256"] = "f" * 64  # re-exported
    d = decide(copy.deepcopy(m), Constraints())
    assert (d.chosen.runtime, d.chosen.precision) == ("tflite", "fp32")
    why = {x.file: x.reason for x in d.others}
    assert why["model.int8.tflite"] == "not verified: stale: the file changed since (run it again)"
    assert any(line.startswith("tflite int8 (model.int8.tflite): stale") for line in d.ignored)
    old = _manifest()  # an older bundle: rows without hashes are never trusted
    for section in ("verify", "bench"):
        for r in old[section]["rows"]:
            del r["sha256"]
    d = decide(old, Constraints())
    assert not d.found and d.ruled_out_by == "parity"
    assert d.others[0].reason == "not verified: unbound: no hash recorded (run it again)"


def test_ties_are_ties_the_smaller_file_wins():
    """The found flip: OpenVINO int8 0.077 vs LiteRT int8 0.083 ms (1.08x) — within noise; the smaller file ships."""
    m = _manifest()
    tfl8, tfl = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.int8.tflite", "model.tflite"))
    m["bench"]["rows"] = [_bench_row(tfl, 1, 0.077, 0.10, 0.12, [0.070, 0.085]),
                          _bench_row(tfl8, 1, 0.083, 0.11, 0.13, [0.075, 0.090])]
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.int8.tflite" and d.tied == ["model.int8.tflite", "model.tflite"] or \
        set(d.tied) == {"model.int8.tflite", "model.tflite"}
    assert d.why == "tied with model.tflite (0.93x) (within noise): chose the smaller file"
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert other.reason.startswith("tied with the chosen model.int8.tflite (0.93x p50, within noise): larger file")
    # the old rule (min p50) would flip with the sign of the noise; the new one does not
    m["bench"]["rows"][0].update(p50_ms=0.085, p50_ci_ms=[0.078, 0.092])
    assert decide(copy.deepcopy(m), Constraints()).chosen.file == "model.int8.tflite"
    # no interval overlap but within the margin: still tied
    m["bench"]["rows"] = [_bench_row(tfl, 1, 0.100, 0.1, 0.1, [0.099, 0.101]),
                          _bench_row(tfl8, 1, 0.104, 0.2, 0.2, [0.103, 0.105])]
    assert decide(copy.deepcopy(m), Constraints()).chosen.file == "model.int8.tflite"
    assert decide(copy.deepcopy(m), Constraints(tie_margin=2)).chosen.file == "model.tflite"


def test_tie_of_equal_sizes_broken_by_tail():
    m = _manifest()
    tfl, ov = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.tflite", "openvino/model.xml"))
    ov["total_bytes"] = tfl["total_bytes"]
    m["bench"]["rows"] = [_bench_row(tfl, 1, 0.100, 0.30, 0.5), _bench_row(ov, 1, 0.103, 0.12, 0.2)]
    d = decide(copy.deepcopy(m), Constraints(runtimes=["tflite", "openvino"]))
    assert d.chosen.file == "openvino/model.xml"
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert "higher p90 (0.300 ms vs 0.120 ms)" in other.reason


def test_slower_beyond_noise():
    m = _manifest()
    tfl, ov = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.tflite", "openvino/model.xml"))
    m["bench"]["rows"] = [_bench_row(ov, 1, 0.100, 0.1, 0.1, [0.095, 0.105]),
                          _bench_row(tfl, 1, 0.130, 0.1, 0.1, [0.120, 0.140])]
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "openvino/model.xml"  # larger, but faster beyond noise
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert other.reason.startswith("slower beyond noise: p50 0.130 ms [0.120-0.140], 1.30x the fastest")


def test_timed_outputs_that_differ_are_never_recommended():
    m = _manifest()
    row = next(r for r in m["bench"]["rows"] if r["file"] == "model.int8.tflite" and r["batch"] == 1)
    row.update(outputs_ok=False, outputs_max_abs_diff=0.5)
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.tflite"
    why = {x.file: x.reason for x in d.others}
    assert why["model.int8.tflite"].startswith("its timed outputs differ from its verified outputs")


def test_nothing_qualifies_names_the_constraint():
    d = decide(_manifest(), Constraints(max_size_kb=30))
    assert not d.found and d.ruled_out_by == "--max-size"
    assert all("KB > --max-size 30" in x.reason or "fails parity" in x.reason for x in d.others)
    unverified = _manifest()
    del unverified["verify"]
    d = decide(unverified, Constraints())
    assert not d.found and d.ruled_out_by == "parity" and "not verified" in d.others[0].reason


@pytest.mark.parametrize("kw,msg", [({"max_latency_ms": 0}, "--max-latency 0"), ({"max_size_kb": -5}, "--max-size -5"),
                                    ({"for_batch": 0}, "--for-batch 0"), ({"percentile": "p50"}, "--percentile p50"),
                                    ({"max_drop": -1}, "--max-drop -1"), ({"tie_margin": 100}, "--tie-margin 100"),
                                    ({"tie_margin": -1}, "--tie-margin -1")])
def test_impossible_constraints_are_refused(kw, msg):
    with pytest.raises(EdgeclsError, match=msg):
        Constraints(**kw).validate()
    with pytest.raises(EdgeclsError, match="--for-batch 8: not among the measured batch sizes"):
        Constraints(for_batch=8).validate([1, 32])


def test_a_tail_on_too_few_runs_is_not_judged():
    m = _manifest()
    for r in m["bench"]["rows"]:
        r.update(runs=150, p90_ok=True, p99_ok=False)
    d = decide(copy.deepcopy(m), Constraints(max_latency_ms=5, percentile="p99"))
    assert not d.found and d.ruled_out_by == "--max-latency"
    assert any(x.reason.startswith("too few runs for p99 (150 timed; MLPerf asks >= 662)") for x in d.others)
    assert _choice(m, max_latency_ms=5) == ("tflite", "int8")  # p90 rests on enough runs
