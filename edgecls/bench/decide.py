"""The shipping decision: one recommended artifact under the user's constraints, with a reason for every other.

Fed by the verify and bench rows in the manifest that are bound to the bytes now in the bundle
(`edgecls.core.results`); rows of older or re-exported files are ignored and said so. The rule:

1. **Parity shown.** Only a file whose verify outcome is `pass` qualifies (`inconclusive` too with
   `accept_inconclusive`). `--max-drop` re-judges int8 files' accuracy drop on its interval, the
   same rule as `verify --max-drop` (`edgecls.core.stats.judge_drop`).
2. **Measured honestly.** A current bench row at the chosen batch size, whose timed outputs matched
   the file's own (`outputs_ok`), within `--max-size` and `--max-latency` (on the bounded
   percentile, which needs enough timed runs to exist).
3. **Ties are ties.** Among the survivors the fastest p50 sets the bar; every survivor whose p50 is
   within `tie_margin` of it, or whose p50 interval overlaps its interval, is tied with it. Among
   tied files the smallest file wins, then the lower tail, then the lower p50. Every other file is
   slower *beyond noise*, and its reason says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core import results
from ..core.errors import EdgeclsError
from ..core.gates import check_max_drop
from ..core.names import Runtime, parse
from ..core.stats import Outcome, judge_drop
from ..runtimes import RUNTIMES, runtime_of
from .latency import MIN_RUNS

DEFAULT_TIE_MARGIN = 5.0  # percent of the fastest p50 within which two files are tied


@dataclass
class Constraints:
    """Options of the recommendation (`--for-batch`, `--max-latency`, `--percentile`, `--max-size`,
    `--max-drop`, `--runtime`, `--tie-margin`, `--accept-inconclusive`)."""

    for_batch: int | None = None  # None: 1, or the smallest measured batch size when 1 is not measured
    max_latency_ms: float | None = None
    percentile: str = "p90"  # which latency --max-latency bounds: p90 or p99
    max_size_kb: float | None = None
    max_drop: float | None = None  # int8: accuracy points vs Keras, judged on the drop's 95% interval
    runtimes: list[Runtime] = field(default_factory=list)  # empty: any
    tie_margin: float = DEFAULT_TIE_MARGIN  # percent
    accept_inconclusive: bool = False  # also ship files whose parity is neither shown nor refuted

    def validate(self, batches: list[int] | None = None) -> None:
        """Refuse impossible or contradictory constraints before anything is measured."""
        if self.for_batch is None:
            self.for_batch = 1 if not batches or 1 in batches else min(batches)
        if self.for_batch < 1:
            raise EdgeclsError(f"--for-batch {self.for_batch}: must be at least 1")
        if batches is not None and self.for_batch not in batches:
            raise EdgeclsError(f"--for-batch {self.for_batch}: not among the measured batch sizes "
                               f"({','.join(map(str, batches))}); add it to --batch")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise EdgeclsError(f"--max-latency {self.max_latency_ms}: must be a positive number of milliseconds")
        if self.percentile not in ("p90", "p99"):
            raise EdgeclsError(f"--percentile {self.percentile}: choose p90 or p99")
        if self.max_size_kb is not None and self.max_size_kb <= 0:
            raise EdgeclsError(f"--max-size {self.max_size_kb}: must be a positive number of KB")
        if self.max_drop is not None:
            check_max_drop(self.max_drop)
        if not 0 <= self.tie_margin < 100:
            raise EdgeclsError(f"--tie-margin {self.tie_margin:g}: must be at least 0 and below 100 percent")
        self.runtimes = parse(RUNTIMES, self.runtimes, "--runtime")


@dataclass
class Candidate:
    runtime: str
    precision: str
    file: str
    p50_ms: float | None
    tail_ms: float | None  # the bounded percentile (p90 or p99)
    size_kb: float
    accuracy: float | None
    delta_points: float | None
    outcome: str | None = None  # parity: pass, inconclusive, fail (None: no current verify row)
    p50_ci_ms: list[float] | None = None  # 95% interval of the p50, where bench measured one
    reason: str = ""  # why it was not chosen ("" for the chosen one)


@dataclass
class Decision:
    constraints: dict
    chosen: Candidate | None
    others: list[Candidate]
    ruled_out_by: str | None = None  # when nothing qualifies: the constraint that removed the last ones
    tied: list[str] = field(default_factory=list)  # files tied with the fastest (the chosen among them)
    why: str = ""  # why the chosen one, in a sentence
    ignored: list[str] = field(default_factory=list)  # stored rows ignored (stale, unbound), with why

    @property
    def found(self) -> bool:
        return self.chosen is not None

    def to_dict(self) -> dict:
        return asdict(self) | {"found": self.found}


def _candidates(manifest: dict, c: Constraints) -> tuple[list[Candidate], dict, dict]:
    own = {a["file"]: runtime_of(a) for a in manifest["artifacts"]}  # the runtime each file records
    verify = {r["file"]: r for r in results.current(manifest, "verify")
              if r.get("runtime") in (None, "", own.get(r["file"], r.get("format")))  # the file's own (not web-*)
              and r.get("compute_requested") in (None, "", "f32")}  # OpenVINO: the f32 row, not the default's
    bench = {(r["file"], r["runtime"]): r for r in results.current(manifest, "bench") if r["batch"] == c.for_batch}
    out = []
    for a in manifest["artifacts"]:
        if a["format"] == Runtime.keras:
            continue
        v, b = verify.get(a["file"]) or {}, bench.get((a["file"], runtime_of(a))) or {}
        delta = (100 * (v["accuracy"] - v["keras_accuracy"])
                 if v.get("accuracy") is not None and v.get("keras_accuracy") is not None else None)
        out.append(Candidate(runtime_of(a), a["precision"], a["file"], b.get("p50_ms"), b.get(f"{c.percentile}_ms"),
                             a.get("total_bytes", a["bytes"]) / 1024, v.get("accuracy"), delta, v.get("outcome"),
                             b.get("p50_ci_ms")))
    return out, verify, bench


def _parity(x: Candidate, v: dict | None, c: Constraints, stale: dict) -> str | None:
    """Why `x` fails the parity test, or None."""
    if v is None:
        return stale.get(x.file, "not verified (run edgecls verify)")
    outcome = Outcome(v.get("outcome", "fail"))
    if outcome == Outcome.failed:
        return "fails parity: " + "; ".join(v.get("failures") or ["see edgecls verify"])
    if c.max_drop is not None and x.precision == "int8" and v.get("heldout_images"):
        drop = judge_drop(v["lost"], v["gained"], v["heldout_images"], c.max_drop)
        if drop.outcome == Outcome.failed:
            return f"--max-drop: {drop.sentence()}"
        outcome = Outcome.combine([o for o in (outcome, drop.outcome)])
        if drop.outcome == Outcome.inconclusive and not c.accept_inconclusive:
            return (f"{x.precision} not shown to be within {c.max_drop:.2f} points on {v['heldout_images']} "
                    f"held-out images ({drop.need()}; --accept-inconclusive to ship it anyway)")
    if outcome == Outcome.inconclusive and not c.accept_inconclusive:
        undecided = v.get("undecided") or []
        return (f"{x.precision} parity not shown on {v.get('images', '?')} images: "
                + ("; ".join(undecided) or "inconclusive") + " (--accept-inconclusive to ship it anyway)")
    return None


def _bench(x: Candidate, b: dict | None, c: Constraints) -> str | None:
    if b is None or x.p50_ms is None:
        return f"not benchmarked at batch {c.for_batch}"
    if b.get("outputs_ok") is False:
        return ("its timed outputs differ from its verified outputs "
                f"(max |Δp| {b.get('outputs_max_abs_diff', float('nan')):.2e}): the timing is not of the same work")
    return None


def _latency(x: Candidate, b: dict, c: Constraints) -> str | None:
    if c.max_latency_ms is None:
        return None
    if b.get(f"{c.percentile}_ok") is False:
        return (f"too few runs for {c.percentile} ({b.get('runs')} timed; MLPerf asks >= "
                f"{MIN_RUNS[c.percentile]}): raise --min-runs or --rounds")
    if x.tail_ms is not None and x.tail_ms > c.max_latency_ms:
        return f"{c.percentile} {x.tail_ms:.3f} ms > --max-latency {c.max_latency_ms:g} ms"
    return None


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    return bool(a and b and a[0] <= b[1] and b[0] <= a[1])


def decide(manifest: dict, c: Constraints) -> Decision:
    """The recommendation for a bundle's manifest (with `verify` and `bench` results) under `c`."""
    c.validate()
    cands, verify, bench = _candidates(manifest, c)
    stale = {r["file"]: f"not verified: {results.EXPLAIN[b]}" for r, b in results.ignored(manifest, "verify")}
    tests = [
        ("runtime", lambda x: f"runtime {x.runtime} not among --runtime {','.join(c.runtimes)}"
         if c.runtimes and x.runtime not in c.runtimes else None),
        ("parity", lambda x: _parity(x, verify.get(x.file), c, stale)),
        ("bench", lambda x: _bench(x, bench.get((x.file, x.runtime)), c)),
        ("--max-size", lambda x: f"{x.size_kb:.1f} KB > --max-size {c.max_size_kb:g} KB"
         if c.max_size_kb is not None and x.size_kb > c.max_size_kb else None),
        ("--max-latency", lambda x: _latency(x, bench[(x.file, x.runtime)], c)),
    ]
    alive, ruled_out_by = list(cands), None
    for name, test in tests:
        for x in alive:
            x.reason = test(x) or ""
        survivors = [x for x in alive if not x.reason]
        if alive and not survivors:
            ruled_out_by = name
        alive = survivors
    constraints = asdict(c)
    ignored = results.ignored_lines(manifest, "verify") + results.ignored_lines(manifest, "bench")
    if not alive:
        if ruled_out_by == "parity" and any("--accept-inconclusive" in x.reason for x in cands):
            ruled_out_by = ("parity (no file shown to pass; inconclusive ones need more images, or "
                            "--accept-inconclusive to ship the best of them)")
        return Decision(constraints, None, cands, ruled_out_by or "no exported artifact", ignored=ignored)
    fastest = min(alive, key=lambda x: x.p50_ms)

    def tied(x: Candidate) -> bool:
        return (x.p50_ms <= fastest.p50_ms * (1 + c.tie_margin / 100)
                or _overlap(x.p50_ci_ms, fastest.p50_ci_ms))

    group = [x for x in alive if tied(x)]
    chosen = min(group, key=lambda x: (x.size_kb, x.tail_ms if x.tail_ms is not None else x.p50_ms, x.p50_ms))
    for x in alive:
        if x is chosen:
            continue
        ratio = x.p50_ms / chosen.p50_ms
        if x in group:
            x.reason = (f"tied with the chosen {chosen.file} ({ratio:.2f}x p50, within noise): "
                        + (f"larger file ({x.size_kb:.1f} KB vs {chosen.size_kb:.1f} KB)" if x.size_kb > chosen.size_kb
                           else f"higher {c.percentile} ({x.tail_ms:.3f} ms vs {chosen.tail_ms:.3f} ms)"
                           if x.tail_ms is not None and chosen.tail_ms is not None and x.tail_ms > chosen.tail_ms
                           else "same size and tail, slower p50"))
        else:
            ci = f" [{x.p50_ci_ms[0]:.3f}-{x.p50_ci_ms[1]:.3f}]" if x.p50_ci_ms else ""
            x.reason = (f"slower beyond noise: p50 {x.p50_ms:.3f} ms{ci}, {x.p50_ms / fastest.p50_ms:.2f}x the fastest "
                        f"{fastest.p50_ms:.3f} ms at batch {c.for_batch} (more than {c.tie_margin:g}% and intervals "
                        "apart)")
    others = [x for x in group if x is not chosen]
    if not others:
        why = f"the fastest at batch {c.for_batch}; every other qualifying file is slower beyond noise"
    else:
        names = ", ".join(f"{x.file} ({x.p50_ms / chosen.p50_ms:.2f}x)" for x in others)
        rule = "the smaller file" if all(x.size_kb > chosen.size_kb for x in others) else "by size, then tail"
        why = f"tied with {names} (within noise): chose {rule}"
    return Decision(constraints, chosen, [x for x in cands if x is not chosen], None,
                    tied=[x.file for x in group], why=why, ignored=ignored)
