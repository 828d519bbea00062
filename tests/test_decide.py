"""The recommendation: each constraint changes the choice; nothing qualifying names the constraint."""

import copy

import pytest

from edgecls.decide import Constraints, decide
from edgecls.errors import EdgeclsError


def _art(fmt, precision, file, kb):
    return {"format": fmt, "precision": precision, "file": file, "bytes": kb * 1024, "total_bytes": kb * 1024,
            "sha256": "0" * 64}


def _manifest():
    """Constructed results: ORT int8 fastest but fails parity; TFLite int8 small and quick; OV fp32 big and slow
    with a tight tail; TFLite fp32 medium."""
    arts = [_art("keras", "fp32", "model.keras", 400), _art("onnx", "int8", "model.int8.onnx", 40),
            _art("tflite", "int8", "model.int8.tflite", 35), _art("tflite", "fp32", "model.tflite", 130),
            _art("openvino", "fp32", "openvino/model.xml", 140)]
    verify = [{"format": f, "precision": p, "passed": ok, "failures": [] if ok else ["top-1 agreement 97% < 99%"],
               "accuracy": acc, "delta_points": d}
              for f, p, ok, acc, d in (("onnx", "int8", False, 0.95, -3.0), ("tflite", "int8", True, 0.975, -0.5),
                                       ("tflite", "fp32", True, 0.98, 0.0), ("openvino", "fp32", True, 0.98, 0.0))]
    bench = [{"runtime": rt, "precision": p, "batch": b, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99}
             for rt, p, b, p50, p90, p99 in (
                 ("onnx", "int8", 1, 0.05, 0.06, 0.07), ("tflite", "int8", 1, 0.08, 0.30, 0.90),
                 ("tflite", "fp32", 1, 0.10, 0.12, 0.15), ("openvino", "fp32", 1, 0.20, 0.21, 0.22),
                 ("keras", "fp32", 1, 1.0, 1.1, 1.2),
                 ("tflite", "int8", 32, 3.0, 3.1, 3.2), ("tflite", "fp32", 32, 2.0, 2.1, 2.2),
                 ("openvino", "fp32", 32, 1.5, 1.6, 1.7), ("onnx", "int8", 32, 1.0, 1.1, 1.2))]
    return {"artifacts": arts, "verify": {"rows": verify}, "bench": {"rows": bench}}


def _choice(**kw):
    d = decide(copy.deepcopy(_manifest()), Constraints(**kw))
    return (d.chosen.runtime, d.chosen.precision) if d.chosen else d.ruled_out_by


def test_fastest_that_passes_parity():
    d = decide(_manifest(), Constraints())
    assert (d.chosen.runtime, d.chosen.precision) == ("tflite", "int8")
    why = {(x.runtime, x.precision): x.reason for x in d.others}
    assert why[("onnx", "int8")].startswith("fails parity: top-1 agreement")
    assert "1.25x the chosen" in why[("tflite", "fp32")] and "keras" not in {x.runtime for x in d.others}


@pytest.mark.parametrize("kw,expected", [
    ({"for_batch": 32}, ("openvino", "fp32")),  # ORT int8 is fastest at 32 but fails parity
    ({"max_latency_ms": 0.2}, ("tflite", "fp32")),  # tflite int8's p90 0.30 is over
    ({"max_latency_ms": 0.25, "percentile": "p99"}, ("tflite", "fp32")),  # tflite int8's p99 0.90 is over
    ({"max_size_kb": 100}, ("tflite", "int8")),
    ({"max_size_kb": 30}, "--max-size"),
    ({"max_drop": 0.2}, ("tflite", "fp32")),  # tflite int8 loses 0.5 points
    ({"runtimes": ["openvino"]}, ("openvino", "fp32")),
    ({"max_latency_ms": 0.01}, "--max-latency"),
])
def test_each_constraint_changes_the_choice(kw, expected):
    assert _choice(**kw) == expected


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
                                    ({"max_drop": -1}, "--max-drop -1")])
def test_impossible_constraints_are_refused(kw, msg):
    with pytest.raises(EdgeclsError, match=msg):
        Constraints(**kw).validate()
    with pytest.raises(EdgeclsError, match="--for-batch 8: not among the measured batch sizes"):
        Constraints(for_batch=8).validate([1, 32])
