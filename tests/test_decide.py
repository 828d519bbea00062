"""The recommendation: parity shown on the device benchmarked, bound to the bytes, ties shown on paired per-round
evidence and broken by parity, then size, then tail — the same answer whatever the rows' order."""

import copy
import itertools
import random

import pytest

from edgecls.bench.decide import Constraints, decide
from edgecls.core.errors import EdgeclsError

BUNDLE = "b" * 32


def _art(fmt, precision, file, kb):
    return {"format": fmt, "precision": precision, "file": file, "bytes": kb * 1024, "total_bytes": kb * 1024,
            "sha256": (file.encode().hex() * 64)[:64]}


def _verify_row(art, outcome, acc, lost=0, gained=0, n=400, device="cpu"):
    return {"file": art["file"], "runtime": art["format"], "device": device, "format": art["format"],
            "precision": art["precision"], "outcome": outcome, "accuracy": acc, "keras_accuracy": 0.98,
            "failures": ["changed answers 3.00% (12 of 400; 95% interval 1.72 to 5.18%): shown > 1%"]
            if outcome == "fail" else [], "undecided": [], "lost": lost, "gained": gained, "heldout_images": n,
            "images": n, "changed": lost + gained, "sha256": art["sha256"], "bundle_id": BUNDLE}


DRIFT = (1.00, 1.03, 0.98, 1.06, 0.97, 1.01)  # the machine's speed in each of 6 interleaved rounds: every row sees it


def _bench_row(art, batch, p50, p90, p99, ci=None, rounds="drift", session="s1", device="cpu"):
    """A bench row; by default measured in 6 interleaved rounds of one session, each round's p50 the row's p50
    times that round's drift (so paired per-round ratios are exact, while each row's own interval is wide)."""
    rounds = [p50 * f for f in DRIFT] if rounds == "drift" else rounds
    if ci is None and rounds:
        ci = [min(rounds), max(rounds)]
    return {"file": art["file"], "runtime": art["format"], "precision": art["precision"], "device": device,
            "batch": batch, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p50_ci_ms": ci,
            "p50_ci_level": 0.96875 if len(rounds or []) == 6 else None, "p50_rounds_ms": rounds,
            "session": session if rounds else None, "sha256": art["sha256"], "bundle_id": BUNDLE}


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
    assert why[("tflite", "fp32")].startswith("slower beyond noise: p50 0.100 ms [0.097-0.106], 1.25x the fastest")
    assert "(ratio interval 1.25-1.25x, paired over 6 rounds, 96.9%: more than 5%)" in why[("tflite", "fp32")]
    assert "keras" not in {x.runtime for x in d.others}
    assert d.why.startswith("the fastest at batch 1")
    assert d.level.endswith("among the 4 files compared, the chance that some file at its limits passes falsely "
                            "is at most 10.0%")


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
    m["verify"]["rows"][1].update(lost=16, gained=0, changed=16, accuracy=0.94)  # tflite int8: -4 points on 400
    d = decide(copy.deepcopy(m), Constraints(max_drop=1.0))
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("tflite", "int8")].startswith("--max-drop: changed answers 4.00% (16 of 400")
    assert "accuracy drop 4.00 points (lost 16, gained 0 of 400" in why[("tflite", "int8")]
    assert _choice(m, max_drop=1.0) == ("tflite", "fp32")
    m["verify"]["rows"][1].update(lost=3, gained=0, changed=3)  # -0.75 points on 400: neither shown nor refuted
    d = decide(copy.deepcopy(m), Constraints(max_drop=1.0))
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("tflite", "int8")].startswith("int8 parity not shown on 400 images: changed answers 0.75%")
    assert "accuracy drop 0.75 points" in why[("tflite", "int8")]
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


def _two(m, p50_a, p50_b, **kw):
    """Bench rows for LiteRT fp32 (130 KB) and LiteRT int8 (35 KB) only."""
    tfl8, tfl = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.int8.tflite", "model.tflite"))
    m["bench"]["rows"] = [_bench_row(tfl, 1, p50_a, 0.10, 0.12, **kw.get("a", {})),
                          _bench_row(tfl8, 1, p50_b, 0.11, 0.13, **kw.get("b", {}))]
    return m


def test_ties_are_shown_on_paired_rounds_the_smaller_file_wins():
    """The found flip: 0.077 vs 0.083 ms. Each row's own interval is wide (the machine drifted 9% over the rounds),
    but both saw the same drift: the per-round ratios show the int8 file within 5% or not, exactly."""
    m = _two(_manifest(), 0.080, 0.082)  # 1.025x in every round: shown within 5%
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.int8.tflite" and d.tied == ["model.int8.tflite", "model.tflite"]
    assert d.why == "tied with model.tflite (0.98x) (shown within 5% of the fastest): chose the smaller file"
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert other.reason.startswith("tied with the chosen model.int8.tflite (0.98x p50, within noise): larger file")
    m = _two(_manifest(), 0.077, 0.083)  # 1.08x in every round: not within 5%, although the intervals overlap
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.tflite"
    (other,) = [x for x in d.others if x.file == "model.int8.tflite"]
    assert other.reason.startswith("slower beyond noise: p50 0.083 ms")
    assert decide(copy.deepcopy(m), Constraints(tie_margin=10)).chosen.file == "model.int8.tflite"


def test_rows_of_different_sessions_compare_their_intervals():
    m = _two(_manifest(), 0.100, 0.101, a={"ci": [0.099, 0.101], "rounds": None},
             b={"ci": [0.100, 0.102], "rounds": None})  # ratio interval 0.99-1.03: tied
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.int8.tflite"
    m = _two(_manifest(), 0.100, 0.101, a={"session": "s1"}, b={"session": "s2"})  # unpaired: 0.97/1.06 .. too wide
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "model.tflite"
    (other,) = [x for x in d.others if x.file == "model.int8.tflite"]
    assert "from the two intervals, 93.8%); more rounds would tell" in other.reason
    m = _two(_manifest(), 0.100, 0.101, a={"rounds": None}, b={"rounds": None})  # one round, no interval
    assert "no interval to compare" in next(x.reason for x in decide(copy.deepcopy(m), Constraints()).others
                                            if x.file == "model.int8.tflite")


ABC = {"A": ("openvino", "fp32", "a.xml", 100, 1.000, [0.99, 1.01]),
       "B": ("onnx", "fp32", "b.onnx", 90, 1.000, [0.95, 1.40]),
       "C": ("tflite", "int8", "c.tflite", 20, 1.300, [1.20, 1.45])}


def _abc(order, rows=ABC):
    arts = [_art(*rows[k][:3], rows[k][3]) for k in order]
    bench = [_bench_row(a, 1, rows[k][4], rows[k][4], rows[k][4], ci=rows[k][5], rounds=None)
             | {"p50_ci_level": 0.96875} for k, a in zip(order, arts)]
    return {"created_at": "2026-12-01T00:00:00+00:00", "bundle_id": BUNDLE, "artifacts": arts,
            "verify": {"rows": [_verify_row(a, "pass", 0.98) for a in arts]}, "bench": {"rows": bench}}


@pytest.mark.parametrize("order", list(itertools.permutations("ABC")))
def test_the_issues_rows_ship_the_same_file_in_every_order(order):
    """A 1.000 ms [0.99, 1.01], B 1.000 ms [0.95, 1.40] (smaller, noisier), C 1.300 ms [1.20, 1.45] (smallest):
    the old rule shipped B in the order A,B,C and C (1.30x slower) in B,A,C. Now: A in every order — B is not
    shown within 5% of A (its interval reaches 1.41x), C is slower beyond noise."""
    d = decide(_abc(order), Constraints())
    assert d.chosen.file == "a.xml" and d.tied == ["a.xml"]
    why = {x.file: x.reason for x in d.others}
    assert why["b.onnx"].startswith("not shown within 5% of the fastest")
    assert why["c.tflite"].startswith("slower beyond noise")


@pytest.mark.parametrize("wide", [True, False])
def test_a_noisier_file_never_wins_by_being_noisier(wide):
    """A 1.60 ms file with a wide interval [1.01, 3.00] tied the 1.00 ms file and shipped as 'within noise'; with a
    tight one it lost. Now it loses either way, and widening an interval never moves a file into the tie."""
    rows = {"A": ABC["A"], "B": ("tflite", "int8", "small.tflite", 20, 1.60, [1.01, 3.00] if wide else [1.58, 1.62])}
    d = decide(_abc("AB", rows), Constraints())
    assert d.chosen.file == "a.xml"
    tight = _two(_manifest(), 0.100, 0.102)  # tied on paired rounds; make the small file's rounds noisy
    assert decide(copy.deepcopy(tight), Constraints()).chosen.file == "model.int8.tflite"
    noise = (1, 1.3, 1, 0.8, 1, 1)
    noisy = _two(_manifest(), 0.100, 0.102, b={"rounds": [0.102 * f * g for f, g in zip(DRIFT, noise)]})
    assert decide(copy.deepcopy(noisy), Constraints()).chosen.file == "model.tflite"


def test_shuffled_rows_ship_the_same_file():
    """The same manifest with its artifacts, verify rows and bench rows in any order: the same decision, word
    for word."""
    m = _manifest()
    m["bench"]["rows"] = [r for r in m["bench"]["rows"] if r["batch"] == 1]
    tfl8 = next(r for r in m["bench"]["rows"] if r["file"] == "model.int8.tflite")
    tfl8.update(p50_ms=0.098, p50_rounds_ms=[0.098 * f for f in DRIFT])  # tied with LiteRT fp32 (0.10)
    ov = next(r for r in m["bench"]["rows"] if r["file"] == "openvino/model.xml")
    ov.update(p50_ms=0.098, p50_rounds_ms=[0.098 * f for f in DRIFT])  # equal to the int8 file
    reference = decide(copy.deepcopy(m), Constraints()).to_dict()
    assert reference["chosen"]["file"] == "model.int8.tflite"
    rng = random.Random(0)
    for _ in range(30):
        shuffled = copy.deepcopy(m)
        for rows in (shuffled["artifacts"], shuffled["verify"]["rows"], shuffled["bench"]["rows"]):
            rng.shuffle(rows)
        d = decide(shuffled, Constraints()).to_dict()
        assert d["chosen"] == reference["chosen"] and d["why"] == reference["why"] and d["tied"] == reference["tied"]
        assert sorted(map(str, d["others"])) == sorted(map(str, reference["others"]))


def test_parity_must_be_shown_on_the_device_benchmarked():
    """Stored [cpu fail, gpu pass] shipped the file and [gpu pass, cpu fail] refused it: now both refuse it on cpu."""
    m = _manifest()
    tfl8 = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")
    cpu = next(r for r in m["verify"]["rows"] if r["file"] == "model.int8.tflite")
    cpu.update(outcome="fail", failures=["changed answers 3.00% (...): shown > 1%"])
    gpu = _verify_row(tfl8, "pass", 0.978, 1, 0, device="gpu")
    for rows in ([cpu, gpu], [gpu, cpu]):
        m["verify"]["rows"] = [r for r in m["verify"]["rows"] if r["file"] != "model.int8.tflite"] + rows
        d = decide(copy.deepcopy(m), Constraints())
        assert d.chosen.file == "model.tflite"
        assert next(x.reason for x in d.others if x.file == "model.int8.tflite").startswith("fails parity")
    m["verify"]["rows"] = [r for r in m["verify"]["rows"] if r is not cpu]  # only the gpu row: not verified on cpu
    d = decide(copy.deepcopy(m), Constraints())
    assert next(x.reason for x in d.others if x.file == "model.int8.tflite") == (
        "not verified on cpu (run edgecls verify --device cpu)")
    m["bench"]["rows"].append(_bench_row(tfl8, 1, 0.08, 0.30, 0.90, device="gpu"))
    assert decide(copy.deepcopy(m), Constraints(device="gpu")).chosen.file == "model.int8.tflite"


def test_max_drop_above_one_governs_the_changed_answers_too():
    """--max-drop 3 with 30 lost of 2,000: the drop is shown <= 3, and the changed-answers limit follows --max-drop
    (every lost answer is a changed answer), so the file ships; at the default 1 it fails on both."""
    m = _manifest()
    row = next(r for r in m["verify"]["rows"] if r["file"] == "model.int8.tflite")
    row.update(outcome="fail", lost=30, gained=0, changed=30, heldout_images=2000, images=2000, accuracy=0.965,
               checks=[{"name": "changed answers", "outcome": "fail"}, {"name": "accuracy drop", "outcome": "fail"}])
    assert _choice(m, max_drop=3.0) == ("tflite", "int8")
    d = decide(copy.deepcopy(m), Constraints(max_drop=1.0))
    reason = next(x.reason for x in d.others if x.file == "model.int8.tflite")
    assert reason.startswith("--max-drop: changed answers 1.50% (30 of 2000") and "shown > 1%" in reason


def test_within_a_tie_shown_parity_ranks_above_inconclusive():
    """With --accept-inconclusive an inconclusive file beat a passing one of the same speed on size alone."""
    m = _two(_manifest(), 0.100, 0.100)
    row = next(r for r in m["verify"]["rows"] if r["file"] == "model.int8.tflite")
    row.update(outcome="inconclusive", undecided=["changed answers 0.75% (...)"])
    d = decide(copy.deepcopy(m), Constraints(accept_inconclusive=True))
    assert d.chosen.file == "model.tflite"
    assert d.why.endswith("chose a file that passes parity ranks above an inconclusive one")
    (other,) = [x for x in d.others if x.file == "model.int8.tflite"]
    assert other.reason.endswith("the chosen one passes parity, this one is inconclusive")


def test_tie_of_equal_sizes_broken_by_tail():
    m = _manifest()
    tfl, ov = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.tflite", "openvino/model.xml"))
    ov["total_bytes"] = tfl["total_bytes"]
    m["bench"]["rows"] = [_bench_row(tfl, 1, 0.100, 0.30, 0.5), _bench_row(ov, 1, 0.102, 0.12, 0.2)]
    d = decide(copy.deepcopy(m), Constraints(runtimes=["tflite", "openvino"]))
    assert d.chosen.file == "openvino/model.xml"
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert "higher p90 (0.300 ms vs 0.120 ms)" in other.reason


def test_slower_beyond_noise():
    m = _manifest()
    tfl, ov = (next(a for a in m["artifacts"] if a["file"] == f) for f in ("model.tflite", "openvino/model.xml"))
    m["bench"]["rows"] = [_bench_row(ov, 1, 0.100, 0.1, 0.1, [0.095, 0.105], rounds=None),
                          _bench_row(tfl, 1, 0.130, 0.1, 0.1, [0.120, 0.140], rounds=None)]
    d = decide(copy.deepcopy(m), Constraints())
    assert d.chosen.file == "openvino/model.xml"  # larger, but faster beyond noise
    (other,) = [x for x in d.others if x.file == "model.tflite"]
    assert other.reason.startswith("slower beyond noise: p50 0.130 ms [0.120-0.140], 1.30x the fastest")
    assert "ratio interval 1.14-1.47x, from the two intervals, level unknown" in other.reason


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
