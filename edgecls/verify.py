"""Parity of every exported artifact against the Keras model (DESIGN §6), decided on evidence.

Agreement with Keras needs no labels, so it is measured on every image the bundle can use: the
held-out split plus the training and validation images that int8 calibration did not see (up to
`MAX_AGREEMENT_IMAGES`, a stratified sample beyond). Accuracy, and its drop, stay on the held-out
split, with the paired counts behind them (Keras right and the artifact wrong: `lost`; the
reverse: `gained`) and a 95% interval.

Gates are data, per precision. Float32 must agree on top-1 for >= 99.9% of images with a max
absolute probability difference <= 1e-4; float16 >= 99.5% and <= 1e-2 (point estimates, as
always). int8 fails only on evidence: when the 95% interval of its accuracy drop lies wholly above
`max_drop` points, or the 95% interval of its agreement lies wholly below 99%. One changed answer
in a small held-out split is not evidence; a model whose answers change on 3% of a few hundred
images is. A failed gate is never a warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import reference, runtimes
from .bundle import Bundle, now
from .errors import EdgeclsError
from .evidence import paired_drop, wilson
from .names import Device, Precision, Runtime, parse

MAX_AGREEMENT_IMAGES = 20000  # beyond the held-out split: verify stays within seconds per artifact


@dataclass(frozen=True)
class Gate:
    min_agreement: float | None = None  # top-1 agreement with Keras, fraction
    max_abs_diff: float | None = None  # max |p - p_keras| over all images and classes
    max_drop: float | None = None  # accuracy points (percent) lost vs Keras
    evidence: bool = False  # judge the 95% interval (int8), not the point estimate (float)


def default_gates(max_drop: float = 1.0) -> dict[Precision, Gate]:
    return {Precision.fp32: Gate(min_agreement=0.999, max_abs_diff=1e-4),
            Precision.fp16: Gate(min_agreement=0.995, max_abs_diff=1e-2),
            Precision.int8: Gate(min_agreement=0.99, max_drop=max_drop, evidence=True)}


@dataclass
class Parity:
    format: str
    precision: str
    file: str
    runtime: str = ""
    device: str = ""
    compute: str = ""  # what the float parts ran in (OpenVINO: f32/bf16/f16)
    accuracy: float | None = None  # on the held-out images
    delta_points: float | None = None  # accuracy - keras accuracy, in percentage points
    drop_interval: tuple[float, float] | None = None  # 95% interval of the drop (keras - artifact), points
    lost: int | None = None  # held-out images Keras got right and the artifact wrong
    gained: int | None = None  # the reverse
    agreement: float | None = None  # top-1 agreement with Keras on every usable image
    agreement_interval: tuple[float, float] | None = None  # its 95% interval
    changed: int | None = None  # usable images whose top-1 answer differs from Keras'
    images: int | None = None  # usable images compared (held-out + not seen by calibration)
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    failures: list[str] = field(default_factory=list)  # each gate missed, by how much; or the error
    error: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class VerifyResult:
    images: int  # held-out images (accuracy)
    agreement_images: int  # every usable image (agreement, probability differences)
    keras_accuracy: float
    rows: list[Parity]
    gates: dict
    source: str = "dataset"  # what the images and the Keras reference came from: dataset or reference

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"images": self.images, "agreement_images": self.agreement_images, "source": self.source,
                "keras_accuracy": self.keras_accuracy, "passed": self.passed, "gates": self.gates,
                "rows": [asdict(r) | {"passed": r.passed} for r in self.rows]}


def _predict(runner, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([runner.predict(x[i:i + batch]) for i in range(0, len(x), batch)])


def compare(row: Parity, probs: np.ndarray, ref: np.ndarray, labels: np.ndarray, gate: Gate) -> Parity:
    """Fill `row` from `probs` vs the Keras `ref` on the same images, the first `len(labels)` of which
    are the held-out ones (labelled), and list every gate it misses."""
    n = len(labels)
    mine, theirs = probs.argmax(1), ref.argmax(1)
    right, ref_right = mine[:n] == labels, theirs[:n] == labels
    row.accuracy = float(right.mean())
    row.lost, row.gained = int((ref_right & ~right).sum()), int((right & ~ref_right).sum())
    drop, low, high = paired_drop(row.lost, row.gained, n)
    row.delta_points, row.drop_interval = -drop, (low, high)
    agree = int((mine == theirs).sum())
    row.images, row.changed = len(mine), len(mine) - agree
    row.agreement = agree / len(mine)
    row.agreement_interval = wilson(agree, len(mine))
    diff = np.abs(probs.astype(np.float64) - ref)
    row.max_abs_diff, row.mean_abs_diff = float(diff.max()), float(diff.mean())
    if gate.min_agreement is not None:
        if gate.evidence and row.agreement_interval[1] < gate.min_agreement:
            row.failures.append(f"top-1 agreement {row.agreement:.2%} ({row.changed} of {row.images} answers changed; "
                                f"95% interval up to {row.agreement_interval[1]:.2%}) < {gate.min_agreement:.1%}")
        elif not gate.evidence and row.agreement < gate.min_agreement:
            row.failures.append(f"top-1 agreement {row.agreement:.2%} < {gate.min_agreement:.1%} "
                                f"(short by {gate.min_agreement - row.agreement:.2%})")
    if gate.max_abs_diff is not None and row.max_abs_diff > gate.max_abs_diff:
        row.failures.append(f"max abs diff {row.max_abs_diff:.2e} > {gate.max_abs_diff:.0e} "
                            f"({row.max_abs_diff / gate.max_abs_diff:.1f}x the limit)")
    if gate.max_drop is not None:
        judged = low if gate.evidence else drop
        if judged > gate.max_drop:
            row.failures.append(f"accuracy drop {drop:.2f} points (lost {row.lost}, gained {row.gained} of {n}; "
                                f"95% interval {low:.2f} to {high:.2f}) > {gate.max_drop:.2f}")
    return row


def runner_for(name: Runtime | str, runtime_options: dict[str, str] | None = None) -> runtimes.Runner:
    """A runner of `name` given those of `runtime_options` that its class accepts."""
    cls = runtimes.runner_class(name)
    return cls(**{k: v for k, v in (runtime_options or {}).items() if k in cls.options})


def verify(bundle_path: str | Path, *, runtime_names: list[Runtime] | list[str] | None = None,
           device: Device = Device.cpu, threads: int | None = None, max_drop: float = 1.0,
           runtime_options: dict[str, str] | None = None, data_dir: str | None = None,
           on_row=None) -> VerifyResult:
    """Run every exported artifact (of the selected runtimes) on the held-out split and compare
    with the Keras model. Results are stored in the manifest under ``verify``.

    `runtime_options` go to each runtime that takes them (``{"compute": "f32"}``: OpenVINO's
    execution precision). An artifact that is missing, tampered with, or whose runtime is not
    installed gets a failed row with the reason; the others are still verified.

    Raises:
        EdgeclsError: no bundle, no exported artifact, unknown runtime, bad options.
    """
    if not 0 <= max_drop <= 100:
        raise EdgeclsError(f"--max-drop {max_drop}: must be between 0 and 100 accuracy points")
    runtimes.check_threads(threads)
    names = parse(Runtime, runtime_names, "--runtime") or [r for r in runtimes.RUNTIMES if r != Runtime.keras]
    for name in names:  # bad option values fail here, before any work
        runner_for(name, runtime_options)
    bundle = Bundle.open(bundle_path)
    artifacts = [a for a in bundle.manifest["artifacts"] if a["format"] != "keras" and a["format"] in names]
    if not artifacts:
        raise EdgeclsError(f"{bundle.path}: no exported artifacts for runtime(s) {', '.join(n.value for n in names)}; "
                           f"run 'edgecls export {bundle.path}' first")
    x_all, y, ref, source = evidence(bundle, data_dir, device, threads)
    keras_acc = float((ref[:len(y)].argmax(1) == y).mean())
    gates = default_gates(max_drop)
    rows = []
    for a in artifacts:
        row = Parity(a["format"], a["precision"], a["file"], runtime=a["format"])
        try:
            path = bundle.checked(a["file"])
            runner = runner_for(a["format"], runtime_options)
            runner.load(path, device=device, threads=threads)
            row.device, row.compute = runner.device_ran, runner.compute
            compare(row, _predict(runner, x_all), ref, y, gates[Precision(a["precision"])])
            row.failures += calibration_faults(bundle, a)
        except EdgeclsError as e:
            row.failures.append(str(e))
            row.error = True
        rows.append(row)
        if on_row:
            on_row(row)
    result = VerifyResult(len(y), len(x_all), keras_acc, rows, {k.value: asdict(v) for k, v in gates.items()},
                          source)
    bundle.manifest["verify"] = {"at": now(), "device": Device(device).value, "threads": threads} | result.to_dict()
    bundle.save()
    return result


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


def evidence(bundle: Bundle, data_dir: str | None, device: Device, threads: int | None):
    """(images, held-out labels for the first len(labels) of them, Keras probabilities, source).

    From the dataset with Keras run here where both are present; otherwise (a device: no TensorFlow,
    no scikit-learn, no copy of the training folder) from the bundle's reference data, whose Keras
    probabilities were stored at export. Which one was used is reported.
    """
    keras = runtimes.runner_class(Runtime.keras)
    missing = None if keras.installed() else "TensorFlow is not installed"
    if missing is None:
        try:
            x, y = bundle.heldout(data_dir=data_dir)
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
    runner.load(bundle.checked("model.keras"), device=device, threads=threads)
    return x_all, y, _predict(runner, x_all).astype(np.float64), "dataset"


def agreement_images(bundle: Bundle, data_dir: str | None = None) -> np.ndarray:
    """The bundle's training and validation images that no int8 calibration saw (uint8 NHWC), a
    stratified sample of at most `MAX_AGREEMENT_IMAGES`: evidence for agreement, which needs no labels."""
    seen = {i for a in bundle.manifest["artifacts"] for i in a.get("calibration", {}).get("ids", [])}
    images, _ = bundle.unseen(seen, MAX_AGREEMENT_IMAGES, data_dir)
    return images
