"""The shipping decision: one recommended artifact under the user's constraints, with a reason for every other.

Fed by the verify and bench results in the manifest. Among the exported artifacts that pass their
parity gate, the fastest (p50) at the chosen batch size wins, after the constraints: a latency
ceiling on p90 or p99, a size ceiling, an accuracy-drop ceiling, a set of runtimes. Every other
artifact gets the first reason it was not chosen. When nothing qualifies, the constraint that
ruled the last candidates out is named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import EdgeclsError
from .names import Runtime, parse


@dataclass
class Constraints:
    """Options of the recommendation (`--for-batch`, `--max-latency`, `--percentile`, `--max-size`,
    `--max-drop`, `--runtime`)."""

    for_batch: int | None = None  # None: 1, or the smallest measured batch size when 1 is not measured
    max_latency_ms: float | None = None
    percentile: str = "p90"  # which latency --max-latency bounds: p90 or p99
    max_size_kb: float | None = None
    max_drop: float | None = None  # accuracy points vs Keras (point estimate on the held-out images)
    runtimes: list[Runtime] = field(default_factory=list)  # empty: any

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
        if self.max_drop is not None and not 0 <= self.max_drop <= 100:
            raise EdgeclsError(f"--max-drop {self.max_drop}: must be between 0 and 100 accuracy points")
        self.runtimes = parse(Runtime, self.runtimes, "--runtime")


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
    reason: str = ""  # why it was not chosen ("" for the chosen one)


@dataclass
class Decision:
    constraints: dict
    chosen: Candidate | None
    others: list[Candidate]
    ruled_out_by: str | None = None  # when nothing qualifies: the constraint that removed the last ones

    @property
    def found(self) -> bool:
        return self.chosen is not None

    def to_dict(self) -> dict:
        return asdict(self) | {"found": self.found}


def _candidates(manifest: dict, c: Constraints) -> list[Candidate]:
    verify = {(r["format"], r["precision"]): r for r in manifest.get("verify", {}).get("rows", [])}
    bench = {(r["runtime"], r["precision"]): r for r in manifest.get("bench", {}).get("rows", [])
             if r["batch"] == c.for_batch}
    out = []
    for a in manifest["artifacts"]:
        if a["format"] == Runtime.keras:
            continue
        v, b = verify.get((a["format"], a["precision"])), bench.get((a["format"], a["precision"]))
        out.append(Candidate(a["format"], a["precision"], a["file"], b and b["p50_ms"],
                             b and b[f"{c.percentile}_ms"], a.get("total_bytes", a["bytes"]) / 1024,
                             v and v.get("accuracy"), v and v.get("delta_points")))
    return out


def decide(manifest: dict, c: Constraints) -> Decision:
    """The recommendation for a bundle's manifest (with `verify` and `bench` results) under `c`."""
    c.validate()
    verify = {(r["format"], r["precision"]): r for r in manifest.get("verify", {}).get("rows", [])}
    cands = _candidates(manifest, c)
    # each test: (constraint name, reason if the candidate fails it, or None)
    tests = [
        ("runtime", lambda x: f"runtime {x.runtime} not among --runtime {','.join(c.runtimes)}"
         if c.runtimes and x.runtime not in c.runtimes else None),
        ("parity", lambda x: "not verified (run edgecls verify)" if (x.runtime, x.precision) not in verify
         else "fails parity: " + "; ".join(verify[(x.runtime, x.precision)]["failures"])
         if not verify[(x.runtime, x.precision)]["passed"] else None),
        ("bench", lambda x: f"not benchmarked at batch {c.for_batch}" if x.p50_ms is None else None),
        ("--max-drop", lambda x: f"loses {-x.delta_points:.2f} accuracy points > --max-drop {c.max_drop:g}"
         if c.max_drop is not None and x.delta_points is not None and -x.delta_points > c.max_drop else None),
        ("--max-size", lambda x: f"{x.size_kb:.1f} KB > --max-size {c.max_size_kb:g} KB"
         if c.max_size_kb is not None and x.size_kb > c.max_size_kb else None),
        ("--max-latency", lambda x: f"{c.percentile} {x.tail_ms:.3f} ms > --max-latency {c.max_latency_ms:g} ms"
         if c.max_latency_ms is not None and x.tail_ms is not None and x.tail_ms > c.max_latency_ms else None),
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
    if not alive:
        return Decision(constraints, None, cands, ruled_out_by or "no exported artifact")
    chosen = min(alive, key=lambda x: x.p50_ms)
    for x in alive:
        if x is not chosen:
            x.reason = (f"slower: p50 {x.p50_ms:.3f} ms, {x.p50_ms / chosen.p50_ms:.2f}x the chosen "
                        f"{chosen.p50_ms:.3f} ms at batch {c.for_batch}")
    return Decision(constraints, chosen, [x for x in cands if x is not chosen])
