"""Parity of every exported artifact against the Keras model, with three honest outcomes.

Each artifact is run on the held-out images (labelled: accuracy and its paired drop) and the
validation images (agreement and probability differences need no labels) — images the model
never trained on; training images are never pooled in. Each check is judged on its 95% interval
by `edgecls.core.gates`: pass (shown within the limit), fail (shown beyond it), inconclusive (too few
images to tell, with how many would decide). Each row is bound to the sha256 of the file it
judged and merged into the manifest per artifact x runtime x device.
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
from ..core.names import Device, Precision, Runtime, parse
from ..core.stats import Outcome
from ..export import reference
from ..train import recorded

MAX_AGREEMENT_IMAGES = 20000  # validation images beyond the held-out split: verify stays within seconds


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
    failures: list[str] = field(default_factory=list)  # each check shown beyond its limit; or the error
    undecided: list[str] = field(default_factory=list)  # each inconclusive check, with how many images would decide
    calibration: list[str] = field(default_factory=list)  # int8 calibration faults (a fail)
    error: bool = False

    @property
    def outcome(self) -> Outcome:
        if self.error or self.calibration or self.evidence is None:
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
    images: int  # held-out + validation images (changed answers, |Δp|)
    keras_accuracy: float
    rows: list[ParityRow]
    gates: dict
    source: str = "dataset"  # what the images and the Keras reference came from: dataset or reference
    ignored: list[str] = field(default_factory=list)  # stored rows of other artifacts ignored (stale, unbound)
    save_error: str | None = None  # the results could not be stored (read-only, replaced bundle)

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
        return {"heldout_images": self.heldout_images, "images": self.images, "source": self.source,
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
           on_row=None, on_output=None, save: bool = True) -> VerifyResult:
    """Run every exported artifact (of the selected runtimes) on images the model never trained on and
    judge it against the Keras model. Rows are stored in the manifest under ``verify``, bound to each
    file's sha256 and merged per artifact x runtime x device x requested precision.

    `runtime_options` go to each runtime that takes them (``{"compute": "f32"}``: OpenVINO's
    execution precision; comma-separated values give one row each, ``"f32,default"``).
    `on_output(row, probabilities)` sees each file's outputs; `save=False` stores nothing (an emulated
    platform's rows are stored by the host, `edgecls.platforms.verify`). An artifact that is missing,
    tampered with, or whose runtime is not installed gets a failed row with the reason; the others are
    still verified. When the results cannot be saved (a read-only bundle, or one trained again
    meanwhile), they are still returned, with `save_error` set.

    Raises:
        EdgeclsError: no bundle, no exported artifact, unknown runtime, bad options.
    """
    if cfg is not None:  # the options as one object, as the other stages take them
        runtime_names, device, threads, max_drop = cfg.runtimes, cfg.device, cfg.threads, cfg.max_drop
        runtime_options, data_dir = {"compute": cfg.compute}, cfg.data_dir
    check_max_drop(max_drop)
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
    x_all, y, ref, source = evidence_images(bundle, data_dir, device, threads)
    keras_acc = float((ref[:len(y)].argmax(1) == y).mean()) if len(y) else 0.0
    limits = gates(max_drop)
    rows, at = [], now()
    for a, name, options in artifacts:
        row = ParityRow(a["format"], a["precision"], a["file"], runtime=str(name), at=at, source=source,
                        compute_requested=options.get("compute", ""))
        runner = None
        try:
            path = bundle.checked_path(a["file"])
            runner = runner_for(name, options)
            runner.load(path, device=device, threads=threads)
            row.device, row.compute = runner.device_ran, runner.compute
            probabilities = runner.predict_all(x_all)
            row.gate = gate_for(a["precision"], row.compute).value
            row.evidence = judge(limits[Precision(row.gate)], probabilities, ref, y)
            if on_output:
                on_output(row, probabilities)
            row.failures, row.undecided = row.evidence.failures(), row.evidence.undecided()
            row.calibration = calibration_faults(bundle, a)
            row.failures += row.calibration
        except EdgeclsError as e:
            row.failures.append(str(e))
            row.error = True
        finally:
            getattr(runner, "close", lambda: None)()  # a runner holding a browser (web-*) lets it go now
        row.device = row.device or Device(device).value
        rows.append(row)
        if on_row:
            on_row(row)
    result = VerifyResult(len(y), len(x_all), keras_acc, rows, {k.value: asdict(v) for k, v in limits.items()},
                          source)
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
    """(images, held-out labels for the first len(labels) of them, Keras probabilities, source).

    From the dataset with Keras run here where both are present; otherwise (a device: no TensorFlow,
    no scikit-learn, no copy of the training folder) from the bundle's reference data, whose Keras
    probabilities were stored at export. Which one was used is reported.
    """
    keras = runtimes.runner_class(Runtime.keras)
    missing = None if keras.installed() else "TensorFlow is not installed"
    if missing is None:
        try:
            x, y = recorded.heldout(bundle, data_dir=data_dir)
        except EdgeclsError as e:  # the folder is not here, or scikit-learn (digits) is not
            if data_dir:  # the user said where the data is: that must work
                raise
            missing = str(e)
    if missing is not None:
        if "reference" not in bundle.manifest:
            raise EdgeclsError(f"{bundle.path}: cannot verify here: {missing}, and the bundle has no reference data. "
                               "Re-export it where the data and TensorFlow are ('edgecls export' stores "
                               "reference.npz), or pass --data-dir with the dataset")
        ref = reference.load(bundle)
        return ref.images, ref.labels, ref.keras_probabilities.astype(np.float64), "reference"
    extra = agreement_images(bundle, data_dir)
    x_all = np.concatenate([x, extra]) if len(extra) else x
    del x, extra  # only the concatenation is kept: a large folder's images are not held twice
    runner = keras()
    runner.load(bundle.checked_path("model.keras"), device=device, threads=threads)
    return x_all, y, runner.predict_all(x_all).astype(np.float64), "dataset"


def agreement_images(bundle: Bundle, data_dir: str | None = None) -> np.ndarray:
    """The bundle's validation images (uint8 NHWC; a stratified sample of at most `MAX_AGREEMENT_IMAGES`):
    never trained on, so evidence for changed answers and |Δp| beside the held-out ones. Training
    images are not used: the model fits them with larger margins, so they flip less and would
    flatter every file."""
    images, _ = recorded.unseen(bundle, set(), MAX_AGREEMENT_IMAGES, data_dir, parts=("val",))
    return images
