"""The emulated userland's cache: built whole or not at all, under a lock, with a manifest of what it holds.

    CACHE/arm64/cache.json   the manifest (written last): versions, every package with its sha256 and
                             size, the runtimes it pins (the host's versions), the parts' sizes
    CACHE/arm64/rootfs/      Debian's arm64 Python and libraries (`dpkg -x` of each .deb)
    CACHE/arm64/site/        the aarch64 wheels, unpacked
    CACHE/arm64/qemu/qemu-aarch64   qemu-user 10 (static)
    CACHE/arm64.lock         one builder at a time

A build happens in a staging folder beside the cache and replaces it in one rename (the bundle's own
staged swap), so an interrupted build (Ctrl-C, a full disk, kill) never leaves a cache that looks
complete; its staging folder is removed by the next build. A cache whose files do not add up to its
manifest, or whose runtime versions are not the host's, is rebuilt, and `setup` says why.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.bundle import now
from ..core.errors import EdgeclsError
from ..core.files import atomic_write, owner_tag, remove_stale, sha256, staged_bundle
from . import Platform, packages

FORMAT = 1
MANIFEST = "cache.json"
NEEDS_BYTES = 1_200_000_000  # peak during a build: downloads (~200 MB) + the unpacked cache (~500 MB), with room
ENV = "EDGECLS_PLATFORM_CACHE"


def default_root() -> Path:
    """$EDGECLS_PLATFORM_CACHE, else $XDG_CACHE_HOME/edgecls/platforms, else ~/.cache/edgecls/platforms."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgecls" / "platforms"


@dataclass
class State:
    """What a cache folder holds: complete (and matching the host's runtimes), or why it is not usable."""

    folder: Path
    status: str  # complete, missing, incomplete, outdated
    reasons: list[str] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def usable(self) -> bool:
        return self.status == "complete"

    def python(self) -> Path:
        return self.folder / self.manifest["python"]["binary"]

    def qemu(self) -> Path:
        return self.folder / self.manifest["qemu"]["binary"]

    def runtimes(self) -> dict[str, str]:
        return dict(self.manifest.get("runtimes") or {})

    def missing_runtimes(self) -> dict[str, str]:
        return dict((self.manifest.get("wheels") or {}).get("missing") or {})


def _tree(folder: Path) -> dict:
    files = size = 0
    for root, _, names in os.walk(folder):
        for n in names:
            p = Path(root) / n
            if not p.is_symlink():
                files += 1
                size += p.stat().st_size
    return {"files": files, "bytes": size}


def inspect(p: Platform, root: Path | None = None, want: dict | None = None) -> State:
    """The state of `root/<platform>`: complete only if its manifest is there, its parts add up to it (file
    count and bytes, the qemu and Python binaries' sha256) and it pins the host's runtime versions."""
    folder = Path(root or default_root()) / p.name
    if not folder.exists():
        return State(folder, "missing", [f"no cache at {folder}"])
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return State(folder, "incomplete", [f"{folder}: no readable {MANIFEST} (a build that did not finish)"])
    if m.get("format") != FORMAT or m.get("platform") != p.name or not m.get("complete"):
        return State(folder, "incomplete", [f"{folder}/{MANIFEST}: not a complete cache of this edgecls"], m)
    reasons = []
    for part, expected in m.get("parts", {}).items():
        have = _tree(folder / part)
        if have != expected:
            reasons.append(f"{part}/ holds {have['files']} files, {have['bytes']:,} bytes; the manifest says "
                           f"{expected['files']} files, {expected['bytes']:,} bytes")
    for what in ("qemu", "python"):
        binary = folder / m[what]["binary"]
        if not binary.is_file() or sha256(binary) != m[what]["sha256"]:
            reasons.append(f"{m[what]['binary']}: missing or changed (sha256)")
    if reasons:
        return State(folder, "incomplete", reasons, m)
    want = want if want is not None else packages.wanted()
    host = packages.runtime_versions(want)
    stored = m.get("runtimes") or {}
    differ = [f"{r} {stored.get(r, 'absent')} (host {v})" for r, v in host.items()
              if stored.get(r) != v and r not in (m.get("wheels") or {}).get("missing", {})]
    base = (m.get("wheels") or {}).get("base") or {}
    differ += [f"{n} {base.get(n, 'absent')} (host {v})" for n, v in want["base"].items() if base.get(n) != v]
    if differ:
        return State(folder, "outdated", ["built for other versions: " + ", ".join(differ)], m)
    return State(folder, "complete", [], m)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise EdgeclsError(f"{what}: {cmd[0]} is not installed here (the arm64 cache is built with apt-get and "
                           "dpkg, as on Debian or Ubuntu)") from None
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip()
        if "No space left" in text:
            raise OSError(errno.ENOSPC, "No space left on device")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        raise EdgeclsError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done


def _deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True).stdout.strip()


def _entry(path: Path) -> dict:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path)}


def _userland(p: Platform, stage: Path, work: Path, mirror: str, log) -> dict:
    apt = work / "apt-userland"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    (apt / "sources.list").write_text(packages.sources_line(p.debian_arch, packages.DEBIAN_SUITE, mirror))
    log(f"apt: Debian {packages.DEBIAN_SUITE} {p.debian_arch}: {', '.join(packages.USERLAND)} and their dependencies")
    for cmd in packages.apt_commands(apt, p.debian_arch, packages.USERLAND):
        _run(cmd, "apt-get (Debian arm64 packages)")
    debs = sorted((apt / "cache" / "archives").glob("*.deb"))
    rootfs = stage / "rootfs"
    rootfs.mkdir()
    entries = []
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)], f"dpkg-deb -x {deb.name}")
        entries.append(_entry(deb) | {"package": _deb_field(deb, "Package"), "version": _deb_field(deb, "Version")})
    python = rootfs / "usr" / "bin" / f"python{packages.PYTHON}"
    if not python.is_file():
        raise EdgeclsError(f"apt: the Debian packages hold no {python.relative_to(stage)}")
    return {"suite": packages.DEBIAN_SUITE, "mirror": mirror, "packages": entries,
            "python": {"binary": str(python.relative_to(stage)), "version": _deb_field(
                next(d for d in debs if d.name.startswith(f"python{packages.PYTHON}_")), "Version"),
                "sha256": sha256(python)}}


def _qemu(p: Platform, stage: Path, work: Path, mirror: str, log) -> dict:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch != "amd64":
        raise EdgeclsError(f"this host is {arch or 'not Debian'}: the arm64 cache is built on an amd64 (x86-64) "
                           "Debian or Ubuntu host")
    apt = work / "apt-qemu"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    (apt / "sources.list").write_text(packages.sources_line(arch, packages.QEMU_SUITE, mirror))
    log(f"apt: qemu-user from Debian {packages.QEMU_SUITE} (a private apt configuration)")
    downloads = apt / "download"
    downloads.mkdir()
    for cmd in packages.apt_download(apt, arch, "qemu-user"):
        _run(cmd, "apt-get (qemu-user)", cwd=downloads)
    deb = next(downloads.glob("qemu-user_*.deb"))
    target = stage / "qemu" / p.qemu
    target.parent.mkdir()
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # closed early: the rest is not read
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.name.lstrip("./") == f"usr/bin/{p.qemu}" and member.isfile():
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                break
    proc.stdout.close()
    proc.wait()
    if not target.is_file():
        raise EdgeclsError(f"{deb.name}: holds no usr/bin/{p.qemu}")
    target.chmod(0o755)
    return {"suite": packages.QEMU_SUITE, "package": "qemu-user", "version": _deb_field(deb, "Version"),
            "deb": _entry(deb), "binary": str(target.relative_to(stage)), "sha256": sha256(target),
            "bytes": target.stat().st_size}


def _wheels(p: Platform, stage: Path, work: Path, want: dict, log) -> tuple[dict, dict]:
    """Download and unpack the wheels; a runtime with no aarch64 wheel is recorded as missing, not fatal."""
    dl = work / "wheels"
    dl.mkdir()
    log(f"pip: aarch64 wheels of {', '.join(f'{n} {v}' for n, v in sorted(want['base'].items()))}")
    _run(packages.pip_download(p, dl, want["base"]), "pip download (edgecls's own dependencies for aarch64)")
    missing = dict(want["not_here"])
    missing.pop("edgecls", None)
    runtimes = {}
    for runtime, pins in want["runtimes"].items():
        log(f"pip: {runtime}: {', '.join(f'{n} {v}' for n, v in sorted(pins.items()))}")
        try:
            _run(packages.pip_download(p, dl, pins), f"pip download ({runtime})")
        except EdgeclsError as e:
            missing[runtime] = f"no aarch64 wheel for CPython {packages.PYTHON} ({e})"
            continue
        runtimes[runtime] = pins[packages.canonical(packages.RUNTIME_DISTS[runtime])]
    wheels = sorted(dl.glob("*.whl"))
    site = stage / "site"
    log(f"pip: unpacking {len(wheels)} wheels")
    _run(packages.pip_install(p, site, wheels), "pip install --target (unpacking the aarch64 wheels)")
    return {"base": want["base"], "pins": {r: want["runtimes"][r] for r in runtimes},
            "files": [_entry(w) for w in wheels], "missing": missing}, runtimes


def _free_bytes(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


@dataclass
class SetupResult:
    state: State
    built: bool  # False: the cache was already complete (a no-op)
    replaced: list[str] = field(default_factory=list)  # why an existing cache was rebuilt
    seconds: float = 0.0

    def to_dict(self) -> dict:
        m = self.state.manifest or {}
        return {"folder": str(self.state.folder), "status": self.state.status, "built": self.built,
                "replaced": self.replaced, "seconds": round(self.seconds, 1), "bytes": m.get("bytes"),
                "runtimes": m.get("runtimes"), "missing": (m.get("wheels") or {}).get("missing"),
                "qemu": (m.get("qemu") or {}).get("version"), "python": (m.get("python") or {}).get("version")}


def setup(p: Platform, root: Path | None = None, offline: bool = False, mirror: str = packages.MIRROR,
          needs_bytes: int = NEEDS_BYTES, log=lambda line: None) -> SetupResult:
    """Make `root/<platform>` complete for the host's runtime versions: a no-op when it already is; else
    (re)built in a staging folder and swapped in whole. `offline`: never fetch; fail naming what is missing.

    Raises:
        EdgeclsError: offline with something missing, no space, apt/pip/dpkg missing or failing.
    """
    from filelock import FileLock

    root = Path(root or default_root())
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeclsError(f"{root}: cannot create the cache folder ({e.strerror or e})") from e
    with FileLock(root / f"{p.name}.lock"):
        want = packages.wanted()
        state = inspect(p, root, want)
        if state.usable:
            return SetupResult(state, built=False)
        if offline:
            raise EdgeclsError(f"--offline: the {p.name} cache cannot be used: {'; '.join(state.reasons)}; run "
                               f"'edgecls platform setup {p.name}' where apt and pip reach their package "
                               "registries")
        replaced = list(state.reasons) if state.status != "missing" else []
        half = remove_stale(root, prefix=f".{p.name}.")  # under the lock: their builders are gone
        if half:
            replaced.append(f"removed what an interrupted build left ({', '.join(sorted(half))})")
        free = _free_bytes(root)
        if free < needs_bytes:
            raise EdgeclsError(f"{root}: no space for the {p.name} cache: {free / 1e6:,.0f} MB free, a build needs "
                               f"about {needs_bytes / 1e6:,.0f} MB (set {ENV} or --cache-dir to another disk)")
        start = time.monotonic()
        work = root / f".{p.name}.tmp-{owner_tag()}-downloads"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            with staged_bundle(state.folder) as stage:
                userland = _userland(p, stage, work, mirror, log)
                qemu = _qemu(p, stage, work, mirror, log)
                wheels, runtimes = _wheels(p, stage, work, want, log)
                parts = {part: _tree(stage / part) for part in ("rootfs", "site", "qemu")}
                manifest = {"format": FORMAT, "platform": p.name, "complete": True, "built_at": now(),
                            "build_seconds": round(time.monotonic() - start, 1),
                            "debian": {k: v for k, v in userland.items() if k != "python"},
                            "python": userland["python"], "qemu": qemu, "wheels": wheels, "runtimes": runtimes,
                            "parts": parts, "bytes": sum(v["bytes"] for v in parts.values())}
                atomic_write(stage / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise EdgeclsError(f"{root}: no space left while building the {p.name} cache (needs about "
                                   f"{needs_bytes / 1e6:,.0f} MB); nothing was kept") from e
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        state = inspect(p, root, want)
        return SetupResult(state, built=True, replaced=replaced, seconds=time.monotonic() - start)


def require(p: Platform, root: Path | None = None) -> State:
    """The complete cache, or an `error:` saying what is wrong and the command that fixes it."""
    state = inspect(p, root)
    if not state.usable:
        raise EdgeclsError(f"the {p.name} emulation cache is {state.status}: {'; '.join(state.reasons)}; run "
                           f"'edgecls platform setup {p.name}'" + (f" --cache-dir {root}" if root else ""))
    return state
