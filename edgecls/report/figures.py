"""The report's figures (matplotlib, PNG bytes), each from what the manifest holds; a missing section
gives no figure. Axis labels are kept readable: log axes label only their major ticks, as plain numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _log_axis(axis) -> None:
    """A log axis whose labels never overlap: major ticks only, as plain numbers (0.05, 0.1, 1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _label(r: dict) -> str:
    return f"{r['runtime']} {r['precision']}"


def training(history_path: Path) -> bytes | None:
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    if not history:
        return None
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [h["epoch"] for h in history]
    for key, axis in (("loss", a), ("accuracy", b)):
        axis.plot(epochs, [h[key] for h in history], label="train")
        axis.plot(epochs, [h["val_" + key] for h in history], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.legend()
    return _png(fig)


def confusion(m: dict) -> bytes | None:
    test = m.get("metrics", {}).get("test")
    if not test:
        return None
    import numpy as np

    plt = _plt()
    cm = np.asarray(test["confusion"])
    labels = m["labels"]
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.45 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"confusion matrix, {test['images']} held-out images")
    return _png(fig)


def latency(m: dict, batch: int) -> bytes | None:
    """Latency distribution per configuration at `batch`: box p25-p75, whiskers p5-p95, p50 line, p99 dot."""
    from ..core import results

    rows = sorted((r for r in results.current(m, "bench") if r["batch"] == batch and r.get("quantiles_ms")),
                  key=lambda r: r["p50_ms"])
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
    stats = [{"label": _label(r), "med": r["quantiles_ms"]["50"], "q1": r["quantiles_ms"]["25"],
              "q3": r["quantiles_ms"]["75"], "whislo": r["quantiles_ms"]["5"], "whishi": r["quantiles_ms"]["95"],
              "fliers": [r["quantiles_ms"]["99"]]} for r in rows]
    ax.bxp(stats, orientation="horizontal", showfliers=True)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(f"latency per call, ms (batch {batch}, log scale): box p25-p75, line p50, whiskers p5-p95, "
                  "dot p99", fontsize=8)
    return _png(fig)


def tradeoff(m: dict, batch: int) -> bytes | None:
    """Accuracy vs p50 latency per artifact, the Pareto front marked, the recommendation highlighted."""
    from ..core import results

    verify = {r["file"]: r for r in results.current(m, "verify") if r.get("accuracy") is not None}
    points = [(r["p50_ms"], verify[r["file"]]["accuracy"], r) for r in results.current(m, "bench")
              if r["batch"] == batch and r["file"] in verify]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    front, best = [], -1.0
    for lat, acc, _ in sorted(points, key=lambda p: (p[0], -p[1])):  # fastest first: keep each accuracy gain
        if acc > best:
            front.append((lat, acc))
            best = acc
    ax.plot(*zip(*front), "--", color="grey", label="Pareto front")
    chosen = (m.get("decision") or {}).get("chosen") or {}
    colours = plt.get_cmap("tab10")
    for i, (lat, acc, r) in enumerate(sorted(points, key=lambda p: p[0])):  # a legend, not labels that overlap
        pick = chosen.get("runtime") == r["runtime"] and chosen.get("precision") == r["precision"]
        ax.scatter(lat, acc, s=220 if pick else 50, marker="*" if pick else "o", color=colours(i % 10), zorder=3,
                   edgecolors="black" if pick else "none", label=_label(r) + (" — ship this" if pick else ""))
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(f"p50 latency, ms (batch {batch}, log scale)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("accuracy vs latency (up and left is better)", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def sizes(m: dict) -> bytes | None:
    arts = [a for a in m.get("artifacts", []) if a["format"] != "keras"]
    if not arts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(arts) + 1))
    arts = sorted(arts, key=lambda a: a.get("total_bytes", a["bytes"]))
    ax.barh([f"{a['format']} {a['precision']}" for a in arts],
            [a.get("total_bytes", a["bytes"]) / 1024 for a in arts], color="slategray")
    ax.set_xlabel("file size, KB (with sidecar files)")
    return _png(fig)


def all_figures(bundle_path: Path, m: dict, batch: int) -> dict[str, bytes]:
    """name -> PNG bytes of every figure the manifest has data for."""
    made = {"training.png": training(bundle_path / "history.json"), "confusion.png": confusion(m),
            "latency.png": latency(m, batch), "tradeoff.png": tradeoff(m, batch), "sizes.png": sizes(m)}
    return {name: png for name, png in made.items() if png}
