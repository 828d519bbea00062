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



def web_runtime(fmt: str):
    """The format's `WebRuntime` (its module's WEB: npm package, files, import map), or None when no web
    runtime runs its files."""
    from ...export.base import FORMATS, format_module

    return getattr(format_module(fmt), "WEB", None) if fmt in FORMATS else None


def web_formats() -> list[str]:
    """The registered formats a web runtime runs (their module declares WEB)."""
    from ...export.base import FORMATS

    return [f for f in FORMATS if web_runtime(f) is not None]


def lock_hash() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """The pinned version of each runtime package, from the lockfile."""
    packages = json.loads(LOCK.read_text())["packages"]
    return {w.package: packages[f"node_modules/{w.package}"]["version"] for w in map(web_runtime, web_formats())}


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
    for (package, rel), target in web_runtime(fmt).files.items():
        src = modules / package / rel
        if not src.is_file():
            raise EdgeclsError(f"cannot build the web app: {package} has no {rel} (the cache {modules} is damaged: "
                               "remove it)")
        (app / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, app / target)
        out.append(target)
    return out
