"""The app's JavaScript runtimes: installed from the npm registry with the committed lockfile
(`package.json`, `package-lock.json` beside this file: onnxruntime-web and @litertjs/core, pinned) by
`npm ci`, once per lockfile, into a cache folder; the app gets a copy of only the files it needs.
Nothing is fetched from a CDN, at build time or at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...core.errors import EdgeclsError

HERE = Path(__file__).parent
LOCK = HERE / "package-lock.json"
CACHE_ENV = "EDGECLS_WEB_CACHE"
NPM_TIMEOUT_S = 600

#: per format: (package, path inside it) -> path in the app folder; and what else the page needs
RUNTIME_FILES = {
    "onnx": {
        ("onnxruntime-web", "dist/ort.wasm.min.mjs"): "runtime/onnxruntime-web/ort.wasm.min.mjs",
        ("onnxruntime-web", "dist/ort-wasm-simd-threaded.mjs"): "runtime/onnxruntime-web/ort-wasm-simd-threaded.mjs",
        ("onnxruntime-web", "dist/ort-wasm-simd-threaded.wasm"):
            "runtime/onnxruntime-web/ort-wasm-simd-threaded.wasm",
    },
    "tflite": {
        ("@litertjs/core", "dist/index.js"): "runtime/litertjs/core/index.js",
        ("@litertjs/wasm-utils", "dist/index.js"): "runtime/litertjs/wasm-utils/index.js",
        # LiteRT.js picks one by the browser's features: threads (with relaxed SIMD and cross-origin
        # isolation), relaxed SIMD alone, or neither (compat)
        **{("@litertjs/core", f"wasm/litert_wasm_{v}internal.{ext}"):
           f"runtime/litertjs/wasm/litert_wasm_{v}internal.{ext}"
           for v in ("", "threaded_", "compat_") for ext in ("js", "wasm")},
    },
}
#: LiteRT.js imports its helper by a bare name: without a bundler the page maps it
IMPORT_MAP = {"tflite": {"imports": {"@litertjs/wasm-utils": "./runtime/litertjs/wasm-utils/index.js"}}}
PACKAGE = {"onnx": "onnxruntime-web", "tflite": "@litertjs/core"}


def lock_hash() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """The pinned version of each runtime package, from the lockfile."""
    packages = json.loads(LOCK.read_text())["packages"]
    return {name: packages[f"node_modules/{name}"]["version"] for name in PACKAGE.values()}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgecls" / "web")


def missing_npm() -> str | None:
    """Why the runtimes cannot be installed here, or None."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        return "Node.js and npm are not installed (Debian: apt-get install nodejs npm)"
    return None


def node_modules() -> Path:
    """The installed packages of the lockfile: `npm ci` once (cached by the lockfile's hash).

    Raises:
        EdgeclsError: npm missing, or the install failed (its last line).
    """
    dest = cache_root() / lock_hash()
    if (dest / "node_modules" / ".edgecls-complete").is_file():
        return dest / "node_modules"
    why = missing_npm()
    if why:
        raise EdgeclsError(f"cannot build the web app: {why}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        shutil.copy(HERE / "package.json", stage)
        shutil.copy(LOCK, stage)
        r = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=stage, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        if r.returncode != 0:
            last = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[-1]
            raise EdgeclsError(f"cannot build the web app: 'npm ci' of {LOCK.name} failed: {last}")
        (stage / "node_modules" / ".edgecls-complete").write_text(lock_hash())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(stage, dest)
    except subprocess.TimeoutExpired as e:
        raise EdgeclsError(f"cannot build the web app: 'npm ci' took over {NPM_TIMEOUT_S} s") from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest / "node_modules"


def copy_runtime(fmt: str, app: Path) -> list[str]:
    """Copy the runtime files of `fmt` into the app folder; their paths in it."""
    modules = node_modules()
    out = []
    for (package, rel), target in RUNTIME_FILES[fmt].items():
        src = modules / package / rel
        if not src.is_file():
            raise EdgeclsError(f"cannot build the web app: {package} has no {rel} (the cache {modules} is damaged: "
                               "remove it)")
        (app / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, app / target)
        out.append(target)
    return out
