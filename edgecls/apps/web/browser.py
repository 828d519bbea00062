"""The app in headless Chromium, driven by Playwright's Python package (Debian's chromium through
`executable_path`; never a browser download): open it from an `AppServer`, read its self-test,
classify raw pixels through its code path, time it in the page, take a screenshot.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ...core.errors import EdgeclsError, MissingDependency
from .serve import AppServer

CHROMIUM_ENV = "EDGECLS_CHROMIUM"
LOAD_TIMEOUT_S = 120
CALL_TIMEOUT_S = 600


def chromium() -> str | None:
    return os.environ.get(CHROMIUM_ENV) or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def missing() -> list[str]:
    """What is missing here to check the app in a browser (empty: nothing)."""
    out = []
    if importlib.util.find_spec("playwright") is None:
        out.append("the Python package playwright (pip install 'edgecls[web]')")
    if chromium() is None:
        out.append(f"Chromium (Debian: apt-get install chromium; or set {CHROMIUM_ENV})")
    return out


_local = threading.local()
_later: list[AppPage] = []  # pages dropped by garbage collection, closed at the next chance outside the loop


def _close_later() -> None:
    while _later:
        _later.pop().close()


def _playwright():
    """This thread's Playwright driver, started once and stopped at exit: its sync API allows one per
    thread, so every page of the thread shares it (each page has its own browser)."""
    if getattr(_local, "pw", None) is None:
        from playwright.sync_api import sync_playwright

        _local.pw = sync_playwright().start()
        atexit.register(_local.pw.stop)
        atexit.register(_close_later)  # runs first (last registered)
    return _local.pw


def _rewritten(change):
    """A Playwright route handler: the served file, its text passed through `change` (headers kept)."""

    def handle(route) -> None:
        served = route.fetch()
        route.fulfill(response=served, body=change(served.text()))

    return handle


class AppPage:
    """One app folder served on 127.0.0.1 and open in headless Chromium. Close it (or use `with`)."""

    def __init__(self, folder: str | Path, *, threads: int | None = None, selftest: bool = True,
                 lifetime: float = 1800.0, rewrite: dict | None = None):
        """`rewrite`: file name -> a function of its text; the page gets the rewritten file instead of the
        served one (how edgecls's own tests plant a fault in a page: the app itself carries no test switch)."""
        gone = missing()
        if gone:
            raise MissingDependency("cannot run the app in a browser: missing " + "; ".join(gone))
        from playwright.sync_api import Error

        _close_later()
        self._error = Error
        self.folder = Path(folder)
        self.server = AppServer(self.folder, lifetime).start()
        self.browser = None
        try:
            self.browser = _playwright().chromium.launch(executable_path=chromium(), headless=True,
                                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
            self.page = self.browser.new_page(viewport={"width": 760, "height": 900})
            self.console: list[str] = []
            self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
            self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
            for name, change in (rewrite or {}).items():
                self.page.route(f"**/{name}", _rewritten(change))
            query = "&".join(q for q in (f"threads={threads}" if threads else "",
                                         "" if selftest else "selftest=0") if q)
            self.page.goto(self.server.url + "index.html" + (f"?{query}" if query else ""))
            self.page.wait_for_function("() => ['ready', 'error'].includes(document.getElementById('status')"
                                        ".dataset.state)", timeout=LOAD_TIMEOUT_S * 1000)
            error = self.page.evaluate("() => window.edgecls && window.edgecls.error")
            if error:
                raise EdgeclsError(f"{self.folder}: the app failed in Chromium: {error}")
        except self._error as e:
            self.close()
            raise EdgeclsError(f"{self.folder}: the app did not load in Chromium: {str(e).splitlines()[0]}; "
                               f"console: {' | '.join(self.console[-3:])}") from e
        except BaseException:
            self.close()
            raise

    def evaluate(self, script: str, arg=None):
        try:
            return self.page.evaluate(script, arg)
        except self._error as e:
            raise EdgeclsError(f"{self.folder}: the app failed in Chromium: {str(e).splitlines()[0]}") from e

    @property
    def info(self) -> dict:
        return self.evaluate("() => window.edgecls.info")

    @property
    def timings(self) -> dict:
        return self.evaluate("() => window.edgecls.timings")

    def selftest(self) -> dict | None:
        return self.evaluate("() => window.edgecls.selftest || null")

    def _upload(self, images: np.ndarray) -> str:
        x = np.asarray(images)
        if x.ndim != 4 or not np.array_equal(x, np.clip(np.rint(x), 0, 255)):
            raise EdgeclsError("the web app takes 8-bit pixels (whole numbers 0..255, NHWC), as a browser decodes "
                               "them")
        io = self.folder / "_io"
        io.mkdir(exist_ok=True)
        name = f"_io/batch-{len(list(io.iterdir()))}.bin"
        (self.folder / name).write_bytes(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
        return name

    def classify(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities of raw uint8 NHWC images, through the app's path from pixels on."""
        name = self._upload(images)
        probs = self.evaluate("([u, n]) => window.edgecls.classifyBatch(u, n)", [name, len(images)])
        (self.folder / name).unlink(missing_ok=True)
        return np.asarray(probs, np.float32).reshape(len(images), -1)

    def bench(self, images: np.ndarray, warmup: int, warmup_time: float, min_runs: int, min_time: float) -> dict:
        name = self._upload(images)
        self.page.set_default_timeout(CALL_TIMEOUT_S * 1000)
        out = self.evaluate("(o) => window.edgecls.bench(o)", {"url": name, "n": len(images), "warmup": warmup,
                                                                 "warmup_time": warmup_time, "min_runs": min_runs,
                                                                 "min_time": min_time})
        (self.folder / name).unlink(missing_ok=True)
        return out

    def classify_file(self, path: str | Path) -> dict:
        """Pick `path` in the page's file input, as a user does; the page's result (top classes)."""
        self.page.set_input_files("#file", str(path))
        self.page.wait_for_function("() => document.getElementById('status').dataset.state === 'classified'",
                                    timeout=LOAD_TIMEOUT_S * 1000)
        return json.loads(self.page.text_content("#result-json"))

    def screenshot(self, path: str | Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        return Path(path)

    def close(self) -> None:
        for step in (lambda: self.browser and self.browser.close(), lambda: self.server.close()):
            try:
                step()
            except Exception:  # closing what may be half-open: nothing to report
                pass

    def close_later(self) -> None:
        """Close at the next page opened, or at exit (from a finalizer, which may run inside Playwright's loop)."""
        self.server.close()
        _later.append(self)

    def __enter__(self) -> AppPage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
