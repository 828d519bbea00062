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
from ..core.gates import DEFAULT_MAX_DROP, check_max_drop
from ..core.names import Format, Precision, parse
from ..core.registry import Registry
from ..train import recorded
from .reference import DEFAULT_IMAGES, MAX_IMAGES

#: format -> its module (a FormatModule, imported on use). Everything export, verify (--explain), the
#: classifier, golden and the web app need about a format is declared by its module; a new format is one
#: module and one `FORMATS.register(name, "package.module")`.
FORMATS: Registry = Registry("format", "--format", {Format.onnx: "edgecls.export.onnx",
                                                    Format.tflite: "edgecls.export.tflite",
                                                    Format.openvino: "edgecls.export.openvino"})


def format_module(name: str) -> "FormatModule":
    return FORMATS.get(name)


def runtime_of(fmt: str) -> str:
    """The runtime that runs `fmt`'s files (its module's RUNTIME): it checks them at export and is recorded in
    each artifact's manifest entry, where verify, bench, predict and golden find it."""
    return getattr(format_module(fmt), "RUNTIME", str(fmt))


@dataclass
class ExportConfig:
    """Options of `edgecls export`."""

    formats: list[str] = field(default_factory=lambda: list(FORMATS))  # registered format names
    int8: bool = False
    fp16: bool = False
    calib_size: int = 300  # calibration images, stratified from the training split
    data_dir: str | None = None  # where the dataset lives now, if it moved
    reference_size: int = DEFAULT_IMAGES  # held-out images stored in reference.npz (edgecls.export.reference)
    max_drop: float = DEFAULT_MAX_DROP  # int8 gate at export (accuracy points), judged as verify does
    images: str | None = None  # --images: unlabelled images of the same kind (int8 recipe selection)
    skip_bad: bool = False  # --skip-bad: skip unreadable files in the --images folder (counted) instead of refusing
    qat: str = "off"  # quantization-aware fine-tuning for int8: off, on, auto (edgecls.export.qat.QatMode)
    qat_settings: object = None  # its settings (time limit, epochs); None: the defaults

    def validate(self) -> None:
        if not 1 <= self.reference_size <= MAX_IMAGES:
            raise EdgeclsError(f"--reference-size {self.reference_size}: must be between 1 and {MAX_IMAGES}")
        if not self.formats:
            raise EdgeclsError(f"--format (none): name at least one format ({', '.join(FORMATS.names())}), or all")
        self.formats = parse(FORMATS, self.formats, "--format") or list(FORMATS)
        check_max_drop(self.max_drop)
        if self.calib_size < 1:
            raise EdgeclsError(f"--calib-size {self.calib_size}: must be at least 1")
        if self.images is not None:
            from ..train import unlabelled

            if not self.int8:
                raise EdgeclsError(f"--images {self.images}: unlabelled images choose and judge int8 files; add "
                                   "--int8 (float files need no unseen images)")
            unlabelled.files(self.images)  # its images are decoded (and a bad one refused) before anything is written
        elif self.skip_bad:
            raise EdgeclsError("--skip-bad: skips unreadable files of an --images folder; add --images DIR")
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
    RUNTIME: str  # the registered runtime that runs its files (recorded in each artifact's manifest entry)
    # optional: explain_layers(bundle, artifact, images, workdir, data_dir) -> LayerTable (verify --explain;
    # without it the table says the format has no per-layer tool), and WEB (`WebRuntime`: the web app's
    # JavaScript runtime for its files; without it `edgecls app` refuses the format)

    def export(self, ctx: "ExportContext", precision: Precision) -> "WrittenFiles":
        """Write `precision` into `ctx.out` (the staging folder); say what was written."""

    def accuracy_aware(self, ctx: "ExportContext", selection, workdir: Path) -> Iterator:
        """More accurate int8 recipes (`accuracy.Recipe`), each keeping more layers in float."""

    def quantized_ops(self, path: Path) -> int:
        """How many quantized operations an int8 file holds (0: calibration did nothing)."""


def float_file(bundle: Bundle, fmt: str) -> Path:
    """The bundle's fp32 file of `fmt` (what a per-layer tool compares the int8 file with), checked."""
    a = next((a for a in bundle.manifest["artifacts"] if a["format"] == fmt and a["precision"] == "fp32"), None)
    if a is None:
        raise EdgeclsError(f"no fp32 {fmt} file in the bundle to compare with (run 'edgecls export')")
    return bundle.checked_path(a["file"])


@dataclass
class LayerTable:
    """A format's per-layer int8 error (`verify --explain`): SQNR of each layer's int8 output vs float."""

    tool: str  # the vendor tool that measured it
    measure: str  # "cumulative" (float model vs int8 model up to the layer) or "local" (each op fed the same input)
    rows: list[tuple[str, list[int] | None, float]] = field(default_factory=list)  # (layer, shape per image, dB)
    note: str = ""  # why there is no table here (a missing package, data), or ""


@dataclass(frozen=True)
class WebRuntime:
    """What the web app needs to run a format's files in the browser: the npm package (pinned in
    apps/web/package-lock.json), the files copied from it into the app, and the page's import map."""

    package: str
    files: dict[tuple[str, str], str]  # (package, path inside it) -> path in the app folder
    import_map: dict | None = None


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
        self._kept: dict[str, Path] = {}  # intermediate files one format makes for others (`keep`, `kept`)

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
            def known():  # the bundle's own images, decoded only once the folder is known to be good
                return {"training": recorded.digests(b, "train", d), "validation": recorded.digests(b, "val", d),
                        "held-out": recorded.digests(b, "test", d)}

            self._unlabelled = unlabelled.load(self.cfg.images, self.input_shape, known,
                                               seed=b.manifest["dataset"]["split"]["seed"], skip_bad=self.cfg.skip_bad)
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

    def keep(self, key: str, path: Path) -> None:
        """Remember a file this export made (ONNX's fp32 graph, which OpenVINO converts) for other formats."""
        self._kept[key] = path

    def kept(self, key: str) -> Path | None:
        """A file remembered under `key` that still exists, or None."""
        path = self._kept.get(key)
        return path if path is not None and path.is_file() else None

    def installed(self, stage: Path, kept: bool = True) -> None:
        """The files staged in `stage` are now in the bundle (`kept`), or were dropped: a remembered path into
        the stage follows them, or is forgotten."""
        for key, path in list(self._kept.items()):
            if stage in path.parents:
                if kept:
                    self._kept[key] = self.bundle.path / path.relative_to(stage)
                else:
                    del self._kept[key]
