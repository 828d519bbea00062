"""What this CPU is, as far as int8 speed is concerned, read without any heavy dependency.

int8 inference is fast only where the CPU has int8 dot-product instructions: x86 AVX-512 VNNI,
AVX-VNNI or AMX; Arm dot-product (asimddp) or i8mm. On an AVX2-only CPU an int8 convolution
emulates the dot product with several instructions and gains little over fp32 FMA, and at batch 1
the quantize/dequantize steps of a small model can make it slower. `edgecls bench` records these
facts beside every number and says so when int8 loses.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: x86 flags (as /proc/cpuinfo names them) and Arm features that matter for int8, in order of strength
X86 = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
       "amx_int8": "AMX-INT8"}
ARM = {"asimddp": "dot-product", "i8mm": "i8mm"}
INT8_DOT = {"AVX-512 VNNI", "AVX-VNNI", "AMX-INT8", "dot-product", "i8mm"}


@dataclass
class CpuInfo:
    model: str
    arch: str
    logical_cores: int
    physical_cores: int
    features: list[str] = field(default_factory=list)  # the int8-relevant ones present

    @property
    def int8_dot(self) -> bool:
        """Does the CPU have int8 dot-product instructions (VNNI, AMX, Arm dotprod/i8mm)?"""
        return bool(INT8_DOT & set(self.features))

    def summary(self) -> str:
        feats = ", ".join(self.features) or "none of AVX2/AVX-512/VNNI/AMX/dotprod/i8mm"
        return f"{self.model} ({self.arch}; {self.physical_cores} physical cores; int8-relevant: {feats})"

    def to_dict(self) -> dict:
        return asdict(self) | {"int8_dot_product": self.int8_dot}


def _cpuinfo(text: str | None = None) -> str:
    if text is not None:
        return text
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def detect(cpuinfo: str | None = None, arch: str | None = None) -> CpuInfo:
    """This machine's CPU (or the one a /proc/cpuinfo text describes)."""
    text = _cpuinfo(cpuinfo)
    arch = arch or platform.machine() or "?"
    model, flags, cores = platform.processor() or "?", set(), set()
    physical = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "CPU part") and model in ("?", "", arch):
            model = value
        elif key in ("flags", "Features"):
            flags |= set(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    names = X86 if arch in ("x86_64", "AMD64", "i686") else ARM
    features = [label for flag, label in names.items() if flag in flags]
    logical = os.cpu_count() or 1
    return CpuInfo(model, arch, logical, len(cores) or logical, features)


def _cores_of(text: str) -> dict[int, tuple]:
    """processor number -> (physical id, core id), from a /proc/cpuinfo text."""
    cores, cpu, physical = {}, None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            cpu, physical = int(value), None
        elif key == "physical id":
            physical = value
        elif key == "core id" and cpu is not None:
            cores[cpu] = (physical, value)
    return cores


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period), the tightest along its path;
    None when unlimited or unknown. cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us`)."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    dirs = []
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: 0::/path
            base = root
        elif "cpu" in controllers.split(","):  # v1: N:cpu,cpuacct:/path
            base = next((root / d for d in (controllers, "cpu,cpuacct", "cpu") if (root / d).is_dir()), None)
            if base is None:
                continue
        else:
            continue
        rel = Path(path.lstrip("/"))
        dirs += [base / rel] + [base / p for p in rel.parents]
    quotas = []
    for d in dict.fromkeys(dirs):
        try:
            if (d / "cpu.max").is_file():
                quota, period = (d / "cpu.max").read_text().split()[:2]
                if quota != "max":
                    quotas.append(int(quota) / int(period))
            elif (d / "cpu.cfs_quota_us").is_file():
                quota = int((d / "cpu.cfs_quota_us").read_text())
                if quota > 0:
                    quotas.append(quota / int((d / "cpu.cfs_period_us").read_text()))
        except (OSError, ValueError):
            continue
    return min(quotas) if quotas else None


def usable_cores(cpuinfo: str | None = None) -> dict:
    """The cores this process may use: the CPUs of its affinity mask (`os.sched_getaffinity`), counted as
    physical cores where /proc/cpuinfo says which share one, capped by the cgroup CPU quota (a 2-CPU
    container on a 64-core host: 2, not 32). `cores` is the number; the rest says where it came from."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = list(range(os.cpu_count() or 1))
    siblings = _cores_of(_cpuinfo(cpuinfo))
    physical = len({siblings.get(c, ("cpu", c)) for c in allowed}) if siblings else len(allowed)
    quota = cgroup_quota()
    cores = max(1, min(physical, math.ceil(quota - 1e-9)) if quota else physical)
    return {"cores": cores, "affinity_cpus": len(allowed), "physical_in_affinity": physical,
            "cgroup_quota_cpus": quota, "logical_cpus": os.cpu_count() or 1,
            "from": "physical cores in the CPU affinity mask" + (", capped by the cgroup CPU quota"
                                                                 if quota and quota < physical else "")}


def physical_cores() -> int:
    """Usable physical cores (hyper-threads not counted; the affinity mask and the cgroup CPU quota
    respected): the default thread count of every runtime in bench."""
    return usable_cores()["cores"]


def int8_note(cpu: CpuInfo, runtime: str, batch: int, ratio: float, pays_at: int | None = None) -> str:
    """Why int8 is slower than fp32 (`ratio` = int8 p50 / fp32 p50 > 1) for `runtime` at `batch` here;
    `pays_at`: a larger batch measured in the same run at which this runtime's int8 is faster (None: none)."""
    if not cpu.int8_dot:
        why = (f"this CPU has no int8 dot-product instructions ({', '.join(cpu.features) or 'none listed'}; "
               "no VNNI, AMX or Arm dotprod/i8mm), so int8 convolutions emulate them and gain little over fp32, "
               "while the quantize/dequantize steps add work")
    else:
        why = (f"this CPU has int8 dot-product instructions ({', '.join(f for f in cpu.features if f in INT8_DOT)}), "
               "but per-call overhead and the quantize/dequantize steps around the runtime's int8 kernels "
               "outweigh the faster arithmetic" + (f" at batch {batch}; int8 pays at batch {pays_at} (measured)"
                                                   if pays_at else " at every batch measured"))
    return f"{runtime} int8 is {ratio:.2f}x slower than {runtime} fp32 at batch {batch}: {why}."
