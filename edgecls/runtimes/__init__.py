"""Runtimes behind one interface (`Runner`: load, predict, timed_call), registered by name. No TensorFlow imported here.

A runner takes raw 0-255 NHWC pixels (any numeric dtype) and returns float32 class
probabilities (N, C); quantized uint8 inputs/outputs are handled inside the runner. Each
exported artifact records the runtime that runs it (``"runtime"`` in its manifest entry, from its
format module's ``RUNTIME``; older bundles: the runtime of the format's name), so a device finds the
runner from the manifest alone, without the export package.

Each runner class carries its own facts (`Runner`'s class attributes): the package it needs and
the extra that installs it, the options it accepts, what its timed call is and whether it
reports its own latency. `bench`, `verify` and the CLI ask these; none of them names a runtime.
Adding a runtime = one module and one line in `RUNTIMES`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ..core.errors import EdgeclsError, RuntimeMissing, require
from ..core.names import Device, Precision, Runtime
from ..core.registry import Registry


@dataclass
class TimedCall:
    """What `bench` times. The same work for every runtime: only `run()`, the model's execution, sits
    between the two clock readings; the input is converted (cast to float32, or quantized to the
    model's integer type) and bound before, and `output()` reads what the last `run()` computed and
    converts it (dequantizes, copies, `.numpy()`) after, outside the span. `bench` checks `output()`
    against a freshly loaded runner's `predict()`. `native_ms()` is the runtime's own latency of the
    last run, where it reports one (`Runner.own_latency`)."""

    run: Callable[[], object]
    output: Callable[[], np.ndarray]
    native_ms: Callable[[], float] | None = None
    #: a runtime that lives elsewhere (a browser page) times itself there with its own clock:
    #: measure(warmup, warmup_time, min_runs, min_time) -> {first_ms, times_ns, warmup, samples, ...}
    measure: Callable[[int, float, int, float], dict] | None = None


class Runner:
    """Base of every runner: the runtime's facts, and what a loaded runner says about itself."""

    name: ClassVar[str]  # its name in RUNTIMES
    package: ClassVar[str]  # the module `load` imports
    dists: ClassVar[tuple[str, ...]] = ()  # distributions whose versions bench records
    extra: ClassVar[str]  # pip install 'edgecls[extra]' brings it
    options: ClassVar[dict[str, tuple[str, ...]]] = {}  # option -> accepted values (e.g. OpenVINO compute)
    timed: ClassVar[str]  # what the timed call is, in words
    own_latency: ClassVar[bool] = False  # reports its own latency of each call (native_ms)
    devices: ClassVar[tuple[Device, ...]] = (Device.cpu,)
    formats: ClassVar[tuple[str, ...]] = ()  # formats it runs besides the artifacts that name it their runtime
    by_default: ClassVar[bool] = True  # among "all" runtimes (verify, bench); False: only when named
    #: where the embeddable `Classifier` ranks it when no format is named (lower first); None: never by default
    preference: ClassVar[int | None] = None

    #: after load: where it really ran ("CPUExecutionProvider", "XNNPACK (CPU)", ...), what the file
    #: holds, and what the non-quantized parts compute in ("fp32"; OpenVINO may run "bf16" or "f16")
    device_ran: str = "?"
    precision: Precision | str = "?"
    compute: str = "?"

    def __init__(self, **options: str):
        for key, value in options.items():
            allowed = self.options.get(key)
            if allowed is None:
                raise EdgeclsError(f"runtime {self.name} takes no option {key!r}")
            if value not in allowed:
                raise EdgeclsError(f"--{key.replace('_', '-')} {value}: choose {', '.join(allowed)}")

    @classmethod
    def installed(cls) -> bool:
        return importlib.util.find_spec(cls.package.split(".")[0]) is not None

    @classmethod
    def runs(cls, artifact: dict | str) -> bool:
        """Whether it runs `artifact` (a manifest entry: the runtime it records, else the runtime of its format's
        name; or a format name), or any file of a format it declares in `formats`."""
        fmt = artifact if isinstance(artifact, str) else artifact["format"]
        own = fmt if isinstance(artifact, str) else artifact.get("runtime") or fmt
        return own == cls.name or fmt in cls.formats

    @classmethod
    def import_package(cls):
        """The runtime's package, or RuntimeMissing naming the extra to install."""
        return require(cls.package, cls.extra, RuntimeMissing)

    def load(self, path: Path, *, device: Device = Device.cpu, threads: int | None = None) -> None:
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_all(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Probabilities for every image of `images`, `batch` at a time (verify, int8 export's judging)."""
        if not len(images):
            return np.zeros((0, 0))
        return np.concatenate([self.predict(images[i:i + batch]) for i in range(0, len(images), batch)])

    def timed_call(self, images: np.ndarray) -> TimedCall:
        """Prepare `images` once; return the leanest call that runs the model on them (for bench)."""
        raise NotImplementedError

    def thread_policy(self) -> dict:
        """After load: the threading the runtime runs with, as it reports it (recorded beside the numbers)."""
        return {}


#: runtime -> its Runner class (imported on use, so `edgecls[onnx]` needs no TensorFlow; the web runtimes drive
#: a generated app in a browser: they live with the app, edgecls.apps.web — a registry lookup that
#: tests/test_layout.py checks as a declared arrow, runtimes -> apps)
RUNTIMES: Registry = Registry("runtime", "--runtime", {
    Runtime.keras: "edgecls.runtimes.keras:KerasRunner",
    Runtime.onnx: "edgecls.runtimes.onnx:OnnxRunner",
    Runtime.tflite: "edgecls.runtimes.tflite:TFLiteRunner",
    Runtime.openvino: "edgecls.runtimes.openvino:OpenVINORunner",
    Runtime.web_onnx: "edgecls.apps.web.runner:WebOnnxRunner",
    Runtime.web_tflite: "edgecls.apps.web.runner:WebTFLiteRunner",
})


def runner_class(name: str) -> type[Runner]:
    """The runner class of a registered runtime (its module is light: the runtime loads in `load`)."""
    return RUNTIMES.get(name)


def create(name: str, **options: str) -> Runner:
    """A new, unloaded runner of the registered runtime `name`."""
    return runner_class(name)(**options)


def runtime_of(artifact: dict) -> str:
    """The runtime that runs a manifest's artifact: the one it records, else the one of its format's name."""
    return artifact.get("runtime") or artifact["format"]


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise EdgeclsError(f"--threads {threads}: must be at least 1")


def check_device(cls: type[Runner], device: Device) -> None:
    if Device(device) not in cls.devices:
        raise EdgeclsError(f"--device {Device(device).value}: {cls.name} runs on "
                           f"{', '.join(d.value for d in cls.devices)} only here")


def as_float(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images, dtype=np.float32)
