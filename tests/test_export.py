import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls import runtimes
from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import sha256
from edgecls.export import FORMATS, ExportConfig, export, format_module
from edgecls.train import recorded

CASES = [(f, p) for f in FORMATS for p in format_module(f).PRECISIONS]


def _artifact(bundle, fmt, precision):
    return next(a for a in Bundle.open(bundle).manifest["artifacts"]
                if a["format"] == fmt and a["precision"] == precision)


@pytest.mark.parametrize("fmt,precision", CASES)
def test_artifact_written_recorded_and_runs(exported_bundle, fmt, precision):
    a = _artifact(exported_bundle, fmt, precision)
    for entry in [a] + a["parts"]:
        path = exported_bundle / entry["file"]
        assert path.stat().st_size == entry["bytes"] and sha256(path) == entry["sha256"]
    assert a["versions"] and a["check"]["images"] == 8
    if precision == "int8":
        assert a["calibration"]["images"] == 64
    b = Bundle.open(exported_bundle)
    x, y = recorded.heldout(b)
    runner = runtimes.create(fmt)
    runner.load(b.checked_path(a["file"]))
    for n in (1, 5):  # dynamic batch
        p = runner.predict(x[:n])
        assert p.shape == (n, 4) and np.allclose(p.sum(1), 1, atol=0.05)
    acc = (runner.predict(x).argmax(1) == y).mean()
    assert acc >= b.manifest["metrics"]["test"]["accuracy"] - 0.1


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_quantized_files_are_smaller(exported_bundle, fmt):
    a = _artifact(exported_bundle, fmt, "int8")
    fp32 = _artifact(exported_bundle, fmt, "fp32")
    assert a["size_ratio_vs_fp32"] == pytest.approx(a["total_bytes"] / fp32["total_bytes"], abs=1e-3)
    assert a["size_ratio_vs_fp32"] < 0.6
    if fmt == "openvino":  # the .bin holds the weights; the XML topology grows with quantization nodes
        bins = [sum(p["bytes"] for p in x["parts"]) for x in (a, fp32)]
        assert a["weights_ratio_vs_fp32"] == pytest.approx(bins[0] / bins[1], abs=1e-3)
        assert a["weights_ratio_vs_fp32"] < 0.4


def test_onnx_names_metadata_and_quantization(exported_bundle):
    import onnx

    labels = Bundle.open(exported_bundle).labels()
    for name in ("model.onnx", "model.int8.onnx"):
        m = onnx.load(str(exported_bundle / name))
        onnx.checker.check_model(m, full_check=True)
        assert [i.name for i in m.graph.input] == ["images"]
        assert [o.name for o in m.graph.output] == ["probabilities"]
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # dynamic batch
        assert any(o.version >= 17 for o in m.opset_import if o.domain in ("", "ai.onnx"))
        props = {p.key: p.value for p in m.metadata_props}
        assert json.loads(props["edgecls.labels"]) == labels
        assert json.loads(props["edgecls.input"])["range"] == [0, 255]
    q = onnx.load(str(exported_bundle / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # per-channel weights: a DequantizeLinear whose scale is a vector
    inits = {i.name: i for i in q.graph.initializer}
    assert any(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1
               for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits)


def test_onnx_int8_activation_type_is_the_one_onnxruntime_runs_as_int8_kernels(exported_bundle):
    """S8S8 by default; the choice and why are recorded, and the file has no compute operator left in float
    by onnxruntime (a plain CNN: every Conv/Gemm fuses into an int8 kernel with int8 activations)."""
    from edgecls.export.onnx import float_ops

    a = next(a for a in Bundle.open(exported_bundle).manifest["artifacts"] if a["file"] == "model.int8.onnx")
    assert a["activations"]["activations"] == "int8" and a["activations"]["float_ops_left"] == {"int8": 0}
    assert "S8S8" in a["quantization"] and float_ops(exported_bundle / "model.int8.onnx") == 0
    assert float_ops(exported_bundle / "model.onnx") > 0  # the float file: its Conv/Gemm are counted


def test_tflite_files_carry_their_metadata(exported_bundle):
    """labels, input spec, preprocessing and precision inside each .tflite, readable without TensorFlow."""
    from edgecls.runtimes.tflite import TFLiteRunner, read_metadata

    b = Bundle.open(exported_bundle)
    for name, precision in (("model.tflite", "fp32"), ("model.fp16.tflite", "fp16"), ("model.int8.tflite", "int8")):
        meta = read_metadata(exported_bundle / name)
        assert json.loads(meta["edgecls.labels"]) == b.labels()
        assert json.loads(meta["edgecls.input"]) == b.manifest["input"]
        assert meta["edgecls.preprocessing"] == b.manifest["input"]["preprocessing"]
        assert meta["edgecls.precision"] == precision
        runner = TFLiteRunner()
        runner.load(exported_bundle / name, threads=1)
        assert runner.metadata == meta  # fp16 has float32 inputs: only the metadata tells it from fp32
        assert runner.precision == precision and runner.compute == "fp32"  # fp16 weights run in fp32
    assert read_metadata(exported_bundle / "model.tflite") != read_metadata(exported_bundle / "model.int8.tflite")


def test_tflite_metadata_leaves_the_weights_as_they_were(exported_bundle, tmp_path):
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgecls.export.tflite import with_metadata
    from edgecls.runtimes.tflite import read_metadata

    src = (exported_bundle / "model.int8.tflite").read_bytes()
    out = with_metadata(src, {"edgecls.labels": '["x"]', "edgecls.extra": "é"})

    def buffers(raw):
        buf = bytearray(raw)
        model, base = schema.Model.GetRootAs(buf, 0), np.frombuffer(buf, np.uint8).ctypes.data
        datas = [model.Buffers(i).DataAsNumpy() for i in range(model.BuffersLength())]
        return [(d.tobytes(), (d.ctypes.data - base) % 16) if isinstance(d, np.ndarray) else None for d in datas]

    before, after = buffers(src), buffers(out)
    model = schema.Model.GetRootAs(bytearray(src), 0)
    tables = {model.Metadata(i).Buffer() for i in range(model.MetadataLength())}  # replaced in place
    weights = [i for i, d in enumerate(before) if d and len(d[0]) > 64 and i not in tables]
    assert weights and all(after[i] == before[i] for i in weights)  # same bytes, same alignment
    path = tmp_path / "with-meta.tflite"
    path.write_bytes(out)
    meta = read_metadata(path)
    assert meta["edgecls.labels"] == '["x"]' and meta["edgecls.extra"] == "é"  # replaced, not duplicated
    assert meta["edgecls.precision"] == "int8"


def test_openvino_rt_info_and_honest_precision(exported_bundle):
    import openvino as ov

    labels = Bundle.open(exported_bundle).labels()
    m = ov.Core().read_model(str(exported_bundle / "openvino" / "model.xml"))
    assert json.loads(m.get_rt_info(["edgecls", "labels"]).astype(str)) == labels
    types = {c.get("element_type") for c in ET.parse(exported_bundle / "openvino" / "model.xml").iter("data")
             if c.get("element_type")}
    assert "f16" not in types and "f32" in types  # labelled fp32, holds fp32 weights
    types16 = {c.get("element_type") for c in ET.parse(exported_bundle / "openvino" / "model.fp16.xml").iter("data")
               if c.get("element_type")}
    assert "f16" in types16


def test_tflite_int8_is_full_integer_uint8_io(exported_bundle):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(exported_bundle / "model.int8.tflite"))
    assert it.get_input_details()[0]["dtype"] == np.uint8
    assert it.get_output_details()[0]["dtype"] == np.uint8
    assert it.get_input_details()[0]["quantization"] == (1.0, 0)  # raw pixels go straight in
    assert (exported_bundle / "labels.txt").read_text().split() == Bundle.open(exported_bundle).labels()


def test_calibration_is_what_the_converters_received_and_is_recorded(bundle_copy, monkeypatch):
    """Capture what onnxruntime's quantizer and NNCF were given; it must be the recorded training images."""
    import hashlib

    from edgecls.export import onnx as onnx_export

    seen = []
    real_reader = onnx_export._reader

    def spy_reader(images):
        seen.append(("onnx", images.copy()))
        return real_reader(images)

    monkeypatch.setattr(onnx_export, "_reader", spy_reader)
    import nncf

    real_dataset = nncf.Dataset.__init__

    def spy_dataset(self, items, transform=None):
        seen.append(("openvino", np.stack(list(items))))
        real_dataset(self, items, transform)

    monkeypatch.setattr(nncf.Dataset, "__init__", spy_dataset)
    result = export(bundle_copy, ExportConfig(formats=["onnx", "openvino"], int8=True, calib_size=40))
    assert not result.failures
    assert {name for name, _ in seen} == {"onnx", "openvino"}
    b = Bundle.open(bundle_copy)
    split = b.manifest["dataset"]["split"]
    for a in (a for a in b.manifest["artifacts"] if a["precision"] == "int8"):
        cal = a["calibration"]
        assert cal["images"] == 40 == len(cal["ids"]) and cal["split"] == "train"
        assert set(cal["ids"]) <= set(split["train"]) and not set(cal["ids"]) & set(split["test"] + split["val"])
        for _, images in seen:
            assert hashlib.sha256(np.ascontiguousarray(images)).hexdigest() == cal["sha256"]
    _, x, _ = recorded.select(b, "train")
    by_id = dict(zip(split["train"], x))
    np.testing.assert_array_equal(np.stack([by_id[i] for i in cal["ids"]]), seen[0][1])


def test_calibration_leaves_half_the_training_split_unseen(bundle_copy):
    export(bundle_copy, ExportConfig(formats=["onnx"], int8=True, calib_size=10_000))
    m = Bundle.open(bundle_copy).manifest
    (int8,) = [a for a in m["artifacts"] if a["precision"] == "int8"]
    assert int8["calibration"]["images"] == len(m["dataset"]["split"]["train"]) // 2


def test_tampered_keras_model_refused_nothing_written(bundle_copy):
    with open(bundle_copy / "model.keras", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(EdgeclsError, match=r"model\.keras: sha256 .* does not match"):
        export(bundle_copy, ExportConfig(formats=["onnx"]))
    assert not (bundle_copy / "model.onnx").exists()


def test_one_format_failing_does_not_stop_the_others(bundle_copy, monkeypatch):
    def broken(ctx, precision):
        raise ValueError("Unsupported layer 'Foo' in the TFLite converter\nsee the converter's log")

    monkeypatch.setattr(format_module("tflite"), "export", broken)
    r = CliRunner().invoke(app, ["export", str(bundle_copy), "--format", "tflite,onnx"])
    assert r.exit_code == 1
    assert "error: tflite fp32: Unsupported layer 'Foo' in the TFLite converter" in r.stderr
    r = CliRunner().invoke(app, ["export", str(bundle_copy), "--format", "tflite", "--json"])
    [failure] = json.loads(r.stdout)["failures"]  # the record keeps the type and the whole message
    assert failure["type"] == "ValueError" and failure["message"].endswith("\nsee the converter's log")
    files = [a["file"] for a in Bundle.open(bundle_copy).manifest["artifacts"]]
    assert "model.onnx" in files and "model.tflite" not in files


def test_interrupted_export_keeps_earlier_artifacts(bundle_copy, monkeypatch):
    def interrupted(ctx, precision):
        (ctx.bundle.path / "openvino").mkdir(exist_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(format_module("openvino"), "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(bundle_copy, ExportConfig(formats=["onnx", "openvino"]))
    b = Bundle.open(bundle_copy)
    b.checked_path("model.onnx")  # recorded, hash intact
    assert not [p for p in bundle_copy.rglob("*") if ".tmp" in p.name]


def test_cli_export_json_and_bad_options(bundle_copy):
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(bundle_copy), "--format", "onnx", "--int8", "--calib-size", "16", "--json"])
    assert r.exit_code == 0, r.output
    arts = json.loads(r.stdout)["artifacts"]
    assert [(a["file"], a["precision"]) for a in arts] == [("model.onnx", "fp32"), ("model.int8.onnx", "int8")]
    for args, msg in ((["--format", "caffe"], "--format caffe: unknown format"),
                      (["--calib-size", "0"], "--calib-size 0"),):
        r = runner.invoke(app, ["export", str(bundle_copy), *args])
        assert r.exit_code == 2 and r.stderr.strip().startswith("error: ") and msg in r.stderr
    r = runner.invoke(app, ["export", str(bundle_copy / "nope")])
    assert r.exit_code == 2 and "no such bundle folder" in r.stderr


def _vendor_tool(name):
    import shutil
    import sys
    from pathlib import Path

    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_vendor_tools_accept_the_files_as_they_are(exported_bundle, precision):
    import subprocess

    stem = "model" if precision == "fp32" else "model.int8"
    tool = _vendor_tool("benchmark_app")
    assert tool, "benchmark_app ships with the openvino package"
    r = subprocess.run([tool, "-m", str(exported_bundle / "openvino" / f"{stem}.xml"), "-shape", "[1,16,16,3]",
                        "-hint", "none", "-nstreams", "1", "-nthreads", "1", "-niter", "20"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Median:" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    tool = _vendor_tool("litert-benchmark")
    assert tool, "litert-benchmark ships with the ai-edge-litert package"
    r = subprocess.run([tool, "--model", str(exported_bundle / f"{stem}.tflite"), "--num_threads", "1",
                        "--num_runs", "20", "--warmup_runs", "2"], capture_output=True, text=True)
    assert r.returncode == 0 and "Inference (median)" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def _state(folder: Path, files) -> dict:
    return {f: (folder / f).read_bytes() for f in files}


def test_failed_reexport_keeps_the_good_artifact(exported_copy, monkeypatch):
    """The new file is written to a staging name and checked there: one that fails never replaces the old."""
    import edgecls.export as exp

    def nan_check(root, fmt, precision, written, sample, classes):
        raise exp.SelfCheckFailed(f"{written.file}: output has NaN or infinite values")

    before = Bundle.open(exported_copy).entry("model.onnx")
    old = _state(exported_copy, ["model.onnx", "openvino/model.xml", "openvino/model.bin"])
    monkeypatch.setattr(exp, "_check", nan_check)
    result = export(exported_copy, ExportConfig(formats=["onnx", "openvino"]))
    assert [f["error"] for f in result.failures] == ["model.onnx: output has NaN or infinite values",
                                                     "openvino/model.xml: output has NaN or infinite values"]
    assert _state(exported_copy, old) == old  # byte for byte the files the bundle had
    b = Bundle.open(exported_copy)
    assert b.entry("model.onnx") == before and b.info().intact
    assert not [p.name for p in exported_copy.iterdir() if p.name.startswith(".stage-")]  # nothing left behind


def test_artifact_failing_its_check_on_first_export_is_not_written(trained_bundle, tmp_path, monkeypatch):
    import shutil

    import edgecls.export as exp

    dest = tmp_path / "b"
    shutil.copytree(trained_bundle, dest)

    def nan_check(root, fmt, precision, written, sample, classes):
        raise exp.SelfCheckFailed(f"{written.file}: output has NaN or infinite values")

    monkeypatch.setattr(exp, "_check", nan_check)
    result = export(dest, ExportConfig(formats=["onnx"]))
    assert [(f["type"], f["error"], f["message"]) for f in result.failures] == [
        ("SelfCheckFailed", "model.onnx: output has NaN or infinite values",
         "model.onnx: output has NaN or infinite values")]
    assert not (dest / "model.onnx").exists()
    assert "model.onnx" not in [a["file"] for a in Bundle.open(dest).manifest["artifacts"]]


class _Killed(BaseException):
    """Stands for kill -9 in the middle of a commit (no cleanup of ours runs after a real one)."""


def test_openvino_pair_swaps_as_a_unit(exported_copy, monkeypatch):
    """A crash between the renames of the .xml and the .bin leaves no mismatched pair: the next run sees
    the old pair or the new one, each matching the manifest."""
    import os

    from edgecls.export.base import ExportContext

    files = ["openvino/model.xml", "openvino/model.bin"]
    old = _state(exported_copy, files)
    import edgecls.export as export_pkg

    load_model, metadata = export_pkg.load_bundle_model, ExportContext.metadata

    def retrained(bundle):  # a different model, so both files of the new pair differ from the old
        model = load_model(bundle)
        model.set_weights([w * 1.01 for w in model.get_weights()])
        return model

    monkeypatch.setattr(export_pkg, "load_bundle_model", retrained)
    monkeypatch.setattr(ExportContext, "metadata", lambda self, p: metadata(self, p) | {"edgecls.run": "2"})
    real, moved = os.replace, []

    def replace(src, dst, *a, **k):
        if Path(dst).parent.name == "openvino" and Path(dst).parent.parent == exported_copy:
            if moved:
                raise _Killed()
            moved.append(dst)
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Killed):
        export(exported_copy, ExportConfig(formats=["openvino"], reference_size=8))
    monkeypatch.setattr(os, "replace", real)
    assert moved  # the kill came between the two files of the pair
    b = Bundle.open(exported_copy)  # finishes the interrupted commit
    info = b.info()
    assert info.intact, info.problems
    new = _state(exported_copy, files)
    assert all(new[f] != old[f] for f in files)  # the commit point had passed: the new pair, whole
    assert [e["sha256"] for e in [b.entry("openvino/model.xml"), *b.entry("openvino/model.xml")["parts"]]] == [
        sha256(exported_copy / f) for f in files]
    assert not [p.name for p in exported_copy.iterdir() if p.name.startswith((".stage-", ".commit"))]


@pytest.mark.parametrize("fmt,file", [("onnx", "model.int8.onnx"), ("tflite", "model.int8.tflite"),
                                      ("openvino", "openvino/model.int8.xml")])
def test_int8_that_stayed_float_is_refused(exported_copy, fmt, file, monkeypatch):
    """Calibration that had no effect (the quantizer fell back to float) fails the self-check, not silently."""
    b = Bundle.open(exported_copy)
    assert next(a for a in b.manifest["artifacts"] if a["file"] == file)["check"]["quantized_ops"] > 0
    monkeypatch.setattr(format_module(fmt), "quantized_ops", lambda path: 0)
    result = export(exported_copy, ExportConfig(formats=[fmt], int8=True, calib_size=16))
    assert [f["precision"] for f in result.failures] == ["int8"]
    assert "no quantized operation in the int8 file" in result.failures[0]["error"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_module_declares_the_protocol(fmt):
    """Each registered format module satisfies FormatModule: what it writes, its files, its int8 recipe."""
    from edgecls.export.base import FormatModule

    module = format_module(fmt)
    assert isinstance(module, FormatModule), fmt
    assert set(module.FILES) == set(module.PRECISIONS) and "fp32" in module.PRECISIONS and module.RECIPE
    for name in ("export", "accuracy_aware", "quantized_ops"):
        assert callable(getattr(module, name))


def test_registries_list_without_importing_and_refuse_unknown_names():
    import subprocess
    import sys

    from edgecls.core.errors import EdgeclsError
    from edgecls.core.registry import Registry

    code = ("import sys; from edgecls import runtimes; from edgecls.export.base import FORMATS; "
            "print(runtimes.RUNTIMES.names(), FORMATS.names(), "
            "[m for m in ('tensorflow', 'openvino', 'onnxruntime', 'ai_edge_litert') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]") and "onnx" in out  # names listed, no runtime or converter imported
    reg = Registry("widget", "--widget", {"a": "json:dumps"})
    assert reg.get("a")([1]) == "[1]"
    with pytest.raises(EdgeclsError, match=r"--widget 'b': unknown widget \(choose from a\)"):
        reg.get("b")
