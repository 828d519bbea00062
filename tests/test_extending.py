"""The extension recipes of docs/architecture.md, each proven: a format, a runtime, a dataset source and an
architecture are each one module (written here into a temporary folder, outside the package) plus one
`register` call on their registry, and then work through the CLI with no other edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent / "edgecls"
QUICK_BENCH = ["--warmup", "1", "--min-runs", "3", "--min-time", "0.01", "--rounds", "1", "--accept-inconclusive",
               "--json", "-"]  # a tiny model's parity is inconclusive: the recommendation may take it anyway


def _plugin(tmp_path: Path, monkeypatch, name: str, source: str) -> str:
    """`source` written as the module `name` in a folder put on sys.path (a plugin package would be installed)."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    return name


def _absolute(source: str, package: str) -> str:
    """A module of `edgecls.<package>` rewritten to import edgecls absolutely (as a module outside it does)."""
    source = source.replace("from ..", "from edgecls.").replace("from . import", f"from edgecls.{package} import")
    return source.replace("from .", f"from edgecls.{package}.")


def _renamed_onnx_format(runtime: str = "onnx") -> str:
    """export/onnx.py, renamed: its own files, its own kept fp32 graph, run by `runtime`."""
    src = _absolute((ROOT / "export" / "onnx.py").read_text(), "export")
    for old, new in (('"model.onnx"', '"model2.onnx"'), ('"model.int8.onnx"', '"model2.int8.onnx"'),
                     ('"onnx-fp32"', '"onnx2-fp32"'), ('RUNTIME = "onnx"', f'RUNTIME = "{runtime}"')):
        assert old in src, old
        src = src.replace(old, new)
    return src


@pytest.fixture
def registered(monkeypatch):
    """Registers entries for one test and removes them after it."""
    added = []

    def register(registry, name, target, **facts):
        registry.register(name, target, **facts)
        added.append((registry, name))

    yield register
    for registry, name in added:
        registry.unregister(name)


def _image(tmp_path: Path, bundle: Path) -> Path:
    h, w, c = Bundle.open(bundle).input_shape()
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 255, (h, w, c), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)
    return path


def _ok(args: list[str]):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


def test_a_format_is_one_module_and_one_registry_line(trained_bundle, tmp_path, monkeypatch, registered):
    from edgecls.export.base import FORMATS

    registered(FORMATS, "onnx2", _plugin(tmp_path, monkeypatch, "edgecls_test_onnx2", _renamed_onnx_format()))
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)

    out = json.loads(_ok(["export", str(bundle), "--format", "onnx2", "--int8", "--calib-size", "32",
                          "--json"]).stdout)
    assert {(a["file"], a["runtime"]) for a in out["artifacts"]} == {("model2.onnx", "onnx"),
                                                                      ("model2.int8.onnx", "onnx")}
    assert not out["failures"] and all(a["check"]["runtime"] == "onnx" for a in out["artifacts"])

    out = json.loads(_ok(["verify", str(bundle), "--explain", "--json"]).stdout)
    assert {(r["format"], r["precision"], r["runtime"]) for r in out["rows"]} == {("onnx2", "fp32", "onnx"),
                                                                                  ("onnx2", "int8", "onnx")}
    [explained] = out["explain"]
    assert explained["format"] == "onnx2" and explained["tool"].startswith("onnxruntime") and explained["layers"]

    out = json.loads(_ok(["bench", str(bundle), "--runtime", "onnx", "--precision", "fp32", *QUICK_BENCH]).stdout)
    assert [r["file"] for r in out["rows"]] == ["model2.onnx"]

    image = _image(tmp_path, bundle)
    for extra in ([], ["--format", "onnx2"]):  # the only exported format is also the default one
        out = json.loads(_ok(["predict", str(image), "--bundle", str(bundle), "--json", *extra]).stdout)
        [pred] = out["predictions"]
        assert out["artifact"]["file"] == "model2.onnx" and out["artifact"]["runtime"] == "onnx"
        assert pred["file"] == str(image) and len(pred["top"]) == 3

    _ok(["golden", str(bundle), "--json"])
    assert (bundle / "golden" / "outputs" / "onnx2-int8.npy").is_file()


def test_an_unknown_format_is_one_error_line_naming_the_registered_ones(trained_bundle, tmp_path):
    r = runner.invoke(app, ["export", str(trained_bundle), "--format", "onnx3"])
    assert r.exit_code == 2
    assert "--format onnx3: unknown format (choose from onnx, tflite, openvino, or all)" in r.output


def test_a_runtime_is_one_module_and_one_registry_line(exported_copy, tmp_path, monkeypatch, registered):
    """runtimes/onnx.py renamed `ort2`, running the ONNX files: verify, --explain and bench find it by name (bench
    in a fresh process, which has only the name and where it lives)."""
    from edgecls.runtimes import RUNTIMES

    src = _absolute((ROOT / "runtimes" / "onnx.py").read_text(), "runtimes")
    src = src.replace("    name = Runtime.onnx\n", '    name = "ort2"\n    formats = ("onnx",)\n')
    registered(RUNTIMES, "ort2", _plugin(tmp_path, monkeypatch, "edgecls_test_ort2", src) + ":OnnxRunner")

    out = json.loads(_ok(["verify", str(exported_copy), "--runtime", "ort2", "--explain", "--json"]).stdout)
    assert {(r["file"], r["runtime"]) for r in out["rows"]} == {("model.onnx", "ort2"), ("model.int8.onnx", "ort2")}
    assert all(r["outcome"] != "fail" and r["accuracy"] is not None for r in out["rows"])
    assert [e["format"] for e in out["explain"]] == ["onnx"]
    r = runner.invoke(app, ["bench", str(exported_copy), "--runtime", "ort2", "--precision", "fp32", *QUICK_BENCH])
    # measured; recommended from only where a file's own runtime (the one it records: onnx) was timed, as web-onnx
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    [row] = out["rows"]
    assert (row["runtime"], row["file"]) == ("ort2", "model.onnx") and row["p50_ms"] > 0


def test_a_format_with_its_own_runtime_is_checked_and_predicted_by_it(trained_bundle, tmp_path, monkeypatch,
                                                                       registered):
    """A format whose module names a new runtime: export checks its files with that runtime, the manifest
    records it, and predict runs them with it (the device needs only the manifest and the runtime)."""
    from edgecls.export.base import FORMATS
    from edgecls.runtimes import RUNTIMES

    src = _absolute((ROOT / "runtimes" / "onnx.py").read_text(), "runtimes")
    src = src.replace("    name = Runtime.onnx\n    preference = 1", '    name = "ort2"\n    preference = 0')
    registered(RUNTIMES, "ort2", _plugin(tmp_path, monkeypatch, "edgecls_test_ort2b", src) + ":OnnxRunner")
    registered(FORMATS, "onnx2", _plugin(tmp_path, monkeypatch, "edgecls_test_onnx2b", _renamed_onnx_format("ort2")))
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    out = json.loads(_ok(["export", str(bundle), "--format", "onnx,onnx2", "--json"]).stdout)
    assert {(a["format"], a["check"]["runtime"]) for a in out["artifacts"]} == {("onnx", "onnx"), ("onnx2", "ort2")}
    from edgecls.runtime import Classifier

    clf = Classifier.open(bundle)  # ort2 ranks first (preference 0)
    assert clf.artifact["file"] == "model2.onnx" and clf.runner.name == "ort2"


def test_a_dataset_is_one_module_and_one_registry_line(tmp_path, monkeypatch, registered):
    """A source named `stripes`, its image size a fact of its entry: train, then export (which opens the data
    again from the manifest through the same registry) work with no other edit."""
    from edgecls.train.sources import SOURCES

    src = '''
from edgecls.train.sources import synthetic


def stripes(image_size, n=120, seed=3, **_):
    data = synthetic(image_size=image_size, n=n, seed=seed)
    data.name = "stripes"
    data.source = {"name": "stripes", "image_size": image_size, "n": n, "seed": seed}
    return data
'''
    registered(SOURCES, "stripes", _plugin(tmp_path, monkeypatch, "edgecls_test_stripes", src) + ":stripes",
               image_size=12, about="generated stripes")
    bundle = tmp_path / "b"
    _ok(["train", "--data", "stripes", "--arch", "tiny", "--epochs", "1", "--out", str(bundle), "--json"])
    m = Bundle.open(bundle).manifest
    assert m["dataset"]["name"] == "stripes" and m["input"]["shape"] == [None, 12, 12, 3]
    out = json.loads(_ok(["export", str(bundle), "--format", "onnx", "--json"]).stdout)
    assert out["artifacts"][0]["check"]["images"] > 0


FAKENET = """
import numpy as np

from edgecls.core._tf import keras

WEIGHTS = {}  # the test puts the path of the weights file here


def build(input_shape, num_classes, pretrained=True, backbone_size=None, **_):
    k = keras()
    inp = k.Input(input_shape, name="images")
    x = k.layers.Rescaling(1 / 128, offset=-127 / 128, name="rescale")(inp)
    if backbone_size and input_shape[0] != backbone_size:
        x = k.layers.Resizing(backbone_size, backbone_size, name="resize")(x)
    for i in range(3):
        x = k.layers.Conv2D(8, 3, padding="same", name=f"block{i}_conv")(x)
        x = k.layers.BatchNormalization(name=f"block{i}_bn", trainable=not pretrained)(x)
        x = k.layers.ReLU(name=f"block{i}_relu")(x)
    x = k.layers.Conv2D(16, 1, name="head_conv")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    model = k.Model(inp, k.layers.Softmax(name="probabilities")(k.layers.Dense(num_classes, name="logits")(x)))
    if pretrained:
        stored = np.load(WEIGHTS["path"])
        for i in range(3):
            model.get_layer(f"block{i}_conv").set_weights([stored[f"k{i}"], stored[f"b{i}"]])
    return model
"""


def test_a_pretrained_family_is_one_module_and_one_registry_line_with_its_facts(tmp_path, monkeypatch, registered):
    """A second pretrained family (a fake: three blocks, its "ImageNet" weights in a file): its facts live in its
    entry, and train's generic path plans the transfer phases from them, validates --backbone-size against
    them, loads and freezes as they say, records its weights, and export runs it."""
    import hashlib
    import importlib

    import keras

    from edgecls.core.errors import MissingDependency
    from edgecls.train.models import ARCHITECTURES
    from edgecls.train.pretrained import Pretrained

    rng = np.random.default_rng(0)
    weights = tmp_path / "fakenet.npz"
    np.savez(weights, **{f"k{i}": rng.normal(0, 0.2, (3, 3, 3 if i == 0 else 8, 8)).astype("float32")
                         for i in range(3)}, **{f"b{i}": np.zeros(8, "float32") for i in range(3)})
    name = _plugin(tmp_path, monkeypatch, "edgecls_test_fakenet", FAKENET)
    importlib.import_module(name).WEIGHTS["path"] = weights

    def require():
        if not weights.is_file():
            raise MissingDependency("fakenet: its weights are not installed")

    facts = Pretrained(weights={"source": "test", "package": "fakenet-weights", "version": "1", "file": weights.name,
                                "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
                       blocks=3, min_size=8, max_size=64, default_size=24, require=require)
    registered(ARCHITECTURES, "fakenet", f"{name}:build", pretrained=facts)

    bundle = tmp_path / "b"
    out = json.loads(_ok(["train", "--data", "synthetic", "--arch", "fakenet", "--epochs", "1",
                          "--fine-tune-blocks", "1", "--out", str(bundle), "--json"]).stdout)
    arch = Bundle.open(bundle).manifest["architecture"]
    assert arch["weights"] == facts.weights and arch["backbone_size"] == 24 and arch["pretrained"] is True
    plan = out["training"]["plan"]
    assert plan["kind"] == "transfer" and [(p["name"], p["blocks"]) for p in plan["phases"]] == [
        ("head", 0), ("fine-tune", 1)]
    model = keras.models.load_model(bundle / "model.keras")
    stored = np.load(weights)
    assert np.array_equal(model.get_layer("block0_conv").get_weights()[0], stored["k0"])  # loaded, kept frozen
    assert not np.array_equal(model.get_layer("block2_conv").get_weights()[0], stored["k2"])  # fine-tuned
    assert "resize" in [layer.name for layer in model.layers]

    r = runner.invoke(app, ["train", "--data", "synthetic", "--arch", "fakenet", "--backbone-size", "100",
                            "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--backbone-size 100: must be between 8 and 64 pixels" in r.output
    weights.rename(tmp_path / "gone.npz")
    r = runner.invoke(app, ["train", "--data", "synthetic", "--arch", "fakenet", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "fakenet: its weights are not installed" in r.output
    (tmp_path / "gone.npz").rename(weights)

    out = json.loads(_ok(["export", str(bundle), "--format", "onnx", "--json"]).stdout)
    assert out["artifacts"][0]["check"]["images"] > 0
