"""What the emulated userland is made of, and the apt / pip commands that fetch it (package registries only).

- the arm64 Debian packages of Python and the C/C++ libraries the runtimes link (`apt-get install
  --download-only` with a private configuration and an empty dpkg status: the whole dependency closure,
  ~16 MB of .debs, never touching the system's sources, lists or status);
- qemu-user from Debian 13 (trixie): qemu 10 (a static binary). Debian 12's qemu 7.2 passes the host's
  /proc/cpuinfo through and onnxruntime's CPU detection crashes on import;
- the aarch64 wheels (`pip download --only-binary=:all:` with aarch64 platform tags) of the host's
  runtimes at the host's versions, with what they and edgecls's device-side verify import, pinned to the
  versions installed here.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

from . import Platform

DEBIAN_SUITE = "bookworm"  # the userland: python3.11 (cp311 wheels), glibc 2.36
QEMU_SUITE = "trixie"  # qemu-user 10
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PYTHON = "3.11"
USERLAND = ("python3.11", "libstdc++6")  # their closure: libc, libgcc, libssl, zlib, libffi, ...
#: what edgecls's device-side verify imports besides the runtimes (pyproject's core dependencies
#: that verify reaches: the manifest's schema and lock, numpy, the image decoder)
BASE = ("numpy", "pillow", "jsonschema", "filelock")
#: the runtimes run inside, by their registry name -> the distribution that carries them
RUNTIME_DISTS = {"onnx": "onnxruntime", "tflite": "ai-edge-litert", "openvino": "openvino"}
#: markers evaluated for the emulated Python (Debian 12's CPython 3.11 on aarch64 Linux)
MARKERS = {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux", "os_name": "posix",
           "python_version": PYTHON, "python_full_version": "3.11.2", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def apt_options(root: Path, arch: str) -> list[str]:
    """apt-get options that keep everything under `root` (sources, lists, archives, an empty dpkg status)."""
    return ["-o", f"Dir::Etc::SourceList={root / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}",
            "-o", f"Dir::State::status={root / 'status'}", "-o", f"APT::Architecture={arch}",
            "-o", f"APT::Architectures::={arch}", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Languages=none", "-q"]


def sources_line(arch: str, suite: str, mirror: str = MIRROR) -> str:
    return f"deb [arch={arch} signed-by={KEYRING}] {mirror} {suite} main\n"


def apt_commands(root: Path, arch: str, packages: tuple[str, ...] | list[str]) -> list[list[str]]:
    """update, then download the closure of `packages` into root/cache/archives (nothing installed)."""
    opts = apt_options(root, arch)
    return [["apt-get", *opts, "update"],
            ["apt-get", *opts, "install", "-y", "--download-only", "--no-install-recommends", *packages]]


def apt_download(root: Path, arch: str, package: str) -> list[list[str]]:
    """update, then `apt-get download` one package (no dependencies: qemu-user's binaries are static)."""
    opts = apt_options(root, arch)
    return [["apt-get", *opts, "update"], ["apt-get", *opts, "download", package]]


def pip_download(p: Platform, dest: Path, pins: dict[str, str]) -> list[str]:
    """Download the aarch64 cp311 wheels of `pins` (name -> exact version), nothing else."""
    tags = [a for t in p.wheel_tags for a in ("--platform", t)]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp", *tags, "-d", str(dest),
            *(f"{n}=={v}" for n, v in sorted(pins.items()))]


def pip_install(p: Platform, site: Path, wheels: list[Path]) -> list[str]:
    """Unpack downloaded wheels into `site` (no index, no dependency resolution: the pins are the closure)."""
    tags = [a for t in p.wheel_tags for a in ("--platform", t)]
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--no-index", "--no-compile", "--only-binary=:all:", "--python-version", PYTHON,
            "--implementation", "cp", *tags, "--target", str(site), *map(str, sorted(wheels))]


def closure(roots: list[str] | tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> version installed here, for `roots` and everything they require on aarch64 Linux;
    name -> why not pinned: not installed here). Extras are never followed."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    missing: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonical(todo.pop())
        if name in pins or name in missing:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing[name] = "not installed here (the cache pins the host's versions)"
            continue
        pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(MARKERS):
                todo.append(req.name)
    return pins, missing


def wanted(runtime_names: list[str] | tuple[str, ...] = tuple(RUNTIME_DISTS)) -> dict:
    """What the cache should pin now: {"base": {name: version}, "runtimes": {runtime: {name: version}},
    "not_here": {runtime: why}} from the versions installed on the host."""
    base, base_missing = closure(BASE)
    out: dict = {"base": base, "runtimes": {}, "not_here": {}}
    if base_missing:
        out["not_here"]["edgecls"] = "; ".join(f"{k}: {v}" for k, v in base_missing.items())
    for runtime in runtime_names:
        dist = RUNTIME_DISTS[runtime]
        pins, missing = closure([dist])
        if canonical(dist) in missing:
            out["not_here"][runtime] = f"{dist} is not installed here (pip install 'edgecls[{runtime}]')"
            continue
        out["runtimes"][runtime] = {k: v for k, v in pins.items() if k not in base}
    return out


def runtime_versions(want: dict) -> dict[str, str]:
    """runtime -> the version of its own distribution (what a cache must match)."""
    return {r: pins[canonical(RUNTIME_DISTS[r])] for r, pins in want["runtimes"].items()}
