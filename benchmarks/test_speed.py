"""Training and export speed as pytest-benchmark suites (one round each: they take seconds)."""

from edgecls.export import ExportConfig, export
from edgecls.train.fit import train

from .conftest import SMOKE, smoke_train_config


def test_training_two_epochs(benchmark, tmp_path):
    cfg = smoke_train_config(epochs=2, patience=100, out=tmp_path / "b")
    result = benchmark.pedantic(train, args=(cfg,), rounds=1, iterations=1)
    benchmark.extra_info["train_images_per_second"] = result.manifest["training"]["train_images_per_second"]


def test_export_all_formats_fp32_int8(benchmark, digits_run, tmp_path):
    import shutil

    dest = tmp_path / "b"
    shutil.copytree(digits_run["bundle"], dest)
    cfg = ExportConfig(int8=True, calib_size=64) if SMOKE else ExportConfig(int8=True)
    result = benchmark.pedantic(export, args=(dest, cfg), rounds=1, iterations=1)
    assert not result.failures
    benchmark.extra_info["size_ratio_vs_fp32"] = {a["format"]: a["size_ratio_vs_fp32"] for a in result.artifacts
                                                  if a["precision"] == "int8"}
