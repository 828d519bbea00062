"""Parity of every exported artifact against the Keras model, with three honest outcomes.

Each artifact is run on the images that answer its question (`edgecls.verify.evidence`): a float
file on every image the bundle can reach plus label-free variants (a conversion fault needs no
unseen input), with edge-case tensors checked apart for gross faults; an int8 file only on images
it was never fitted to, selected on or trained on (held-out, validation, `--images`). Held-out
images give the accuracy and its paired drop. Each check is judged on its 95% interval by
`edgecls.core.gates`: pass (shown within the limit), fail (shown beyond it), inconclusive (too few
images to tell, with how many would decide). Each row records which images judged it, is bound to
the sha256 of the file it judged and merged into the manifest per artifact x runtime x device.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core import results
from ..core.bundle import Bundle, now
from ..core.errors import EdgeclsError
from ..core.gates import DEFAULT_MAX_DROP, Evidence, check_max_drop, gates, judge
from ..core.hooks import Hooks
from ..core.names import Device, Precision, Runtime, parse
from ..core.stats import Outcome
from ..train import recorded, unlabelled
from . import evidence as pools
from .evidence import MAX_AGREEMENT_IMAGES


@dataclass
class VerifyConfig:
    """Options of `edgecls verify` (the CLI's defaults are these)."""

    runtimes: list[str] = field(default_factory=list)  # registered runtime names; empty: every default one
    device: Device = Device.cpu
    threads: int | None = None
    max_drop: float = DEFAULT_MAX_DROP  # the int8 gate, accuracy points
    compute: str = "f32,default"  # OpenVINO: what float parts compute in, one row each (f32: parity; default:
    # what this CPU picks for an fp32 IR; bf16/f16 on purpose)
    data_dir: str | None = None  # where the dataset lives now, if it moved
    images: str | None = None  # --images: unlabelled images of the same kind (more evidence for int8 files)
    skip_bad: bool = False  # --skip-bad: skip unreadable files in the --images folder (counted) instead of refusing


@dataclass
class ParityRow:
    """One artifact run by one runtime on one device, judged against Keras."""

    format: str
    precision: str
    file: str
    runtime: str = ""
    device: str = ""
    compute: str = ""  # what the float parts ran in (OpenVINO: f32/bf16/f16)
    compute_requested: str = ""  # OpenVINO: what was asked (f32, or "default": whatever the CPU picks)
    gate: str = ""  # the precision whose limits judged it: the file's, or fp16 for an fp32 file run in bf16/f16
    at: str = ""
    source: str = ""  # dataset (Keras run here) or reference (the bundle's stored Keras probabilities)
    evidence: Evidence | None = None
    judged_on: dict = field(default_factory=dict)  # which images: kinds and counts, a hash of their ids
    edge_cases: dict = field(default_factory=dict)  # the edge-case tensors' gross-fault check
    failures: list[str] = field(default_factory=list)  # each check shown beyond its limit; or the error
    undecided: list[str] = field(default_factory=list)  # each inconclusive check, with how many images would decide
    calibration: list[str] = field(default_factory=list)  # int8 calibration faults (a fail)
    gross: list[str] = field(default_factory=list)  # gross faults on edge-case tensors (a fail)
    error: bool = False

    @property
    def outcome(self) -> Outcome:
        if self.error or self.calibration or self.gross or self.evidence is None:
            return Outcome.failed
        return self.evidence.outcome

    @property
    def passed(self) -> bool:
        return self.outcome == Outcome.passed

    def to_dict(self) -> dict:
        ev = self.evidence.to_dict() if self.evidence else {}
        ev.pop("outcome", None)
        base = {k: v for k, v in asdict(self).items() if k != "evidence"}
        return base | ev | {"outcome": self.outcome.value, "passed": self.passed}


@dataclass
class VerifyResult:
    heldout_images: int  # labelled held-out images (accuracy, drop)
    images: int  # images judging int8 files: held-out + validation (+ --images), before exclusions
    keras_accuracy: float
    rows: list[ParityRow]
    gates: dict
    source: str = "dataset"  # what the images and the Keras reference came from: dataset or reference
    ignored: list[str] = field(default_factory=list)  # stored rows of other artifacts ignored (stale, unbound)
    save_error: str | None = None  # the results could not be stored (read-only, replaced bundle)
    float_images: int = 0  # inputs judging float files (every reachable image and variants)
    notes: list[str] = field(default_factory=list)  # what was sampled, dropped or not available
    images_folder: dict | None = None  # --images: folder, counts, dropped, files hash

    @property
    def outcome(self) -> Outcome:
        return Outcome.combine(r.outcome for r in self.rows)

    @property
    def passed(self) -> bool:
        """No artifact shown to fail (inconclusive ones do not fail the run unless --strict)."""
        return self.outcome != Outcome.failed

    def counts(self) -> dict[str, int]:
        return {o.value: sum(r.outcome == o for r in self.rows) for o in Outcome}

    def to_dict(self) -> dict:
        return {"heldout_images": self.heldout_images, "images": self.images, "float_images": self.float_images,
                "notes": self.notes, "images_folder": self.images_folder, "source": self.source,
                "keras_accuracy": self.keras_accuracy, "outcome": self.outcome.value, "counts": self.counts(),
                "gates": self.gates, "rows": [r.to_dict() for r in self.rows], "ignored": self.ignored,
                "save_error": self.save_error}


def runner_for(name: Runtime | str, runtime_options: dict[str, str] | None = None) -> runtimes.Runner:
    """A runner of `name` given those of `runtime_options` that its class accepts."""
    cls = runtimes.runner_class(name)
    return cls(**{k: v for k, v in (runtime_options or {}).items() if k in cls.options})


def option_sets(name: Runtime | str, runtime_options: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Each combination of the comma-separated values of the options `name` takes: ``{"compute": "f32,default"}``
    gives OpenVINO two runs (two rows), f32 and the device's default precision; other runtimes one."""
    cls = runtimes.runner_class(name)
    taken = {k: [v.strip() for v in str(value).split(",") if v.strip()]
             for k, value in (runtime_options or {}).items() if k in cls.options}
    return [dict(zip(taken, combo)) for combo in itertools.product(*taken.values())] or [{}]


def verify(bundle_path: str | Path, cfg: VerifyConfig | None = None, *,
           runtime_names: list[Runtime] | list[str] | None = None, device: Device = Device.cpu,
           threads: int | None = None, max_drop: float = DEFAULT_MAX_DROP,
           runtime_options: dict[str, str] | None = None, data_dir: str | None = None,
           save: bool = True, images: str | None = None, skip_bad: bool = False,
           hooks: Hooks | None = None) -> VerifyResult:
    """Run every exported artifact (of the selected runtimes) on the images that answer its question
    (`edgecls.verify.evidence`) and judge it against the Keras model. Rows are stored in the manifest
    under ``verify``, bound to each file's sha256, with which images judged them, and merged per
    artifact x runtime x device x requested precision.

    `images` is a folder of unlabelled images of the same kind (``--images``): more evidence for int8
    files (changed answers, |Δp|; a drop is bounded by the share of changed answers); `skip_bad` skips (and
    counts) its unreadable files instead of refusing it.

    `runtime_options` go to each runtime that takes them (``{"compute": "f32"}``: OpenVINO's
    execution precision; comma-separated values give one row each, ``"f32,default"``).
    `hooks.outputs(row, probabilities)` sees each file's outputs and `hooks.row(row)` each finished row
    (`edgecls.core.hooks.Hooks`); `save=False` stores nothing (an emulated platform's rows are stored by
    the host, `edgecls.platforms.verify`). An artifact that is missing, tampered with, or whose runtime is
    not installed gets a failed row with the reason; the others are still verified. When the results
    cannot be saved (a read-only bundle, or one trained again meanwhile), they are still returned, with
    `save_error` set.

    Raises:
        EdgeclsError: no bundle, no exported artifact, unknown runtime, bad options, a bad `images` folder
            (before any file is run; nothing is stored).
    """
    hooks = hooks or Hooks()
    if cfg is not None:  # the options as one object, as the other stages take them
        runtime_names, device, threads, max_drop = cfg.runtimes, cfg.device, cfg.threads, cfg.max_drop
        runtime_options, data_dir, images, skip_bad = {"compute": cfg.compute}, cfg.data_dir, cfg.images, cfg.skip_bad
    check_max_drop(max_drop)
    if images is not None:
        unlabelled.files(images)  # no such folder, not a folder, empty: before any work
    elif skip_bad:
        raise EdgeclsError("--skip-bad: skips unreadable files of an --images folder; add --images DIR")
    runtimes.check_threads(threads)
    names = parse(runtimes.RUNTIMES, runtime_names, "--runtime") or [
        r for r in runtimes.RUNTIMES if r != Runtime.keras and runtimes.runner_class(r).by_default]
    for name in names:  # bad option values fail here, before any work
        for options in option_sets(name, runtime_options):
            runner_for(name, options)
    bundle = Bundle.open(bundle_path)
    # each artifact with every selected runtime that runs it (an onnx file: onnx, web-onnx)
    artifacts = [(a, n, o) for a in bundle.manifest["artifacts"] if a["format"] != "keras"
                 for n in names if runtimes.runner_class(n).runs(a) for o in option_sets(n, runtime_options)]
    if not artifacts:
        raise EdgeclsError(f"{bundle.path}: no exported artifacts for runtime(s) {', '.join(names)}; "
                           f"run 'edgecls export {bundle.path}' first")
    pool = pools.build(bundle, data_dir, device, threads, images, skip_bad=skip_bad)
    y = pool.labels
    keras_acc = float((pool.keras[:len(y)].argmax(1) == y).mean()) if len(y) else 0.0
    limits = gates(max_drop)
    rows, at = [], now()
    for a, name, options in artifacts:
        row = ParityRow(a["format"], a["precision"], a["file"], runtime=str(name), at=at, source=pool.source,
                        compute_requested=options.get("compute", ""))
        runner = None
        try:
            path = bundle.checked_path(a["file"])
            runner = runner_for(name, options)
            runner.load(path, device=device, threads=threads)
            row.device, row.compute = runner.device_ran, runner.compute
            precision = Precision(a["precision"])
            full = pool.mask(precision)
            mask = pool.mask(precision, pools.selection_keys(a))
            row.judged_on = pool.judged_on(mask, excluded=int(full.sum() - mask.sum()))
            probabilities = runner.predict_all(pool.images[mask])
            row.gate = gate_for(a["precision"], row.compute).value
            row.evidence = judge(limits[Precision(row.gate)], probabilities, pool.keras[mask], y)
            hooks.outputs(row, probabilities)
            row.failures, row.undecided = row.evidence.failures(), row.evidence.undecided()
            row.edge_cases, row.gross = pools.edge_faults(row.gate, runner.predict_all(pool.edge), pool)
            row.failures += row.gross
            row.calibration = calibration_faults(bundle, a)
            row.failures += row.calibration
        except EdgeclsError as e:
            row.failures.append(str(e))
            row.error = True
        finally:
            getattr(runner, "close", lambda: None)()  # a runner holding a browser (web-*) lets it go now
        row.device = row.device or Device(device).value
        rows.append(row)
        hooks.row(row)
    result = VerifyResult(len(y), int(pool.mask(Precision.int8).sum()), keras_acc, rows,
                          {k.value: asdict(v) for k, v in limits.items()}, pool.source,
                          float_images=len(pool.images), notes=pool.notes, images_folder=pool.images_record)
    result.ignored = results.ignored_lines(bundle.manifest, "verify", exclude={r.file for r in rows})
    if not save:
        return result
    section = bundle.manifest.get("verify") or {}
    stored = [results.bind(r.to_dict() | {"device": Device(device).value, "device_ran": r.device,
                                          "threads": threads}, bundle.manifest) for r in rows]
    bundle.manifest["verify"] = {"at": at, "gates": result.gates,
                                 "rows": results.merge(section.get("rows", []), stored, "verify")}
    try:
        bundle.save()
    except EdgeclsError as e:
        result.save_error = str(e)
    return result


def gate_for(precision: str, compute: str) -> Precision:
    """The limits a run is judged by: its file's precision's, except an fp32 file whose float parts ran in a
    16-bit float (OpenVINO's default on a bf16 or fp16 CPU, or asked for): fp16's, and the row says so. An
    fp32 file's f32 run is always held to fp32's limits."""
    if Precision(precision) == Precision.fp32 and compute in ("bf16", "f16"):
        return Precision.fp16
    return Precision(precision)


def calibration_faults(bundle: Bundle, artifact: dict) -> list[str]:
    """An int8 artifact calibrated on anything but training images is refused: it would be judged on what
    it was tuned on."""
    cal = artifact.get("calibration")
    if not cal:
        return []
    if cal.get("split", "train") != "train":
        return [f"calibrated on the {cal['split']} split, not the training split"]
    held_out = set(bundle.split_ids("test")) | set(bundle.split_ids("val"))
    leaked = [i for i in cal.get("ids", []) if i in held_out]
    return [f"calibration used {len(leaked)} validation/held-out images (e.g. {leaked[0]!r})"] if leaked else []


def evidence_images(bundle: Bundle, data_dir: str | None, device: Device, threads: int | None):
    """(images, held-out labels for the first len(labels) of them, Keras probabilities, source): the images
    an int8 file is judged on (held-out + validation; on a device the reference's held-out images)."""
    pool = pools.build(bundle, data_dir, device, threads, float_inputs=False)
    mask = pool.mask(Precision.int8)
    return pool.images[mask], pool.labels, pool.keras[mask], pool.source


def agreement_images(bundle: Bundle, data_dir: str | None = None) -> np.ndarray:
    """The bundle's validation images (uint8 NHWC; a stratified sample of at most `MAX_AGREEMENT_IMAGES`):
    never trained on, so evidence for changed answers and |Δp| beside the held-out ones."""
    images, _ = recorded.unseen(bundle, set(), MAX_AGREEMENT_IMAGES, data_dir, parts=("val",))
    return images
