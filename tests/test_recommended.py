"""The bundle's current recommendation: followed while its bytes, parity and bench results stand."""

from __future__ import annotations

import copy

from edgecls.core import results
from edgecls.core.recommended import recommended

SHA = {"model.onnx": "a" * 64, "model.int8.tflite": "b" * 64}


def _manifest() -> dict:
    m = {"bundle_id": "id1", "created_at": "t",
         "artifacts": [{"file": f, "format": f.split(".")[-1], "precision": "int8" if "int8" in f else "fp32",
                        "sha256": s, "bytes": 1} for f, s in SHA.items()]}
    m["verify"] = {"rows": [results.bind({"file": f, "runtime": f.split(".")[-1], "device": "cpu",
                                          "outcome": "pass"}, m) for f in SHA]}
    m["bench"] = {"rows": [results.bind({"file": f, "runtime": f.split(".")[-1], "device": "cpu", "batch": 1,
                                         "p50_ms": 1.0}, m) for f in SHA]}
    m["decision"] = {"found": True, "constraints": {"for_batch": 1, "accept_inconclusive": False},
                     "chosen": {"file": "model.int8.tflite", "runtime": "tflite", "precision": "int8",
                                "sha256": SHA["model.int8.tflite"], "bundle_id": "id1"}}
    return m


def test_current_recommendation_is_followed():
    rec = recommended(_manifest())
    assert rec.current and rec.artifact["file"] == "model.int8.tflite" and "recommendation" in rec.why


def _changed(edit) -> str:
    m = _manifest()
    edit(m)
    rec = recommended(m)
    assert not rec.current
    return rec.why


def test_what_invalidates_it():
    def reexport(m):  # the file's bytes changed: its rows are stale
        m["artifacts"][1]["sha256"] = "c" * 64

    assert "re-exported" in _changed(reexport)

    def reverify_fail(m):
        m["verify"]["rows"][1]["outcome"] = "fail"

    assert "parity is now fail" in _changed(reverify_fail)

    def reverify_inconclusive(m):
        m["verify"]["rows"][1]["outcome"] = "inconclusive"

    assert "parity is now inconclusive" in _changed(reverify_inconclusive)

    def accepted(m):
        m["verify"]["rows"][1]["outcome"] = "inconclusive"
        m["decision"]["constraints"]["accept_inconclusive"] = True

    assert recommended(_with(accepted)).current  # the decision's own constraints accepted it

    def gone(m):
        m["artifacts"].pop(1)

    assert "no longer in the bundle" in _changed(gone)

    def no_bench(m):
        m["bench"]["rows"] = m["bench"]["rows"][:1]

    assert "no current bench result at batch 1" in _changed(no_bench)

    def retrained(m):
        m["bundle_id"] = "id2"

    assert "before this one" in _changed(retrained)
    assert "no recommendation yet" in _changed(lambda m: m.pop("decision"))
    assert "recommended nothing" in _changed(lambda m: m["decision"].update(found=False, chosen=None,
                                                                            ruled_out_by="parity"))


def _with(edit) -> dict:
    m = copy.deepcopy(_manifest())
    edit(m)
    return m


def test_classifier_follows_and_falls_back(exported_copy):
    """Classifier.open with no format follows a current recommendation and says why; a stale one falls back
    to the default order and says so."""
    import json

    from edgecls.core.bundle import Bundle
    from edgecls.runtimes.classifier import Classifier

    b = Bundle.open(exported_copy)
    m = b.manifest
    art = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")
    m["verify"] = {"rows": [results.bind({"file": "model.int8.tflite", "runtime": "tflite", "device": "cpu",
                                          "outcome": "pass"}, m)]}
    m["bench"] = {"rows": [results.bind({"file": "model.int8.tflite", "runtime": "tflite", "device": "cpu",
                                         "batch": 1, "p50_ms": 1.0}, m)]}
    m["decision"] = {"found": True, "constraints": {"for_batch": 1}, "others": [], "ruled_out_by": None,
                     "chosen": {"file": "model.int8.tflite", "runtime": "tflite", "precision": "int8",
                                "sha256": art["sha256"], "bundle_id": m["bundle_id"]}}
    b.save()
    clf = Classifier.open(exported_copy)
    assert clf.artifact["file"] == "model.int8.tflite" and "recommendation" in clf.why
    assert Classifier.open(exported_copy, format="onnx").artifact["file"] == "model.onnx"  # explicit still chooses
    assert Classifier.open(exported_copy, precision="int8").artifact["file"] == "model.int8.onnx"
    manifest = json.loads((exported_copy / "manifest.json").read_text())
    manifest["decision"]["chosen"]["sha256"] = "0" * 64  # as if re-exported after the bench
    (exported_copy / "manifest.json").write_text(json.dumps(manifest))
    clf = Classifier.open(exported_copy)
    assert clf.artifact["file"] == "model.onnx"
    assert "re-exported" in clf.why and "default order" in clf.why


def test_web_app_follows_a_current_recommendation_only(exported_copy):
    from edgecls.apps.web.build import choose_artifact
    from edgecls.core.bundle import Bundle

    b = Bundle.open(exported_copy)
    m = b.manifest
    art = next(a for a in m["artifacts"] if a["file"] == "model.int8.tflite")
    m["verify"] = {"rows": [results.bind({"file": "model.int8.tflite", "runtime": "tflite", "device": "cpu",
                                          "outcome": "pass"}, m)]}
    m["bench"] = {"rows": [results.bind({"file": "model.int8.tflite", "runtime": "tflite", "device": "cpu",
                                         "batch": 1, "p50_ms": 1.0}, m)]}
    m["decision"] = {"found": True, "constraints": {"for_batch": 1}, "others": [], "ruled_out_by": None,
                     "chosen": {"file": "model.int8.tflite", "runtime": "tflite", "precision": "int8",
                                "sha256": art["sha256"], "bundle_id": m["bundle_id"]}}
    artifact, notes = choose_artifact(b, None, None)
    assert artifact["file"] == "model.int8.tflite" and "recommendation" in notes[0]
    m["verify"]["rows"][0]["outcome"] = "fail"  # verified again since: it fails now
    artifact, notes = choose_artifact(b, None, None)
    assert artifact["file"] == "model.onnx"
    assert notes[0].startswith("not following the recommendation") and "parity is now fail" in notes[0]
