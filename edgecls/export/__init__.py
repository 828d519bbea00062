"""Export a bundle's Keras model to every format (a registry), each checked right after writing.

Each format module has the same shape: ``PRECISIONS`` (what it can write) and
``export(ctx, precision) -> Written``. Adding a format = one module and one registry line.
"""

from __future__ import annotations

import enum
import importlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bundle import Bundle, atomic_write, file_entry
from ..errors import CheckFailed, EdgeclsError
from ..quiet import silenced


class Precision(str, enum.Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


#: format name -> module (imported on use)
FORMATS: dict[str, str] = {"onnx": "onnx", "tflite": "tflite", "openvino": "openvino"}


def format_module(name: str):
    return importlib.import_module(f"{__name__}.{FORMATS[name]}")


@dataclass
class ExportConfig:
    """Options of `edgecls export`."""

    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    int8: bool = False
    fp16: bool = False
    calib_size: int = 300  # calibration images, stratified from the training split
    data_dir: str | None = None  # where the dataset lives now, if it moved

    def validate(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise EdgeclsError(f"--format {','.join(unknown) or '(none)'}: unknown format "
                               f"(choose from {', '.join(FORMATS)}, or all)")
        if self.calib_size < 1:
            raise EdgeclsError(f"--calib-size {self.calib_size}: must be at least 1")

    def precisions(self) -> list[Precision]:
        return [Precision.fp32] + [Precision.fp16] * self.fp16 + [Precision.int8] * self.int8


@dataclass
class Written:
    """What a format module wrote, relative to the bundle folder."""

    file: str
    parts: list[str] = field(default_factory=list)  # sidecar files (OpenVINO's .bin)
    versions: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class ExportContext:
    """What every format module gets: the bundle, the Keras model, calibration images, scratch space."""

    def __init__(self, bundle: Bundle, model, cfg: ExportConfig, workdir: Path):
        self.bundle, self.model, self.cfg, self.workdir = bundle, model, cfg, workdir
        self._calib = None
        self._onnx: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.bundle.input_shape()

    def calibration(self) -> np.ndarray:
        """`calib_size` training images (uint8), stratified and seeded — never held-out ones."""
        if self._calib is None:
            seed = self.bundle.manifest["dataset"]["split"]["seed"]
            self._calib, _ = self.bundle.split_images("train", limit=self.cfg.calib_size, seed=seed,
                                                      data_dir=self.cfg.data_dir)
        return self._calib

    def metadata(self, precision: Precision) -> dict[str, str]:
        """Labels, input spec and preprocessing, as strings for formats that embed metadata."""
        m = self.bundle.manifest
        return {"edgecls.labels": json.dumps(m["labels"]), "edgecls.input": json.dumps(m["input"]),
                "edgecls.preprocessing": m["input"]["preprocessing"], "edgecls.precision": precision.value,
                "edgecls.version": m["edgecls_version"]}

    def onnx_fp32(self) -> Path:
        """An fp32 ONNX file: the bundle's if written in this run, else a scratch one (OpenVINO's source)."""
        if self._onnx is None:
            path = self.workdir / "model.onnx"
            format_module("onnx").convert_fp32(self, path)
            self._onnx = path
        return self._onnx

    def wrote_onnx_fp32(self, path: Path) -> None:
        self._onnx = path


@dataclass
class ExportResult:
    artifacts: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def _check(bundle: Bundle, fmt: str, written: Written, sample: np.ndarray, classes: int) -> dict:
    """Load the file with its real runtime and run a few held-out images through it."""
    from .. import runtimes

    runner = runtimes.create(fmt)
    runner.load(bundle.path / written.file)
    probs = runner.predict(sample)
    if probs.shape != (len(sample), classes):
        raise CheckFailed(f"{written.file}: output shape {probs.shape}, expected {(len(sample), classes)}")
    if not np.isfinite(probs).all():
        raise CheckFailed(f"{written.file}: output has NaN or infinite values")
    if np.abs(probs.sum(1) - 1).max() > 0.1:
        raise CheckFailed(f"{written.file}: outputs are not probabilities (row sums {probs.sum(1).round(3)})")
    return {"images": len(sample), "runtime": runner.name, "device": runner.device}




def _discard(bundle: Bundle, written: Written) -> None:
    """Delete a written file that failed its check, and any manifest entry that named that path."""
    for rel in [written.file, *written.parts]:
        (bundle.path / rel).unlink(missing_ok=True)
    bundle.manifest["artifacts"] = [a for a in bundle.manifest["artifacts"] if a["file"] != written.file]
    bundle.save()


def export(bundle_path: str | Path, cfg: ExportConfig, on_artifact=None) -> ExportResult:
    """Write every requested format x precision into the bundle and record it in the manifest.

    A format that fails (a layer it cannot express, a converter error, a failed self-check) is
    reported in `failures`; the other formats are still exported. Each file is written
    atomically and the manifest is saved after each one, so an interruption leaves earlier
    artifacts intact and recorded.

    Raises:
        EdgeclsError: bad options, a missing or tampered bundle (nothing is written).
    """
    cfg.validate()
    bundle = Bundle.open(bundle_path)
    model = bundle.load_keras()
    sample, _ = bundle.heldout(data_dir=cfg.data_dir, limit=8)
    classes = len(bundle.labels())
    result = ExportResult()
    labels = bundle.path / "labels.txt"
    atomic_write(labels, "\n".join(bundle.labels()) + "\n")
    bundle.record(file_entry(labels, bundle.path), key="files")
    with tempfile.TemporaryDirectory(prefix="edgecls-export-") as tmp:
        ctx = ExportContext(bundle, model, cfg, Path(tmp))
        for fmt in cfg.formats:
            module = format_module(fmt)
            for precision in cfg.precisions():
                if precision.value not in module.PRECISIONS:
                    continue
                t0 = time.perf_counter()
                written = None
                try:
                    with silenced():
                        written = module.export(ctx, precision)
                        check = _check(bundle, fmt, written, sample, classes)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # one format's failure must not stop the others
                    if written is not None:  # written but failed its check: no bad file stays on disk
                        _discard(bundle, written)
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    failure = {"format": fmt, "precision": precision.value, "error": msg}
                    result.failures.append(failure)
                    if on_artifact:
                        on_artifact(None, failure)
                    continue
                entry = {"format": fmt, "precision": precision.value, **file_entry(bundle.path / written.file,
                                                                                   bundle.path)}
                entry["parts"] = [file_entry(bundle.path / p, bundle.path) for p in written.parts]
                entry["total_bytes"] = entry["bytes"] + sum(p["bytes"] for p in entry["parts"])
                entry["versions"] = written.versions
                entry.update(written.details)
                if precision == Precision.int8:
                    entry["calibration"] = {"images": len(ctx.calibration()),
                                            "from": "training split, stratified, seeded"}
                entry["export_seconds"] = round(time.perf_counter() - t0, 2)
                entry["check"] = check
                fp32 = next((a for a in bundle.manifest["artifacts"]
                             if a["format"] == fmt and a["precision"] == "fp32"), None)
                if precision != Precision.fp32 and fp32:
                    entry["size_ratio_vs_fp32"] = round(entry["total_bytes"] / fp32.get("total_bytes",
                                                                                         fp32["bytes"]), 3)
                    if entry["parts"] and fp32.get("parts"):  # OpenVINO: weights (.bin) apart from the XML
                        entry["weights_ratio_vs_fp32"] = round(sum(p["bytes"] for p in entry["parts"])
                                                               / sum(p["bytes"] for p in fp32["parts"]), 3)
                bundle.record(entry)
                bundle.save()
                result.artifacts.append(entry)
                if on_artifact:
                    on_artifact(entry, None)
    bundle.save()
    return result
