"""The human report of a bundle: report.md and PNG plots, from what the manifest holds."""

from __future__ import annotations

import io
import json
from pathlib import Path

from .bundle import Bundle, atomic_write, file_entry


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plots(bundle: Bundle) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    history = json.loads((bundle.path / "history.json").read_text())
    if history:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        epochs = [h["epoch"] for h in history]
        for key, axis in (("loss", a), ("accuracy", b)):
            axis.plot(epochs, [h[key] for h in history], label="train")
            axis.plot(epochs, [h["val_" + key] for h in history], label="validation")
            axis.set_xlabel("epoch")
            axis.set_title(key)
            axis.legend()
        out["training.png"] = _png(fig)
        plt.close(fig)
    rows = [r for r in bundle.manifest.get("bench", {}).get("rows", []) if r["batch"] == min(
        r2["batch"] for r2 in bundle.manifest["bench"]["rows"])]
    if rows:
        rows = sorted(rows, key=lambda r: r["p50_ms"])
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1))
        ax.barh([f"{r['runtime']} {r['precision']}" for r in rows], [r["p50_ms"] for r in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"p50 latency, ms (batch {rows[0]['batch']}, log scale)")
        out["bench.png"] = _png(fig)
        plt.close(fig)
    return out


def _baseline_lines(m: dict) -> list[str]:
    b = m.get("baseline")
    if not b:
        return []
    gain = 100 * (m["metrics"]["test"]["accuracy"] - b["accuracy"])
    lines = [f"Pixel baseline ({b['method']}, fitted on the same training split): **{b['accuracy']:.4f}** on the "
             f"same held-out images; the CNN is **{gain:+.1f} points** against it. Always answering the commonest "
             f"class: {b['chance']:.4f}."]
    return lines + [f"> **Warning:** {w}" for w in m["training"].get("warnings", [])]


def _training_section(m: dict) -> list[str]:
    test, t = m["metrics"]["test"], m["training"]
    return [f"# {m['name']}",
            f"{m['architecture']['name']} ({m['architecture']['params']:,} parameters) on {m['dataset']['name']} "
            f"({len(m['labels'])} classes), input {m['input']['shape'][1:]} raw 0-255 pixels.",
            "## Training",
            f"Held-out accuracy **{test['accuracy']:.4f}** (loss {test['loss']:.4f}) on {test['images']} images; "
            f"weights of epoch {t['best_epoch']} of {t['epochs_run']}, {t['seconds']:.1f} s, "
            f"{t['train_images_per_second']} training images/s.",
            *_baseline_lines(m),
            _table(["class", "precision", "recall", "f1", "support"],
                   [[r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                    for r in test["per_class"]])]


def _artifacts_section(m: dict) -> list[str]:
    arts = [a for a in m["artifacts"] if a["format"] != "keras"]
    if not arts:
        return ["## Artifacts", "Not exported yet: run `edgecls export --int8`."]
    return ["## Artifacts", _table(
        ["format", "precision", "file", "bytes", "vs fp32", "sha256"],
        [[a["format"], a["precision"], a["file"], f"{a['total_bytes']:,}",
          f"{a['size_ratio_vs_fp32']:.2f}x" if a.get("size_ratio_vs_fp32") else "", a["sha256"][:12]]
         for a in arts])]


def _parity_section(m: dict) -> list[str]:
    v = m.get("verify")
    if not v:
        return ["## Parity with Keras", "Not verified yet: run `edgecls verify`."]
    return ["## Parity with Keras",
              f"Accuracy on {v['images']} held-out images (Keras {v['keras_accuracy']:.4f}); agreement with "
              f"Keras on {v.get('agreement_images', v['images'])} images (held-out + unseen by calibration); "
              f"overall: **{'pass' if v['passed'] else 'FAIL'}**.",
              _table(["format", "precision", "float parts ran in", "accuracy", "Δ points", "lost/gained",
                      "top-1 agree", "max abs diff", "gate"],
                     [[r["format"], r["precision"], r["compute"],
                       f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "",
                       f"{r['delta_points']:+.2f}" if r["delta_points"] is not None else "",
                       f"{r['lost']}/{r['gained']}" if r["lost"] is not None else "",
                       f"{r['agreement']:.2%}" if r["agreement"] is not None else "",
                       f"{r['max_abs_diff']:.1e}" if r["max_abs_diff"] is not None else "",
                       "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"])] for r in v["rows"]])]


def _latency_section(m: dict, plots: dict) -> list[str]:
    bench = m.get("bench")
    if not bench:
        return ["## Latency", "Not benchmarked yet: run `edgecls bench`."]
    env = bench["environment"]
    parts = ["## Latency",
              f"{env['cpu']}, {env['cores']} cores, threads {env['threads']}; each configuration in a fresh "
              "process; the runtime call alone is timed (Keras: the compiled tf.function model call).",
              _table(["runtime", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "× keras",
                      "× ort fp32"],
                     [[r["runtime"], r["precision"], r["batch"], f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}",
                       f"{r['p99_ms']:.3f}", f"{r['throughput_ips']:,.0f}",
                       f"{r['speedup_vs_keras']:.1f}x" if r["speedup_vs_keras"] else "",
                       f"{r['speedup_vs_onnx_fp32']:.1f}x" if r["speedup_vs_onnx_fp32"] else ""]
                      for r in sorted(bench["rows"], key=lambda r: (r["batch"], r["p50_ms"]))])]
    if "bench.png" in plots:
        parts.append("![latency](bench.png)")
    return parts


def write_report(bundle_path: str | Path) -> Path:
    """Write report.md (and training.png, bench.png) into the bundle; record them in the manifest.

    A bundle that was never exported, verified or benchmarked still gets a report saying what is missing.
    """
    b = Bundle.open(bundle_path)
    m = b.manifest
    plots = _plots(b)
    parts = _training_section(m)
    if "training.png" in plots:
        parts.append("![training curves](training.png)")
    parts += _artifacts_section(m) + _parity_section(m) + _latency_section(m, plots)
    for name, data in plots.items():
        atomic_write(b.path / name, data)
        b.record(file_entry(b.path / name, b.path), key="files")
    path = b.path / "report.md"
    atomic_write(path, "\n\n".join(parts) + "\n")
    b.record(file_entry(path, b.path), key="files")
    b.save()
    return path
