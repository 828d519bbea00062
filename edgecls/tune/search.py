"""The search: screen every candidate cheaply, train in full only those that can still win, pick.

Three rungs, each a call of the library stages (never a copy of them):

1. **screen** — every candidate trained for one epoch on a small subset, exported (every format, float
   and int8) and benchmarked once. A network's latency and size do not depend on its weights' values,
   so a candidate none of whose files can meet the limits is dropped here, before any real training.
2. **short** — when the budget cannot train every survivor in full: each trained for a quarter of its
   epochs; the more accurate half (successive halving, eta 2) goes on.
3. **full** — `edgecls.pipeline.run`: train, export, verify, bench, report, exactly as `edgecls pipeline`.

Each unit of work runs in a fresh process of its own (``TuneConfig.isolate``): TensorFlow's allocator keeps a
process's peak memory until the process ends, and the units' peaks differ by candidate (a screen of lite0 @224
reached over 20 GB before Keras calls were batched by the model's size); a unit's process ends with the unit,
so the search holds one unit's memory at a time.

Every unit of work writes its result atomically when it finishes (``<work>/results/*.json``), so
Ctrl-C or a kill loses only the unit under way, and running again with the same arguments reuses the
rest (the limits may change between runs: they only judge). Before each unit its cost is estimated from
what the screen measured; a unit that would overrun ``--budget`` is not started.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..bench.latency import ROUNDS_FOR_LEVEL
from ..core.errors import CheckFailed, EdgeclsError, RunFailed
from ..core.files import atomic_write, ensure_writable
from ..core.hooks import Hooks
from ..core.names import MAX_BATCH
from . import select, space, target
from .space import Candidate

MIN_HELDOUT = 30  # held-out images below which no two candidates' accuracies can be told apart
SCREEN_IMAGES = 64  # images of the screening subset (at least 12 a class)
SCREEN_SLACK = 0.10  # a screened file within 10% of --max-latency stays (one round of timing is noisy)
SHORT_FRACTION = 4  # the short rung trains for 1/4 of the epochs
ETA = 2  # successive halving keeps the better 1/ETA


@dataclass
class TuneConfig:
    """Options of `edgecls tune`."""

    data: str
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    batch: int = 1
    budget_s: float = 1200.0
    out: Path | None = None
    candidates: list[str] | None = None  # ARCH[@VALUE]; None: edgecls.tune.space.default_space()
    formats: list[str] = field(default_factory=lambda: ["onnx", "tflite", "openvino"])
    percentile: str = "p90"
    max_drop: float = 1.0
    accept_inconclusive: bool = False
    latency_from: list[Path] = field(default_factory=list)
    screen_only: bool = False
    seed: int = 0
    image_size: int | None = None
    epochs: int | None = None  # full training's epochs (None: the plan's, as `edgecls train`)
    #: bench rounds of each fully trained candidate (fresh processes, interleaved), as `edgecls bench --rounds`:
    #: 6 give each p50 a 96.9% interval; fewer are faster and tie fewer files (a tie must be shown)
    rounds: int = ROUNDS_FOR_LEVEL
    work: Path | None = None  # default: <out>.tune beside the bundle
    #: each unit of work (a screen, a short or a full training) in a fresh process, so its memory goes when it
    #: ends; False runs them in this process (tests that patch the stages)
    isolate: bool = True

    def validate(self) -> None:
        from ..core.gates import check_max_drop
        from ..export.base import FORMATS

        if self.max_latency_ms is None and self.max_size_mb is None and not self.screen_only:
            raise EdgeclsError("--max-latency / --max-size: give at least one limit (the device's), e.g. "
                               "--max-latency 5 --max-size 2")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise EdgeclsError(f"--max-latency {self.max_latency_ms:g}: must be a positive number of milliseconds")
        if self.max_size_mb is not None and not self.max_size_mb > 0:
            raise EdgeclsError(f"--max-size {self.max_size_mb:g}: must be a positive number of MB")
        if not 1 <= self.batch <= MAX_BATCH:
            raise EdgeclsError(f"--batch {self.batch}: must be between 1 and {MAX_BATCH}")
        if not self.budget_s > 0:
            raise EdgeclsError(f"--budget {self.budget_s:g}s: must be more than 0")
        if self.percentile not in ("p90", "p99"):
            raise EdgeclsError(f"--percentile {self.percentile}: choose p90 or p99")
        check_max_drop(self.max_drop)
        if self.rounds < 1:
            raise EdgeclsError(f"--rounds {self.rounds}: must be at least 1 ({ROUNDS_FOR_LEVEL} give each p50 a "
                               "96.9% interval)")
        for f in self.formats:
            if f not in FORMATS:
                raise EdgeclsError(f"--format {f!r}: unknown format (choose from {', '.join(FORMATS.names())})")
        if not self.formats:
            raise EdgeclsError("--format: name at least one format")

    def out_dir(self, data_name: str) -> Path:
        return Path(self.out) if self.out else Path("models") / f"{data_name}-tune"

    def work_dir(self, out: Path) -> Path:
        return Path(self.work) if self.work else out.parent / f"{out.name}.tune"

    def limits(self) -> select.Limits:
        from ..bench.decide import DEFAULT_TIE_MARGIN

        return select.Limits(self.max_latency_ms, self.max_size_mb, self.percentile, self.batch,
                             self.accept_inconclusive, DEFAULT_TIE_MARGIN)


@dataclass
class TuneResult:
    summary: dict  # what tune.json holds
    bundle: Path | None  # the picked candidate's bundle, written at --out (None: nothing picked / screen only)
    tune_json: Path


class _Clock:
    def __init__(self, budget: float):
        self.t0, self.budget = time.monotonic(), budget

    @property
    def spent(self) -> float:
        return time.monotonic() - self.t0

    @property
    def left(self) -> float:
        return self.budget - self.spent


def _dataset_facts(cfg: TuneConfig):
    """(data, split) of the folder, and a refusal when its held-out part is too small to compare candidates."""
    from ..train import sources, splits

    data = sources.load(cfg.data, image_size=cfg.image_size)
    split = splits.split(data, seed=cfg.seed)
    n = len(split.test)
    if n < MIN_HELDOUT:
        half = 100 * 1.96 * 0.5 / math.sqrt(max(n, 1))
        need = math.ceil(MIN_HELDOUT / 0.2)
        raise EdgeclsError(
            f"--data {cfg.data}: too small to compare candidates: {len(data)} images leave {n} held-out images, "
            f"on which a 95% accuracy interval spans about ±{min(half, 50):.0f} points — no two candidates could be "
            f"told apart. Add images (about {need} or more, for {MIN_HELDOUT} held out), or train one "
            "architecture with 'edgecls pipeline --arch ...'")
    return data, split


class _Store:
    """One JSON result per unit of work, written atomically when the unit ends."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.dir = self.work / "results"

    def path(self, rung: str, key: str) -> Path:
        return self.dir / f"{rung}-{key}.json"

    def get(self, rung: str, key: str) -> dict | None:
        """A finished unit's result (its bundle path made whole again), or None."""
        p = self.path(rung, key)
        try:
            r = json.loads(p.read_text()) if p.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None  # cannot happen through atomic_write; a hand-damaged file is redone
        if r is None or r.get("status") != "done" or not (self.work / r["bundle"]).is_dir():
            return None
        return r | {"bundle": str(self.work / r["bundle"])}

    def put(self, rung: str, key: str, result: dict) -> dict:
        """Record a finished unit (the bundle path relative to the work folder: the folder may move)."""
        rel = os.path.relpath(Path(result["bundle"]).resolve(), self.work.resolve())
        atomic_write(self.path(rung, key), json.dumps(result | {"bundle": rel, "status": "done"}, indent=1,
                                                      default=str) + "\n")
        return result


def _manifest(bundle: Path) -> dict:
    from ..core.bundle import Bundle

    return Bundle.open(bundle).manifest


def _interrupted_train(result) -> None:
    if getattr(result, "interrupted", False):  # train keeps an interrupted bundle; tune does not count it
        raise KeyboardInterrupt


def _unit_here(spec: dict) -> dict:
    """One unit of work in this process (a fresh one's entry point): its result, with the process's peak memory."""
    from ..bench.timing import peak_rss_mb

    if spec.get("isolated"):
        _die_with_parent()
    res = _UNITS[spec["rung"]](spec["cfg"], *spec["args"])
    return res | {"peak_rss_mb": round(peak_rss_mb()), "pid": os.getpid()}


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the search that started it dies (kill -9), so that a rerun never
    works on a candidate's folder beside an orphan still writing it."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed search's unit runs to its end; its result is not recorded


def _unit(cfg: TuneConfig, rung: str, *args) -> dict:
    """Run one unit of work (`rung` of `_UNITS`), in a fresh process unless ``cfg.isolate`` is off. Its errors
    (and a Ctrl-C or an interrupted training: KeyboardInterrupt) are raised here as they were there."""
    spec = {"rung": rung, "cfg": cfg, "args": args, "isolated": cfg.isolate}
    if not cfg.isolate:
        return _unit_here(spec)
    from concurrent.futures.process import BrokenProcessPool

    from ..bench.timing import in_fresh_process

    try:
        return in_fresh_process(_unit_here, spec)
    except BrokenProcessPool as e:
        raise UnitLost(f"its {rung} run's process was killed before it ended (the kernel's out-of-memory killer, "
                       "or a signal)") from e


class UnitLost(RunFailed):
    """A unit's process was killed (out of memory, a signal): that candidate fails, the search goes on."""


def _attempt(cfg: TuneConfig, store: _Store, rung: str, key: str, rec: dict, c: Candidate, *args,
             **extra) -> tuple[dict | None, str]:
    """Run candidate `c`'s unit of `rung` (in its folder ``<work>/<rung>/<key>``), store its result (with `extra`)
    and add its cost to `rec`. When its process is lost, record the candidate as failed and return (None, its
    progress line)."""
    t0 = time.monotonic()
    try:
        res = store.put(rung, key, _unit(cfg, rung, c, store.work / rung / key, *args) | extra)
    except UnitLost as e:
        rec["cost_s"] += time.monotonic() - t0
        rec["status"], rec["why"] = "failed", f"{e}; running the search again tries it again"
        return None, "failed: " + rec["why"]
    rec["cost_s"] += res["seconds"]
    return res, ""


def _screen(cfg: TuneConfig, c: Candidate, bundle: Path, classes: int) -> dict:
    """One epoch on a small subset, every format exported (float, int8 by the default recipe), benched once."""
    from ..bench.decide import Constraints
    from ..bench.latency import MIN_RUNS
    from ..bench.measure import BenchConfig, bench
    from ..export import ExportConfig, export
    from ..train.fit import TrainConfig, train

    t0 = time.monotonic()
    t = train(TrainConfig(data=cfg.data, epochs=2, limit=max(SCREEN_IMAGES, 12 * classes), seed=cfg.seed,
                          image_size=cfg.image_size, out=bundle, **c.train_options()))
    _interrupted_train(t)
    t1 = time.monotonic()
    e = export(bundle, ExportConfig(formats=list(cfg.formats), int8=True, max_drop=100, calib_size=32,
                                    reference_size=16))
    t2 = time.monotonic()
    bench(bundle, BenchConfig(runtimes=list(cfg.formats), batches=[cfg.batch], rounds=1, warmup=3, warmup_time=0.05,
                              min_runs=MIN_RUNS["p90"], min_time=0.1, constraints=Constraints(for_batch=cfg.batch)))
    t3 = time.monotonic()
    tr, n = t.manifest["training"], sum(t.manifest["dataset"]["counts"]["train"].values())
    # the last epoch's speed: the first one also traces and compiles the graph (a fixed cost, kept apart)
    last = t.history[-1]["seconds"]
    return {"bundle": str(bundle), "train_s": t1 - t0, "fit_s": tr["seconds"], "last_epoch_s": last,
            "epochs": len(t.history), "export_s": t2 - t1, "bench_s": t3 - t2, "seconds": t3 - t0,
            "images_per_s": n / max(last, 1e-6), "failures": e.failures}


def _screen_files(manifest: dict, limits: select.Limits, target_rows: dict) -> list[dict]:
    """The screened files: size and latency (the target's where bound), and whether they could meet the limits."""
    from ..core import results

    bench = {(r["file"], r["runtime"]): r for r in results.current(manifest, "bench") if r["batch"] == limits.batch}
    out = []
    for a in manifest["artifacts"]:
        if a["format"] == "keras":
            continue
        row = target_rows.get(a["file"]) or bench.get((a["file"], a["format"]))
        if row is None:
            continue
        size = a.get("total_bytes", a["bytes"]) / select.KB
        tail = row.get(f"{limits.percentile}_ms")
        slack = dataclasses.replace(limits, max_latency_ms=None if limits.max_latency_ms is None
                                    else limits.max_latency_ms * (1 + SCREEN_SLACK))
        out.append({"file": a["file"], "runtime": a["format"], "precision": a["precision"], "size_kb": round(size, 1),
                    "p50_ms": row["p50_ms"], "tail_ms": tail, "latency_from": row.get("_from", "this machine"),
                    "fits": not slack.breaches(tail, size), "breaches": limits.breaches(tail, size),
                    "excess": limits.excess(tail, size)})
    return out


def _plan_images(cfg: TuneConfig, c: Candidate, split, epochs: int | None) -> tuple[int, int]:
    """(training images seen, epochs per phase) of a candidate's training on the whole split."""
    from ..train.models import pretrained
    from ..train.plan import make_plan, make_transfer_plan

    facts = pretrained(c.arch)
    if facts is not None:
        p = make_transfer_plan(len(split.train), len(split.val), lr=3e-3, epochs=epochs, blocks=facts.blocks)
        per_phase = max(ph.epochs for ph in p.phases)
    else:
        p = make_plan(len(split.train), len(split.val), epochs=epochs)
        per_phase = p.epochs
    return p.total_steps * p.batch_size, per_phase


def _estimate(screen: dict, images: int, full: bool, rounds: int = ROUNDS_FOR_LEVEL) -> float:
    """Seconds a rung will take, from what the candidate's screen measured (training speed; export and bench:
    the screen's one round of bench, times 3.5 for the full run's six rounds, in proportion for others)."""
    overhead = max(0.0, screen["train_s"] - screen["epochs"] * screen["last_epoch_s"])  # set-up, compiling
    fit = images / max(screen["images_per_s"], 1e-6)
    if not full:
        return overhead + fit
    return overhead + fit + 2.0 * screen["export_s"] + 3.5 * max(rounds, 1) / ROUNDS_FOR_LEVEL * screen["bench_s"]


def _full(cfg: TuneConfig, c: Candidate, bundle: Path) -> dict:
    """The pipeline, as `edgecls pipeline` runs it, under the limits."""
    from ..bench.decide import Constraints
    from ..bench.latency import MIN_RUNS
    from ..export import ExportConfig
    from ..pipeline import PipelineConfig, run
    from ..train.fit import TrainConfig

    class Watch(Hooks):
        def stage(self, name, result):
            if name == "train":
                _interrupted_train(result)

    defaults = PipelineConfig()
    t0 = time.monotonic()
    cfg_ = PipelineConfig(
        train=TrainConfig(data=cfg.data, epochs=cfg.epochs, seed=cfg.seed, image_size=cfg.image_size, out=bundle,
                          **c.train_options()),
        export=ExportConfig(formats=list(cfg.formats), int8=True),
        bench=dataclasses.replace(defaults.bench, runtimes=list(cfg.formats), batches=[cfg.batch], rounds=cfg.rounds,
                                  min_runs=max(defaults.bench.min_runs, -(-MIN_RUNS[cfg.percentile] // cfg.rounds)),
                                  constraints=Constraints(cfg.batch, cfg.max_latency_ms, cfg.percentile,
                                                          None if cfg.max_size_mb is None
                                                          else cfg.max_size_mb * select.KB, cfg.max_drop,
                                                          accept_inconclusive=cfg.accept_inconclusive)),
        max_drop=cfg.max_drop)
    r = run(cfg_, hooks=Watch())
    return {"bundle": str(bundle), "seconds": time.monotonic() - t0, "accuracy": r.train.manifest["metrics"]["test"]
            ["accuracy"], "export_failures": r.export.failures, "decision": (r.bench.decision.chosen.file
                                                                             if r.bench.decision.found else None)}


def _short(cfg: TuneConfig, c: Candidate, bundle: Path, epochs: int) -> dict:
    from ..train.fit import TrainConfig, train

    t0 = time.monotonic()
    t = train(TrainConfig(data=cfg.data, epochs=epochs, seed=cfg.seed, image_size=cfg.image_size, out=bundle,
                          **c.train_options()))
    _interrupted_train(t)
    test = t.manifest["metrics"]["test"]
    return {"bundle": str(bundle), "seconds": time.monotonic() - t0, "epochs": epochs, "accuracy": test["accuracy"],
            "images": test["images"],
            "accuracy_ci": select.accuracy_interval(test["accuracy"], test["images"])}


_UNITS = {"screen": _screen, "short": _short, "full": _full}


def _existing_bundles(store: _Store, keys: dict[str, str]) -> dict[str, dict]:
    """Candidate bundles finished in earlier runs of this search: "rung name" -> manifest."""
    out = {}
    for name, key in keys.items():
        for rung in ("screen", "full"):
            r = store.get(rung, key)
            if r:
                try:
                    out[f"{rung} {name}"] = _manifest(Path(r["bundle"]))
                except EdgeclsError:
                    pass
    return out


def tune(cfg: TuneConfig, *, hooks: Hooks | None = None) -> TuneResult:
    """Search the candidates under `cfg`'s limits and budget; write the picked candidate's bundle at
    ``cfg.out`` with ``tune.json`` (every candidate, the front, the pick) and the front in its report.
    `hooks` (`edgecls.core.hooks.Hooks`) hears each finished `candidate` of each rung, then the `front`.

    Raises:
        EdgeclsError: bad options, a folder too small to compare candidates, a budget too small for one
            candidate, a --latency-from file for other bytes (exit 2; nothing written at --out).
        CheckFailed: no candidate meets the limits (exit 1; the closest is named, tune.json written to the
            work folder).
    """
    from . import answer

    hooks = hooks or Hooks()
    cfg.validate()
    clock = _Clock(cfg.budget_s)
    cands = space.space(cfg.candidates)
    if not cands:
        raise EdgeclsError("--candidates: no candidate to search (no architecture is available)")
    data, split = _dataset_facts(cfg)
    out = cfg.out_dir(Path(cfg.data).resolve().name if data.name == "folder" else data.name)
    ensure_writable(out)
    work = cfg.work_dir(out)
    store = _Store(work)
    context = {"data": str(Path(cfg.data).resolve()) if data.name == "folder" else cfg.data, "images": len(data),
               "classes": data.classes, "seed": cfg.seed, "image_size": cfg.image_size,
               "formats": sorted(cfg.formats), "batch": cfg.batch, "epochs": cfg.epochs, "rounds": cfg.rounds}
    keys = {c.name: c.key(context) for c in cands}
    limits = cfg.limits()
    targets = target.TargetRows()
    if cfg.latency_from:
        have = _existing_bundles(store, keys)
        if not have:
            raise EdgeclsError(f"--latency-from: no candidate exported yet under {work}: run 'edgecls tune ... "
                               "--screen-only' first, bench its exports on the target (docs/tune.md), then pass "
                               "the JSON files")
        targets = target.load(cfg.latency_from, have)
    record: dict[str, dict] = {c.name: {"candidate": c.name, "arch": c.arch, "width": c.width,
                                        "backbone_size": c.backbone_size, "cost_s": 0.0} for c in cands}

    def target_for(manifest: dict, where: str) -> dict:
        return targets.for_bundle(manifest, cfg.batch, where)

    # rung 1: screen
    alive: list[Candidate] = []
    screens: dict[str, dict] = {}
    for i, c in enumerate(cands):
        key, rec = keys[c.name], record[c.name]
        res = store.get("screen", key)
        if res is None:
            est = max((s["seconds"] for s in screens.values()), default=0.0)
            # keep room to train the cheapest survivor so far in full: an answer from fewer candidates beats
            # every candidate screened and none verified
            fulls = [a for a in alive if store.get("full", keys[a.name])]
            reserve = 0.0 if cfg.screen_only or fulls else min(
                (_estimate(screens[a.name], _plan_images(cfg, a, split, cfg.epochs)[0], True, cfg.rounds)
                 for a in alive),
                default=0.0)
            if screens and clock.spent + est + reserve > cfg.budget_s:
                rec["status"], rec["why"] = "not screened", (
                    f"the budget left ({max(clock.left, 0):.0f} s) is less than a screen's cost (~{est:.0f} s)"
                    + (f" plus the full run of the cheapest survivor (~{reserve:.0f} s)" if reserve else ""))
                hooks.candidate("screen", c.name, i + 1, len(cands) - i - 1, "not screened: " + rec["why"])
                continue
            res, lost = _attempt(cfg, store, "screen", key, rec, c, len(data.classes))
            if res is None:
                hooks.candidate("screen", c.name, i + 1, len(cands) - i - 1, lost)
                continue
        screens[c.name] = res
        m = _manifest(Path(res["bundle"]))
        files = _screen_files(m, limits if not cfg.screen_only else dataclasses.replace(limits, max_latency_ms=None),
                              target_for(m, "screening export"))
        rec["screen"] = {"seconds": round(res["seconds"], 1), "files": files}
        if any(f["fits"] for f in files):
            alive.append(c)
            best = min((f for f in files if f["fits"]), key=lambda f: f["p50_ms"])
            line = f"can meet the limits ({best['runtime']} {best['precision']}: p50 {best['p50_ms']:.3f} ms, " \
                   f"{best['size_kb']:.0f} KB)"
        else:
            near = min(files, key=lambda f: f["excess"]) if files else None
            rec["status"] = "screened out"
            rec["why"] = ("no file can meet the limits even untrained (latency and size do not depend on training): "
                          + (f"the nearest, {near['runtime']} {near['precision']}: {'; '.join(near['breaches'])}"
                             if near else "nothing exported: " + "; ".join(x["error"] for x in res["failures"])))
            line = "screened out: " + rec["why"]
        hooks.candidate("screen", c.name, i + 1, len(cands) - i - 1, line)
    if cfg.screen_only:
        return answer.screen_only(cfg, work, record, screens, clock)
    if not alive:
        _all_lost(record)
        if not any(r.get("status") == "screened out" for r in record.values()):
            raise EdgeclsError(f"--budget {cfg.budget_s:g}s: too small to screen the candidates")
        summary = answer.summary(cfg, record, [], None, clock, targets)
        path = answer.write_work_summary(work, summary)
        nearest = min((f | {"candidate": n} for n, r in record.items() for f in r.get("screen", {}).get("files", [])),
                      key=lambda f: f["excess"], default=None)
        unscreened = sum(r.get("status") == "not screened" for r in record.values())
        raise CheckFailed("no candidate can meet the limits" + (f" ({unscreened} not screened: budget)" if unscreened
                                                                 else "") + (
            f": the closest, {nearest['candidate']} {nearest['runtime']} {nearest['precision']} (untrained), "
            f"{'; '.join(nearest['breaches'])}" if nearest else "") + f" (every candidate in {path})")

    # rung 2 (only when the budget cannot train every survivor in full): short training, keep the better half
    sizes = {c.name: _plan_images(cfg, c, split, cfg.epochs) for c in alive}
    full_est = {c.name: _estimate(screens[c.name], sizes[c.name][0], True, cfg.rounds) for c in alive}
    done_full = {c.name for c in alive if store.get("full", keys[c.name])}
    if not done_full:
        _check_budget_for_one(cfg, alive, full_est, clock)
    todo = [c for c in alive if c.name not in done_full]
    finals = list(alive)
    if todo and sum(full_est[c.name] for c in todo) > clock.left:
        finals = _halve(cfg, alive, todo, done_full, keys, store, screens, sizes, full_est, record, clock, hooks)

    # rung 3: the pipeline, in full
    pts: list[select.Point] = []
    finals.sort(key=lambda c: full_est[c.name])
    for i, c in enumerate(finals):
        key, rec = keys[c.name], record[c.name]
        res = store.get("full", key)
        if res is None:
            if full_est[c.name] > clock.left and (pts or any(store.get("full", keys[f.name]) for f in finals)):
                rec["status"], rec["why"] = "not trained in full", (
                    f"the budget left ({max(clock.left, 0):.0f} s) is less than its estimated cost "
                    f"(~{full_est[c.name]:.0f} s)")
                hooks.candidate("full", c.name, i + 1, len(finals) - i - 1, rec["why"])
                continue
            res, lost = _attempt(cfg, store, "full", key, rec, c, estimated_s=round(full_est[c.name], 1))
            if res is None:
                hooks.candidate("full", c.name, i + 1, len(finals) - i - 1, lost)
                continue
        rec["status"], rec["full"] = "trained in full", {k: res.get(k) for k in ("seconds", "estimated_s", "accuracy")}
        m = _manifest(Path(res["bundle"]))
        carried = _carried_target(m, record, keys[c.name], store, targets, cfg)
        mine = select.points(c.name, m, limits, carried | target_for(m, "these bytes"))
        pts += mine
        acc = res["accuracy"]
        hooks.candidate("full", c.name, i + 1, len(finals) - i - 1,
                        f"held-out accuracy {acc:.3f}; {sum(p.qualifies for p in mine)} of {len(mine)} files meet "
                        "the limits")
        hooks.front(select.front(pts))
    chosen = select.pick(pts, limits)
    summary = answer.summary(cfg, record, pts, chosen, clock, targets)
    if chosen.chosen is None:
        path = answer.write_work_summary(work, summary)
        if not pts:
            _all_lost({n: r for n, r in record.items() if n in {c.name for c in finals}})
            raise EdgeclsError(f"--budget {cfg.budget_s:g}s: too small for one candidate in full "
                               f"(every candidate in {path})")
        raise CheckFailed(f"no file meets every limit: {select.closest(pts, limits)} (every candidate in {path})")
    bundle = Path(store.get("full", keys[chosen.chosen.candidate])["bundle"])
    return answer.write(cfg, out, bundle, summary, work, clock)


def _all_lost(record: dict) -> None:
    """Raise RunFailed when every candidate of `record` that was tried lost its process."""
    tried = [r for r in record.values() if r.get("status") not in ("not screened", "not trained in full")]
    if tried and all(r.get("status") == "failed" for r in tried):
        raise RunFailed(f"every candidate tried failed: {tried[0]['candidate']}: {tried[0]['why']}")


def _check_budget_for_one(cfg: TuneConfig, alive: list[Candidate], full_est: dict, clock: _Clock) -> None:
    """Before any full training: refuse a budget that cannot train even the cheapest survivor in full."""
    c = min(alive, key=lambda c: full_est[c.name])
    need = full_est[c.name]
    if need > clock.left * 1.1:
        raise EdgeclsError(
            f"--budget {cfg.budget_s:g}s: too small for one candidate: training, exporting, verifying and "
            f"benchmarking the cheapest, {c.name}, would take about {need:.0f} s (estimated from its screen) and "
            f"{max(clock.left, 0):.0f} s are left; give --budget {math.ceil((clock.spent + need) * 1.25 / 60)}m or "
            "more (the screens are kept: running again reuses them)")


def _halve(cfg, alive, todo, done_full, keys, store, screens, sizes, full_est, record, clock, hooks):
    """Short training of the survivors not yet trained in full; the better 1/ETA (by short-training accuracy,
    then the faster screen) go on, as many as the budget can train in full."""
    shorts: dict[str, dict] = {}
    for i, c in enumerate(todo):
        key, rec = keys[c.name], record[c.name]
        res = store.get("short", key)
        epochs = max(1, math.ceil(sizes[c.name][1] / SHORT_FRACTION))
        if res is None:
            est = _estimate(screens[c.name], sizes[c.name][0] / SHORT_FRACTION, False)
            if est > clock.left:
                rec["status"], rec["why"] = "not trained", (f"the budget left ({max(clock.left, 0):.0f} s) is less "
                                                            f"than a short training's cost (~{est:.0f} s)")
                continue
            res, lost = _attempt(cfg, store, "short", key, rec, c, epochs)
            if res is None:
                hooks.candidate("short", c.name, i + 1, len(todo) - i - 1, lost)
                continue
        shorts[c.name] = res
        rec["short"] = {k: res[k] for k in ("epochs", "accuracy", "accuracy_ci", "seconds")}
        hooks.candidate("short", c.name, i + 1, len(todo) - i - 1,
                        f"accuracy after {epochs} epochs {res['accuracy']:.3f}")

    def speed(c):
        return min((f["p50_ms"] for f in record[c.name]["screen"]["files"] if f["fits"]), default=math.inf)

    ranked = sorted(shorts, key=lambda n: (-shorts[n]["accuracy"], speed(next(c for c in alive if c.name == n)), n))
    keep_n = max(1, math.ceil(len(ranked) / ETA))
    kept, left = [], clock.left
    for n in ranked:
        if len(kept) < keep_n and (full_est[n] <= left or not kept):
            kept.append(n)
            left -= full_est[n]
    best = ranked[0] if ranked else None
    for n in ranked:
        if n not in kept:
            record[n]["status"] = "halved"
            record[n]["why"] = (f"successive halving: short-training accuracy {shorts[n]['accuracy']:.3f} "
                                f"{shorts[n]['accuracy_ci']} ranked below the kept "
                                f"{', '.join(kept)} (best {best} {shorts[best]['accuracy']:.3f}); the budget trains "
                                f"{len(kept)} in full")
    return [c for c in alive if c.name in done_full or c.name in kept]


def _carried_target(manifest: dict, record: dict, key: str, store: _Store, targets: target.TargetRows,
                    cfg: TuneConfig) -> dict:
    """Target rows of the candidate's screening export carried to its trained files of the same format and
    precision (same graph: an int8 file made by the default recipe, a float file)."""
    if not targets.rows:
        return {}
    screen = store.get("screen", key)
    if not screen:
        return {}
    sm = _manifest(Path(screen["bundle"]))
    rows = targets.for_bundle(sm, cfg.batch, "its screening export (same graph, untrained)")
    by_kind = {}
    for a in sm["artifacts"]:
        if a["file"] in rows:
            by_kind[(a["format"], a["precision"])] = rows[a["file"]] | {
                "_from": rows[a["file"]]["_from"] + f", sha256 {a['sha256'][:12]}"}
    out = {}
    for a in manifest["artifacts"]:
        recipe = (a.get("int8") or {}).get("recipe", "default")
        if (a["format"], a["precision"]) in by_kind and recipe == "default":
            out[a["file"]] = by_kind[(a["format"], a["precision"])]
    return out
