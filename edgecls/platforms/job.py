"""What runs inside the emulated Python (and, for the comparison, in the host's own): one process, one job.

    python -m edgecls.platforms.job JOB.json

mode "verify": `edgecls.verify.parity.verify` — the device-side verify a board runs, with no TensorFlow
(the bundle's reference.npz and its stored Keras probabilities), storing nothing — writing its result
and every file's probabilities. mode "predict": each listed artifact's probabilities on an input batch
(golden vectors). Writes OUT/result.json and OUT/outputs.npz; never the bundle.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def _versions() -> dict:
    import importlib.metadata as md

    out = {"machine": platform.machine(), "python": platform.python_version()}
    for dist in ("numpy", "onnxruntime", "ai-edge-litert", "openvino"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def run(job: dict) -> tuple[dict, dict]:
    import numpy as np

    from ..core.errors import EdgeclsError

    outputs: dict[str, np.ndarray] = {}
    result: dict = {"environment": _versions()}
    try:
        if job["mode"] == "verify":
            from ..core.hooks import Hooks
            from ..verify.parity import verify

            index = []

            class Keep(Hooks):
                def outputs(self, row, probabilities) -> None:
                    index.append({"file": row.file, "runtime": row.runtime,
                                  "compute_requested": row.compute_requested})
                    outputs[f"o{len(index) - 1}"] = np.asarray(probabilities, np.float32)

            verified = verify(job["bundle"], runtime_names=job["runtimes"], runtime_options=job.get("options"),
                              threads=job.get("threads"), max_drop=job.get("max_drop", 1.0), hooks=Keep(),
                              save=False)
            result |= {"verify": verified.to_dict(), "outputs": index}
        elif job["mode"] == "predict":
            from .. import runtimes
            from ..core.bundle import Bundle

            bundle = Bundle.open(job["bundle"])
            x = np.load(job["inputs"])
            ran = []
            for i, a in enumerate(job["artifacts"]):
                entry = {"file": a["file"], "format": a["format"], "precision": a["precision"]}
                try:
                    runner = runtimes.create(runtimes.runtime_of(a))
                    runner.load(bundle.checked_path(a["file"]), threads=1)
                    outputs[f"o{i}"] = np.asarray(runner.predict(x), np.float32)
                    entry |= {"runtime": str(runner.name), "device": runner.device_ran, "compute": runner.compute,
                              "output": f"o{i}"}
                except EdgeclsError as e:
                    entry["error"] = str(e)
                ran.append(entry)
            result["predict"] = ran
        else:
            raise EdgeclsError(f"unknown job mode {job['mode']!r}")
    except EdgeclsError as e:
        result["error"] = str(e)
    return result, outputs


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    if job.get("hide_tensorflow"):  # the host's comparison run takes the device's path: reference.npz
        for name in ("tensorflow", "keras"):
            sys.modules[name] = None  # find_spec() says "not installed"
    import numpy as np

    result, outputs = run(job)
    out = Path(job["out"])
    np.savez(out / "outputs.npz", **outputs)
    (out / "result.json").write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
