"""Parity of every exported artifact against the Keras model, on the held-out split (DESIGN §6).

Gates are data, per precision: float32 must agree on top-1 for >= 99.9% of images with a max
absolute probability difference <= 1e-4; float16 >= 99.5% and <= 1e-2; int8 may lose at most
`max_drop` accuracy points. A failed gate is never a warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import runtimes
from .bundle import Bundle, now
from .errors import EdgeclsError
from .runtimes import Device


@dataclass(frozen=True)
class Gate:
    min_agreement: float | None = None  # top-1 agreement with Keras, fraction
    max_abs_diff: float | None = None  # max |p - p_keras| over all images and classes
    max_drop: float | None = None  # accuracy points (percent) lost vs Keras


def default_gates(max_drop: float = 1.0) -> dict[str, Gate]:
    return {"fp32": Gate(min_agreement=0.999, max_abs_diff=1e-4),
            "fp16": Gate(min_agreement=0.995, max_abs_diff=1e-2),
            "int8": Gate(max_drop=max_drop)}


@dataclass
class Parity:
    format: str
    precision: str
    file: str
    runtime: str = ""
    device: str = ""
    precision_ran: str = ""
    accuracy: float | None = None
    delta_points: float | None = None  # accuracy - keras accuracy, in percentage points
    agreement: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    failures: list[str] = field(default_factory=list)  # each gate missed, by how much; or the error
    error: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class VerifyResult:
    images: int
    keras_accuracy: float
    rows: list[Parity]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)


def _predict(runner, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([runner.predict(x[i:i + batch]) for i in range(0, len(x), batch)])


def compare(row: Parity, probs: np.ndarray, ref: np.ndarray, labels: np.ndarray, gate: Gate) -> Parity:
    """Fill `row`'s metrics from `probs` vs the Keras `ref`, and list every gate it misses."""
    ref_acc = float((ref.argmax(1) == labels).mean())
    row.accuracy = float((probs.argmax(1) == labels).mean())
    row.delta_points = 100 * (row.accuracy - ref_acc)
    row.agreement = float((probs.argmax(1) == ref.argmax(1)).mean())
    diff = np.abs(probs.astype(np.float64) - ref)
    row.max_abs_diff, row.mean_abs_diff = float(diff.max()), float(diff.mean())
    if gate.min_agreement is not None and row.agreement < gate.min_agreement:
        row.failures.append(f"top-1 agreement {row.agreement:.2%} < {gate.min_agreement:.1%} "
                            f"(short by {gate.min_agreement - row.agreement:.2%})")
    if gate.max_abs_diff is not None and row.max_abs_diff > gate.max_abs_diff:
        row.failures.append(f"max abs diff {row.max_abs_diff:.2e} > {gate.max_abs_diff:.0e} "
                            f"({row.max_abs_diff / gate.max_abs_diff:.1f}x the limit)")
    if gate.max_drop is not None and -row.delta_points > gate.max_drop:
        row.failures.append(f"accuracy drop {-row.delta_points:.2f} points > {gate.max_drop:.2f} "
                            f"(over by {-row.delta_points - gate.max_drop:.2f})")
    return row


def verify(bundle_path: str | Path, *, runtime_names: list[str] | None = None, device: Device = Device.cpu,
           threads: int | None = None, max_drop: float = 1.0, ov_precision: str = "f32",
           data_dir: str | None = None, on_row=None) -> VerifyResult:
    """Run every exported artifact (of the selected runtimes) on the held-out split and compare
    with the Keras model. Results are stored in the manifest under ``verify``.

    An artifact that is missing, tampered with, or whose runtime is not installed gets a failed
    row with the reason; the others are still verified.

    Raises:
        EdgeclsError: no bundle, no exported artifact, unknown runtime, bad options.
    """
    if max_drop < 0:
        raise EdgeclsError(f"--max-drop {max_drop}: must be >= 0")
    runtimes.check_threads(threads)
    names = runtime_names or [n for n in runtimes.RUNTIMES if n != "keras"]
    for n in names:
        if n not in runtimes.RUNTIMES:
            raise EdgeclsError(f"--runtime {n}: unknown runtime (choose from {', '.join(runtimes.RUNTIMES)})")
    bundle = Bundle.open(bundle_path)
    artifacts = [a for a in bundle.manifest["artifacts"] if a["format"] != "keras" and a["format"] in names]
    if not artifacts:
        raise EdgeclsError(f"{bundle.path}: no exported artifacts for runtime(s) {', '.join(names)}; "
                           f"run 'edgecls export {bundle.path}' first")
    x, y = bundle.heldout(data_dir=data_dir)
    keras_runner = runtimes.create("keras")
    keras_runner.load(bundle.checked("model.keras"), device=device, threads=threads)
    ref = _predict(keras_runner, x).astype(np.float64)
    keras_acc = float((ref.argmax(1) == y).mean())
    gates = default_gates(max_drop)
    rows = []
    for a in artifacts:
        row = Parity(a["format"], a["precision"], a["file"], runtime=a["format"])
        try:
            path = bundle.checked(a["file"])
            options = {"precision": ov_precision} if a["format"] == "openvino" else {}
            runner = runtimes.create(a["format"], **options)
            runner.load(path, device=device, threads=threads)
            row.device, row.precision_ran = runner.device, runner.precision
            compare(row, _predict(runner, x), ref, y, gates[a["precision"]])
        except EdgeclsError as e:
            row.failures.append(str(e))
            row.error = True
        rows.append(row)
        if on_row:
            on_row(row)
    result = VerifyResult(len(y), keras_acc, rows)
    bundle.manifest["verify"] = {
        "at": now(), "device": device.value, "threads": threads, "images": len(y),
        "keras_accuracy": keras_acc, "gates": {k: asdict(v) for k, v in gates.items()},
        "passed": result.passed, "rows": [asdict(r) | {"passed": r.passed} for r in rows]}
    bundle.save()
    return result
