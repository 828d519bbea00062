"""`edgecls pipeline` (the main job) and the report, as a user runs them."""

import json

import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.files import sha256


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(app, ["pipeline", "--data", "synthetic", "--arch", "tiny", "--epochs", "3",
                                 "--out", str(out), "--batch", "1", "--accept-inconclusive"])
    assert r.exit_code == 0, r.output
    for text in ("held-out accuracy", "exported", "parity vs Keras", "threads for every runtime", "report:"):
        assert text in r.stdout
    m = Bundle.open(out).manifest
    assert {(a["format"], a["precision"]) for a in m["artifacts"]} == {
        ("keras", "fp32"), *((f, p) for f in ("onnx", "tflite", "openvino") for p in ("fp32", "int8"))}
    assert {r["outcome"] for r in m["verify"]["rows"]} <= {"pass", "inconclusive"} and len(m["bench"]["rows"]) == 7
    for entry in m["files"]:
        assert sha256(out / entry["file"]) == entry["sha256"]
    names = {e["file"] for e in m["files"]}
    assert {"report.md", "report.html", "training.png", "latency.png", "tradeoff.png", "history.json",
            "labels.txt"} <= names
    report = (out / "report.md").read_text()
    assert "## Parity with Keras" in report and "## Latency" in report and "| tflite | int8 |" in report
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "ship " in r.stdout and m["decision"]["found"]
    json.loads((out / "manifest.json").read_text())  # still valid JSON after every stage
    info = CliRunner().invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "onnx/cpu" in info.stdout and "not verified" not in info.stdout
    assert "bench: 7 current configurations" in info.stdout


def test_report_of_a_bundle_never_exported_says_what_is_missing(bundle_copy):
    from edgecls.report.document import write_report

    html = write_report(bundle_copy).read_text()
    assert "Not exported yet" in html and "Pixel baseline" in html
    text = (bundle_copy / "report.md").read_text()
    assert "Not exported yet" in text and "Not verified yet" in text and "Not benchmarked yet" in text
    assert "Pixel baseline" in text and "## Training" in text


@pytest.mark.slow
def test_pipeline_json(tmp_path):
    r = CliRunner().invoke(app, ["pipeline", "--data", "synthetic", "--arch", "tiny", "--epochs", "3",
                                 "--out", str(tmp_path / "b"), "--batch", "1", "--json", "--accept-inconclusive"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)  # stdout is the JSON alone; tables went to stderr
    assert res["passed"] and res["bundle"] == str(tmp_path / "b")
    assert {"train", "export", "verify", "bench", "report"} <= set(res)
    assert res["verify"]["images"] >= res["verify"]["heldout_images"] and res["bench"]["rows"]
    assert "parity vs Keras" in r.stderr
