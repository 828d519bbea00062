"""`edgecls tune`: the most accurate verified file that meets the device's limits, searched within a budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..bench.latency import ROUNDS_FOR_LEVEL
from ..core.errors import EdgeclsError
from ..report.console import err
from .common import Percentile, PercentileOpt, _emit_json, handled


def parse_budget(text: str) -> float:
    """``20m``, ``90s``, ``1h``, ``1h30m`` or a number of seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", t).strip():
        raise EdgeclsError(f"--budget {text!r}: expected a duration such as 20m, 90s, 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@handled
def tune(
    data: Annotated[str, typer.Option(help="Image folder root/<class>/<image> (or a dataset name).")],
    max_latency: Annotated[Optional[float], typer.Option(
        help="Latency limit in ms on the bounded --percentile (this machine's, or the target's with "
             "--latency-from).")] = None,
    max_size: Annotated[Optional[float], typer.Option(help="File size limit in MB (1 MB = 1024 KB).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size the limits apply to.")] = 1,
    budget: Annotated[str, typer.Option(help="Wall-clock budget of this run: 20m, 90s, 1h.")] = "20m",
    out: Annotated[Optional[Path], typer.Option(help="Bundle of the pick (default models/<data>-tune; the "
                                                     "search's work folder is <out>.tune beside it).")] = None,
    candidates: Annotated[Optional[str], typer.Option(
        help="Comma-separated ARCH[@VALUE] to search instead of the default space, e.g. "
             "small,mobile@0.5,efficientnet-lite0@128 (@width for mobile, @pixels for a backbone).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Formats searched, comma-separated.")] = "onnx,tflite,openvino",
    percentile: PercentileOpt = Percentile.p90,
    max_drop: Annotated[float, typer.Option(help="int8 gate (accuracy points vs Keras), as in pipeline.")] = 1.0,
    accept_inconclusive: Annotated[bool, typer.Option(
        "--accept-inconclusive", help="Also pick files whose parity is inconclusive (small held-out sets).")] = False,
    latency_from: Annotated[Optional[list[Path]], typer.Option(
        help="'edgecls bench --json' files (or a folder of them) measured on the target device for this "
             "search's candidate exports; hash-bound. Repeatable.")] = None,
    screen_only: Annotated[bool, typer.Option(
        "--screen-only", help="Only export every candidate untrained (to bench on the target), then stop.")] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    image_size: Annotated[Optional[int], typer.Option(help="Pixels a side the images are decoded at.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Full training's epochs (default: from the data).")] = None,
    rounds: Annotated[int, typer.Option(
        help="Bench rounds of each fully trained candidate (fresh processes, interleaved), as in edgecls bench: "
             "6 give each p50 a 96.9% interval; fewer are faster, and tie fewer files (a tie must be shown).")
    ] = ROUNDS_FOR_LEVEL,
    as_json: Annotated[bool, typer.Option("--json", help="Print tune.json on stdout.")] = False,
):
    """Search architectures x sizes x formats for the most accurate file whose parity is shown and that
    meets --max-latency and --max-size, within --budget. Writes the pick's bundle (report.html shows the
    Pareto front) with tune.json. Exit 1 when no candidate can meet the limits.

    Ctrl-C or a kill keeps every finished candidate; running the same command again resumes.

    Examples:

      edgecls tune --data ~/pets --max-latency 5 --max-size 2 --budget 20m

      edgecls tune --data ~/pets --max-size 2 --screen-only     # then bench the exports on the target

      edgecls tune --data ~/pets --max-latency 20 --max-size 2 --latency-from target-bench/
    """
    from ..core.hooks import Hooks
    from ..tune.search import TuneConfig
    from ..tune.search import tune as run

    class Progress(Hooks):
        def candidate(self, rung, name, done, left, line):
            err.print(f"\\[{rung} {done}/{done + left}, {left} left] [bold]{escape(name)}[/]: {escape(line)}",
                      soft_wrap=True, highlight=False)

        def front(self, points):
            err.print("  front: " + "; ".join(f"{p.label} {p.accuracy:.3f} @ {p.p50_ms:.2f} ms, {p.size_kb:.0f} KB"
                                             + (" ✓" if p.qualifies else "") for p in points),
                      soft_wrap=True, highlight=False)

    cfg = TuneConfig(data=data, max_latency_ms=max_latency, max_size_mb=max_size, batch=batch,
                     budget_s=parse_budget(budget), out=out,
                     candidates=[c for c in (candidates or "").split(",") if c.strip()] or None,
                     formats=[f.strip() for f in fmt.split(",") if f.strip()], percentile=percentile.value,
                     max_drop=max_drop, accept_inconclusive=accept_inconclusive, latency_from=latency_from or [],
                     screen_only=screen_only, seed=seed, image_size=image_size, epochs=epochs, rounds=rounds)
    try:
        result = run(cfg, hooks=Progress())
    except KeyboardInterrupt:
        typer.echo("error: interrupted: every finished candidate is kept; run the same command again to resume",
                   err=True)
        raise typer.Exit(130) from None
    s = result.summary
    if as_json:
        _emit_json(s)
    if screen_only:
        err.print(f"screened {len(s['screened_bundles'])} candidates; their exports: "
                  + ", ".join(s["screened_bundles"].values()), soft_wrap=True, highlight=False)
        err.print("bench each on the target ('edgecls bench BUNDLE --json FILE'), then run again with "
                  "--latency-from FILE... (docs/tune.md)", soft_wrap=True, highlight=False)
        return
    p = s["pick"]
    err.print(f"[bold green]pick[/]: {p['candidate']} [bold]{p['file']}[/] — accuracy {p['accuracy']:.3f} "
              f"[{p['accuracy_ci'][0]:.3f}-{p['accuracy_ci'][1]:.3f}], p50 {p['p50_ms']:.3f} ms, "
              f"{p['size_kb']:.1f} KB; {p['why']}", soft_wrap=True, highlight=False)
    if s.get("bundle_recommendation_note"):
        err.print(f"note: {s['bundle_recommendation_note']}", soft_wrap=True, highlight=False)
    err.print(f"bundle: {result.bundle} (tune.json, report.html); {s['spent_s']:.0f} s of {s['budget_s']:.0f} s",
              soft_wrap=True, highlight=False)
