"""One callback style across the stages: every stage function takes ``hooks=`` (one `edgecls.core.hooks.Hooks`),
and `pipeline.run` passes its one object through to every stage it runs."""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

from edgecls.core.hooks import Hooks

PACKAGE = Path(__file__).resolve().parent.parent / "edgecls"
BASE = Path("edgecls/core/hooks.py")


def _stage_functions():
    from edgecls.bench.measure import bench
    from edgecls.export import export
    from edgecls.pipeline import run
    from edgecls.platforms.verify import verify_platform
    from edgecls.train.fit import train
    from edgecls.tune.search import tune
    from edgecls.verify.parity import verify

    return [train, export, verify, verify_platform, bench, run, tune]


def test_every_stage_function_takes_one_keyword_hooks_of_the_one_type():
    for f in _stage_functions():
        p = inspect.signature(f).parameters
        assert "hooks" in p, f.__qualname__
        assert p["hooks"].kind == inspect.Parameter.KEYWORD_ONLY and p["hooks"].default is None, f.__qualname__
        assert "Hooks" in str(p["hooks"].annotation), f.__qualname__
        assert not [n for n in p if n.startswith("on_")], f.__qualname__


def test_no_public_function_takes_an_on_callable_and_no_second_hooks_class():
    """Read with `ast` over the whole package: no public function or method has an ``on_*`` parameter, and no class
    but `core.hooks.Hooks` is a hooks base (named *Hooks). Keras' own callback methods (`on_epoch_end(self, ...)`)
    are method names, not parameters, and pass."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent)
        if "_vendor" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                found += [f"{rel}:{node.lineno} {node.name}({n})" for n in names if n.startswith("on_")]
            elif isinstance(node, ast.ClassDef) and node.name.endswith("Hooks") and rel != BASE:
                found.append(f"{rel}:{node.lineno} class {node.name}")
    assert not found, found


def test_the_base_is_all_no_ops():
    h = Hooks()
    for name, method in inspect.getmembers(Hooks, inspect.isfunction):
        if name.startswith("_"):
            continue
        args = [None] * (len(inspect.signature(method).parameters) - 1)
        assert getattr(h, name)(*args) is None


class Recorder(Hooks):
    """Records every call, in order; the batches of one epoch as one event."""

    def __init__(self):
        self.events = []

    def _add(self, event):
        if not self.events or self.events[-1] != event or event != "batch":
            self.events.append(event)

    def note(self, text):
        self._add("note")

    def start(self, info):
        self._add("start")

    def epoch_start(self, epoch, steps):
        self._add("epoch_start")

    def batch(self, step):
        self._add("batch")

    def epoch_end(self, log):
        assert log.epoch >= 1 and np.isfinite(log.loss)
        self._add("epoch_end")

    def evaluating(self):
        self._add("evaluating")

    def artifact(self, entry, failure):
        assert failure is None, failure
        self._add(f"artifact {entry['format']} {entry['precision']}")

    def outputs(self, row, probabilities):
        assert probabilities.ndim == 2 and np.allclose(probabilities.sum(1), 1, atol=0.02)
        self._add(f"outputs {row.file}")

    def row(self, row):
        self._add(f"row {row.file} {row.outcome.value}")

    def measured(self, row):
        self._add(f"measured {row['runtime']} {row['precision']} batch {row['batch']}")

    def stage(self, name, result):
        self._add(f"stage {name}")


@pytest.mark.slow
def test_the_pipeline_passes_one_hooks_object_through_every_stage(tmp_path):
    """One recorder, given to pipeline.run, hears train, export, verify and bench as they happen, each stage's
    end after its own events, in the order the stages run."""
    from edgecls.bench.measure import BenchConfig
    from edgecls.export import ExportConfig
    from edgecls.pipeline import PipelineConfig, run
    from edgecls.train.fit import TrainConfig

    cfg = PipelineConfig(train=TrainConfig(data="synthetic", arch="tiny", epochs=2, batch_size=32, out=tmp_path / "b"),
                         export=ExportConfig(formats=["onnx"]),
                         bench=BenchConfig(runtimes=["onnx"], batches=[1], rounds=1, warmup=1, warmup_time=0.01,
                                           min_runs=5, min_time=0.01))
    hooks = Recorder()
    result = run(cfg, hooks=hooks)
    file = result.export.artifacts[0]["file"]
    row = result.verify.rows[0]
    assert hooks.events == [
        "start", "epoch_start", "batch", "epoch_end", "epoch_start", "batch", "epoch_end", "evaluating",
        "stage train",
        "artifact onnx fp32", "stage export",
        f"outputs {file}", f"row {file} {row.outcome.value}", "stage verify",
        "measured onnx fp32 batch 1", "stage bench",
        "stage report"]


def test_the_device_side_verify_job_keeps_each_files_outputs_through_its_hooks(exported_copy):
    """The job an emulated platform runs (`edgecls.platforms.job`), here in this Python: the probabilities its
    hooks keep are indexed by file and runtime, one array per verified row."""
    from edgecls.platforms.job import run

    result, outputs = run({"mode": "verify", "bundle": str(exported_copy), "runtimes": ["onnx"]})
    assert "error" not in result, result.get("error")
    rows = result["verify"]["rows"]
    assert len(result["outputs"]) == len(rows) == len(outputs) > 0
    for i, (kept, row) in enumerate(zip(result["outputs"], rows)):
        assert (kept["file"], kept["runtime"]) == (row["file"], row["runtime"])
        p = outputs[f"o{i}"]
        assert p.dtype == np.float32 and p.ndim == 2
        assert np.allclose(p.sum(1), 1, atol=0.02)  # int8 outputs come in steps of 1/256


def test_verify_platform_says_what_it_runs_through_the_hooks_note(exported_copy, tmp_path, monkeypatch):
    """The start line reaches `hooks.note` before the emulated jobs run (here stopped right there)."""
    from edgecls.platforms import cache
    from edgecls.platforms import verify as platform_verify

    notes = []

    class Say(Hooks):
        def note(self, text):
            notes.append(text)
            raise KeyboardInterrupt  # stop before any emulation

    class State:
        def runtimes(self):
            return {"onnx"}

        def missing_runtimes(self):
            return {}

    monkeypatch.setattr(cache, "require", lambda p, d: State())
    with pytest.raises(KeyboardInterrupt):
        platform_verify.verify_platform(exported_copy, "arm64", runtime_names="onnx", cache_dir=tmp_path, hooks=Say())
    assert len(notes) == 1 and notes[0].startswith("verifying ") and "on arm64" in notes[0]
