"""The bundle's web app as a runtime: onnxruntime-web (`web-onnx`, .onnx files) and LiteRT.js
(`web-tflite`, .tflite files) in headless Chromium, WebAssembly with SIMD and the threads the page
gets (it is served cross-origin isolated).

`load` builds the app for the file (`edgecls.apps.web.build_app`, without golden vectors), serves it on
127.0.0.1 and opens it; `predict` sends raw uint8 pixels into the page, which runs them through the
path a user's image takes after decoding (pixels -> input tensor -> model -> probabilities), one
image at a time. Bench times in the page with `performance.now()` (`timed_call(...).measure`): its
resolution (5 µs when cross-origin isolated) is measured, and each timing spans enough calls to be
at least 200 ticks long. No TensorFlow is imported here.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...core.errors import EdgeclsError, MissingDependency
from ...core.names import Device, Format, Precision, Runtime
from ...runtimes import Runner, TimedCall, check_device, check_threads


def _bundle_of(path: Path) -> Path:
    for folder in Path(path).resolve().parents:
        if (folder / "manifest.json").is_file():
            return folder
    raise EdgeclsError(f"{path}: not inside a bundle (no manifest.json above it); the web runtimes run bundle files")


def _cleanup(page, folder: str, now: bool) -> None:
    if page is not None:
        if now:
            page.close()
        else:  # garbage collection may run inside Playwright's event loop: close it later, outside
            page.close_later()
    shutil.rmtree(folder, ignore_errors=True)


class _WebRunner(Runner):
    package = "playwright"
    dists = ("playwright",)
    extra = "web"
    by_default = False  # opt-in: a browser start per file; `--runtime web-onnx,web-tflite` asks for it
    timed = ("in the page: the app's model call per image (input tensor made before), performance.now() around "
             "groups of calls spanning >= 200 timer ticks, per-call time = group time / calls")
    format: ClassVar[Format]
    _page = None

    @classmethod
    def installed(cls) -> bool:
        from . import browser, npm

        return importlib.util.find_spec("playwright") is not None and not browser.missing() and (
            npm.missing_npm() is None or (npm.cache_root() / npm.lock_hash() / "node_modules").is_dir())

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        check_threads(threads)
        check_device(type(self), device)
        from ...core.bundle import Bundle
        from . import browser
        from .build import build_app

        gone = browser.missing()
        if gone:
            raise MissingDependency(f"runtime {self.name}: missing " + "; ".join(gone))
        path = Path(path)
        bundle = Bundle.open(_bundle_of(path))
        rel = path.resolve().relative_to(bundle.path.resolve()).as_posix()
        art = bundle.entry(rel)
        if art is None or art.get("format") != self.format:
            raise EdgeclsError(f"{path}: runtime {self.name} runs the bundle's {self.format.value} artifacts; "
                               f"this is not one")
        self._tmp = tempfile.mkdtemp(prefix="edgecls-web-")
        self._finalizer = weakref.finalize(self, _cleanup, None, self._tmp, False)
        app = build_app(bundle.path, Path(self._tmp) / "app", art["format"], art["precision"], golden=False)
        self.app = app
        self._page = browser.AppPage(app.folder, threads=threads, selftest=False)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self._page, self._tmp, False)
        self.info = self._page.info
        self.precision = Precision(art["precision"])
        self.compute = "fp32"
        self.device_ran = (f"Chromium, {self.info['runtime']} {self.info.get('version') or ''} "
                           f"{self.info['backend']}".replace("  ", " "))

    def close(self) -> None:
        """Close its browser and remove its app folder now (else when collected, or at exit)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None and finalizer.alive:
            page, folder, _ = finalizer.detach()[2]
            _cleanup(page, folder, True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._page.classify(images)

    def thread_policy(self) -> dict:
        i = self.info
        return {"threads": i.get("threads"), "simd": i.get("simd"), "relaxed_simd": i.get("relaxed_simd"),
                "cross_origin_isolated": i.get("cross_origin_isolated"),
                "hardware_concurrency": i.get("hardware_concurrency"),
                "timer_resolution_ms": i.get("timer_resolution_ms"), "runtime": i.get("runtime"),
                "runtime_version": i.get("version")}

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """Timed in the page (`measure`); `run` and `output` classify the images from Python (the check)."""
        state = {}

        def run():
            state["out"] = self._page.classify(images)

        def measure(warmup: int, warmup_time: float, min_runs: int, min_time: float) -> dict:
            m = self._page.bench(images, warmup, warmup_time, min_runs, min_time)
            self.group, self.resolution_ms = m["group"], m["resolution_ms"]
            return {"first_ms": m["first_ms"], "times_ns": np.asarray(m["times_ms"]) * 1e6,
                    "warmup": m["warmup"], "samples": [np.asarray(s, np.float32) for s in m["samples"]],
                    "timer": {"resolution_ms": m["resolution_ms"], "calls_per_timing": m["group"]}}

        return TimedCall(run, lambda: state["out"], measure=measure)


class WebOnnxRunner(_WebRunner):
    name = Runtime.web_onnx
    format = Format.onnx
    formats = (Format.onnx,)


class WebTFLiteRunner(_WebRunner):
    name = Runtime.web_tflite
    format = Format.tflite
    formats = (Format.tflite,)
