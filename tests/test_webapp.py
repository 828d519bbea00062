"""The web app (edgecls.apps.web, `edgecls app`, runtimes web-onnx / web-tflite).

Fast tests build the app folder (npm packages from the lockfile, cached) and check its files; the
browser tests drive headless Chromium through Playwright and skip, saying why, where Chromium,
Playwright or Node.js/npm are missing (.ci/run installs them). Browser starts are few: each costs
seconds on a small machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.apps.web import browser, build_app, npm
from edgecls.core.bundle import Bundle, sha256
from edgecls.core.errors import EdgeclsError
from edgecls.train import recorded

cli = CliRunner()
NPM = npm.missing_npm() is None or (npm.cache_root() / npm.lock_hash() / "node_modules").is_dir()
needs_npm = pytest.mark.skipif(not NPM, reason="Node.js/npm are not installed (Debian: apt-get install nodejs npm; "
                                               ".ci/run installs them)")
needs_node = pytest.mark.skipif(shutil.which("node") is None,
                                reason="Node.js is not installed (apt-get install nodejs)")
needs_browser = pytest.mark.skipif(not NPM or bool(browser.missing()),
                                   reason="cannot run the app in a browser here: missing "
                                          + "; ".join(browser.missing() + ([] if NPM else ["Node.js/npm"])))


def _cli(*args):
    from edgecls.cli import app

    return cli.invoke(app, [str(a) for a in args])


@needs_node
@pytest.mark.parametrize("h,w,c,oh,ow,exact", [(50, 70, 3, 16, 16, False), (8, 8, 1, 32, 32, True),
                                                (33, 17, 3, 33, 40, True), (40, 40, 3, 16, 40, True),
                                                (29, 7, 1, 45, 57, False), (16, 16, 3, 16, 16, True)])
def test_pixels_js_resizes_as_pillow(tmp_path, h, w, c, oh, ow, exact):
    """The page's resize (static/pixels.js, run by Node) against Pillow's BILINEAR: exact when one axis
    changes, within one level when both do (docs/embedding.md says why)."""
    a = np.random.default_rng(h * w).integers(0, 256, (h, w, c), dtype=np.uint8)
    (tmp_path / "in.bin").write_bytes(a.tobytes())
    script = tmp_path / "run.mjs"
    script.write_text(f"import {{resizeBilinear}} from '{(npm.HERE / 'static' / 'pixels.js').as_uri()}';\n"
                      "import {readFileSync, writeFileSync} from 'node:fs';\n"
                      f"writeFileSync('{tmp_path}/out.bin', resizeBilinear(new Uint8Array(readFileSync("
                      f"'{tmp_path}/in.bin')), {h}, {w}, {c}, {oh}, {ow}));\n")
    subprocess.run(["node", "--no-warnings", str(script)], check=True, timeout=60)
    js = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.uint8).reshape(oh, ow, c).astype(int)
    pil = np.asarray(Image.fromarray(a[..., 0] if c == 1 else a).resize((ow, oh), Image.Resampling.BILINEAR))
    diff = np.abs(js - pil.reshape(oh, ow, c)).max()
    assert diff == 0 if exact else diff <= 1


@needs_npm
@pytest.mark.parametrize("fmt,precision", [("onnx", "fp32"), ("tflite", "int8")])
def test_app_folder(exported_bundle, tmp_path, fmt, precision):
    app = build_app(exported_bundle, tmp_path / "app", fmt, precision)
    cfg = json.loads((app.folder / "config.json").read_text())
    b = Bundle.open(exported_bundle)
    art = next(a for a in b.manifest["artifacts"] if a["format"] == fmt and a["precision"] == precision)
    assert cfg["artifact"] == {"file": art["file"], "sha256": art["sha256"]}
    assert cfg["labels"] == b.labels() and cfg["runtime"]["version"] == npm.versions()[cfg["runtime"]["package"]]
    listed = {f["file"]: f for f in cfg["files"]}
    on_disk = {p.relative_to(app.folder).as_posix() for p in app.folder.rglob("*") if p.is_file()} - {"config.json"}
    assert set(listed) == on_disk  # every file listed, none more
    assert all(sha256(app.folder / f) == e["sha256"] for f, e in listed.items())
    assert set(npm.web_runtime(fmt).files.values()) <= on_disk and "golden/golden.json" in on_disk
    assert not any("node_modules" in f for f in on_disk) and app.bytes_by_part()["runtime"] < 40e6
    if fmt == "onnx":
        assert cfg["model_sha256"] == art["sha256"]  # served unchanged
    else:  # a fixed-batch copy, natively identical, uint8 in and out
        assert cfg["model_note"]["native_max_abs_diff"] == 0 and cfg["model_note"]["tensors_changed"] > 0
        assert cfg["input"]["dtype"] == "uint8" and '"importmap"' in (app.folder / "index.html").read_text()
    assert "test_preprocessing" not in cfg and "test_preprocessing" not in (app.folder / "app.js").read_text()


@needs_npm
def test_bad_input_one_error_no_folder(exported_bundle, tmp_path, monkeypatch):
    out = tmp_path / "app"
    for args, match in [((exported_bundle, "--out", out, "--format", "openvino"), "no web runtime runs openvino"),
                        ((exported_bundle, "--out", out, "--format", "onnx", "--precision", "fp16"),
                         "no onnx fp16 artifact to serve"),
                        ((exported_bundle, "--out", exported_bundle / "web"), "inside the bundle folder")]:
        r = _cli("app", *args)
        assert r.exit_code == 2 and r.output.startswith("error: ") and match in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and not out.exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(EdgeclsError, match="a folder of other files"):
        build_app(exported_bundle, tmp_path / "other")

    def no_data(*a, **k):
        raise EdgeclsError("the dataset is not here")

    monkeypatch.setattr("edgecls.verify.golden.write_golden", no_data)
    r = _cli("app", exported_bundle, "--out", out, "--format", "onnx")
    assert r.exit_code == 2 and "no golden vectors for model.onnx" in r.output and "run 'edgecls golden" in r.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".app")]


def test_missing_tools_exit_2(exported_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(npm, "missing_npm", lambda: "Node.js and npm are not installed (Debian: apt-get install "
                                                    "nodejs npm)")
    monkeypatch.setenv(npm.CACHE_ENV, str(tmp_path / "empty-cache"))
    r = _cli("app", exported_bundle, "--out", tmp_path / "app", "--format", "onnx")
    assert r.exit_code == 2 and "error: cannot build the web app: Node.js and npm are not installed" in r.output
    monkeypatch.setattr(browser, "missing", lambda: ["Chromium (Debian: apt-get install chromium)"])
    r = _cli("app", exported_bundle, "--out", tmp_path / "app", "--check")
    assert r.exit_code == 2 and "--check: missing Chromium" in r.output and not (tmp_path / "app").exists()


@needs_browser
def test_verify_web_onnx_rows_like_native(exported_copy):
    """Parity rows of the web runtime: normal verify rows, same images and gates, stored per runtime."""
    from edgecls.verify.parity import verify

    result = verify(exported_copy, runtime_names="onnx,web-onnx")
    rows = {(r.file, r.runtime): r for r in result.rows}
    assert set(rows) == {(f, rt) for f in ("model.onnx", "model.int8.onnx") for rt in ("onnx", "web-onnx")}
    for f in ("model.onnx", "model.int8.onnx"):
        web, native = rows[f, "web-onnx"], rows[f, "onnx"]
        assert web.outcome == native.outcome and not web.error, web.failures
        assert web.evidence.images == native.evidence.images and web.evidence.changed == native.evidence.changed
        assert abs(web.evidence.max_abs_diff - native.evidence.max_abs_diff) < 1e-4
        assert web.device.startswith("Chromium, onnxruntime-web")
    stored = Bundle.open(exported_copy).manifest["verify"]["rows"]
    assert {(r["file"], r["runtime"]) for r in stored} >= set(rows) and all(r["sha256"] for r in stored)


@needs_browser
@pytest.mark.parametrize("fault", ["bgr", "scale01"])
def test_wrong_preprocessing_fails_the_browser_check(exported_bundle, tmp_path, fault):
    """An app whose page feeds the model swapped channels or 0-1 pixels fails its self-test and the parity
    gate (verify's images, judged by edgecls.core.gates)."""
    from edgecls.core.gates import gates, judge
    from edgecls.core.names import Precision
    from edgecls.verify.parity import evidence_images

    app = build_app(exported_bundle, tmp_path / "app", "onnx", "fp32")
    x, y, ref, _ = evidence_images(Bundle.open(exported_bundle), None, "cpu", None)
    wrong = {"bgr": "px[i - i % C + (C === 3 ? 2 - i % C : i % C)]", "scale01": "px[i] / 255"}[fault]

    def planted(js: str) -> str:  # the fault lives here, in the test's browser driver, not in the app
        assert "const v = px[i];" in js
        return js.replace("const v = px[i];", f"const v = {wrong};")

    with browser.AppPage(app.folder, threads=1, rewrite={"app.js": planted}) as page:
        st = page.selftest()
        probs = page.classify(x)
    assert st["passed"] is False and "input tensor differs" in st["why"]
    assert judge(gates()[Precision.fp32], probs, ref, y).outcome.value == "fail"


@needs_browser
def test_app_check_classifies_a_heldout_image_with_screenshot(exported_bundle, tmp_path):
    """`edgecls app --check` with LiteRT.js (int8): self-test passes, the page's top-1 for a held-out image
    equals edgecls's own, and the screenshot shows it."""
    from edgecls.runtimes.classifier import Classifier

    x, _ = recorded.heldout(Bundle.open(exported_bundle), limit=1)
    img = tmp_path / "heldout.png"
    Image.fromarray(x[0]).resize((64, 48), Image.Resampling.NEAREST).save(img)  # the page resizes it back
    shot = tmp_path / "app.png"
    r = _cli("app", exported_bundle, "--out", tmp_path / "app", "--format", "tflite", "--precision", "int8",
             "--check", "--image", img, "--screenshot", shot, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["selftest"]["passed"] and report["selftest"]["input_max_diff"] == 0
    assert report["browser"]["cross_origin_isolated"] and report["browser"]["runtime"] == "litert.js"
    [[(label, _), *_]] = Classifier.open(exported_bundle, format="tflite", precision="int8").classify([img], top=1)
    assert report["image"]["top"][0][0] == label
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(shot).size[0] >= 700


@needs_browser
@pytest.mark.slow
def test_bench_web_row_timed_in_page(exported_copy):
    from edgecls.bench.measure import BenchConfig, bench

    r = bench(exported_copy, BenchConfig(runtimes="web-tflite", precisions="int8", rounds=1, min_runs=20,
                                         min_time=0.2, warmup_time=0.05, threads=1))
    [row] = r.rows
    assert row["runtime"] == "web-tflite" and row["runs"] >= 20 and row["outputs_ok"] and row["p50_ci_ms"]
    assert row["timer"]["resolution_ms"] > 0 and row["timer"]["calls_per_timing"] >= 1
    assert row["thread_policy"]["cross_origin_isolated"] is True and row["sha256"]
