"""The search's section of the report (`edgecls tune`): the Pareto front of the candidates' files as a
figure — accuracy vs latency, size as marker area, the limits drawn, the pick marked — and the candidates'
table. Read from the bundle's tune.json, only when its bytes match the manifest's record of it."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import sha256

FIGURE = "front.png"


def load(bundle_path: Path, m: dict) -> dict | None:
    entry = next((f for f in m.get("files", []) if f["file"] == "tune.json"), None)
    path = Path(bundle_path) / "tune.json"
    if entry is None or not path.is_file() or sha256(path) != entry["sha256"]:
        return None
    return json.loads(path.read_text())


def figure(t: dict) -> bytes | None:
    """Accuracy vs p50 of every verified file of the fully trained candidates; marker area ∝ file size."""
    from .figures import _log_axis, _plt, _png

    pts = [p for c in t["candidates"] for p in c.get("points", []) if p.get("accuracy") is not None
           and p.get("p50_ms") is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    biggest = max(p["size_kb"] for p in pts)
    names = sorted({p["candidate"] for p in pts})
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        mine = [p for p in pts if p["candidate"] == name]
        ax.scatter([p["p50_ms"] for p in mine], [p["accuracy"] for p in mine],
                   s=[30 + 600 * p["size_kb"] / biggest for p in mine], alpha=0.55, color=colours(i % 10),
                   edgecolors=["black" if p["qualifies"] else "none" for p in mine], label=name)
    front = sorted(t.get("front", []), key=lambda p: p["p50_ms"])
    if front:
        ax.plot([p["p50_ms"] for p in front], [p["accuracy"] for p in front], "--", color="grey",
                label="Pareto front")
    lim = t["limits"]
    if lim.get("max_latency_ms"):
        ax.axvline(lim["max_latency_ms"], color="firebrick", lw=1,
                   label=f"--max-latency {lim['max_latency_ms']:g} ms ({lim['percentile']})")
    pick = t.get("pick")
    if pick:
        ax.scatter([pick["p50_ms"]], [pick["accuracy"]], s=320, marker="*", color="gold", edgecolors="black",
                   zorder=4, label=f"pick: {pick['candidate']} {pick['file']}")
        lo, hi = pick["accuracy_ci"]
        ax.errorbar([pick["p50_ms"]], [pick["accuracy"]], yerr=[[pick["accuracy"] - lo], [hi - pick["accuracy"]]],
                    color="black", capsize=3, zorder=3)
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(f"p50 latency, ms (batch {lim['batch']}, log scale); marker area: file size; black edge: "
                  "meets every limit", fontsize=8)
    ax.set_ylabel("held-out accuracy")
    size = f", --max-size {lim['max_size_mb']:g} MB" if lim.get("max_size_mb") else ""
    ax.set_title(f"the search's files (up and left is better{size})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def section(t: dict, plots: dict) -> list:
    """Blocks of the report's search section (document.py renders them)."""
    from .document import Figure, Table

    pick = t.get("pick")
    lim = t["limits"]
    limits = ", ".join(x for x in (f"{lim['percentile']} ≤ {lim['max_latency_ms']:g} ms" if lim.get("max_latency_ms")
                                   else "", f"≤ {lim['max_size_mb']:g} MB" if lim.get("max_size_mb") else "") if x)
    lead = (f"**Picked `{pick['file']}` of {pick['candidate']}**: accuracy {pick['accuracy']:.3f} "
            f"[{pick['accuracy_ci'][0]:.3f}-{pick['accuracy_ci'][1]:.3f}], p50 {pick['p50_ms']:.3f} ms "
            f"({pick['latency_from']}), {pick['size_kb']:.1f} KB — {pick['why']}." if pick else "Nothing picked.")
    blocks = ["## Search (edgecls tune)", lead,
              f"Limits: {limits or 'none'} at batch {lim['batch']}. Rule: {t['rule']}. "
              f"{len(t['candidates'])} candidates, {t['spent_s']:.0f} s of a {t['budget_s']:.0f} s budget."]
    if FIGURE in plots:
        blocks.append(Figure(FIGURE, "accuracy vs latency of every searched file"))
    blocks.append(Table(["candidate", "status", "cost s", "why"],
                        [[c["candidate"], c.get("status", ""), f"{c.get('cost_s', 0):.0f}", c.get("why", "")]
                         for c in t["candidates"]]))
    return blocks
