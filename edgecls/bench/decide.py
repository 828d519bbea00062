"""The shipping decision: one recommended artifact under the user's constraints, with a reason for every other.

Fed by the verify and bench rows in the manifest that are bound to the bytes now in the bundle
(`edgecls.core.results`); rows of older or re-exported files are ignored and said so. The rule:

1. **Parity shown on the device benchmarked.** Only a file whose verify row *for the bench device*
   is `pass` qualifies (`inconclusive` too with `accept_inconclusive`). `--max-drop` re-judges int8
   files' changed answers and accuracy drop from their counts, the same rule as `verify --max-drop`.
2. **Measured honestly.** A current bench row at the chosen batch size, whose timed outputs matched
   the file's own (`outputs_ok`), within `--max-size` and `--max-latency` (on the bounded
   percentile, which needs enough timed runs to exist).
3. **Ties on paired evidence.** The reference is the fastest survivor (lowest p50; then the lower
   p50 interval's upper end, the file name, the runtime: a stable key). A survivor is *tied* with
   it when its p50 is *shown* within `tie_margin` of the reference's: the upper end of the interval
   of their p50 ratio is at most 1 + margin. Rows of one bench session are paired by round (rounds
   interleave), so the ratio's interval is the order-statistic interval of the per-round ratios
   (96.9% for 6 rounds); rows of different sessions use the ratio of their p50 intervals' ends.
   Within the tied group a file that passes parity ranks above an inconclusive one, then the
   smallest file, then the lower tail, the lower p50, the file name. Membership depends on each
   file against one reference, so the rule is transitive and the same whatever the rows' order;
   a wider interval can only take a file out of the group, never into it. `edgecls tune` ties its
   candidates' files on latency with these same functions (`tied_with_fastest`, `tie_rank`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from ..core import results
from ..core.errors import EdgeclsError
from ..core.gates import check_max_drop, drop_within_changes, gates
from ..core.names import Precision, Runtime, parse
from ..core.stats import Outcome, judge_drop, judge_rate
from ..runtimes import RUNTIMES, runtime_of
from .latency import MIN_RUNS, round_interval

FALSE_PASS = 0.025  # each file's parity: the most often a file at its limits is shown to pass (one-sided)

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
    device: str | None = None  # the device benchmarked (bench sets it); None: cpu

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
    p50_ci_ms: list[float] | None = None  # interval of the p50, where bench measured one
    p50_ci_level: float | None = None  # its level (None: within one process, or an older row)
    p50_rounds_ms: list[float] | None = None  # each round's p50: paired by round with rows of the same session
    session: str | None = None  # the bench session that measured it
    ratio: list[float] | None = None  # [low, high] of its p50 over the reference's, and its level (tie rule)
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
    level: str = ""  # the chance of a false pass among the files compared, in a sentence

    @property
    def found(self) -> bool:
        return self.chosen is not None

    def to_dict(self) -> dict:
        return asdict(self) | {"found": self.found}


def _candidates(manifest: dict, c: Constraints) -> tuple[list[Candidate], dict, dict]:
    device = c.device or "cpu"
    own = {a["file"]: runtime_of(a) for a in manifest["artifacts"]}  # the runtime each file records
    verify = {r["file"]: r for r in results.current(manifest, "verify")
              if r.get("runtime") in (None, "", own.get(r["file"], r.get("format")))  # the file's own (not web-*)
              and r.get("compute_requested") in (None, "", "f32")  # OpenVINO: the f32 row, not the default's
              and r.get("device", "cpu") == device}  # parity shown on the device benchmarked
    bench = {(r["file"], r["runtime"]): r for r in results.current(manifest, "bench")
             if r["batch"] == c.for_batch and r.get("device", "cpu") == device}
    out = []
    for a in manifest["artifacts"]:
        if a["format"] == Runtime.keras:
            continue
        v, b = verify.get(a["file"]) or {}, bench.get((a["file"], runtime_of(a))) or {}
        delta = (100 * (v["accuracy"] - v["keras_accuracy"])
                 if v.get("accuracy") is not None and v.get("keras_accuracy") is not None else None)
        out.append(Candidate(runtime_of(a), a["precision"], a["file"], b.get("p50_ms"), b.get(f"{c.percentile}_ms"),
                             a.get("total_bytes", a["bytes"]) / 1024, v.get("accuracy"), delta, v.get("outcome"),
                             b.get("p50_ci_ms"), b.get("p50_ci_level"), b.get("p50_rounds_ms"), b.get("session")))
    return out, verify, bench


def _rejudged(v: dict, max_drop: float) -> tuple[Outcome, list[str], list[str]]:
    """An int8 verify row's outcome under another --max-drop, from its counts: its changed-answers limit and
    its drop limit both follow --max-drop (`gates.gates`); its other checks stand. Returns the outcome and the
    sentences of the failed and the undecided checks."""
    gate = gates(max_drop)[Precision.int8]
    checks = {d["name"]: Outcome(d["outcome"]) for d in v.get("checks", [])}
    changed = judge_rate("changed answers", v["changed"], v["images"], gate.max_changed)
    judged = [changed, drop_within_changes(judge_drop(v["lost"], v["gained"], v["heldout_images"], max_drop), changed)]
    for j in judged:
        checks[j.name] = j.outcome
    outcome = Outcome.combine(checks.values())
    return (outcome, [j.sentence() for j in judged if j.outcome == Outcome.failed],
            [j.sentence() for j in judged if j.outcome == Outcome.inconclusive])


def _parity(x: Candidate, v: dict | None, c: Constraints, stale: dict) -> str | None:
    """Why `x` fails the parity test on the device benchmarked, or None (`x.outcome` updated when re-judged)."""
    device = c.device or "cpu"
    if v is None:
        return stale.get(x.file, f"not verified on {device} (run edgecls verify --device {device})")
    outcome = Outcome(v.get("outcome", "fail"))
    failures, undecided = v.get("failures") or ["see edgecls verify"], v.get("undecided") or []
    if (c.max_drop is not None and x.precision == "int8" and v.get("heldout_images") and "changed" in v
            and not v.get("error") and not v.get("calibration")):
        outcome, failures, undecided = _rejudged(v, c.max_drop)
        x.outcome = outcome.value
        if outcome == Outcome.failed:
            return "--max-drop: " + "; ".join(failures)
    if outcome == Outcome.failed:
        return "fails parity: " + "; ".join(failures)
    if outcome == Outcome.inconclusive and not c.accept_inconclusive:
        return (f"{x.precision} parity not shown on {v.get('images', '?')} images: "
                + ("; ".join(undecided) or "inconclusive") + f" ({evidence_hint(x.precision)})")
    return None


def evidence_hint(precision: str) -> str:
    """What evidence would decide an inconclusive file, in words."""
    if precision == "int8":
        return ("more images it never saw would decide: --images DIR adds a folder of unlabelled images of the "
                "same kind; or --accept-inconclusive to ship it anyway")
    return "more images would decide (export again to store more reference inputs); or --accept-inconclusive"


def _most_to_decide(cands: list[Candidate]) -> str:
    """'about 381 images would decide' from the reasons of inconclusive files: the fewest that would decide one."""
    import re

    counts = [int(m.replace(",", "")) for x in cands
              for m in re.findall(r"about ([\d,]+) images would decide", x.reason)]
    return (f"about {min(counts):,} images would decide the closest one" if counts
            else "more images would decide them")


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


class Timed(Protocol):
    """What the tie rule reads of a file: a `Candidate` here, a point of `edgecls tune` (`edgecls.tune.select`)."""

    p50_ms: float | None
    p50_ci_ms: list[float] | None
    p50_ci_level: float | None
    p50_rounds_ms: list[float] | None
    session: str | None
    ratio: list[float] | None
    tail_ms: float | None
    size_kb: float
    outcome: str | None


def file_name(x) -> tuple:
    """A file's name in the stable keys below (tune's points add their candidate's name)."""
    return x.file, x.runtime


def ratio_interval(x: Timed, ref: Timed) -> tuple[float, float, float | None, str] | None:
    """The interval of x's p50 over ref's, its level and how it was made: paired per round when both rows come
    from one bench session (round k of each measured side by side), else from the two p50 intervals' ends
    (level at least the sum of their levels less one, where both are known); None without intervals."""
    a, b = x.p50_rounds_ms or [], ref.p50_rounds_ms or []
    if x.session and x.session == ref.session and len(a) == len(b) >= 2:
        lo, hi, level = round_interval([p / q for p, q in zip(a, b)])
        return lo, hi, level, f"paired over {len(a)} rounds"
    if x.p50_ci_ms and ref.p50_ci_ms:
        levels = (x.p50_ci_level, ref.p50_ci_level)
        level = None if None in levels else max(0.0, levels[0] + levels[1] - 1)
        return x.p50_ci_ms[0] / ref.p50_ci_ms[1], x.p50_ci_ms[1] / ref.p50_ci_ms[0], level, "from the two intervals"
    return None


def _level(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "level unknown"


def tie_rank(x: Timed, name: Callable[[Timed], tuple] = file_name) -> tuple:
    """Order within a tie: shown parity first, then the smaller file, the lower tail and p50, the name."""
    return (x.outcome != Outcome.passed.value, x.size_kb, x.tail_ms if x.tail_ms is not None else x.p50_ms,
            x.p50_ms, *name(x))



def tied_with_fastest(alive: list, tie_margin: float,
                      name: Callable[[Timed], tuple] = file_name) -> tuple[Timed, list]:
    """The reference, the fastest of `alive` (lowest p50; then the lower p50 interval's upper end, then `name`: a
    stable key), and the files tied with it: the reference and every file whose p50 is *shown* within `tie_margin`
    percent of its p50 (the upper end of `ratio_interval` at most 1 + margin). Sets each file's `ratio` ([low,
    high, level] of its p50 over the reference's; None for the reference and where no interval exists).
    Membership depends on each file against one reference: the same group whatever the order of `alive`."""
    ref = min(alive, key=lambda x: (x.p50_ms, (x.p50_ci_ms or [0, x.p50_ms])[1], *name(x)))
    bar = 1 + tie_margin / 100
    for x in alive:
        r = ratio_interval(x, ref) if x is not ref else None
        x.ratio = [r[0], r[1], r[2]] if r else None
    return ref, [x for x in alive if x is ref or (x.ratio and x.ratio[1] <= bar)]


def untied_reason(x: Timed, ref: Timed, tie_margin: float, head: str) -> str:
    """Why `x`, outside the tie, lost to the fastest `ref` on latency; `head` says the two p50s in words."""
    r = ratio_interval(x, ref)
    if r is None:
        return (f"not shown within {tie_margin:g}% of the fastest: {head}; no interval to compare "
                "(one round, or an older row: --rounds 6 measures one)")
    if r[0] > 1 + tie_margin / 100:
        return (f"slower beyond noise: {head} (ratio interval {r[0]:.2f}-{r[1]:.2f}x, {r[3]}, "
                f"{_level(r[2])}: more than {tie_margin:g}%)")
    return (f"not shown within {tie_margin:g}% of the fastest: {head} (ratio interval "
            f"{r[0]:.2f}-{r[1]:.2f}x, {r[3]}, {_level(r[2])}); more rounds would tell")


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
    judged = 0  # files whose parity was judged: each could pass falsely
    for name, test in tests:
        for x in alive:
            x.reason = test(x) or ""
        if name == "parity":
            judged = sum(1 for x in alive if x.outcome is not None)
        survivors = [x for x in alive if not x.reason]
        if alive and not survivors:
            ruled_out_by = name
        alive = survivors
    constraints = asdict(c)
    ignored = results.ignored_lines(manifest, "verify") + results.ignored_lines(manifest, "bench")
    level = (f"each file's parity is shown at <= {FALSE_PASS:.1%} false pass; among the {judged} files compared, "
             f"the chance that some file at its limits passes falsely is at most {min(1.0, judged * FALSE_PASS):.1%}"
             if judged else "")
    if not alive:
        if ruled_out_by == "parity" and any("--accept-inconclusive" in x.reason for x in cands):
            need = [x.reason for x in cands if "--accept-inconclusive" in x.reason]
            ruled_out_by = ("parity: no file is shown to pass; "
                            f"{_most_to_decide(cands)}: --images DIR (unlabelled images of the same kind, for "
                            "int8 files) or more labelled images would change that, or --accept-inconclusive to "
                            f"ship the best of the {len(need)} inconclusive files")
        return Decision(constraints, None, cands, ruled_out_by or "no exported artifact", ignored=ignored,
                        level=level)
    ref, group = tied_with_fastest(alive, c.tie_margin)
    chosen = min(group, key=tie_rank)
    for x in alive:
        if x is chosen:
            continue
        if x in group:
            x.reason = f"tied with the chosen {chosen.file} ({x.p50_ms / chosen.p50_ms:.2f}x p50, within noise): " + (
                f"the chosen one passes parity, this one is {x.outcome}" if x.outcome != chosen.outcome
                else f"larger file ({x.size_kb:.1f} KB vs {chosen.size_kb:.1f} KB)" if x.size_kb > chosen.size_kb
                else f"higher {c.percentile} ({x.tail_ms:.3f} ms vs {chosen.tail_ms:.3f} ms)"
                if x.tail_ms is not None and chosen.tail_ms is not None and x.tail_ms > chosen.tail_ms
                else "same size and tail, slower p50" if x.p50_ms > chosen.p50_ms
                else "same size, tail and p50: by name")
            continue
        ci = f" [{x.p50_ci_ms[0]:.3f}-{x.p50_ci_ms[1]:.3f}]" if x.p50_ci_ms else ""
        head = f"p50 {x.p50_ms:.3f} ms{ci}, {x.p50_ms / ref.p50_ms:.2f}x the fastest {ref.file} at batch {c.for_batch}"
        x.reason = untied_reason(x, ref, c.tie_margin, head)
    others = [x for x in group if x is not chosen]
    if not others:
        why = f"the fastest at batch {c.for_batch}; no other qualifying file is shown within {c.tie_margin:g}% of it"
    else:
        names = ", ".join(f"{x.file} ({x.p50_ms / chosen.p50_ms:.2f}x)" for x in sorted(others, key=tie_rank))
        parts = ["a file that passes parity ranks above an inconclusive one"] if any(
            x.outcome != chosen.outcome for x in others) else []
        same = [x for x in others if x.outcome == chosen.outcome]
        if same:
            parts.append("the smaller file" if all(x.size_kb > chosen.size_kb for x in same) else "by size, then tail")
        why = f"tied with {names} (shown within {c.tie_margin:g}% of the fastest): chose {'; '.join(parts)}"
        if chosen.outcome != Outcome.passed.value:
            why += f"; its parity is {chosen.outcome} (--accept-inconclusive), no tied file passes"
    return Decision(constraints, chosen, [x for x in cands if x is not chosen], None,
                    tied=sorted(x.file for x in group), why=why, ignored=ignored, level=level)
