"""train -> export -> verify -> bench -> report as one library call (the CLI's `pipeline` renders it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .bench.measure import BenchConfig, BenchResult, bench
from .core.gates import DEFAULT_MAX_DROP
from .core.hooks import Hooks
from .export import ExportConfig, ExportResult, export
from .report.document import write_report
from .train.fit import TrainConfig, TrainResult, train
from .train.importer import ImportConfig, ImportResult, import_model
from .verify.parity import VerifyResult, verify


@dataclass
class PipelineConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=lambda: ExportConfig(int8=True))
    # six interleaved rounds (the BenchConfig default) of >= 50 runs and 0.2 s: a 96.9% interval for every p50
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(batches=[1, 32], min_runs=50, min_time=0.2))
    max_drop: float = DEFAULT_MAX_DROP  # the int8 gate, for export, verify and the recommendation alike
    imported: ImportConfig | None = None  # import this model (edgecls import) in place of training one
    images: str | None = None  # --images: unlabelled images of the same kind (int8 selection and judging)

    def validate(self) -> None:
        """Every stage's options, before any work (a bad bench option must not wait for training)."""
        from .core.gates import check_max_drop

        if self.imported is not None:
            self.imported.validate()
        else:
            self.train.validate()
        dataclasses.replace(self.export, images=self.images).validate()  # a bad --images folder: before training
        self.bench.validate()
        check_max_drop(self.max_drop)


@dataclass
class PipelineResult:
    train: TrainResult | ImportResult  # the first stage: training, or an import (--model)
    export: ExportResult
    verify: VerifyResult
    bench: BenchResult
    report: Path

    @property
    def passed(self) -> bool:
        """A file ships: one is shown to pass and qualifies under the constraints. What stopped the others
        (a format that failed to export, a file shown to fail) is said beside it, not in the exit code."""
        return self.bench.decision.found

    def to_dict(self) -> dict:
        """Every stage's result, as `edgecls pipeline --json` prints it."""
        m = self.train.manifest
        return {"bundle": str(self.train.bundle), "passed": self.passed, "ships": self.passed,
                "train": {"metrics": m["metrics"], "baseline": m.get("baseline"),
                          **({"training": m["training"]} if "training" in m else {"imported": m.get("imported")})},
                "export": {"artifacts": self.export.artifacts, "failures": self.export.failures,
                           "passed": self.export.passed},
                "verify": self.verify.to_dict(),
                "bench": self.bench.to_dict(), "recommendation": self.bench.decision.to_dict(),
                "report": str(self.report)}


def run(cfg: PipelineConfig, *, hooks: Hooks | None = None) -> PipelineResult:
    """Train (or import `cfg.imported`), export, verify, bench and report. The one `hooks` object
    (`edgecls.core.hooks.Hooks`) goes to every stage that reports (train, export, verify, bench), and
    hears `stage(name, result)` after each stage (the first is named "train" or "import")."""
    hooks = hooks or Hooks()
    cfg.validate()
    if cfg.imported is not None:
        made = import_model(cfg.imported)
        hooks.stage("import", made)
    else:
        made = train(cfg.train, hooks=hooks)
        hooks.stage("train", made)
    exported = export(made.bundle, dataclasses.replace(cfg.export, max_drop=cfg.max_drop, images=cfg.images),
                      hooks=hooks)
    hooks.stage("export", exported)
    verified = verify(made.bundle, max_drop=cfg.max_drop, images=cfg.images, hooks=hooks)
    hooks.stage("verify", verified)
    benched = bench(made.bundle, cfg.bench, hooks=hooks)
    hooks.stage("bench", benched)
    report = write_report(made.bundle)
    hooks.stage("report", report)
    return PipelineResult(made, exported, verified, benched, report)
