"""`edgecls verify BUNDLE --platform arm64`: the device-side verify, run inside the emulated userland on each
emulated CPU model, its rows stored beside the host's.

Each file is judged against Keras with the same gates (`edgecls.verify.parity.verify`, unchanged: the
function a board runs, on the bundle's reference.npz). The host runs the same job in its own Python on
the same images, so each row also says how many answers changed and how far the probabilities moved
from the host's (`vs_native`). Rows are bound to the file's sha256 and merged per file x runtime x
platform x CPU model x requested precision under the manifest's ``platform_verify``. A verdict is
believed only when two CPU models agree (`core.results.platform_verdicts`): an emulator fault looks
exactly like an instruction-set parity fault.
"""

from __future__ import annotations

import platform as host_platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import runtimes
from ..core import results
from ..core.bundle import Bundle, now
from ..core.errors import EdgeclsError
from ..core.gates import check_max_drop
from ..core.hooks import Hooks
from ..core.names import Runtime, parse
from ..verify.parity import option_sets
from . import cache, cpu_models, emulator, packages
from . import platform as find_platform

SECTION = "platform_verify"


@dataclass
class PlatformResult:
    platform: str
    cpus: list[str]
    rows: list[dict]  # this run's rows, stored form (bound, with verdicts)
    native_rows: list[dict]  # the host's current verify rows of the same files, for the table
    skipped: dict[str, str] = field(default_factory=dict)  # runtime -> why it was not run
    seconds: dict[str, float] = field(default_factory=dict)  # job -> wall seconds
    environment: dict[str, dict] = field(default_factory=dict)  # job -> machine, versions
    emulator: str = ""
    save_error: str | None = None

    @property
    def failed(self) -> bool:
        """A file failed on some CPU model (a parity fail, or an emulator disagreement to look into)."""
        return any(r["outcome"] == "fail" for r in self.rows)

    def to_dict(self) -> dict:
        return {"platform": self.platform, "cpus": self.cpus, "emulator": self.emulator, "rows": self.rows,
                "native_rows": self.native_rows, "skipped": self.skipped, "seconds": self.seconds,
                "environment": self.environment, "save_error": self.save_error}


def _runtime_names(runtime_names) -> list[str]:
    names = parse(runtimes.RUNTIMES, runtime_names, "--runtime") or [
        r for r in runtimes.RUNTIMES if r != Runtime.keras and runtimes.runner_class(r).by_default]
    other = [n for n in names if n not in packages.RUNTIME_DISTS]
    if other:
        raise EdgeclsError(f"--runtime {','.join(other)}: not run under --platform (emulated: "
                           f"{', '.join(packages.RUNTIME_DISTS)})")
    return [str(n) for n in names]


def verify_platform(bundle_path: str | Path, platform: str = "arm64", cpus: str | list[str] | None = None, *,
                    runtime_names=None, runtime_options: dict[str, str] | None = None, max_drop: float = 1.0,
                    cache_dir: Path | None = None, timeout: float | None = None, compare_native: bool = True,
                    parallel: int | None = None, hooks: Hooks | None = None) -> PlatformResult:
    """Verify every exported file of the selected runtimes inside the emulated `platform`, once per CPU
    model, and store the rows. A runtime the cache has no aarch64 wheel for is skipped, saying which; the
    others are verified. `hooks.note(line)` hears what is about to run, before the emulated jobs start
    (`edgecls.core.hooks.Hooks`).

    Raises:
        EdgeclsError: unknown platform or CPU model, no usable cache, no reference data, nothing to verify.
    """
    hooks = hooks or Hooks()
    p = find_platform(platform)
    models = cpu_models(p, cpus)
    check_max_drop(max_drop)
    names = _runtime_names(runtime_names)
    for name in names:
        for options in option_sets(name, runtime_options):
            runtimes.runner_class(name)(**options)
    bundle = Bundle.open(bundle_path)
    if "reference" not in bundle.manifest:
        raise EdgeclsError(f"{bundle.path}: no reference data: --platform runs the device-side verify, which "
                           "needs reference.npz (re-export with 'edgecls export')")
    bundle.checked_path(bundle.manifest["reference"]["file"])
    state = cache.require(p, cache_dir)
    have = state.runtimes()
    skipped = {n: state.missing_runtimes().get(n, f"not in the {p.name} cache (run 'edgecls platform setup "
                                                  f"{p.name}')") for n in names if n not in have}
    run = [n for n in names if n in have]
    arts = [a for a in bundle.manifest["artifacts"] if a["format"] != "keras"]
    expected = [(a, n, o.get("compute", "")) for a in arts for n in run if runtimes.runner_class(n).runs(a)
                for o in option_sets(n, runtime_options)]
    if not expected:
        raise EdgeclsError(f"{bundle.path}: no exported file to verify on {p.name} with runtime(s) "
                           f"{', '.join(names)}" + (f" ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})"
                                                    if skipped else ""))
    hooks.note(f"verifying {len(expected)} file x runtime run(s) on {p.name} ({', '.join(models)}; emulated: "
               f"minutes, not seconds)" + (f"; not run: {', '.join(skipped)}" if skipped else ""))
    spec = {"mode": "verify", "bundle": str(bundle.path.resolve()), "runtimes": run,
            "options": runtime_options or {}, "max_drop": max_drop, "threads": 1}
    with tempfile.TemporaryDirectory(prefix="edgecls-platform-") as tmp:
        code = emulator.copy_code(Path(tmp) / "code")
        jobs = []
        for cpu in models:
            folder = Path(tmp) / cpu
            argv, env = emulator.command(state, cpu, code, emulator.write_job(folder, spec))
            jobs.append(emulator.Job(cpu, argv, env, folder))
        if compare_native:
            folder = Path(tmp) / "native"
            argv, env = emulator.native_command(code, emulator.write_job(folder, spec | {"hide_tensorflow": True}))
            jobs.append(emulator.Job("native", argv, env, folder))
        emulator.run_jobs(jobs, parallel or min(len(jobs), emulator.usable_cores()), timeout)
    native = next((j for j in jobs if j.name == "native"), None)
    at = now()
    qemu = f"qemu-user {state.manifest['qemu']['version']}"
    rows = []
    for j in jobs:
        if j.name == "native":
            continue
        rows += _rows(j, expected, native, at, p.name, qemu)
    rows = [results.bind(r, bundle.manifest) for r in rows]
    section = bundle.manifest.get(SECTION) or {}
    merged = results.merge(section.get("rows", []), rows, SECTION)
    verdicts = results.platform_verdicts([r for r in merged if results.binding(r, bundle.manifest)
                                          == results.Binding.current])
    for r in merged:
        r["verdict"] = verdicts.get(results.key(r, SECTION), r.get("verdict"))
    bundle.manifest[SECTION] = {"at": at, "rows": merged}
    result = PlatformResult(p.name, models, [r for r in merged if any(r is x for x in rows)],
                            [r for r in results.current(bundle.manifest, "verify")
                             if r.get("file") in {a["file"] for a, _, _ in expected}],
                            skipped, {j.name: round(j.seconds, 1) for j in jobs},
                            {j.name: j.result.get("environment", {}) for j in jobs}, qemu)
    try:
        bundle.save()
    except EdgeclsError as e:
        result.save_error = str(e)
    return result


def _rows(job: emulator.Job, expected, native: emulator.Job | None, at: str, platform: str, qemu: str) -> list[dict]:
    """The stored rows of one CPU model's job: its verify rows with the comparison with the host's outputs;
    a failed row per expected file when the job itself failed (crash, timeout)."""
    base = {"platform": platform, "cpu": job.name, "emulator": qemu, "at": at,
            "machine": job.result.get("environment", {}).get("machine", ""), "emulated_seconds": round(job.seconds, 1)}
    if job.error:
        return [base | {"format": a["format"], "precision": a["precision"], "file": a["file"], "runtime": n,
                        "compute_requested": c, "device": "cpu", "compute": "", "source": "reference",
                        "failures": [f"{platform}/{job.name}: {job.error}"], "undecided": [], "calibration": [],
                        "error": True, "outcome": "fail", "passed": False} for a, n, c in expected]
    mine = _outputs(job)
    theirs = _outputs(native) if native is not None and not native.error else {}
    out = []
    for r in job.result["verify"]["rows"]:
        k = (r["file"], r["runtime"], r.get("compute_requested", ""))
        row = base | r
        if k in mine and k in theirs:
            a, b = mine[k], theirs[k][0]
            row["vs_native"] = {"machine": host_platform.machine(), "compute": theirs[k][1],
                                "images": int(len(a)), "changed": int((a.argmax(1) != b.argmax(1)).sum()),
                                "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()) if len(a) else 0.0}
        out.append(row)
    return out


def _outputs(job: emulator.Job) -> dict:
    """(file, runtime, compute_requested) -> probabilities (and, for the host's, what its float parts ran in)."""
    rows = {(r["file"], r["runtime"], r.get("compute_requested", "")): r.get("compute", "")
            for r in job.result.get("verify", {}).get("rows", [])}
    out = {}
    for i, o in enumerate(job.result.get("outputs", [])):
        k = (o["file"], o["runtime"], o.get("compute_requested", ""))
        out[k] = (job.outputs[f"o{i}"], rows.get(k, "")) if job.name == "native" else job.outputs[f"o{i}"]
    return out


def golden_outputs(platform: str = "arm64", cpus: str | list[str] | None = None, *, bundle_path: str | Path,
                   cache_dir: Path | None = None, timeout: float | None = None):
    """For `edgecls golden --platform`: a function (inputs, artifacts) -> each artifact's probabilities on each
    emulated CPU model (`verify.golden.write_golden`'s ``platform_outputs``). Checks the platform, the CPU
    models and the cache now, before any work."""
    p = find_platform(platform)
    models = cpu_models(p, cpus)
    state = cache.require(p, cache_dir)
    qemu = f"qemu-user {state.manifest['qemu']['version']}"
    bundle = str(Path(bundle_path).resolve())

    def outputs(x: np.ndarray, artifacts: list[dict]) -> list[dict]:
        have = state.runtimes()
        runnable = [a for a in artifacts if a["format"] in have]
        out = [{"platform": p.name, "cpu": cpu, "file": a["file"],
                "error": state.missing_runtimes().get(a["format"], f"{a['format']} is not in the {p.name} cache")}
               for a in artifacts if a not in runnable for cpu in models]
        with tempfile.TemporaryDirectory(prefix="edgecls-platform-") as tmp:
            code = emulator.copy_code(Path(tmp) / "code")
            np.save(Path(tmp) / "inputs.npy", np.asarray(x, np.float32))
            spec = {"mode": "predict", "bundle": bundle, "inputs": str(Path(tmp) / "inputs.npy"),
                    "artifacts": [{k: a[k] for k in ("file", "format", "precision", "runtime") if k in a}
                                  for a in runnable]}
            jobs = []
            for cpu in models:
                argv, env = emulator.command(state, cpu, code, emulator.write_job(Path(tmp) / cpu, spec))
                jobs.append(emulator.Job(cpu, argv, env, Path(tmp) / cpu))
            emulator.run_jobs(jobs, min(len(jobs), emulator.usable_cores()), timeout)
        for j in jobs:
            for e in (j.result.get("predict") or [{"file": a["file"], "error": j.error} for a in runnable]):
                base = {"platform": p.name, "cpu": j.name, "emulator": qemu, "file": e["file"]}
                if j.error or e.get("error"):
                    out.append(base | {"error": e.get("error") or j.error})
                else:
                    out.append(base | {"runtime": e["runtime"], "compute": e["compute"],
                                       "probabilities": j.outputs[e["output"]]})
        return out

    return outputs
