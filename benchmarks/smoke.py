"""CI's smoke run of every script in benchmarks/: each runs its code on a tiny bundle in seconds, so none can
rot unnoticed (as `test_inference.py` and `test_targets.py` did when `Runner.bind` went). Nothing is judged
against a target; a script that raises or exits non-zero fails the run.

    EDGECLS_BENCH_SMOKE=1 .venv/bin/python -m pytest benchmarks -q --benchmark-disable   # the pytest suites
    .venv/bin/python -m benchmarks.smoke                                                 # the scripts

`make bench-smoke` runs both. A new file in benchmarks/ must be a pytest suite (test_*.py) or be listed in
SCRIPTS below, else this run fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
#: script module -> its arguments in a smoke run ({bundle}, {image}: a tiny exported bundle and one of its images)
SCRIPTS = {
    "compare_vendor_tools": ["{bundle}", "--smoke", "--threads", "1"],
    "large_folder": ["--smoke"],
    "small_data": ["--smoke"],
    "device_install": ["{bundle}", "{image}", "--smoke"],
    "decision_stability": ["--smoke"],
    "crash_consistency": ["--smoke"],
    "onnx_int8_recipes": ["{bundle}", "--smoke"],
    "import_parity": ["--smoke"],
    "tune_search": ["--smoke", "--max-latency", "1000"],
    "evidence": ["--smoke", "--verify-time", "{bundle}"],
    "gate_calibration": ["--smoke"],
    "qat_fashion": ["{bundle}", "--smoke"],
    "noise_floor": ["{bundle}", "--smoke"],
}
NOT_SCRIPTS = {"__init__", "conftest", "smoke"}


def uncovered() -> list[str]:
    """Files in benchmarks/ that neither pytest (test_*.py) nor this run covers."""
    return sorted(p.name for p in HERE.glob("*.py")
                  if p.stem not in SCRIPTS.keys() | NOT_SCRIPTS and not p.stem.startswith("test_"))


def tiny_bundle(work: Path) -> tuple[Path, Path]:
    """The `tiny` model trained on a small folder of images, exported (int8 too), and one of the images."""
    import numpy as np
    from PIL import Image

    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train

    rng = np.random.default_rng(0)
    root = work / "photos"
    for k, name in enumerate(("dark", "bright")):
        (root / name).mkdir(parents=True)
        for i in range(16):
            Image.fromarray(rng.integers(0, 80, (16, 16, 3), dtype=np.uint8) + np.uint8(150 * k)).save(
                root / name / f"{i}.png")
    bundle = work / "bundle"
    train(TrainConfig(data=str(root), arch="tiny", epochs=3, image_size=16, out=bundle))
    result = export(bundle, ExportConfig(int8=True, calib_size=16))
    if result.failures:
        raise SystemExit(f"smoke: export failed: {result.failures}")
    image = work / "image.png"
    shutil.copy(root / "dark" / "0.png", image)
    return bundle, image


def main(argv: list[str] | None = None) -> int:
    import importlib

    names = argv or list(SCRIPTS)
    missing = uncovered()
    if missing:
        print(f"smoke: not covered (name them in benchmarks/smoke.py SCRIPTS or make them test_*.py): {missing}",
              file=sys.stderr)
        return 1
    failed = []
    with tempfile.TemporaryDirectory(prefix="edgecls-smoke-") as tmp:
        bundle, image = tiny_bundle(Path(tmp))
        for name in names:
            args = [a.format(bundle=bundle, image=image) for a in SCRIPTS[name]]
            t0 = time.perf_counter()
            try:
                rc = importlib.import_module(f"benchmarks.{name}").main(args)
            except Exception:  # noqa: BLE001  (any failure of a script is the finding)
                traceback.print_exc()
                rc = "exception"
            print(f"smoke: benchmarks/{name}.py {' '.join(SCRIPTS[name])}: "
                  f"{'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
