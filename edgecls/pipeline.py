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
    skip_bad: bool = False  # skip (and count) unreadable files of the --images folder (the CLI's --skip-bad sets it
    # and the training folder's, train.skip_bad)

    def validate(self) -> None:
        """Every stage's options, before any work (a bad bench option or --images folder must not wait for
        training)."""
        from .core.gates import check_max_drop

        if self.imported is not None:
            self.imported.validate()
        else:
            self.train.validate()
        self._export_config().validate()
        if self.images is not None:
            from .train import sources, unlabelled

            _not_in_data(self.images, self.imported.data if self.imported is not None else self.train.data)
            if self.imported is None:  # decoded now at the input training gives, once: export and verify reuse it
                shape, seed = sources.input_shape(self.train.data, self.train.image_size), self.train.seed
            else:  # an imported model's input is known once imported: checked now, decoded at it then
                shape, seed = None, self.imported.seed
            unlabelled.check(self.images, shape=shape, seed=seed, skip_bad=self.skip_bad)
        self.bench.validate()
        check_max_drop(self.max_drop)

    def _export_config(self) -> ExportConfig:
        return dataclasses.replace(self.export, max_drop=self.max_drop, images=self.images,
                                   skip_bad=self.skip_bad and self.images is not None)


def _not_in_data(images: str, data: str) -> None:
    """--images is (inside) the --data folder: every image of it would be the bundle's own, which is known only
    after training splits the folder; refused before, in one line."""
    from .core.errors import EdgeclsError
    from .train.sources import SOURCES

    if data is None or data in SOURCES or not Path(data).is_dir():
        return
    inside, top = Path(images).resolve(), Path(data).resolve()
    if inside == top or top in inside.parents:
        raise EdgeclsError(f"--images {images}: is {'the' if inside == top else 'inside the'} --data folder "
                           f"{data}: its images are the bundle's own (training, validation, held-out); give a "
                           "folder of images the model never saw")


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
    exported = export(made.bundle, cfg._export_config(), hooks=hooks)
    hooks.stage("export", exported)
    verified = verify(made.bundle, max_drop=cfg.max_drop, images=cfg.images,
                      skip_bad=cfg.skip_bad and cfg.images is not None, hooks=hooks)
    hooks.stage("verify", verified)
    benched = bench(made.bundle, cfg.bench, hooks=hooks)
    hooks.stage("bench", benched)
    report = write_report(made.bundle)
    hooks.stage("report", report)
    return PipelineResult(made, exported, verified, benched, report)
