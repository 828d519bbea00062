"""`edgecls tune`: the search space, the pick (accuracy intervals, ties, limits), the front, latency files
bound to bytes, bad input — and one real search on synthetic data, interrupted and resumed."""

import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.cli.tune import parse_budget
from edgecls.core.errors import EdgeclsError
from edgecls.tune import select, space, target

from .conftest import make_folder

SHA = {name: name[0] * 64 for name in ("aaa", "bbb", "ccc", "ddd")}


def _manifest(bundle_id: str, files: list[dict]) -> dict:
    """A candidate bundle's manifest as select reads it: artifacts, and verify/bench rows bound to their bytes.
    Each of `files`: file, sha, kb, accuracy, n (held-out), p50, outcome, (p90); the p50's evidence as bench
    writes it: `ci` (an interval, 96.9% as from 6 rounds) or `rounds` (each round's p50, one session per bundle:
    paired with the bundle's other files); neither: one round, no interval."""
    arts, verify, bench = [], [], []
    for f in files:
        rounds = f.get("rounds")
        ci = f.get("ci") or ([min(rounds), max(rounds)] if rounds else None)
        fmt = f["file"].rsplit(".", 1)[1]
        arts.append({"format": fmt, "precision": "int8" if ".int8." in f["file"] else "fp32", "file": f["file"],
                     "bytes": int(f["kb"] * 1024), "sha256": f["sha"]})
        verify.append({"file": f["file"], "format": fmt, "runtime": fmt, "sha256": f["sha"], "bundle_id": bundle_id,
                       "accuracy": f["accuracy"], "heldout_images": f["n"], "images": f["n"],
                       "outcome": f.get("outcome", "pass")})
        bench.append({"file": f["file"], "runtime": fmt, "batch": 1, "sha256": f["sha"], "bundle_id": bundle_id,
                      "p50_ms": f["p50"], "p90_ms": f.get("p90", f["p50"] * 1.1), "p90_ok": True,
                      "outputs_ok": True, "p50_ci_ms": ci, "p50_ci_level": 0.96875 if ci else None,
                      "p50_rounds_ms": rounds, "session": f"session-{bundle_id}" if rounds else None})
    return {"bundle_id": bundle_id, "artifacts": arts, "verify": {"rows": verify}, "bench": {"rows": bench}}


LIMITS = select.Limits(max_latency_ms=10, max_size_mb=1)


def _points(spec: dict[str, list[dict]], limits=LIMITS, order=None):
    names = order or list(spec)
    return [p for n in names for p in select.points(n, _manifest(f"id-{n}", spec[n]), limits)]


def test_the_most_accurate_wins_when_the_intervals_tell_them_apart():
    spec = {"big": [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 900, "accuracy": 0.95, "n": 1000, "p50": 8}],
            "small": [{"file": "model.onnx", "sha": SHA["bbb"], "kb": 50, "accuracy": 0.80, "n": 1000, "p50": 1}]}
    pts = _points(spec)
    chosen = select.pick(pts, LIMITS)
    assert chosen.chosen.candidate == "big" and chosen.why.endswith("ahead of every other beyond noise")
    lost = next(p for p in pts if p.candidate == "small")
    assert lost.reason.startswith("less accurate beyond noise: 0.800")


def test_overlapping_accuracy_intervals_are_a_tie_and_the_faster_then_smaller_wins():
    # 30 held-out images: 0.90 and 0.87 are the same accuracy as far as the evidence goes
    spec = {"a": [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 900, "accuracy": 0.90, "n": 30, "p50": 8,
                   "ci": [7.9, 8.1]}],
            "b": [{"file": "model.onnx", "sha": SHA["bbb"], "kb": 300, "accuracy": 0.87, "n": 30, "p50": 2,
                   "ci": [1.98, 2.02]}],
            "c": [{"file": "model.onnx", "sha": SHA["ccc"], "kb": 100, "accuracy": 0.87, "n": 30, "p50": 2.02,
                   "ci": [2.00, 2.04]}]}
    pts = _points(spec)
    chosen = select.pick(pts, LIMITS)
    # tied on accuracy with the best; c's p50 over b's is shown within 5% (2.00/2.02 to 2.04/1.98); smaller
    assert chosen.chosen.candidate == "c"
    assert set(chosen.tied_accuracy) == {"a model.onnx", "b model.onnx", "c model.onnx"}
    assert chosen.why.startswith("0.870") and "the smallest of the 2 tied on latency" in chosen.why
    reasons = {p.candidate: p.reason for p in pts}
    assert reasons["a"].startswith("tied on accuracy with the pick") and "slower beyond noise" in reasons["a"]
    assert "ratio interval 3.91-4.09x, from the two intervals, 93.8%" in reasons["a"]
    assert reasons["b"].startswith("tied on accuracy and latency with the pick: larger file")
    c = next(p for p in pts if p.candidate == "c")
    assert c.ratio[1] <= 1.05 and c.ratio[2] == pytest.approx(0.9375)  # recorded in tune.json, as in a decision


def _pick(spec, limits=LIMITS, order=None):
    return select.pick(_points(spec, limits, order), limits).chosen


def test_latency_ties_are_the_bench_decisions_rule_shown_within_the_margin():
    """Tied on accuracy (30 held-out images); on latency the bench decision's rule decides, not the p50s alone."""
    fast = {"file": "model.onnx", "sha": SHA["aaa"], "kb": 900, "accuracy": 0.90, "n": 30, "p50": 2.0,
            "ci": [1.98, 2.02]}
    small = {"file": "model.onnx", "sha": SHA["bbb"], "kb": 100, "accuracy": 0.87, "n": 30}
    # a clearly faster file beats a smaller one that is slower beyond noise
    spec = {"fast": [fast], "small": [small | {"p50": 3.0, "ci": [2.9, 3.1]}]}
    assert _pick(spec).candidate == "fast"
    lost = next(p for p in _points(spec) if p.candidate == "small")
    select.pick([lost, *_points({"fast": [fast]})], LIMITS)
    assert lost.reason.startswith("tied on accuracy with the pick (95% intervals overlap); slower beyond noise: "
                                  "p50 3.000 ms [2.900-3.100], 1.50x the fastest fast model.onnx")
    # 1% slower, but its interval reaches 1.5x: not *shown* within 5% (overlapping intervals tied it before,
    # so a noisier file won by being noisier); without any interval the same
    for evidence, says in (({"ci": [1.5, 3.0]}, "more rounds would tell"), ({}, "no interval to compare")):
        spec = {"fast": [fast], "small": [small | {"p50": 2.02} | evidence]}
        pts = _points(spec)
        assert select.pick(pts, LIMITS).chosen.candidate == "fast"
        assert "not shown within 5% of the fastest" in next(p.reason for p in pts if p.candidate == "small")
        assert says in next(p.reason for p in pts if p.candidate == "small")
    # one candidate's two files, benched side by side in one session: paired per round, the machine's drift
    # (9% over the rounds) cancels and the int8 file is shown within 5%: the smaller wins
    drift = (1.00, 1.03, 0.98, 1.06, 0.97, 1.01)
    spec = {"one": [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 400, "accuracy": 0.9, "n": 30, "p50": 1.0,
                     "rounds": [1.0 * d for d in drift]},
                    {"file": "model.int8.onnx", "sha": SHA["bbb"], "kb": 120, "accuracy": 0.9, "n": 30, "p50": 1.03,
                     "rounds": [1.03 * d for d in drift]}]}
    pts = _points(spec)
    chosen = select.pick(pts, LIMITS).chosen
    assert chosen.file == "model.int8.onnx" and chosen.ratio[:2] == pytest.approx([1.03, 1.03])
    # 8% slower in every round: not tied, although each file's own interval overlaps the other's
    spec["one"][1] |= {"p50": 1.08, "rounds": [1.08 * d for d in drift]}
    assert _pick(spec).file == "model.onnx"
    # within a latency tie, a file whose parity passes ranks above an inconclusive one (the decision's order)
    spec["one"][1] |= {"p50": 1.0, "rounds": [1.0 * d for d in drift], "outcome": "inconclusive"}
    accepting = select.Limits(10, 1, accept_inconclusive=True)
    assert _pick(spec, accepting).file == "model.onnx"


def test_the_pick_does_not_depend_on_the_order_of_the_candidates_or_their_files():
    """Property-style: random candidates (accuracies on small held-out sets, p50s with intervals or per-round
    evidence, sizes, near-ties everywhere), each shuffled: the same pick and the same reasons."""
    rng = random.Random(0)
    for trial in range(25):
        spec = {}
        for k in range(rng.randint(2, 5)):
            files = []
            for j, name in enumerate(("model.onnx", "model.int8.onnx", "model.tflite")[:rng.randint(1, 3)]):
                p50 = rng.choice([1.0, 1.01, 1.03, 1.2, 2.0])
                f = {"file": name, "sha": f"{trial:02d}{k}{j}".ljust(64, "0"), "kb": rng.choice([100, 100, 300, 900]),
                     "accuracy": rng.choice([0.85, 0.87, 0.9, 0.97]), "n": rng.choice([30, 300]), "p50": p50}
                kind = rng.choice(["ci", "rounds", "none"])
                if kind == "ci":
                    f["ci"] = [p50 * rng.uniform(0.9, 1.0), p50 * rng.uniform(1.0, 1.1)]
                elif kind == "rounds":
                    f["rounds"] = [p50 * d for d in (1.0, 1.02, 0.99, 1.04, 0.98, 1.01)]
                files.append(f)
            spec[f"c{k}"] = files
        pts = _points(spec)
        expected = select.pick(pts, LIMITS)
        reasons = {p.label: p.reason for p in pts}
        for _ in range(4):
            shuffled = {n: rng.sample(files, len(files)) for n, files in spec.items()}
            pts = _points(shuffled, order=rng.sample(list(spec), len(spec)))
            got = select.pick(pts, LIMITS)
            assert (got.chosen.label, got.why, sorted(got.tied_accuracy)) == (
                expected.chosen.label, expected.why, sorted(expected.tied_accuracy)), (trial, spec)
            assert {p.label: p.reason for p in pts} == reasons, (trial, spec)


def test_limits_parity_and_stale_rows_rule_files_out_and_the_closest_is_named():
    spec = {"fast": [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 3000, "accuracy": 0.9, "n": 100, "p50": 1},
                     {"file": "model.int8.onnx", "sha": SHA["bbb"], "kb": 800, "accuracy": 0.9, "n": 100, "p50": 12,
                      "p90": 12.5}],
            "flaky": [{"file": "model.tflite", "sha": SHA["ccc"], "kb": 10, "accuracy": 0.9, "n": 100, "p50": 1,
                       "outcome": "inconclusive"}]}
    pts = _points(spec)
    by = {p.file: p for p in pts}
    assert by["model.onnx"].reason.startswith("2.93 MB > --max-size 1 MB (+193%)")
    assert by["model.int8.onnx"].reason == "p90 12.500 ms > --max-latency 10 ms (+25%)"
    assert by["model.tflite"].reason.startswith("parity not shown") and not by["model.tflite"].qualifies
    assert select.pick(pts, LIMITS).chosen is None
    assert select.closest(pts, LIMITS).startswith("closest: fast model.int8.onnx (onnx int8): p90 12.500 ms")
    accepting = select.Limits(10, 1, accept_inconclusive=True)
    assert select.pick(_points(spec, accepting), accepting).chosen.file == "model.tflite"
    # a verify row for other bytes (re-exported since) does not count
    m = _manifest("id-x", spec["flaky"])
    m["verify"]["rows"][0]["sha256"] = SHA["ddd"]
    assert select.points("x", m, accepting)[0].reason == "not verified"


def test_the_front_keeps_only_files_nothing_beats_on_accuracy_latency_and_size():
    spec = {"a": [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 100, "accuracy": 0.9, "n": 100, "p50": 2},
                  {"file": "model.tflite", "sha": SHA["bbb"], "kb": 200, "accuracy": 0.85, "n": 100, "p50": 3}],
            "b": [{"file": "model.onnx", "sha": SHA["ccc"], "kb": 900, "accuracy": 0.95, "n": 100, "p50": 9}]}
    front = select.front(_points(spec))
    assert [p.label for p in front] == ["a model.onnx", "b model.onnx"]  # a's tflite is beaten on all three


def test_candidates_are_parsed_from_the_registry():
    assert space.parse("mobile@0.5") == space.Candidate("mobile", width=0.5)
    assert space.parse("efficientnet-lite0@128") == space.Candidate("efficientnet-lite0", backbone_size=128)
    assert space.parse("small").name == "small"
    for bad, says in (("nope", "unknown architecture"), ("small@2", "takes no @value"),
                      ("mobile@x", "not a number"), ("efficientnet-lite0@5", "between")):
        with pytest.raises(EdgeclsError, match=says):
            space.parse(bad)
    names = [c.name for c in space.default_space()]
    assert {"small", "mobile@0.25", "mobile@0.5", "mobile@1"} <= set(names) and "tiny" not in names
    c = space.Candidate("mobile", width=0.5)
    assert c.key({"data": "x", "seed": 0}) == c.key({"seed": 0, "data": "x"}) != c.key({"data": "x", "seed": 1})


def test_budget_durations():
    assert parse_budget("20m") == 1200 and parse_budget("1h30m") == 5400 and parse_budget("90") == 90
    assert parse_budget("45s") == 45
    for bad in ("soon", "20x", "m"):
        with pytest.raises(EdgeclsError, match="--budget"):
            parse_budget(bad)


def test_latency_files_are_bound_to_the_bytes_of_this_searchs_candidates(tmp_path):
    m = _manifest("id-a", [{"file": "model.onnx", "sha": SHA["aaa"], "kb": 10, "accuracy": 0.9, "n": 50, "p50": 9}])
    row = dict(m["bench"]["rows"][0], p50_ms=3.0, p90_ms=3.3)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"environment": {"cpu": "Cortex-A76"}, "rows": [row]}))
    rows = target.load([good], {"screen a": m})
    got = rows.for_bundle(m, 1, "these bytes")["model.onnx"]
    assert got["p50_ms"] == 3.0 and got["_from"] == "target device (Cortex-A76), these bytes"
    pts = select.points("a", m, LIMITS, rows.for_bundle(m, 1, "these bytes"))
    assert pts[0].p50_ms == 3.0 and pts[0].latency_from.startswith("target device")
    for change, says in (({"bundle_id": "id-other"}, "measured another bundle"),
                         ({"sha256": SHA["ddd"]}, "measured on other bytes")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"rows": [row | change]}))
        with pytest.raises(EdgeclsError, match=says):
            target.load([bad], {"screen a": m})
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(EdgeclsError, match="junk.json: not a readable"):
        target.load([tmp_path / "junk.json"], {"screen a": m})
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "one.json").write_text(good.read_text())
    assert len(target.load([folder], {"screen a": m}).rows) == 1


def _tune(*args):
    return CliRunner().invoke(app, ["tune", *map(str, args)])


def test_bad_input_is_refused_before_any_training(tmp_path):
    small = make_folder(tmp_path / "few", per_class=20)
    r = _tune("--data", small, "--max-size", "1", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "too small to compare candidates: 40 images leave 8 held-out" in r.output
    assert "Add images" in r.output and not (tmp_path / "b").exists()
    for args, says in (((), "give at least one limit"), (("--max-size", "1", "--budget", "soon"), "--budget 'soon'"),
                       (("--max-size", "1", "--candidates", "nope"), "unknown architecture"),
                       (("--max-latency", "-1"), "must be a positive"),
                       (("--max-size", "1", "--rounds", "0"), "--rounds 0: must be at least 1"),
                       (("--max-size", "1", "--latency-from", tmp_path), "no candidate exported yet")):
        r = _tune("--data", "synthetic", *args, "--out", tmp_path / "b")
        assert r.exit_code == 2 and says in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "b").exists()


def test_a_two_candidate_search_killed_mid_candidate_and_resumed(tmp_path, monkeypatch):
    """The issue's "Done when", kept out of the slow set: two candidates (tiny, small) on the synthetic set (240
    images of 16x16), one format, one epoch, two bench rounds. The first run is killed (Ctrl-C) in the middle of
    the second candidate's full run, after its training; the same command again reuses the screens and the
    finished candidate (nothing of them trained again), redoes the interrupted one, and answers.

    Its floor is the work itself: four Keras trainings (two screens, two full), four ONNX exports (float and
    int8), two verifies, twelve bench processes (2 files x 1 screen round + 2 x 2 full rounds, per candidate)
    and three reports."""
    import hashlib

    import edgecls.pipeline
    from edgecls.core.bundle import Bundle
    from edgecls.core.hooks import Hooks
    from edgecls.tune.search import TuneConfig, tune

    out, work = tmp_path / "b", tmp_path / "b.tune"
    args = ["--data", "synthetic", "--candidates", "tiny,small", "--format", "onnx", "--epochs", "1", "--rounds", "2",
            "--max-size", "1", "--accept-inconclusive", "--budget", "10m", "--out", out]
    cfg = TuneConfig(data="synthetic", candidates=["tiny", "small"], formats=["onnx"], epochs=1, rounds=2,
                     max_size_mb=1, accept_inconclusive=True, budget_s=600, out=out, isolate=False)
    real_export, exports = edgecls.pipeline.export, []

    def killed_on_the_second(bundle, *a, **kw):  # the kill: after the second full candidate's training
        exports.append(bundle)
        if len(exports) == 2:
            raise KeyboardInterrupt
        return real_export(bundle, *a, **kw)

    lines = []

    class Progress(Hooks):
        def candidate(self, rung, name, done, left, line):
            lines.append((rung, name, done, left))

    monkeypatch.setattr(edgecls.pipeline, "export", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, hooks=Progress())
    monkeypatch.setattr(edgecls.pipeline, "export", real_export)
    assert [x[0] for x in lines] == ["screen", "screen", "full"] and lines[-1][2:] == (1, 1)
    (finished,) = (work / "results").glob("full-*.json")
    first = work / json.loads(finished.read_text())["bundle"]
    partial = Path(exports[1]).resolve()  # trained, not exported: no result recorded, so not taken for finished
    assert partial.is_dir() and partial != first.resolve() and not out.exists()
    assert len(list((work / "results").glob("screen-*.json"))) == 2

    def stamp(bundle):
        return hashlib.sha256((bundle / "model.keras").read_bytes()).hexdigest(), (bundle / "manifest.json").stat()

    before = (finished.stat().st_mtime_ns, stamp(first)[0], stamp(first)[1].st_mtime_ns)
    screens = {b: b.stat().st_mtime_ns for b in (work / "screen").glob("*/model.keras")}
    partial_trained = (partial / "model.keras").stat().st_mtime_ns
    r = _tune(*args)  # through the CLI: each unit in a fresh process (the first run was in this one)
    assert r.exit_code == 0, r.output
    # resumed: only the interrupted candidate trained again, the screens and the finished one untouched
    assert {b: b.stat().st_mtime_ns for b in (work / "screen").glob("*/model.keras")} == screens and len(screens) == 2
    assert (partial / "model.keras").stat().st_mtime_ns > partial_trained
    redone = json.loads(next(f for f in (work / "results").glob("full-*.json") if f != finished).read_text())
    assert redone["pid"] != os.getpid() and redone["peak_rss_mb"] > 0  # it ran in a process of its own
    assert (finished.stat().st_mtime_ns, stamp(first)[0], stamp(first)[1].st_mtime_ns) == before
    assert "[full 1/2, 1 left]" in r.output and "[full 2/2, 0 left]" in r.output and "pick:" in r.output
    t = json.loads((out / "tune.json").read_text())
    assert sorted(c["status"] for c in t["candidates"]) == ["picked", "trained in full"]
    assert t["pick"]["qualifies"] and t["front"] and t["spent_s"] <= 600 * 1.1
    # the tie rule's evidence came through from the bench rows: each candidate's two files were benched in one
    # session, two rounds each, so files of one candidate are compared paired per round
    for c in t["candidates"]:
        sessions = {p["session"] for p in c["points"]}
        assert len(sessions) == 1 and None not in sessions and all(len(p["p50_rounds_ms"]) == 2 for p in c["points"])
    assert any(f["file"] == "tune.json" for f in Bundle.open(out).manifest["files"])


@pytest.mark.slow
def test_a_two_candidate_search_interrupted_and_resumed(tmp_path):
    """Screen two tiny candidates, refuse impossible limits and a budget too small, stop after the first
    full candidate (Ctrl-C), resume with the target's latency file: the finished candidate is not redone."""
    from edgecls.core.bundle import Bundle
    from edgecls.core.hooks import Hooks
    from edgecls.tune.search import TuneConfig, tune

    out = tmp_path / "b"
    common = ["--data", "synthetic", "--candidates", "tiny,mobile@0.25", "--format", "onnx", "--epochs", "2",
              "--rounds", "2", "--out", out, "--accept-inconclusive"]
    r = _tune(*common, "--screen-only")
    assert r.exit_code == 0, r.output
    work = tmp_path / "b.tune"
    screens = json.loads((work / "tune.json").read_text())["screened_bundles"]
    assert set(screens) == {"tiny", "mobile@0.25"}

    r = _tune(*common, "--max-size", "0.001")  # 1 KB: no network fits, untrained or not
    assert r.exit_code == 1 and "no candidate can meet the limits: the closest" in r.output, r.output
    assert "(+" in r.output and not out.exists()
    r = _tune(*common, "--max-size", "1", "--budget", "2s")
    assert r.exit_code == 2 and "too small for one candidate" in r.output, r.output

    # the target device's bench of tiny's screening export (here: this machine, as a user would on the board)
    measured = tmp_path / "target.json"
    r = CliRunner().invoke(app, ["bench", screens["tiny"], "--runtime", "onnx", "--rounds", "1", "--min-time",
                                 "0.05", "--min-runs", "64", "--json", str(measured)])
    assert r.exit_code == 0, r.output
    foreign = tmp_path / "foreign.json"
    doc = json.loads(measured.read_text())
    doc["rows"][0]["bundle_id"] = "someone-else"
    foreign.write_text(json.dumps(doc))
    r = _tune(*common, "--max-size", "1", "--latency-from", foreign)
    assert r.exit_code == 2 and "measured another bundle" in r.output, r.output

    class StopAfterFirst(Hooks):
        def candidate(self, rung, name, done, left, line):
            if rung == "full":
                raise KeyboardInterrupt

    cfg = TuneConfig(data="synthetic", max_size_mb=1, candidates=["tiny", "mobile@0.25"], formats=["onnx"], epochs=2,
                     rounds=2, out=out, accept_inconclusive=True, budget_s=1800)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, hooks=StopAfterFirst())
    finished = list((work / "results").glob("full-*.json"))
    assert len(finished) == 1 and not out.exists()
    before = finished[0].stat().st_mtime_ns

    r = _tune(*common, "--max-size", "1", "--max-latency", "1000", "--budget", "30m", "--latency-from", measured)
    assert r.exit_code == 0, r.output
    assert finished[0].stat().st_mtime_ns == before  # resumed: the finished candidate was not trained again
    assert "[full 2/2, 0 left]" in r.output and "front:" in r.output and "pick:" in r.output
    t = json.loads((out / "tune.json").read_text())
    assert {c["candidate"] for c in t["candidates"]} == {"tiny", "mobile@0.25"}
    assert all(c["status"] in ("picked", "trained in full") for c in t["candidates"])
    assert t["pick"]["qualifies"] and t["pick"]["accuracy_ci"][0] <= t["pick"]["accuracy"] and t["front"]
    assert t["latency_from"]["files"] == [str(measured)]
    tiny_points = next(c for c in t["candidates"] if c["candidate"] == "tiny")["points"]
    assert any(p["latency_from"].startswith("target device") for p in tiny_points)
    assert t["spent_s"] <= 1800 * 1.1
    m = Bundle.open(out).manifest  # a normal bundle: its files intact, tune.json recorded with its hash
    assert any(f["file"] == "tune.json" for f in m["files"])
    html = (out / "report.html").read_text()
    assert "Search (edgecls tune)" in html and "accuracy vs latency of every searched file" in html
    assert CliRunner().invoke(app, ["info", str(out)]).exit_code == 0


def _orphan_probe(spec: dict) -> None:
    """A unit of work's stand-in (run in a fresh process): arms the search's die-with-parent, then waits."""
    import time

    from edgecls.tune.search import _die_with_parent

    _die_with_parent()
    Path(spec["pidfile"]).write_text(str(os.getpid()))
    time.sleep(60)


def test_a_unit_of_work_dies_with_a_killed_search(tmp_path):
    """kill -9 of the search takes its unit's process with it, so a rerun never works beside an orphan."""
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "pid"
    script = ("from edgecls.bench.timing import in_fresh_process\nfrom tests.test_tune import _orphan_probe\n"
              f"in_fresh_process(_orphan_probe, {{'pidfile': {str(pidfile)!r}}})\n")
    search = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    unit = int(pidfile.read_text())

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    assert alive(unit)
    search.send_signal(signal.SIGKILL)
    search.wait()
    deadline = time.monotonic() + 10
    while alive(unit) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(unit)


def _killed_probe(spec: dict) -> None:
    """A unit of work whose process is killed (as the out-of-memory killer does)."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_candidate_whose_process_is_killed_fails_and_the_search_goes_on(tmp_path, monkeypatch):
    """One candidate's screen is killed in its own process: that candidate is recorded as failed, with why, and
    the next is screened; when every candidate is killed, one line says so (exit 3)."""
    import edgecls.bench.timing as timing
    from edgecls.core.errors import RunFailed
    from edgecls.tune.search import TuneConfig, tune

    real = timing.in_fresh_process

    def kill_tiny(fn, spec, ctx=None):
        victim = spec["rung"] == "screen" and spec["args"][0].name in kill
        return real(_killed_probe if victim else fn, spec, ctx)

    monkeypatch.setattr(timing, "in_fresh_process", kill_tiny)
    kill = {"tiny"}
    cfg = TuneConfig(data="synthetic", candidates=["tiny", "small"], formats=["onnx"], screen_only=True,
                     out=tmp_path / "b", budget_s=600)
    res = tune(cfg)
    by = {c["candidate"]: c for c in res.summary["candidates"]}
    assert by["tiny"]["status"] == "failed" and "process was killed" in by["tiny"]["why"]
    assert "screen" in by["small"] and set(res.summary["screened_bundles"]) == {"small"}
    kill = {"tiny", "small"}
    with pytest.raises(RunFailed, match="every candidate tried failed: tiny: its screen run's process was killed"):
        tune(TuneConfig(data="synthetic", candidates=["tiny", "small"], formats=["onnx"], max_size_mb=1,
                        out=tmp_path / "c", budget_s=600))
