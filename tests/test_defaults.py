"""One source for every default: each CLI option's default is its config field's (the library's), so the two
cannot drift (as `export --reference-size` did: 256 on the command line, 400 in ExportConfig). Every option
of each command is either mapped to a config field here or named as the command's own."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect

import pytest

from edgecls.apps.web.build import AppConfig
from edgecls.bench.decide import Constraints
from edgecls.bench.measure import BenchConfig
from edgecls.cli import bench, export, pipeline, train, verify
from edgecls.export.base import FORMATS, ExportConfig
from edgecls.export.qat import QatSettings
from edgecls.pipeline import PipelineConfig
from edgecls.train.fit import TrainConfig
from edgecls.train.importer import ImportConfig
from edgecls.verify.parity import VerifyConfig


def _default(obj, field: str):
    """The default of `field`: a config class's declared default, or a default instance's value (the pipeline's
    stages, which set their own)."""
    if not isinstance(obj, type):
        return getattr(obj, field)
    f = next(f for f in dataclasses.fields(obj) if f.name == field)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _plain(value):
    """A CLI default as the config holds it: enum members as their values, "all" as every one ([]),
    comma-separated numbers as a list."""
    if isinstance(value, enum.Enum):
        return value.value
    if value == "all" or value == list(FORMATS):  # every registered one
        return []
    if isinstance(value, str) and value.replace(",", "").isdigit():
        return [int(v) for v in value.split(",")]
    return value


P = PipelineConfig()
app_cmd = importlib.import_module("edgecls.cli.app")  # the package's `app` attribute is the Typer app
CASES = {  # command -> ({option: (config, field)}, the command's own options)
    app_cmd.app: ({"out_dir": (AppConfig, "out"), "fmt": (AppConfig, "fmt"), "precision": (AppConfig, "precision"),
                   "golden": (AppConfig, "golden"), "data_dir": (AppConfig, "data_dir")},
                  {"bundle", "check", "image", "screenshot", "threads", "as_json"}),
    train.train: ({name: (TrainConfig, name) for name in (
        "data", "arch", "pretrained", "backbone_size", "fine_tune_blocks", "epochs", "batch_size", "lr", "image_size",
        "val_split", "test_split", "seed", "augment", "patience", "width", "limit", "data_dir", "skip_bad", "cache",
        "strategy", "worker_timeout")} | {"out_dir": (TrainConfig, "out")}, {"as_json"}),
    export.export: ({"int8": (ExportConfig, "int8"), "fp16": (ExportConfig, "fp16"), "fmt": (ExportConfig, "formats"),
                     "calib_size": (ExportConfig, "calib_size"), "reference_size": (ExportConfig, "reference_size"),
                     "max_drop": (ExportConfig, "max_drop"), "data_dir": (ExportConfig, "data_dir"),
                     "images": (ExportConfig, "images"), "skip_bad": (ExportConfig, "skip_bad"),
                     "qat_time_limit": (QatSettings, "time_limit"),
                     "qat_epochs": (QatSettings, "max_epochs")},
                    {"bundle", "as_json", "qat", "qat_auto"}),
    verify.verify: ({"runtime": (VerifyConfig, "runtimes"), "device": (VerifyConfig, "device"),
                     "threads": (VerifyConfig, "threads"), "max_drop": (VerifyConfig, "max_drop"),
                     "ov_precision": (VerifyConfig, "compute"), "data_dir": (VerifyConfig, "data_dir"),
                     "images": (VerifyConfig, "images"), "skip_bad": (VerifyConfig, "skip_bad")},
                    {"bundle", "explain", "strict", "as_json", "platform", "cpu", "cache_dir", "timeout"}),
    bench.bench: ({"runtime": (BenchConfig, "runtimes"), "precision": (BenchConfig, "precisions"),
                   "device": (BenchConfig, "device"), "batch": (BenchConfig, "batches"),
                   "threads": (BenchConfig, "threads"), "warmup": (BenchConfig, "warmup"),
                   "warmup_time": (BenchConfig, "warmup_time"), "min_runs": (BenchConfig, "min_runs"),
                   "min_time": (BenchConfig, "min_time"), "rounds": (BenchConfig, "rounds"),
                   "for_batch": (Constraints, "for_batch"), "max_latency": (Constraints, "max_latency_ms"),
                   "percentile": (Constraints, "percentile"), "max_size": (Constraints, "max_size_kb"),
                   "max_drop": (Constraints, "max_drop"), "tie_margin": (Constraints, "tie_margin"),
                   "accept_inconclusive": (Constraints, "accept_inconclusive")},
                  {"bundle", "json_file", "csv_file"}),
    pipeline.pipeline: ({"data": (P.train, "data"), "arch": (P.train, "arch"), "pretrained": (P.train, "pretrained"),
                         "backbone_size": (P.train, "backbone_size"), "out_dir": (P.train, "out"),
                         "seed": (P.train, "seed"), "epochs": (P.train, "epochs"), "batch": (P.bench, "batches"),
                         "runtime": (P.bench, "runtimes"), "for_batch": (P.bench.constraints, "for_batch"),
                         "max_latency": (P.bench.constraints, "max_latency_ms"),
                         "percentile": (P.bench.constraints, "percentile"),
                         "max_size": (P.bench.constraints, "max_size_kb"), "max_drop": (P, "max_drop"),
                         "tie_margin": (P.bench.constraints, "tie_margin"),
                         "accept_inconclusive": (P.bench.constraints, "accept_inconclusive"),
                         **{name: (ImportConfig, name) for name in ("labels", "scale", "offset", "mean", "std",
                                                                     "channels_order")},
                         "raw_pixels": (ImportConfig, "raw"), "images": (P, "images"), "skip_bad": (P, "skip_bad")},
                        {"as_json", "model", "qat_auto"}),
}


@pytest.mark.parametrize("command", list(CASES), ids=lambda c: c.__name__)
def test_every_cli_default_is_its_config_fields(command):
    mapped, own = CASES[command]
    params = inspect.signature(command).parameters
    assert set(params) == set(mapped) | own, "an option is neither mapped to a config field nor the command's own"
    wrong = {name: (_plain(params[name].default), _default(obj, field)) for name, (obj, field) in mapped.items()
             if _plain(params[name].default) != _plain(_default(obj, field))}
    assert not wrong, wrong


def test_export_reference_size_is_the_configs_400():
    assert inspect.signature(export.export).parameters["reference_size"].default == ExportConfig.reference_size == 400
