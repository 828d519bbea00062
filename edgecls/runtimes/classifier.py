"""The embeddable inference API: an exported artifact + its manifest, no TensorFlow.

A device app installs one runtime (``pip install 'edgecls[onnx]'``) and copies the bundle:

    >>> from edgecls.runtime import Classifier
    >>> clf = Classifier.open("models/digits-small")   # the bundle's current recommendation (clf.why says)
    >>> clf = Classifier.open("models/digits-small", format="onnx", precision="int8")
    >>> clf.classify(["photo.png"])           # [[("7", 0.98), ("1", 0.01), ...]]
    >>> clf.predict(raw_uint8_nhwc_batch)     # (N, classes) probabilities

The artifact's sha256 is checked against the manifest before it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.images import load_image
from ..core.names import Device


def _installed(fmt: str) -> bool:
    try:
        return runtimes.runner_class(fmt).installed()
    except EdgeclsError:  # not a runtime this edgecls knows
        return False


class Classifier:
    def __init__(self, bundle: Bundle, artifact: dict, runner, why: str = ""):
        self.bundle, self.artifact, self.runner = bundle, artifact, runner
        self.labels: list[str] = bundle.labels()
        self.input_shape: tuple[int, int, int] = bundle.input_shape()
        self.why = why  # why this file: the bundle's recommendation, the options given, or the default order

    @classmethod
    def open(cls, bundle_dir: str | Path, *, format: str | None = None, precision: str | None = None,
             device: Device | str = Device.cpu, threads: int | None = None) -> "Classifier":
        """Load one exported artifact of a bundle.

        With neither `format` nor `precision`: the bundle's current recommendation (`Bundle.recommended()`:
        the file the last bench chose, while its bytes, parity and bench results are current), else the
        fp32 file whose runtime ranks first by its `preference` (onnx, openvino, tflite), and `why` says which
        and why. Either one given: that file (precision fp32 unless given; format the first by runtime
        preference that has it).

        Raises:
            EdgeclsError: no such artifact, a hash mismatch, the runtime not installed.
        """
        if format == "keras":
            raise EdgeclsError("format keras needs TensorFlow; the embeddable API runs exported artifacts "
                               "(onnx, tflite, openvino)")
        bundle = Bundle.open(bundle_dir)
        arts = {(a["format"], a["precision"]): a for a in bundle.manifest["artifacts"]}
        artifact, why = None, ""
        if format is None and precision is None:
            rec = bundle.recommended()
            if rec.current and _installed(runtimes.runtime_of(rec.artifact)):
                artifact, why = rec.artifact, rec.why
            else:
                fallback = (rec.why if not rec.current else f"the recommended {rec.artifact['file']} needs "
                            f"{runtimes.runtime_of(rec.artifact)}, not installed here")
                why = f"{fallback}; using the default order (the fp32 file whose runtime ranks first)"
        else:
            why = "chosen with " + " and ".join(f"--{k} {v}" for k, v in (("format", format), ("precision", precision))
                                                 if v)
        precision = precision or "fp32"
        if artifact is None and format:
            artifact = arts.get((format, precision))
        elif artifact is None:
            ranked = [(rank, i, a) for i, a in enumerate(bundle.manifest["artifacts"]) if a["precision"] == precision
                      and runtimes.runtime_of(a) in runtimes.RUNTIMES
                      and (rank := runtimes.runner_class(runtimes.runtime_of(a)).preference) is not None]
            artifact = min(ranked, key=lambda r: r[:2])[2] if ranked else None
        if artifact is None:
            have = ", ".join(f"{f} {p}" for f, p in arts if f != "keras") or "none"
            raise EdgeclsError(f"{bundle.path}: no {format or 'exported'} {precision} artifact (exported: {have}); "
                               "run 'edgecls export' first")
        runner = runtimes.create(runtimes.runtime_of(artifact))
        runner.load(bundle.checked_path(artifact["file"]), device=Device(device), threads=threads)
        check_contract(bundle, artifact, runner)
        return cls(bundle, artifact, runner, why)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Raw 0-255 NHWC pixels (uint8 or float) -> (N, classes) probabilities."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise EdgeclsError(f"input shape {images.shape}: expected (N, {', '.join(map(str, self.input_shape))})")
        return self.runner.predict(images)

    def load(self, paths: list[str | Path]) -> np.ndarray:
        """Decode image files exactly as training did (orientation, colour, bilinear resize)."""
        h, w, c = self.input_shape
        return np.stack([load_image(p, (h, w), c) for p in paths])

    def classify_files(self, paths: list[str | Path], top: int = 3) -> "Predictions":
        """`classify` with what was run, for a table or JSON (`edgecls predict`)."""
        return Predictions(self.artifact["file"], str(self.runner.name), self.artifact["precision"],
                           min(top, len(self.labels)), [str(p) for p in paths], self.classify(paths, top), self.why)

    def classify(self, paths: list[str | Path], top: int = 3) -> list[list[tuple[str, float]]]:
        probs = self.predict(self.load(paths))
        order = np.argsort(-probs, axis=1)[:, :top]
        return [[(self.labels[k], float(p[k])) for k in row] for p, row in zip(probs, order)]


def check_contract(bundle: Bundle, artifact: dict, runner) -> None:
    """The loaded model takes the manifest's input shape and gives one probability per label: one blank
    image through it. A manifest that says otherwise is refused here, not answered with a crash later.

    Raises:
        EdgeclsError: naming the artifact, what the manifest says and what the model does.
    """
    shape = bundle.input_shape()
    declared = _declared_input(runner)
    if declared is not None and (len(declared) != 4 or list(declared[1:]) != list(shape)):
        raise EdgeclsError(f"{bundle.path / artifact['file']}: its input is {declared}, the manifest says "
                           f"[null, {', '.join(map(str, shape))}]; the manifest does not describe this model")
    try:
        out = np.asarray(runner.predict(np.zeros((1, *shape), np.uint8)))
    except Exception as e:  # each runtime raises its own type for a wrong input shape
        raise EdgeclsError(f"{bundle.path / artifact['file']}: does not take the manifest's input shape "
                           f"{list(shape)} ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                           "the manifest does not describe this model") from e
    labels = len(bundle.labels())
    if out.ndim != 2 or out.shape != (1, labels):
        raise EdgeclsError(f"{bundle.path / artifact['file']}: gives output shape {list(out.shape)} for one image, "
                           f"the manifest names {labels} labels; the manifest does not describe this model")


def _declared_input(runner) -> list | None:
    """The input shape the loaded file declares (None for a dynamic dimension), where the runtime says."""
    def dim(d):
        return d if isinstance(d, int) and d > 0 else None

    try:
        if hasattr(runner, "session"):  # onnxruntime
            return [dim(d) for d in runner.session.get_inputs()[0].shape]
        if hasattr(runner, "inp"):  # LiteRT
            return [dim(int(d)) for d in runner.inp.get("shape_signature", runner.inp["shape"])]
        if hasattr(runner, "compiled"):  # OpenVINO
            return [d.get_length() if d.is_static else None for d in runner.compiled.inputs[0].get_partial_shape()]
    except Exception:  # a runtime that cannot say: the probe below still runs
        return None
    return None


@dataclass
class Predictions:
    file: str
    runtime: str
    precision: str
    top: int
    images: list[str]
    top_classes: list[list[tuple[str, float]]]
    why: str = ""  # why this file ran

    def to_json(self) -> dict:
        """The file that ran (and why), then each image's top classes."""
        return {"artifact": {"file": self.file, "runtime": self.runtime, "precision": self.precision,
                             "why": self.why},
                "predictions": [{"file": p, "top": [{"label": k, "probability": v} for k, v in r]}
                                for p, r in zip(self.images, self.top_classes)]}
