"""What the export package and its format modules share: the options, what a format wrote, and the
context each format module gets (the bundle, the Keras model, calibration images, scratch space).

A module of its own so that format modules import it at the top (no import cycle with the
package's `export()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.gates import check_max_drop
from ..core.names import Format, Precision, parse
from ..core.registry import Registry
from ..train import recorded
from .reference import DEFAULT_IMAGES, MAX_IMAGES

#: format -> its module (a FormatModule, imported on use)
FORMATS: Registry = Registry("format", "--format", {Format.onnx: "edgecls.export.onnx",
                                                    Format.tflite: "edgecls.export.tflite",
                                                    Format.openvino: "edgecls.export.openvino"})


def format_module(name: Format | str) -> "FormatModule":
    return FORMATS.get(Format(name))


@dataclass
class ExportConfig:
    """Options of `edgecls export`."""

    formats: list[Format] = field(default_factory=lambda: list(FORMATS))
    int8: bool = False
    fp16: bool = False
    calib_size: int = 300  # calibration images, stratified from the training split
    data_dir: str | None = None  # where the dataset lives now, if it moved
    reference_size: int = DEFAULT_IMAGES  # held-out images stored in reference.npz (edgecls.export.reference)
    max_drop: float = 1.0  # int8 gate at export (accuracy points), judged as verify does (export/accuracy.py)
    images: str | None = None  # --images: unlabelled images of the same kind (int8 recipe selection)
    qat: str = "off"  # quantization-aware fine-tuning for int8: off, on, auto (edgecls.export.qat.QatMode)
    qat_settings: object = None  # its settings (time limit, epochs); None: the defaults

    def validate(self) -> None:
        if not 1 <= self.reference_size <= MAX_IMAGES:
            raise EdgeclsError(f"--reference-size {self.reference_size}: must be between 1 and {MAX_IMAGES}")
        if not self.formats:
            raise EdgeclsError("--format (none): name at least one format (onnx, tflite, openvino), or all")
        self.formats = parse(Format, self.formats, "--format") or list(FORMATS)
        check_max_drop(self.max_drop)
        if self.calib_size < 1:
            raise EdgeclsError(f"--calib-size {self.calib_size}: must be at least 1")
        if self.images is not None:
            from ..train import unlabelled

            if not self.int8:
                raise EdgeclsError(f"--images {self.images}: unlabelled images choose and judge int8 files; add "
                                   "--int8 (float files need no unseen images)")
            unlabelled.check(self.images)
        from .qat import QatMode, QatSettings

        if str(getattr(self.qat, "value", self.qat)) not in [m.value for m in QatMode]:
            raise EdgeclsError(f"--qat {self.qat}: choose from {', '.join(m.value for m in QatMode)}")
        self.qat = QatMode(getattr(self.qat, "value", self.qat))
        if self.qat != QatMode.off and not self.int8:
            raise EdgeclsError(f"--qat {self.qat.value}: quantization-aware fine-tuning makes int8 files; add --int8")
        self.qat_settings = self.qat_settings or QatSettings()
        self.qat_settings.validate()

    def precisions(self) -> list[Precision]:
        return [Precision.fp32] + [Precision.fp16] * self.fp16 + [Precision.int8] * self.int8


@runtime_checkable
class FormatModule(Protocol):
    """What every module of edgecls/export/ declares (a test checks each registered format against it)."""

    PRECISIONS: tuple[str, ...]  # what it can write
    FILES: dict[str, str]  # precision -> the file written, relative to the bundle
    RECIPE: str  # its accuracy-aware int8 recipe, in words

    def export(self, ctx: "ExportContext", precision: Precision) -> "WrittenFiles":
        """Write `precision` into `ctx.out` (the staging folder); say what was written."""

    def accuracy_aware(self, ctx: "ExportContext", selection, workdir: Path) -> Iterator:
        """More accurate int8 recipes (`accuracy.Recipe`), each keeping more layers in float."""

    def quantized_ops(self, path: Path) -> int:
        """How many quantized operations an int8 file holds (0: calibration did nothing)."""


@dataclass
class WrittenFiles:
    """What a format module wrote, relative to the bundle folder."""

    file: str
    parts: list[str] = field(default_factory=list)  # sidecar files (OpenVINO's .bin)
    versions: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class ExportContext:
    """What every format module gets: the bundle, the Keras model, calibration images, scratch space."""

    def __init__(self, bundle: Bundle, model, cfg: ExportConfig, workdir: Path):
        self.bundle, self.model, self.cfg, self.workdir = bundle, model, cfg, workdir
        self.out: Path | None = None  # where the artifact being exported is written: its staging folder
        self._calib = None
        self._int8_images = None
        self._unlabelled = None
        self._onnx: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.bundle.input_shape()

    def calibration(self) -> np.ndarray:
        """Calibration images (uint8): `calib_size` of the training split, stratified and seeded, at most
        half of it (the other half stays unseen by calibration, so verify can judge int8 on it) —
        never validation or held-out images."""
        if self._calib is None:
            seed = self.bundle.manifest["dataset"]["split"]["seed"]
            n_train = len(self.bundle.split_ids("train"))
            limit = min(self.cfg.calib_size, max(1, n_train // 2))
            self._calib_ids, self._calib, _ = recorded.select(self.bundle, "train", limit=limit, seed=seed,
                                                                 data_dir=self.cfg.data_dir)
        return self._calib

    def int8_images(self):
        """The selection and judging sets of accuracy-aware int8 (`accuracy.int8_images`), built once."""
        if self._int8_images is None:
            from .accuracy import int8_images

            self._int8_images = int8_images(self)
        return self._int8_images

    def unlabelled(self):
        """The --images folder (`edgecls.train.unlabelled.Unlabelled`, the bundle's own images dropped), or None."""
        if self.cfg.images is None:
            return None
        if self._unlabelled is None:
            from ..train import unlabelled

            b, d = self.bundle, self.cfg.data_dir
            known = {"training": recorded.digests(b, "train", d), "validation": recorded.digests(b, "val", d),
                     "held-out": recorded.digests(b, "test", d)}
            self._unlabelled = unlabelled.load(self.cfg.images, self.input_shape, known,
                                               seed=b.manifest["dataset"]["split"]["seed"])
        return self._unlabelled

    def calibration_record(self) -> dict:
        """What the manifest says of the calibration: count, split, which ids, a hash of the pixels."""
        import hashlib

        images = self.calibration()
        return {"images": len(images), "split": "train", "selection": "stratified, seeded, at most half the split",
                "ids": list(self._calib_ids), "sha256": hashlib.sha256(np.ascontiguousarray(images)).hexdigest()}

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

    def installed(self, stage: Path, kept: bool = True) -> None:
        """The files staged in `stage` are now in the bundle (`kept`), or were dropped: a path kept into
        the stage follows them, or is forgotten."""
        if self._onnx is not None and stage in self._onnx.parents:
            self._onnx = self.bundle.path / self._onnx.relative_to(stage) if kept else None

    def has_onnx_fp32(self) -> bool:
        return self._onnx is not None and self._onnx.is_file()

    def wrote_onnx_fp32(self, path: Path) -> None:
        self._onnx = path
