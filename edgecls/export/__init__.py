"""Export a bundle's Keras model to every format (a registry), each checked right after writing.

Each format module has the same shape (`base.FormatModule`): ``PRECISIONS`` (what it can write),
``FILES``, ``RUNTIME`` (what runs its files) and ``export(ctx, precision) -> WrittenFiles``, and
declares what verify --explain and the web app need. Adding a format = one module and one registry
line (docs/architecture.md).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.bundle import Bundle
from ..core.errors import SelfCheckFailed
from ..core.files import file_entry
from ..core.hooks import Hooks
from ..core.names import Precision
from ..core.quiet import silenced
from ..runtimes.keras import load_bundle_model
from ..train import recorded
from . import accuracy, qat_files, reference
from .base import FORMATS, ExportConfig, ExportContext, WrittenFiles, format_module, runtime_of
from .onnx import FP32_KEY

__all__ = ["FORMATS", "ExportConfig", "ExportContext", "ExportResult", "WrittenFiles", "export", "format_module",
           "runtime_of"]


@dataclass
class ExportResult:
    artifacts: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def gate_failures(self) -> list[dict]:
        """int8 artifacts shown to fail the gate on the judging set (the best recipe is kept, marked failing);
        inconclusive ones are not failures (verify and the recommendation say so)."""
        return [a for a in self.artifacts if (a.get("int8") or {}).get("outcome") == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.gate_failures


def _check(root: Path, fmt: str, precision: Precision, written: WrittenFiles, sample: np.ndarray,
           classes: int) -> dict:
    """Load the file (under `root`, its staging folder) with the runtime that runs its format and run a few
    held-out images through it."""
    from .. import runtimes

    runner = runtimes.create(runtime_of(fmt))
    runner.load(root / written.file)
    probs = runner.predict(sample)
    if probs.shape != (len(sample), classes):
        raise SelfCheckFailed(f"{written.file}: output shape {probs.shape}, expected {(len(sample), classes)}")
    if not np.isfinite(probs).all():
        raise SelfCheckFailed(f"{written.file}: output has NaN or infinite values")
    if np.abs(probs.sum(1) - 1).max() > 0.1:
        raise SelfCheckFailed(f"{written.file}: outputs are not probabilities (row sums {probs.sum(1).round(3)})")
    check = {"images": len(sample), "runtime": str(runner.name), "device": runner.device_ran}
    if precision == Precision.int8:  # calibration that had no effect must not pass as int8
        check["quantized_ops"] = quantized = format_module(fmt).quantized_ops(root / written.file)
        if quantized == 0:
            raise SelfCheckFailed(f"{written.file}: no quantized operation in the int8 file (the quantizer fell back "
                              "to float: calibration had no effect)")
    return check



def export(bundle_path: str | Path, cfg: ExportConfig, *, hooks: Hooks | None = None) -> ExportResult:
    """Write every requested format x precision into the bundle and record it in the manifest.

    A format that fails (a layer it cannot express, a converter error, a failed self-check) is
    reported in `failures`; the other formats are still exported. Each artifact is written to a
    staging folder in the bundle, checked there, and only then swapped in together with its
    manifest entry (`Bundle.save(installs=...)`): a file that fails its check never replaces the
    bundle's previous one, and an interruption (even kill -9) leaves every artifact either as it was
    or as it became, recorded with its hash. `hooks.artifact(entry, failure)` hears each format x precision
    as it is done (`edgecls.core.hooks.Hooks`).

    Raises:
        EdgeclsError: bad options, a missing or tampered bundle (nothing is written).
    """
    hooks = hooks or Hooks()
    cfg.validate()
    bundle = Bundle.open(bundle_path)
    model = load_bundle_model(bundle)
    sample, _ = recorded.heldout(bundle, data_dir=cfg.data_dir, limit=8)
    classes = len(bundle.labels())
    result = ExportResult()
    with tempfile.TemporaryDirectory(prefix="edgecls-export-") as tmp:
        ctx = ExportContext(bundle, model, cfg, Path(tmp))
        ctx.unlabelled()  # a bad --images folder is refused before anything is written
        if cfg.qat == "on":  # first: a layer that cannot be rebuilt or a diverging fine-tune stops here, unwritten
            with silenced():
                qat_files.prepare(ctx)
            ctx.qat_formats = set(cfg.formats)
        bundle.put("labels.txt", "\n".join(bundle.labels()) + "\n")
        for fmt in cfg.formats:
            module = format_module(fmt)
            ctx.workdir = Path(tmp) / str(fmt)  # each format's own scratch: no file name is shared by accident
            ctx.workdir.mkdir(exist_ok=True)
            for precision in cfg.precisions():
                if precision.value not in module.PRECISIONS:
                    continue
                try:
                    entry = _export_one(ctx, fmt, precision, sample, classes)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # one format's failure must not stop the others
                    failure = {"format": str(fmt), "precision": precision.value, "type": type(e).__name__,
                               "error": refusal(str(fmt), e),  # one line: the op refused, else the first line
                               "message": str(e).strip() or type(e).__name__}  # the whole message
                    result.failures.append(failure)
                    hooks.artifact(None, failure)
                    continue
                result.artifacts.append(entry)
                hooks.artifact(entry, None)
        if cfg.qat == "auto" and result.gate_failures:
            _auto_qat(ctx, result, sample, classes, hooks)
        if result.artifacts:  # verify and bench can then run where the data or TensorFlow is not
            reference.write(bundle, model, cfg.reference_size, cfg.data_dir)
        onnx_fp32 = ctx.kept(FP32_KEY)
        if onnx_fp32 is not None:  # the graph's multiply-accumulates (from ONNX's fp32 graph), for bench's GOP/s
            from .macs import macs_per_image

            bundle.manifest["architecture"]["macs_per_image"] = macs_per_image(onnx_fp32)
    bundle.save()
    return result


def refusal(fmt: str, e: Exception) -> str:
    """One line for why a converter failed: the op (and where in the model) it refused where its message names
    one, else the message's first line."""
    import re

    text = " ".join(str(e).split())
    op = re.search(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)
    if op:
        where = re.search(r'fused\["' + op.group(1) + r':", "([^"@]+)', text)
        at = f" (at {where.group(1)})" if where and where.group(1) != op.group(1) else ""
        return (f"the converter refuses TensorFlow op {op.group(1)}{at}: it is not a {fmt} builtin "
                "operation; the other formats are unaffected")
    ops = re.search(r"[Uu]nsupported ops?:? (?:Counter\()?\{?([^}]*)\}?", text)
    if ops:
        return f"the converter has no conversion for TensorFlow op(s) {ops.group(1).strip(' )')}"
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__


def _export_one(ctx: ExportContext, fmt: str, precision: Precision, sample: np.ndarray, classes: int) -> dict:
    """Write one format x precision into a staging folder, check it with its runtime there, then swap
    it into the bundle with its manifest entry. A file that fails stays out: the bundle keeps the
    artifact it had."""
    bundle = ctx.bundle
    t0 = time.perf_counter()
    tuned = None
    module = format_module(fmt)
    with bundle.staging() as stage:
        ctx.out = stage
        try:
            with silenced():
                use_qat = precision == Precision.int8 and qat_files.applies(ctx, fmt)
                written = qat_files.export(ctx, fmt) if use_qat else module.export(ctx, precision)
                check = _check(stage, fmt, precision, written, sample, classes)
                if precision == Precision.int8:  # judged as verify does; a more accurate recipe if it misses
                    tuned = accuracy.choose_int8_recipe(ctx, fmt, written, qat_files.no_candidates if use_qat
                                                        else module.accuracy_aware)
                    if use_qat:
                        tuned = qat_files.record(ctx, tuned)
                    elif tuned["recipe"] != "default":
                        check = _check(stage, fmt, precision, written, sample, classes)
            entry = _entry(bundle, stage, fmt, precision, written)
            if precision == Precision.int8:
                entry["calibration"] = qat_files.NO_CALIBRATION if use_qat else ctx.calibration_record()
                entry["int8"] = tuned
            entry["export_seconds"] = round(time.perf_counter() - t0, 2)
            entry["check"] = check
            bundle.record(entry)
            bundle.save(installs={rel: stage / rel for rel in [written.file, *written.parts]})
            ctx.installed(stage)
        finally:
            ctx.out = None
            ctx.installed(stage, kept=False)  # a failed file's path is not a source for the next format
    return entry


def _auto_qat(ctx: ExportContext, result: ExportResult, sample: np.ndarray, classes: int, hooks: Hooks) -> None:
    """`--qat auto`: the int8 files that missed the gate after the accuracy-aware recipes are made again from the
    QAT model (each replaces the failing file in the bundle, recorded with why)."""
    from ..core.errors import EdgeclsError

    failing = [a["format"] for a in result.gate_failures]
    ctx.qat_formats = set(failing)
    ctx.qat_why = (f"--qat auto: post-training int8 of {', '.join(failing)} missed the gate after "
                   "the accuracy-aware recipes")
    try:
        with silenced():
            qat_files.prepare(ctx)
    except EdgeclsError as e:  # a layer it cannot rebuild, a diverging phase, TF-MOT not installed
        failure = {"format": ",".join(failing), "precision": "int8", "error": f"--qat auto: {e}"}
        result.failures.append(failure)
        hooks.artifact(None, failure)
        return
    for fmt in failing:
        try:
            entry = _export_one(ctx, fmt, Precision.int8, sample, classes)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # the post-training file stays, failing
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failure = {"format": fmt, "precision": "int8", "error": f"--qat auto: {msg}"}
            result.failures.append(failure)
            hooks.artifact(None, failure)
            continue
        result.artifacts = [a for a in result.artifacts if not (a["format"] == fmt and a["precision"] == "int8")]
        result.artifacts.append(entry)
        hooks.artifact(entry, None)


def _entry(bundle: Bundle, stage: Path, fmt: str, precision: Precision, written: WrittenFiles) -> dict:
    """The manifest entry of a written artifact (staged under `stage`): files, sizes, hashes, versions,
    size vs fp32."""
    entry = {"format": str(fmt), "precision": precision.value, "runtime": runtime_of(fmt),
             **file_entry(stage / written.file, stage)}
    entry["parts"] = [file_entry(stage / p, stage) for p in written.parts]
    entry["total_bytes"] = entry["bytes"] + sum(p["bytes"] for p in entry["parts"])
    entry["versions"] = written.versions
    entry.update(written.details)
    fp32 = next((a for a in bundle.manifest["artifacts"] if a["format"] == fmt and a["precision"] == "fp32"), None)
    if precision != Precision.fp32 and fp32:
        entry["size_ratio_vs_fp32"] = round(entry["total_bytes"] / fp32.get("total_bytes", fp32["bytes"]), 3)
        if entry["parts"] and fp32.get("parts"):  # OpenVINO: weights (.bin) apart from the XML
            entry["weights_ratio_vs_fp32"] = round(sum(p["bytes"] for p in entry["parts"])
                                                   / sum(p["bytes"] for p in fp32["parts"]), 3)
    return entry
