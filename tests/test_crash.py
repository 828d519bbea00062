"""Crash consistency, short version of benchmarks/crash_consistency.py (CI runs it with `make test-slow`):
kill -9 train, export --int8, verify and bench at seeded random moments; the bundle stays a bundle."""

import pytest


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_the_old_or_the_new_bundle(tmp_path):
    from benchmarks.crash_consistency import COMMANDS, run

    result = run(kills=3, seed=0, commands=list(COMMANDS), work=tmp_path, log=lambda *_: None)
    failures = {c: r["failures"] for c, r in result["commands"].items() if r["failures"]}
    assert not failures, failures
    for command, r in result["commands"].items():
        assert set(r["states"]) <= {"old", "new", "step"}, (command, r["states"])
        assert r["kills"] + r["finished_before_kill"] == 3
    assert sum(r["kills"] for r in result["commands"].values()) >= 6  # most moments fall inside a run
