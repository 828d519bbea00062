"""The search's answer: tune.json (every candidate with its numbers, cost and why it lost; the front; the
pick), and the picked candidate's bundle written at --out with tune.json inside and the front in its report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..core.files import atomic_write, staged_bundle
from . import select

TUNE_JSON = "tune.json"


def summary(cfg, record: dict, pts: list[select.Point], chosen: select.Pick | None, clock, targets) -> dict:
    """What tune.json holds."""
    limits = cfg.limits()
    front = select.front(pts)
    by_candidate: dict[str, list[select.Point]] = {}
    for p in pts:
        by_candidate.setdefault(p.candidate, []).append(p)
    pick = chosen.chosen if chosen else None
    candidates = []
    for name, rec in record.items():
        rec = dict(rec)
        mine = by_candidate.get(name, [])
        rec["points"] = [p.to_dict() for p in sorted(mine, key=lambda p: p.file)]
        if pick is not None and name == pick.candidate:
            rec["status"], rec["why"] = "picked", chosen.why
        elif mine and "why" not in rec:
            rec["why"] = _best_reason(mine)
        rec["cost_s"] = round(rec.get("cost_s", 0.0), 1)
        candidates.append(rec)
    return {
        "limits": {"max_latency_ms": limits.max_latency_ms, "percentile": limits.percentile,
                   "max_size_mb": limits.max_size_mb, "max_size_kb": limits.max_size_kb, "batch": limits.batch,
                   "accept_inconclusive": limits.accept_inconclusive, "max_drop": cfg.max_drop},
        "rule": ("the most accurate file whose parity is shown and that meets every limit; files whose 95% "
                 "accuracy intervals overlap the most accurate's are tied on accuracy; among them the fastest p50, "
                 f"and every file whose p50 is shown within {limits.tie_margin:g}% of it (the upper end of their "
                 "p50 ratio's interval, paired per round within one bench session) is tied on latency — the bench "
                 "decision's rule; among those a file that passes parity, then the smallest file"),
        "latency_from": {"files": targets.files, "device": targets.device} if targets.files else None,
        "budget_s": cfg.budget_s, "spent_s": round(clock.spent, 1),
        "candidates": candidates,
        "front": [p.to_dict() for p in front],
        "pick": (pick.to_dict() | {"why": chosen.why, "tied_on_accuracy": chosen.tied_accuracy}) if pick else None,
    }


def _best_reason(mine: list[select.Point]) -> str:
    """A fully trained candidate's reason: that of its best file (qualifying ones first, then the most accurate)."""
    best = min(mine, key=lambda p: (not p.qualifies, -(p.accuracy or 0), p.file))
    return f"{best.file}: {best.reason}"


def write_work_summary(work: Path, summary: dict) -> Path:
    path = Path(work) / TUNE_JSON
    atomic_write(path, json.dumps(summary, indent=1, default=str) + "\n")
    return path


def screen_only(cfg, work: Path, record: dict, screens: dict, clock):
    """Stop after the screen: say where each candidate's exports are, to bench them on the target."""
    from .search import TuneResult
    from .target import TargetRows

    s = summary(cfg, record, [], None, clock, TargetRows())
    s["screen_only"] = True
    s["screened_bundles"] = {n: r["bundle"] for n, r in screens.items()}
    return TuneResult(s, None, write_work_summary(work, s))


def _repoint(manifest_path: Path, old: Path, new: Path) -> None:
    """A bundle records its data folder relative to itself: after moving it, the path must still lead there."""
    m = json.loads(manifest_path.read_text())
    source = m["dataset"]["source"]
    for key in ("root", "data_dir"):
        if source.get(key):
            source[key] = os.path.relpath((old / source[key]).resolve(), new.resolve())
    atomic_write(manifest_path, json.dumps(m, indent=1) + "\n")


def write(cfg, out: Path, candidate_bundle: Path, summary: dict, work: Path, clock):
    """The picked candidate's bundle at `out` (replaced whole, atomically), tune.json inside and in the
    work folder, the report written again with the front."""
    from ..bench.decide import Constraints, decide
    from ..core.bundle import Bundle
    from ..report.document import write_report
    from .search import TuneResult

    out = Path(out)
    with staged_bundle(out) as stage:
        shutil.copytree(candidate_bundle, stage, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n.startswith(".")])
        _repoint(stage / "manifest.json", Path(candidate_bundle), out)
    b = Bundle.open(out)
    # the bundle's own recommendation, made again under the search's limits (as bench makes it): predict and app
    # follow it; where the target's latency ranked the files otherwise, tune.json says so
    b.manifest["decision"] = decide(b.manifest, Constraints(
        cfg.batch, cfg.max_latency_ms, cfg.percentile, None if cfg.max_size_mb is None else cfg.max_size_mb * select.KB,
        cfg.max_drop, accept_inconclusive=cfg.accept_inconclusive)).to_dict()
    decision = b.manifest["decision"].get("chosen") or {}
    pick = summary["pick"]
    summary["bundle"] = str(out)
    summary["bundle_recommendation"] = decision.get("file")
    if decision.get("file") != pick["file"]:
        summary["bundle_recommendation_note"] = (
            f"the bundle's own recommendation (this machine's latency, the pipeline's rule: the fastest, not the most "
            f"accurate) is {decision.get('file') or 'nothing'}; tune picked {pick['file']} (latency: "
            f"{pick['latency_from']})")
    summary["spent_s"] = round(clock.spent, 1)
    text = json.dumps(summary, indent=1, default=str) + "\n"
    b.put(TUNE_JSON, text)
    write_report(out)
    return TuneResult(summary, out, write_work_summary(work, summary))
