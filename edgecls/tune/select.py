"""Points, the Pareto front and the pick, from the candidates' manifests.

A point is one exported file of one fully trained candidate: its held-out accuracy with a 95% Wilson
interval (held-out splits are small: a few points of accuracy are noise), its latency at the batch
size searched for (this machine's bench rows, or the target device's, `edgecls.tune.target`), and its
size. Only rows bound to the bytes in the bundle count (`edgecls.core.results`).

The pick, among files whose parity is shown and that meet every limit:

1. the most accurate sets the bar; every file whose accuracy interval overlaps its interval is tied
   on accuracy with it;
2. among those, the bench decision's tie rule (`edgecls.bench.decide.tied_with_fastest`, imported, not
   copied): the fastest p50 is the reference, and a file is tied on latency with it when its p50 is
   *shown* within the tie margin of the reference's — the upper end of the interval of their p50 ratio
   (paired per round for files benched in one session, else from the two p50 intervals) is at most
   1 + margin. A file without an interval, or whose interval reaches past the margin, is not tied;
3. among those, the same order as the bench decision: a file whose parity passes above an inconclusive
   one, then the smallest file, the lower tail, the lower p50, then names — so the answer never depends
   on the order candidates ran in.

Every other file gets the reason it lost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..bench.decide import DEFAULT_TIE_MARGIN, tie_rank, tied_with_fastest, untied_reason
from ..core import results
from ..core.stats import wilson

KB = 1024  # the project's KB (decide's size_kb); a MB is 1024 KB


@dataclass(frozen=True)
class Limits:
    max_latency_ms: float | None
    max_size_mb: float | None
    percentile: str = "p90"  # which latency --max-latency bounds
    batch: int = 1
    accept_inconclusive: bool = False
    tie_margin: float = DEFAULT_TIE_MARGIN  # percent

    @property
    def max_size_kb(self) -> float | None:
        return None if self.max_size_mb is None else self.max_size_mb * KB

    def excess(self, tail_ms: float | None, size_kb: float) -> float:
        """How far beyond the limits, as a ratio (1.0: exactly at the limit; below 1: within)."""
        ratios = [size_kb / self.max_size_kb] if self.max_size_kb else []
        if self.max_latency_ms and tail_ms is not None:
            ratios.append(tail_ms / self.max_latency_ms)
        return max(ratios, default=0.0)

    def breaches(self, tail_ms: float | None, size_kb: float) -> list[str]:
        out = []
        if self.max_latency_ms is not None and tail_ms is not None and tail_ms > self.max_latency_ms:
            out.append(f"{self.percentile} {tail_ms:.3f} ms > --max-latency {self.max_latency_ms:g} ms "
                       f"(+{100 * (tail_ms / self.max_latency_ms - 1):.0f}%)")
        if self.max_size_kb is not None and size_kb > self.max_size_kb:
            out.append(f"{size_kb / KB:.2f} MB > --max-size {self.max_size_mb:g} MB "
                       f"(+{100 * (size_kb / self.max_size_kb - 1):.0f}%)")
        return out


@dataclass
class Point:
    candidate: str
    file: str
    runtime: str
    precision: str
    size_kb: float
    accuracy: float | None = None
    heldout_images: int = 0
    accuracy_ci: list[float] | None = None
    outcome: str | None = None  # parity: pass, inconclusive, fail; None: not verified
    p50_ms: float | None = None
    p50_ci_ms: list[float] | None = None
    p50_ci_level: float | None = None  # the p50 interval's level (None: within one process)
    p50_rounds_ms: list[float] | None = None  # each bench round's p50: paired with files of the same session
    session: str | None = None  # the bench session that measured it
    tail_ms: float | None = None
    ratio: list[float] | None = None  # [low, high, level] of its p50 over the fastest tied-on-accuracy file's
    latency_from: str = "this machine"  # or the target device, and which file it measured
    sha256: str = ""
    qualifies: bool = False
    reason: str = ""  # why it does not qualify, or why it lost ("" for the pick)

    @property
    def label(self) -> str:
        return f"{self.candidate} {self.file}"

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_interval(accuracy: float, n: int) -> list[float]:
    lo, hi = wilson(round(accuracy * n), n)
    return [round(lo, 4), round(hi, 4)]


def points(candidate: str, manifest: dict, limits: Limits, target: dict | None = None) -> list[Point]:
    """Every exported file of a candidate's bundle as a point, judged against `limits`. `target` maps a
    file to a bench row measured on the target device for it (`edgecls.tune.target`), with the source
    in words under ``"_from"``."""
    verify = {r["file"]: r for r in results.current(manifest, "verify")
              if r.get("runtime") in (None, "", r.get("format"))}  # the file's own runtime
    bench = {(r["file"], r["runtime"]): r for r in results.current(manifest, "bench") if r["batch"] == limits.batch}
    out = []
    for a in manifest["artifacts"]:
        if a["format"] == "keras":
            continue
        v = verify.get(a["file"])
        p = Point(candidate, a["file"], a["format"], a["precision"], a.get("total_bytes", a["bytes"]) / KB,
                  sha256=a["sha256"])
        if v is not None and v.get("accuracy") is not None and v.get("heldout_images"):
            p.accuracy, p.heldout_images = v["accuracy"], v["heldout_images"]
            p.accuracy_ci = accuracy_interval(v["accuracy"], v["heldout_images"])
        p.outcome = v.get("outcome") if v else None
        b = (target or {}).get(a["file"])
        if b is not None:
            p.latency_from = b["_from"]
        else:
            b = bench.get((a["file"], a["format"]))
        if b is not None:
            p.p50_ms, p.p50_ci_ms, p.tail_ms = b["p50_ms"], b.get("p50_ci_ms"), b.get(f"{limits.percentile}_ms")
            p.p50_ci_level, p.p50_rounds_ms, p.session = b.get("p50_ci_level"), b.get("p50_rounds_ms"), b.get("session")
        p.reason = _unqualified(p, v, b, limits)
        p.qualifies = not p.reason
        out.append(p)
    return out


def _unqualified(p: Point, v: dict | None, b: dict | None, limits: Limits) -> str:
    if v is None:
        return "not verified"
    if p.outcome == "fail":
        return "fails parity: " + "; ".join(v.get("failures") or ["see edgecls verify"])
    if p.outcome != "pass" and not limits.accept_inconclusive:
        return (f"parity not shown on {v.get('images', '?')} images: "
                + "; ".join(v.get("undecided") or ["inconclusive"]) + " (--accept-inconclusive to ship it anyway)")
    if p.accuracy is None:
        return "no held-out accuracy (verified without labels)"
    if b is None or p.p50_ms is None:
        return f"not benchmarked at batch {limits.batch}"
    if b.get("outputs_ok") is False:
        return "its timed outputs differ from its verified outputs: the timing is not of the same work"
    if limits.max_latency_ms is not None and b.get(f"{limits.percentile}_ok") is False:
        return f"too few timed runs for {limits.percentile}"
    breaches = limits.breaches(p.tail_ms, p.size_kb)
    return "; ".join(breaches)


def front(pts: list[Point]) -> list[Point]:
    """The Pareto front of the verified, benchmarked points: none is beaten on accuracy, p50 and size at once."""
    usable = [p for p in pts if p.accuracy is not None and p.p50_ms is not None and p.outcome not in (None, "fail")]

    def beats(q: Point, p: Point) -> bool:
        no_worse = q.accuracy >= p.accuracy and q.p50_ms <= p.p50_ms and q.size_kb <= p.size_kb
        return no_worse and (q.accuracy > p.accuracy or q.p50_ms < p.p50_ms or q.size_kb < p.size_kb)

    return sorted((p for p in usable if not any(beats(q, p) for q in usable)), key=lambda p: (p.p50_ms, p.label))


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    return bool(a and b and a[0] <= b[1] and b[0] <= a[1])


@dataclass
class Pick:
    chosen: Point | None
    tied_accuracy: list[str] = field(default_factory=list)  # labels tied on accuracy with the most accurate
    why: str = ""


def _name(p: Point) -> tuple:
    return p.candidate, p.file, p.runtime


def pick(pts: list[Point], limits: Limits) -> Pick:
    """The most accurate qualifying file (ties on accuracy: the faster, ties on latency — the bench decision's
    rule — the smaller); every other qualifying point's `reason` says why it lost."""
    ok = sorted((p for p in pts if p.qualifies), key=_name)
    if not ok:
        return Pick(None)
    best = max(ok, key=lambda p: (p.accuracy, -p.p50_ms, -p.size_kb))
    tied = [p for p in ok if p is best or _overlap(p.accuracy_ci, best.accuracy_ci)]
    fastest, quick = tied_with_fastest(tied, limits.tie_margin, _name)
    chosen = min(quick, key=lambda p: tie_rank(p, _name))
    ci = "[{0:.3f}-{1:.3f}]".format
    for p in ok:
        if p is chosen:
            continue
        if p not in tied:
            p.reason = (f"less accurate beyond noise: {p.accuracy:.3f} {ci(*p.accuracy_ci)} vs {best.accuracy:.3f} "
                        f"{ci(*best.accuracy_ci)} ({best.label})")
        elif p not in quick:
            pci = f" {ci(*p.p50_ci_ms)}" if p.p50_ci_ms else ""
            head = f"p50 {p.p50_ms:.3f} ms{pci}, {p.p50_ms / fastest.p50_ms:.2f}x the fastest {fastest.label}"
            p.reason = ("tied on accuracy with the pick (95% intervals overlap); "
                        + untied_reason(p, fastest, limits.tie_margin, head))
        elif p.outcome != chosen.outcome:
            p.reason = f"tied on accuracy and latency with the pick: the pick passes parity, this one is {p.outcome}"
        elif p.size_kb > chosen.size_kb:
            p.reason = (f"tied on accuracy and latency with the pick: larger file ({p.size_kb:.1f} KB vs "
                        f"{chosen.size_kb:.1f} KB)")
        else:
            p.reason = "tied on accuracy, latency and size with the pick: higher tail or p50"
    acc = f"{chosen.accuracy:.3f} {ci(*chosen.accuracy_ci)} on {chosen.heldout_images} held-out images"
    lead = (f"the most accurate qualifying file ({acc})" if chosen is best else
            f"{acc}, tied on accuracy with the most accurate, {best.label} ({best.accuracy:.3f} "
            f"{ci(*best.accuracy_ci)})")
    if len(tied) == 1:
        why = lead + ", ahead of every other beyond noise"
    else:
        why = (f"{lead}; of the {len(tied)} files tied on accuracy (95% intervals overlap), "
               + (f"the fastest (no other shown within {limits.tie_margin:g}% of it)" if len(quick) == 1 else
                  f"the smallest of the {len(quick)} tied on latency (shown within {limits.tie_margin:g}% of the "
                  "fastest)" + ("; a file that passes parity ranks above an inconclusive one"
                                if any(p.outcome != chosen.outcome for p in quick) else "")))
    return Pick(chosen, [p.label for p in tied], why)


def closest(pts: list[Point], limits: Limits) -> str:
    """When nothing qualifies: the file nearest the limits and by how much (or the first reason)."""
    measured = [p for p in pts if p.p50_ms is not None and p.reason == "; ".join(limits.breaches(p.tail_ms,
                                                                                                  p.size_kb))]
    if measured:
        p = min(measured, key=lambda p: (limits.excess(p.tail_ms, p.size_kb), p.label))
        return f"closest: {p.label} ({p.runtime} {p.precision}): {p.reason}"
    if pts:
        p = min(pts, key=lambda p: p.label)
        return f"e.g. {p.label}: {p.reason}"
    return "no candidate was trained in full"
