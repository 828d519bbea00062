"""Other instruction sets than the host's: the device-side verify run inside an emulated userland.

`edgecls platform setup arm64` builds a cache (cache.py) of an arm64 Debian userland, qemu-user and
the aarch64 wheels of the host's runtime versions, all fetched through apt and pip (packages.py);
`edgecls verify BUNDLE --platform arm64` runs `edgecls.verify.parity.verify` — the same device-side
function a board would run — inside it, once per emulated CPU model (emulator.py, job.py), and
stores the rows beside the host's (verify.py). A verdict must hold on two CPU models: an emulator
fault looks exactly like an instruction-set parity fault.

This module stays light (it is imported inside the emulated Python too).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import EdgeclsError


@dataclass(frozen=True)
class Platform:
    name: str
    machine: str  # what platform.machine() says inside
    qemu: str  # the qemu-user binary that runs it
    debian_arch: str
    wheel_tags: tuple[str, ...]  # pip --platform tags, broadest first
    cpus: dict[str, str]  # CPU model -> what it has (words)
    default_cpus: tuple[str, ...]


ARM64 = Platform(
    name="arm64", machine="aarch64", qemu="qemu-aarch64", debian_arch="arm64",
    # openvino's aarch64 wheel is manylinux_2_35: every glibc level up to bookworm's 2.36 is listed
    wheel_tags=("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_24_aarch64",
                *(f"manylinux_2_{n}_aarch64" for n in range(27, 37))),
    cpus={
        "neoverse-v1": "Armv8.4: SVE, dotprod, i8mm, bf16, fp16 (Graviton3-class)",
        "neoverse-n1": "Armv8.2: dotprod, fp16, no SVE (Graviton2, Ampere Altra)",
        "neoverse-n2": "Armv9.0: SVE2, dotprod, i8mm, bf16, fp16",
        "cortex-a76": "Armv8.2: dotprod, fp16 (Raspberry Pi 5)",
        "cortex-a72": "Armv8.0: plain NEON, no fp16 arithmetic, no dotprod (Raspberry Pi 4)",
        "cortex-a53": "Armv8.0: plain NEON, in-order (Raspberry Pi 3, many boards)",
    },
    default_cpus=("neoverse-v1", "cortex-a72"),  # the richest and the plainest: kernels differ most
)
PLATFORMS = {ARM64.name: ARM64}


def platform(name: str) -> Platform:
    """The platform called `name`; an `error:` naming the known ones otherwise."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise EdgeclsError(f"--platform {name}: unknown platform (known: {', '.join(PLATFORMS)})") from None


def cpu_models(p: Platform, value: str | list[str] | None) -> list[str]:
    """The emulated CPU models asked for (comma-separated), default two; unknown ones listed with the known."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [n.strip() for n in names if n.strip()] or list(p.default_cpus)
    unknown = [n for n in names if n not in p.cpus]
    if unknown:
        raise EdgeclsError(f"--cpu {','.join(unknown)}: unknown CPU model for {p.name} (known: "
                           f"{', '.join(p.cpus)})")
    return list(dict.fromkeys(names))
