"""Rich rendering of each command's results (tables, the epoch trace). No logic beyond formatting."""

from __future__ import annotations

import contextlib
import sys

import typer
from rich.console import Console
from rich.table import Table

# results (tables) on stdout, progress and notes on stderr; wide when not a terminal (logs, CI)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@contextlib.contextmanager
def use_stderr(on: bool = True):
    """Send what would go to stdout (tables) to stderr for a while: stdout is kept for --json."""
    global out
    saved = out
    if on:
        out = err
    try:
        yield
    finally:
        out = saved


def shown(value):
    """`value` (a manifest, a row, a label) with every string made safe to print through rich: control
    characters (ANSI escapes, hyperlinks) removed, markup escaped. A bundle's strings are someone else's
    data: "[green]ok[/]" in a label prints as written, never as a green "ok"."""
    from ..core.untrusted import markup_safe

    if isinstance(value, str):
        return markup_safe(value)
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shown(v) for v in value)
    return value


def distribute_line(d: dict) -> str:
    return (f"{d['strategy']}: {d['workers']} worker(s), {d['replicas']} replica(s) in step on {d['task']}; "
            f"global batch {d['global_batch_size']} ({d['per_replica_batch_size']} per replica), "
            f"learning rate {d['learning_rate']:g} x {d['lr_scale']:g}")


def render_metrics(manifest: dict) -> None:
    manifest = shown(manifest)
    m = manifest["metrics"]["test"]
    t = manifest["training"]
    out.print(f"\nheld-out accuracy [bold green]{m['accuracy']:.4f}[/], loss {m['loss']:.4f} on "
              f"{m['images']} images (weights of epoch {t['best_epoch']} of {t['epochs_run']}, "
              f"{t['seconds']:.1f}s, {t['train_images_per_second']} train images/s)"
              + (" [yellow](interrupted: best weights so far)[/]" if t["interrupted"] else ""), soft_wrap=True)
    arch = manifest.get("architecture", {})
    if arch.get("why"):
        out.print(f"architecture {arch['name']}: {arch['why']}", soft_wrap=True, highlight=False)
    d = t.get("distribute")
    if d and d["strategy"] != "default":
        out.print(distribute_line(d), soft_wrap=True, highlight=False)
    b = manifest.get("baseline")
    if b:
        gain = 100 * (m["accuracy"] - b["accuracy"])
        colour = "green" if gain > 0 else "red"
        out.print(f"pixel baseline ({b['method']}, same split): {b['accuracy']:.4f} → model "
                  f"[{colour}]{gain:+.1f} points[/]; always guessing the commonest class: {b['chance']:.4f}",
                  soft_wrap=True, highlight=False)
    for w in t.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True, highlight=False)
    table = Table(title="per class (held-out)")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in m["per_class"]:
        table.add_row(row["label"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      str(row["support"]))
    out.print(table)
    conf = Table(title="confusion matrix (rows: true, columns: predicted)")
    conf.add_column("")
    labels = manifest["labels"]
    for i in range(len(labels)):
        conf.add_column(str(i), justify="right")
    for i, row in enumerate(m["confusion"]):
        conf.add_row(f"{i} {labels[i]}", *[f"[bold]{v}[/]" if i == j else str(v) for j, v in enumerate(row)])
    out.print(conf)


def render_import(result) -> None:
    """`edgecls import`: what was read from the model and declared, its held-out accuracy, the next commands."""
    m = shown(result.manifest)
    i, test, b = m["imported"], m["metrics"]["test"], m.get("baseline")
    src, prep, o = i["source"], i["preprocessing"], i["output"]
    out.print(f"imported [bold]{src['file']}[/] ({src['format']}, {m['architecture']['params']:,} parameters) into "
              f"[bold]{result.bundle}[/]", soft_wrap=True, highlight=False)
    out.print(f"input {m['input']['shape'][1:]} {m['input']['color']}; {m['input']['preprocessing']}",
              soft_wrap=True, highlight=False)
    out.print(f"preprocessing: {prep['how']}" + (f" ({', '.join(prep['inside'])})" if prep.get("inside") else "")
              + f"; output: {o['kind']} ({o['how']})", soft_wrap=True, highlight=False)
    out.print(f"held-out accuracy [bold green]{test['accuracy']:.4f}[/] on {test['images']} images"
              + (f"; pixel baseline {b['accuracy']:.4f}, always the commonest class {b['chance']:.4f}" if b else ""),
              soft_wrap=True, highlight=False)
    for w in i.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True, highlight=False)
    for note in i.get("notes", []):
        err.print(f"note: {note}", soft_wrap=True, highlight=False)
    err.print(f"next: edgecls export --int8 {result.bundle}; edgecls verify {result.bundle}; "
              f"edgecls bench {result.bundle}; edgecls report {result.bundle}", soft_wrap=True, highlight=False)


def render_note(text: str) -> None:
    out.print(text, soft_wrap=True, highlight=False)


def size_text(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def render_export(result, bundle: str = "BUNDLE") -> None:
    table = Table(title="exported")
    for col in ("format", "precision", "file", "size", "vs fp32", "seconds", "self-check", "int8 gate (judging set)"):
        table.add_column(col, justify="right" if col in ("size", "vs fp32", "seconds") else "left")
    for a in result.artifacts:
        ratio, weights = a.get("size_ratio_vs_fp32"), a.get("weights_ratio_vs_fp32")
        table.add_row(a["format"], a["precision"], a["file"], size_text(a["total_bytes"]),
                      (f"{ratio:.2f}x" if ratio else "") + (f" (weights {weights:.2f}x)" if weights else ""),
                      f"{a['export_seconds']:.1f}",
                      "[green]ok[/]", int8_gate(a.get("int8")))
    for f in result.failures:
        table.add_row(f["format"], f["precision"], "", "", "", "", "[red]FAILED[/]", "")
    out.print(table)
    for a in result.artifacts:
        t = a.get("int8")
        if t and t.get("attempts") and len(t["attempts"]) > 1:
            cost = t["cost"]
            out.print(f"{a['file']}: {len(t['attempts'])} recipes tried; kept {t['recipe']} with "
                      f"{len(t['float_layers'])} layer(s) in float: {cost['bytes_ratio']:.2f}x the default int8 "
                      f"bytes, {cost['latency_ratio']:.2f}x its latency (batch 32)", soft_wrap=True, highlight=False)
        if t and t.get("outcome") == "fail":
            for f in t["evidence"]["failures"]:
                typer.echo(f"FAIL {a['file']}: no int8 recipe passed; the best kept fails on the judging set: {f}",
                           err=True)
        elif t and t.get("outcome") == "inconclusive":
            undecided = [c for c in t["evidence"]["checks"] if c["outcome"] == "inconclusive"]
            need = max((c.get("images_to_decide") or 0 for c in undecided), default=0)
            seen = [c for c in undecided if c["estimate"] > c["limit"]]  # leaning to fail: say what was seen
            typer.echo(f"note: {a['file']}: the {t['evidence']['images']} validation images cannot show its int8 "
                       "parity either way" + (f" (about {need:,} would)" if need else "")
                       + (f"; seen: {'; '.join(_check_sentence(c) for c in seen)}" if seen else "")
                       + "; edgecls verify judges it on held-out + validation images", err=True)
    if result.gate_failures:
        typer.echo(f"see why: edgecls verify {bundle} --explain (first the float model's own noise floor: the "
                   "share of answers it changes under noise below a gray level, which no int8 file is expected to "
                   "beat; then each int8 file's error layer by layer)", err=True)
    for f in result.failures:
        typer.echo(f"error: {f['format']} {f['precision']}: {f['error']}", err=True)  # type, message: --json


OUTCOME = {"pass": "[green]pass[/]", "inconclusive": "[yellow]inconclusive[/]", "fail": "[red]FAIL[/]"}


def _check_sentence(check: dict) -> str:
    from ..core.stats import Judgement

    return Judgement.from_dict(check).sentence()


def int8_gate(t: dict | None) -> str:
    """The export table's int8 cell: the gate on the judging set and the recipe that got there."""
    if not t:
        return ""
    if t.get("outcome") is None:
        return "not judged"
    e = t["evidence"]
    lo, hi = e["drop_interval"]
    what = (f"drop {e['drop_points']:+.2f} pts ({lo:+.1f}…{hi:+.1f}), {e['changed']} of {e['images']} changed; "
            + ("default" if t["recipe"] == "default" else "QAT" if t.get("qat")
               else f"accuracy-aware, {len(t['float_layers'])} float"))
    return f"{OUTCOME[t['outcome']]} ({what})"


def _judged_on(j: dict) -> str:
    """'1,797 reachable + 1,024 variants' style cell: which images judged a row."""
    names = {"held-out": "held-out", "validation": "val", "training": "train", "images": "--images",
             "variant": "variants"}
    return " + ".join(f"{n:,} {names.get(k, k)}" for k, n in (j.get("kinds") or {}).items())


def render_verify(result, strict: bool = False) -> None:
    where = ("" if result.source == "dataset"
             else " (the bundle's reference images and the Keras probabilities stored with them)")
    table = Table(title=f"parity vs Keras: accuracy on {result.heldout_images} held-out images (Keras "
                        f"{result.keras_accuracy:.4f}); float files judged on every image the bundle can reach and "
                        f"label-free variants, int8 files only on images they never saw{where}; 95% intervals")
    for col in ("format", "precision", "runtime / device", "float parts", "accuracy", "drop pts (95%)",
                "lost/gained", "changed % (95%)", "|Δp| q99 / max", "judged on", "outcome"):
        table.add_column(col, justify="left" if col in ("format", "precision", "runtime / device",
                                                        "float parts", "judged on", "outcome") else "right")
    for r in result.rows:
        if r.error or r.evidence is None:
            table.add_row(r.format, r.precision, r.runtime, *[""] * 7, "[red]ERROR[/]")
            continue
        e = r.evidence
        drop = next((c for c in e.checks if c.name == "accuracy drop"), None)
        changed = next(c for c in e.checks if c.name == "changed answers")
        table.add_row(r.format, r.precision, f"{r.runtime} / {r.device}", float_parts(r), f"{e.accuracy:.4f}",
                      f"{drop.estimate + 0:+.2f} ({drop.low + 0:+.1f}…{drop.high + 0:+.1f})" if drop
                      else f"{100 * (e.keras_accuracy - e.accuracy) + 0:+.2f}",
                      f"{e.lost}/{e.gained}",
                      f"{changed.estimate:.2f} ({changed.low:.2f}…{changed.high:.2f}) {e.changed}/{e.images}",
                      f"{e.q99_abs_diff:.1e} / {e.max_abs_diff:.1e}", _judged_on(r.judged_on),
                      OUTCOME[r.outcome.value])
    out.print(table)
    from ..core.gates import summary

    g = result.gates.get("int8") or {}
    out.print(f"gates: {summary(g.get('max_drop', 1.0))} (docs/verify.md)", soft_wrap=True, highlight=False)
    counts = result.counts()
    out.print(f"outcomes: {counts['pass']} pass, {counts['inconclusive']} inconclusive, {counts['fail']} fail",
              highlight=False)
    for line in result.ignored:
        out.print(f"[yellow]not re-verified here, and ignored: {line}[/]", soft_wrap=True, highlight=False)
    hashes = {}
    for r in result.rows:
        if r.judged_on:
            hashes.setdefault(r.precision, r.judged_on)
    for precision, j in hashes.items():
        extra = (f", {j['excluded_selection']:,} its recipe was selected on left out" if j.get("excluded_selection")
                 else "")
        out.print(f"{precision} judged on {j['images']:,} images: {_judged_on(j)}{extra} (ids sha256 "
                  f"{j['ids_sha256'][:12]})", soft_wrap=True, highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", soft_wrap=True, highlight=False)
    for r in result.rows:
        for f in r.failures:
            typer.echo(f"FAIL {r.file} ({r.runtime}): {f}", err=True)
        if not r.failures:
            for u in r.undecided:
                typer.echo(f"{'error' if strict else 'warning'}: {r.file} ({r.runtime}) inconclusive: {u}", err=True)


def float_parts(r) -> str:
    """What a row's float parts ran in, naming the device's default precision when that was asked."""
    get = r.get if isinstance(r, dict) else lambda k, d="": getattr(r, k, d)
    compute, asked, gate = get("compute", ""), get("compute_requested", ""), get("gate", "")
    notes = (["device default"] if asked == "default" else []) + (
        [f"{gate} limits"] if gate and gate != get("precision", "") else [])
    return f"{compute} ({'; '.join(notes)})" if notes else compute


def render_platform_verify(result: dict) -> None:
    """`verify --platform`: the emulated rows (per CPU model) beside the host's rows of the same files."""
    table = Table(title=f"parity vs Keras on {result['platform']} (emulated: {result['emulator']}), beside this "
                        f"machine's rows; each file on the bundle's reference images; 95% intervals")
    for col in ("file", "runtime", "where", "float parts", "accuracy", "changed (95%)", "|Δp| max",
                "vs this machine: changed / max |Δp|", "outcome", "verdict"):
        table.add_column(col, justify="right" if col in ("accuracy", "|Δp| max") else "left")
    rows = sorted(result["native_rows"], key=lambda r: (r["file"], r["runtime"]))
    rows += sorted(result["rows"], key=lambda r: (r["file"], r["runtime"], r.get("compute_requested", ""), r["cpu"]))
    for r in rows:
        where = (f"{r['platform']} / {r['cpu']}" if r.get("platform") else f"this machine / {r.get('device', '')}")
        changed = next((c for c in r.get("checks", []) if c["name"] == "changed answers"), None)
        vs = r.get("vs_native")
        verdict = r.get("verdict", "")
        table.add_row(r["file"], r["runtime"], where, float_parts(r),
                      f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "",
                      f"{r['changed']}/{r['images']} ({changed['interval'][0]:.2f}…{changed['interval'][1]:.2f}%)"
                      if changed else "", f"{r['max_abs_diff']:.1e}" if r.get("max_abs_diff") is not None else "",
                      f"{vs['changed']}/{vs['images']} / {vs['max_abs_diff']:.1e} ({vs['compute'] or '?'})" if vs
                      else "", OUTCOME.get(r.get("outcome"), r.get("outcome", "")),
                      f"[red]{verdict}[/]" if verdict == "emulator disagreement" else verdict)
    out.print(table)
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    out.print(f"wall time: {secs} (time under emulation says nothing about the device's speed)", highlight=False)
    for runtime, why in result["skipped"].items():
        err.print(f"[yellow]warning: {runtime} not verified on {result['platform']}: {why}[/]", soft_wrap=True,
                  highlight=False)
    for r in result["rows"]:
        for f in r.get("failures", []):
            typer.echo(f"FAIL {r['file']} ({r['runtime']}, {r['platform']}/{r['cpu']}): {f}", err=True)
        if r.get("verdict") == "emulator disagreement":
            typer.echo(f"warning: {r['file']} ({r['runtime']}): the CPU models disagree ({r['cpu']}: {r['outcome']})"
                       ": an emulator disagreement, not a parity result", err=True)


def render_noise_floor(floor: dict) -> None:
    """`verify --explain`'s first line: the float model's own changed answers under noise below a gray level."""
    if "note" in floor:
        out.print(f"float model's noise floor: {floor['note']}", soft_wrap=True, highlight=False)
        return
    kinds = " + ".join(f"{n:,} {k}" for k, n in floor["kinds"].items())
    low, high = floor["interval"]
    colour = "green" if floor["verdict"].startswith("below") else "yellow"
    changed = floor["changed"]
    either = "either" if len(changed) == 2 else "any"
    out.print(f"float model's noise floor: under ±{floor['amplitude']:g} gray-level noise the Keras model changes "
              f"{' and '.join(f'{c:,}' for c in changed)} of {floor['images']:,} answers ({kinds} images; "
              f"{len(changed)} draws), {floor['unsteady']:,} images in {either}: {100 * floor['share']:.2f}% (95% "
              f"{100 * low:.2f}-{100 * high:.2f}%) — [{colour}]{floor['verdict']}[/]", soft_wrap=True, highlight=False)


def render_explain(explanations, floor: dict | None = None) -> None:
    """`verify --explain`: the float model's noise floor, then one per-layer table per int8 artifact."""
    if floor is not None:
        render_noise_floor(floor)
    for e in explanations:
        if e.note and not e.layers:
            out.print(f"[bold]{e.file}[/] ({e.format} int8): no per-layer table: {e.note}", soft_wrap=True,
                      highlight=False)
            continue
        table = Table(title=f"{e.file} ({e.format} int8): per-layer SQNR vs float, {e.measure}, on {e.images} "
                            f"held-out images — {e.tool}")
        for col in ("#", "layer", "keras layer", "output shape", "SQNR dB", "flag"):
            table.add_column(col, justify="right" if col in ("#", "SQNR dB") else "left")
        for i, r in enumerate(e.layers):
            colour = "red" if r.flag else "green"
            table.add_row(str(i), r.layer, r.keras_layer, "x".join(str(d) for d in r.shape or []) or "?",
                          f"[{colour}]{r.sqnr_db:.1f}[/]", f"[red]{r.flag}[/]" if r.flag else "")
        out.print(table)
        out.print(f"{len(e.flagged)} of {len(e.layers)} layers flagged (below 20 dB, or > 6 dB below the previous)"
                  + (f"; {e.note}" if e.note else ""), soft_wrap=True, highlight=False)


def _p50(r: dict) -> str:
    """The p50 cell: the value and its interval, with the interval's level (none: within one process)."""
    v, level = r.get("p50_ci_ms"), r.get("p50_ci_level")
    label = f" {100 * level:.1f}%" if level is not None else (" 1 process" if "p50_ci_level" in r else "")
    return f"{r['p50_ms']:.3f}" + (f" [dim]({v[0]:.3f}–{v[1]:.3f}{label})[/]" if v else "")


def _tail(r: dict, name: str) -> str:
    """A tail percentile's cell: its value, or why there is none (too few runs for it)."""
    if r.get(f"{name}_ok") is False:
        return f"[dim]n={r['runs']} too few[/]"
    return f"{r[f'{name}_ms']:.3f}" + (" [dim](group means)[/]" if r.get("tails_of") else "")


BENCH_COLUMNS = ("file", "runtime", "batch", "p50 ms (95% CI)", "p90", "images/s", "× ref", "size", "outcome")


def _ms(v: float) -> str:
    """Milliseconds in 4 significant digits at most: the console table stays narrow."""
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def bench_table(result, outcomes: dict[str, str] | None = None) -> Table:
    """The console's bench table: what a person decides with, within 120 columns (one line per row: file,
    runtime, batch, p50 with its interval, p90, images/s, speed-up vs the reference, size, outcome). Every
    other measurement is in --json, the CSV and the report."""
    from rich import box

    env = result.environment
    rows = sorted(result.rows, key=lambda r: (r["batch"], r["p50_ms"]))
    ref = "keras" if any(r.get("speedup_vs_keras") for r in rows) else "ort fp32"
    table = Table(title=f"latency — {env['threads']} threads for every runtime", box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 1, 0, 0), collapse_padding=True)
    for col in BENCH_COLUMNS:
        table.add_column(f"× {ref}" if col == "× ref" else col, no_wrap=True,
                         justify="left" if col in ("file", "runtime", "outcome") else "right")
    for r in map(shown, rows):
        ci = r.get("p50_ci_ms")
        p50 = _ms(r["p50_ms"]) + (f" [dim]({_ms(ci[0])}–{_ms(ci[1])})[/]" if ci else "")
        p90 = "[dim]few runs[/]" if r.get("p90_ok") is False else _ms(r["p90_ms"])
        speed = r.get("speedup_vs_keras") if ref == "keras" else r.get("speedup_vs_onnx_fp32")
        outcome = "reference" if r["runtime"] == "keras" else shown((outcomes or {}).get(r["file"], "not verified"))
        outcome = OUTCOME.get(outcome, outcome)
        if r.get("outputs_ok") is False:
            outcome = "[red]bad outputs[/]"  # the timed outputs differ from its own: see the notes
        table.add_row(shown(r["file"]), shown(r["runtime"]), str(r["batch"]), p50, p90, f"{r['throughput_ips']:,.0f}",
                      f"{speed:.1f}x" if speed else "–", size_text(r["file_bytes"]), outcome)
    return table


def parity_outcomes(manifest: dict) -> dict[str, str]:
    """file -> its current parity outcome on its own runtime (what the bench table's outcome column shows)."""
    from ..core import results

    formats = {a["file"]: a["format"] for a in manifest.get("artifacts", [])}
    return {r["file"]: r.get("outcome") for r in results.current(manifest, "verify")
            if r.get("runtime") in (None, "", formats.get(r["file"]))}


def render_bench(result, outcomes: dict[str, str] | None = None) -> None:
    """The bench table (`bench_table`; `outcomes`: file -> its current parity outcome), then the machine and
    what the rounds showed, in a few lines."""
    env = result.environment
    cpu = env.get("cpu_info", {})
    rows = result.rows
    out.print(bench_table(result, outcomes))
    peak = env.get("peak")
    out.print(f"CPU: {env['cpu']}, {env['cores']} logical cores; int8-relevant instructions: "
              f"{', '.join(cpu.get('features', [])) or 'none found'}"
              + (f"; measured peak {peak['fp32_gops']:.0f} GOP/s fp32, {peak['int8_gops']:.0f} GOP/s int8 "
                 f"({peak['method']})" if peak else ""), soft_wrap=True, highlight=False)
    out.print(f"Threads: {env['threads_from']}. Timed: the model's execution alone, the same work for every runtime, "
              "after a warm-up that settles. p99, std, GOP/s, % of peak, OpenVINO's own p50, load and first-call "
              "times, peak RSS and the output check: --json, --csv and the report.", highlight=False)
    n = result.config.get("rounds", 1)
    minimum = env.get("min_runs_for", {})
    tails = (f"; p90/p99 need at least {minimum.get('p90')}/{minimum.get('p99')} runs (MLPerf)" if minimum else "")
    if n > 1:
        spread = max(max(r["p50_rounds_ms"]) / min(r["p50_rounds_ms"]) for r in rows)
        level = rows[0].get("p50_ci_level") or 0.0
        out.print(f"{n} interleaved rounds per configuration, each in a fresh process; the p50 of one configuration "
                  f"varied up to {spread:.2f}x between rounds (p50_rounds_ms in the JSON). p50: the median of the "
                  f"rounds' p50s, its interval their order statistics ({100 * level:.1f}% for {n} rounds"
                  + ("" if level >= 0.95 else "; 6 rounds give 96.9%") + "); p90/p99: the pooled calls' 95% "
                  "order-statistic interval (for independent calls), widened to the rounds' range" + tails + ".",
                  soft_wrap=True)
    elif "p50_ci_ms" in (rows[0] if rows else {}):
        out.print("One round: the p50 interval is the order-statistic interval of one process's calls, valid only if "
                  "they were independent, and it leaves out the spread between processes (--rounds 6: 96.9%)"
                  + tails + ".", soft_wrap=True)
    grouped = [f"{r['runtime']} {r['precision']}" for r in rows if r.get("tails_of")]
    if grouped:
        out.print(f"p90/p99 of {', '.join(grouped)}: quantiles of the means of groups of calls (timed in groups by a "
                  "coarse clock), not of single calls.", soft_wrap=True)
    unsettled = [f"{r['runtime']} {r['precision']} batch {r['batch']}" for r in rows
                 if r.get("warmup_settled") is False]
    if unsettled:
        out.print(f"[yellow]warm-up did not settle within its limit for: {', '.join(unsettled)}[/]", soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]{note}[/]")


def render_predict(result) -> None:
    """`edgecls predict`: first the file that ran and why, then each image's top classes."""
    out.print(shown(f"{result.file} ({result.runtime} {result.precision}): {result.why}"), soft_wrap=True,
              highlight=False)
    table = Table()
    table.add_column("image")
    for i in range(result.top):
        table.add_column(f"#{i + 1}")
    for p, r in zip(result.images, result.top_classes):
        table.add_row(shown(str(p)), *[f"{shown(k)} {v:.3f}" for k, v in r])
    out.print(table)


def render_info(info) -> None:
    """`edgecls info`: the bundle summary and every artifact with its hash check."""
    m = shown(info.manifest)
    ds, inp = m["dataset"], m["input"]
    arch = m["architecture"]
    out.print(f"[bold]{shown(str(info.path))}[/]  ({arch['name']}, {arch['params']:,} parameters)")
    held_out = sum(ds["counts"]["test"].values())
    out.print(f"dataset {ds['name']}: {len(ds['classes'])} classes; held-out {held_out} images")
    out.print(f"input {inp['shape']} {inp['dtype']} {inp['layout']} {inp['color']}, raw pixels 0-255")
    acc = m.get("metrics", {}).get("test", {}).get("accuracy")
    if acc is not None:
        base = m.get("baseline")
        out.print(f"held-out accuracy {acc:.4f}" + (f" (pixel baseline {base['accuracy']:.4f})" if base else ""))
    from ..core import results
    from ..core.recommended import recommended

    if m.get("decision"):
        rec = recommended(m)
        out.print(f"recommended: {rec.artifact['file']} (current: the bytes, parity and bench results it was chosen "
                  "on)" if rec.current else
                  f"[yellow]recommendation not current: {rec.why}[/]", soft_wrap=True, highlight=False)
    bench_rows = [r for r in results.current(m, "bench")  # rows a stranger wrote may lack what a table needs
                  if isinstance(r.get("p50_ms"), (int, float)) and isinstance(r.get("batch"), int)]
    if bench_rows:
        best = min(bench_rows, key=lambda r: r["p50_ms"])
        out.print(f"bench: {len(bench_rows)} current configurations; fastest {best['runtime']} "
                  f"{best['precision']} at batch {best['batch']}, p50 {best['p50_ms']:.3f} ms")
    table = Table(title="artifacts")
    for col in ("format", "precision", "file", "bytes", "sha256", "verified"):
        table.add_column(col)
    for a, ok in info.files:
        a = shown(a)
        table.add_row(a["format"], a["precision"], a["file"], f"{a['bytes']:,}",
                      f"{a['sha256'][:12]}… " + ("[green]ok[/]" if ok else "[red]MISMATCH[/]"),
                      verified_cell(m, a))
    out.print(table)
    for section in ("verify", "bench"):
        for line in results.ignored_lines(m, section):
            out.print(f"[yellow]{section} result ignored: {line}[/]", soft_wrap=True, highlight=False)


def _asked(r: dict) -> str:
    """" (bf16 default)" for a row of the device's default precision; "" for the parity (f32) row."""
    asked = r.get("compute_requested") or ""
    if asked in ("", "f32"):
        return ""
    return f" ({r.get('compute', '?')} default)" if asked == "default" else f" ({asked})"


def verified_cell(m: dict, a: dict) -> str:
    """An artifact's current verify outcomes (one per runtime x device), or why there is none."""
    from ..core import results

    if a["format"] == "keras":
        return "reference"
    rows = [r for r in results.rows(m, "verify") if r.get("file") == a["file"]]
    if not rows:
        return "not verified"
    cells = []
    for r in rows:
        b = results.binding(r, m)
        where = f"{r.get('runtime')}/{r.get('device')}" + _asked(r)
        outcome = r.get("outcome")
        cells.append(f"{where} {OUTCOME.get(outcome, '?') if isinstance(outcome, str) else '?'}"
                     if b == results.Binding.current
                     else f"{where} [yellow]{b.value} (run verify again)[/]")
    platform_rows = [r for r in results.current(m, "platform_verify") if r.get("file") == a["file"]]
    verdicts = results.platform_verdicts(platform_rows)
    for r in platform_rows:
        verdict = verdicts.get(results.key(r, "platform_verify"), "")
        cells.append(f"{r.get('runtime')}/{r.get('platform')}:{r.get('cpu')}{_asked(r)} "
                     + (OUTCOME[verdict] if verdict in OUTCOME else f"[yellow]{verdict}[/]"))
    return "; ".join(cells)


def render_decision(d) -> None:
    """The answer: the artifact to ship, then why not each other one."""
    c = d.constraints
    if d.chosen is None:
        out.print(f"[bold red]nothing to ship[/]: no artifact qualifies; ruled out by {shown(d.ruled_out_by)}",
                  soft_wrap=True, highlight=False)
    else:
        x = d.chosen
        acc = f"accuracy {x.accuracy:.4f} (Δ {x.delta_points + 0:+.2f} vs Keras)" if x.accuracy is not None else ""
        ci = f" [{x.p50_ci_ms[0]:.3f}-{x.p50_ci_ms[1]:.3f}]" if x.p50_ci_ms else ""
        tail = f"{c['percentile']} {x.tail_ms:.3f} ms" if x.tail_ms is not None else f"{c['percentile']} –"
        out.print(f"[bold green]ship {shown(x.file)}[/] ({shown(x.runtime)} {x.precision}, parity {x.outcome}): p50 "
                  f"{x.p50_ms:.3f} ms{ci}, {tail} at batch {c['for_batch']}; {acc}; {x.size_kb:.1f} KB — "
                  f"{shown(d.why)}",
                  soft_wrap=True, highlight=False)
    for x in d.others:
        out.print(f"  not {shown(x.file)} ({shown(x.runtime)} {x.precision}): {shown(x.reason)}", soft_wrap=True,
                  highlight=False)
    if getattr(d, "level", ""):
        out.print(f"  [dim]{d.level}[/]", soft_wrap=True, highlight=False)
    for line in d.ignored:
        out.print(f"  [yellow]ignored: {shown(line)}[/]", soft_wrap=True, highlight=False)


def render_golden(result) -> None:
    """`edgecls golden`: what each artifact answered on the golden images, and the tolerance a port must meet."""
    index = shown(result.index)
    labels = ", ".join(i["label"] for i in index["images"])
    table = Table(title=f"golden vectors: {len(index['images'])} images ({labels})")
    for col in ("format", "precision", "runtime", "top-1 per image", "port tolerance (abs)"):
        table.add_column(col)
    rows = [("keras", "fp32", "keras", index["keras"]["top1"], None)] if "keras" in index else []
    rows += [(o["format"], o["precision"], o["runtime"], o["top1"], o["tolerance"]["abs"]) for o in index["outputs"]]
    rows += [(o["format"], o["precision"], f"{o['runtime']} on {o['platform']}/{o['cpu']}", o["top1"],
              f"max |Δp| vs this machine {o['vs_this_machine']['max_abs_diff']:.1e}" if o.get("vs_this_machine")
              else "") for o in index.get("platform_outputs", [])]
    for fmt, precision, runtime, top1, tol in rows:
        table.add_row(fmt, precision, runtime, " ".join(top1), "reference" if tol is None else
                      tol if isinstance(tol, str) else f"{tol:.2g}")
    out.print(table)
    for note in result.skipped:
        err.print(f"skipped {note}", highlight=False)
    out.print(f"written: [bold]{result.folder}[/] ({result.folder / 'golden.json'})")
