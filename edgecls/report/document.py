"""The human report of a bundle, from what the manifest holds: report.html (self-contained: figures
embedded, no network), report.md beside it with the figures as PNG files. The recommendation leads.

Sections are lists of blocks — text in Markdown's inline subset (**bold**, `code`), tables, figures —
rendered twice, once as Markdown and once as HTML, so the two always say the same.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ..core.bundle import Bundle
from ..core.files import atomic_write, file_entry
from . import figures, search


class Table:
    def __init__(self, header: list[str], rows: list[list]):
        self.header, self.rows = header, rows


class Figure:
    def __init__(self, name: str, alt: str):
        self.name, self.alt = name, alt


def _table(header: list[str], rows: list[list]) -> Table:
    return Table(header, rows)


def _recommendation_section(m: dict) -> list:
    d = m.get("decision")
    if not d:
        return ["## Recommendation", "None yet: the bundle has not been verified and benchmarked "
                "(`edgecls verify`, then `edgecls bench`)."]
    c = d["constraints"]
    limits = ", ".join(f"{k} {v}" for k, v in (("max latency (ms, " + c["percentile"] + ")", c["max_latency_ms"]),
                                                ("max size (KB)", c["max_size_kb"]), ("max drop", c["max_drop"]),
                                                ("runtimes", ",".join(c["runtimes"]))) if v)
    head = ("Among the files whose parity is shown (pass"
            + (" or inconclusive, accepted" if c.get("accept_inconclusive") else "")
            + f") at batch {c['for_batch']}: the fastest p50, and tied with it the files whose p50 is shown within "
            f"{c.get('tie_margin', 5):g}% of it (the interval of their per-round p50 ratio); among tied files, "
            "shown parity first, then the smallest" + (f", under {limits}" if limits else "") + "."
            + (f" {d['level'][0].upper()}{d['level'][1:]}." if d.get("level") else ""))
    if not d["found"]:
        lead = f"**Nothing qualifies**: ruled out by {d['ruled_out_by']}."
    else:
        x = d["chosen"]
        tail = f"{x['tail_ms']:.3f} ms" if x.get("tail_ms") is not None else "–"
        ci = f" [{x['p50_ci_ms'][0]:.3f}-{x['p50_ci_ms'][1]:.3f}]" if x.get("p50_ci_ms") else ""
        acc = (f"accuracy {x['accuracy']:.4f} (Δ {x['delta_points'] + 0:+.2f} points vs Keras); "
               if x.get("accuracy") is not None else "")
        lead = (f"**Ship `{x['file']}`** ({x['runtime']} {x['precision']}, parity {x.get('outcome')}): p50 "
                f"{x['p50_ms']:.3f} ms{ci}, {c['percentile']} {tail}; {acc}{x['size_kb']:.1f} KB — {d.get('why', '')}.")
    return ["## Recommendation", lead, head,
            _table(["not chosen", "why"], [[f"{x['file']} ({x['runtime']} {x['precision']})", x["reason"]]
                                           for x in d["others"]])]


def _baseline_lines(m: dict) -> list[str]:
    b = m.get("baseline")
    if not b:
        return []
    gain = 100 * (m["metrics"]["test"]["accuracy"] - b["accuracy"])
    lines = [f"Pixel baseline ({b['method']}, fitted on the same training split): **{b['accuracy']:.4f}** on the "
             f"same held-out images; the model is **{gain:+.1f} points** against it. Always answering the commonest "
             f"class: {b['chance']:.4f}."]
    made = m.get("training") or m.get("imported") or {}
    return lines + [f"> **Warning:** {w}" for w in made.get("warnings", [])]


def _architecture(a: dict) -> str:
    """`efficientnet-lite0 (3,425,834 parameters; ImageNet weights, images resized to 128x128 inside the model;
    chosen: ...)`."""
    parts = [f"{a['params']:,} parameters"]
    if a.get("pretrained"):
        parts.append(f"{a.get('weights', {}).get('source', 'pretrained')} weights")
    if a.get("backbone_size"):
        parts.append(f"images resized to {a['backbone_size']}x{a['backbone_size']} inside the model")
    if a.get("why"):
        parts.append(f"chosen: {a['why']}")
    return f"{a['name']} ({'; '.join(parts)})"


def _import_lines(m: dict) -> list:
    """An imported bundle's account of where its model came from, in place of training's."""
    i, test = m["imported"], m["metrics"]["test"]
    src, prep, o = i["source"], i["preprocessing"], i["output"]
    return ["## Import",
            f"Imported from `{src['file']}` ({src['format']}, sha256 `{src['sha256'][:12]}…`) with `edgecls import`. "
            f"Preprocessing: {prep['how']}" + (f" ({', '.join(prep['inside'])})" if prep.get("inside") else "")
            + f"; {m['input']['preprocessing']}. Output: {o['kind']} ({o['how']}).",
            f"Held-out accuracy **{test['accuracy']:.4f}** (loss {test['loss']:.4f}) on {test['images']} images.",
            *[f"Note: {n}" for n in i.get("notes", [])]]


def _training_section(m: dict) -> list[str]:
    if "training" not in m and "imported" in m:
        test = m["metrics"]["test"]
        return [f"# {m['name']}",
                f"{_architecture(m['architecture'])} on {m['dataset']['name']} "
                f"({len(m['labels'])} classes), input {m['input']['shape'][1:]} raw 0-255 pixels.",
                *_import_lines(m), *_baseline_lines(m),
                _table(["class", "precision", "recall", "f1", "support"],
                       [[r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                        for r in test["per_class"]])]
    test, t = m["metrics"]["test"], m["training"]
    return [f"# {m['name']}",
            f"{_architecture(m['architecture'])} on {m['dataset']['name']} "
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


def _judged_on(j: dict) -> str:
    """Which images judged a row: counts per kind and the start of their ids' hash."""
    kinds = " + ".join(f"{n:,} {k}" for k, n in (j.get("kinds") or {}).items())
    return f"{kinds} ({j['ids_sha256'][:8]})" if kinds else ""


def _parity_section(m: dict) -> list[str]:
    from ..core import results
    from ..core.gates import summary

    v = m.get("verify")
    if not v:
        return ["## Parity with Keras", "Not verified yet: run `edgecls verify`."]
    rows = results.current(m, "verify")
    ignored = results.ignored_lines(m, "verify")
    counts = {o: sum(r.get("outcome") == o for r in rows) for o in ("pass", "inconclusive", "fail")}
    gate = (v.get("gates") or {}).get("int8") or {}

    def interval(r: dict, name: str) -> str:
        c = next((c for c in r.get("checks", []) if c["name"] == name), None)
        if not c:
            return ""
        sign = "+" if c.get("unit") == "points" else ""  # a drop has a sign; a share of images does not
        return f"{c['estimate']:{sign}.2f} ({c['interval'][0]:{sign}.1f}…{c['interval'][1]:{sign}.1f})"

    return ["## Parity with Keras",
            f"Each file against the Keras model: accuracy on the held-out images; changed answers and |Δp| of a "
            f"float file on every image the bundle can reach plus label-free variants (a conversion fault needs "
            f"no unseen input), of an int8 file only on images it never saw (held-out, validation, --images), "
            f"each with its 95% interval; 'judged on' says which images (docs/verify.md). "
            f"{summary(gate.get('max_drop', 1.0))} Outcomes: {counts['pass']} pass, {counts['inconclusive']} "
            f"inconclusive, {counts['fail']} fail.",
            _table(["file", "runtime", "float parts", "accuracy", "drop pts (95%)", "lost/gained",
                    "changed % (95%)", "abs Δp: q99 / max", "judged on", "outcome"],
                   [[r["file"], f"{r['runtime']}/{r.get('device', '')}", r.get("compute", ""),
                     f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "",
                     interval(r, "accuracy drop"),
                     f"{r['lost']}/{r['gained']}" if r.get("lost") is not None else "",
                     interval(r, "changed answers") + (f" {r['changed']}/{r['images']}" if r.get("images") else ""),
                     f"{r['q99_abs_diff']:.1e} / {r['max_abs_diff']:.1e}" if r.get("max_abs_diff") is not None
                     else "",
                     _judged_on(r.get("judged_on") or {}),
                     r["outcome"] + (": " + "; ".join(r["failures"] + r.get("undecided", []))
                                     if r["outcome"] != "pass" else "")] for r in rows]),
            *([f"Ignored (not bound to the bytes in the bundle): {'; '.join(ignored)}."] if ignored else [])]


def _platform_section(m: dict) -> list[str]:
    """`verify --platform` rows: each file on each emulated CPU model, with how far it is from this machine."""
    from ..core import results

    rows = results.current(m, "platform_verify")
    if not rows:
        return []
    verdicts = results.platform_verdicts(rows)
    rows = sorted(rows, key=lambda r: (r["file"], r["runtime"], r.get("compute_requested", ""), r["cpu"]))

    def vs(r: dict) -> str:
        v = r.get("vs_native")
        return f"{v['changed']}/{v['images']}, {v['max_abs_diff']:.1e}" if v else ""

    def parts(r: dict) -> str:
        asked = " (device default)" if r.get("compute_requested") == "default" else ""
        return f"{r.get('compute', '')}{asked}"

    return ["## Parity on other instruction sets (emulated)",
            "The device-side verify run inside an emulated userland (qemu-user) on each CPU model, on the bundle's "
            "reference images, judged against Keras with the same gates. A verdict holds when the CPU models "
            "agree; where they differ it is an emulator disagreement, not a parity result. Timing under emulation "
            "means nothing; kernels and default precisions do (docs/platforms.md).",
            _table(["file", "runtime", "platform / CPU model", "float parts", "accuracy", "changed", "abs Δp max",
                    "vs this machine: changed, max abs Δp", "outcome", "verdict"],
                   [[r["file"], r["runtime"], f"{r['platform']} / {r['cpu']}", parts(r),
                     f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "",
                     f"{r['changed']}/{r['images']}" if r.get("images") else "",
                     f"{r['max_abs_diff']:.1e}" if r.get("max_abs_diff") is not None else "", vs(r), r["outcome"],
                     verdicts.get(results.key(r, "platform_verify"), "")] for r in rows])]


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
    for name, alt in (("latency.png", "latency distribution"), ("tradeoff.png", "accuracy vs latency"),
                      ("sizes.png", "size per artifact")):
        if name in plots:
            parts.append(Figure(name, alt))
    cpu = env.get("cpu_info", {})
    parts.insert(2, f"Threads: {env['threads']} for every runtime ({env.get('threads_from', '')}); int8-relevant "
                    f"instructions: {', '.join(cpu.get('features', [])) or 'none found'}.")
    parts += [f"Note: {n}" for n in bench.get("notes", []) if "slower than" in n]
    return parts


def _inline_html(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _md_text(text: str) -> str:
    """Markdown text with no HTML in it: a tag start ('<' before a letter, '/', '!' or '?') becomes '&lt;', so
    a label like '<img onerror=...>' shows as written instead of running in a Markdown viewer."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))


def to_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Table):
            def cell(c) -> str:  # a bar inside a cell (|Δp|) would end it
                return _md_text(c).replace("|", "\\|")

            lines = ["| " + " | ".join(map(cell, b.header)) + " |", "|" + "---|" * len(b.header)]
            out.append("\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in b.rows]))
        elif isinstance(b, Figure):
            out.append(f"![{b.alt}]({b.name})")
        else:
            out.append(_md_text(b))
    return "\n\n".join(out) + "\n"


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}"
         "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
         "blockquote{border-left:4px solid #e6a700;margin:1em 0;padding:0.3em 1em;background:#fff8e1}"
         "h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}")


def to_html(blocks: list, title: str, plots: dict[str, bytes]) -> str:
    """A self-contained page: figures inlined as data: URIs, no script, no network."""
    body = []
    for b in blocks:
        if isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in row) + "</tr>"
                           for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode(plots[b.name]).decode()
            body.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">')
        elif b.startswith("#"):
            level = len(b) - len(b.lstrip("#"))
            body.append(f"<h{level}>{_inline_html(b[level:].strip())}</h{level}>")
        elif b.startswith("> "):
            body.append(f"<blockquote>{_inline_html(b[2:])}</blockquote>")
        else:
            body.append(f"<p>{_inline_html(b)}</p>")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(bundle_path: str | Path) -> Path:
    """Write report.html (self-contained) and report.md with its PNG figures into the bundle; record them
    in the manifest. Returns the HTML report's path.

    A bundle that was never exported, verified or benchmarked still gets a report saying what is missing.
    """
    b = Bundle.open(bundle_path)
    m = b.manifest
    batch = ((m.get("decision") or {}).get("constraints") or {}).get("for_batch") or min(
        (r["batch"] for r in m.get("bench", {}).get("rows", [])), default=1)
    plots = figures.all_figures(b.path, m, batch)
    blocks = _training_section(m)
    blocks[2:2] = _recommendation_section(m)  # the answer first, right under the title
    for name, alt in (("training.png", "training curves"), ("confusion.png", "confusion matrix")):
        if name in plots:
            blocks.append(Figure(name, alt))
    blocks += _artifacts_section(m) + _parity_section(m) + _platform_section(m) + _latency_section(m, plots)
    searched = search.load(b.path, m)  # a bundle written by `edgecls tune`
    if searched is not None:
        front = search.figure(searched)
        if front:
            plots[search.FIGURE] = front
        blocks[2:2] = search.section(searched, plots)
    files = {**plots, "report.md": to_markdown(blocks), "report.html": to_html(blocks, m["name"], plots)}
    with b.staging() as stage:  # every figure and both reports reach the bundle in one commit with the manifest
        for name, data in files.items():
            atomic_write(stage / name, data)
            b.record(file_entry(stage / name, stage), key="files")
        b.save(installs={name: stage / name for name in files})
    return b.path / "report.html"
