"""The device workflow in runtime-only installs: `pip install edgecls[onnx]` (and [tflite], [openvino])
in fresh virtualenvs, a copied bundle whose training folder is not there, no TensorFlow, no scikit-learn.

For each extra: verify, bench and predict run; neither tensorflow, keras nor sklearn is installed
(so none can be imported); the venv's installed size and edgecls's share beyond the runtime, numpy
and Pillow; the cold start of the embeddable API (import, load, first prediction of one image).

    .venv/bin/python -m benchmarks.device_install BUNDLE IMAGE [--extras onnx tflite openvino] [--json out.json]

`tests/test_device_install.py` (slow) runs the same workflow as a test. `--smoke` (CI): the onnx
extra only, one cold start; it needs PyPI, as the slow test does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMAT = {"onnx": "onnx", "tflite": "tflite", "openvino": "openvino"}
#: distributions that are "the runtime, numpy and Pillow" for each extra (the rest is edgecls's share)
RUNTIME_DISTS = {"onnx": ["onnxruntime"], "tflite": ["ai-edge-litert"], "openvino": ["openvino"]}
BASE_DISTS = ["numpy", "pillow"]

SIZES = r"""
import json, re, sys
from importlib import metadata
from pathlib import Path
dists = {}
for d in metadata.distributions():
    total = 0
    for f in d.files or []:
        p = Path(d.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    requires = [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower().replace("_", "-")
                for r in d.requires or [] if "extra ==" not in r]
    dists[d.metadata["Name"].lower().replace("_", "-")] = {"bytes": total, "requires": requires}
print(json.dumps(dists))
"""


def closure(dists: dict, roots: list[str]) -> set[str]:
    """`roots` and everything they require, transitively (what comes with the runtime, numpy and Pillow)."""
    seen, todo = set(), [r for r in roots if r in dists]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r for r in dists[name]["requires"] if r in dists]
    return seen

COLD = r"""
import sys, time
t0 = time.perf_counter()
from edgecls.runtime import Classifier
t1 = time.perf_counter()
clf = Classifier.open(sys.argv[1], format=sys.argv[2], precision=sys.argv[3])
t2 = time.perf_counter()
clf.classify([sys.argv[4]])
t3 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f} {t3 - t2:.4f} {t3 - t0:.4f}")
"""


def make_venv(extra: str, where: Path) -> Path:
    """A fresh venv with `edgecls[extra]` installed from this checkout (not editable); returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    py = where / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{ROOT}[{extra}]"],
                   check=True, capture_output=True, text=True)
    return py


def run_edgecls(py: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([py, "-m", "edgecls.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def workflow(py: Path, extra: str, bundle: Path, image: Path, cwd: Path) -> dict:
    """verify, bench and predict with the extra's runtime; raises if any fails or a forbidden package exists."""
    forbidden = subprocess.run([py, "-c", "import importlib.util as u; print([m for m in ('tensorflow', 'keras', "
                                "'sklearn') if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert forbidden.stdout.strip() == "[]", f"{extra}: {forbidden.stdout}"
    out = {}
    for name, args in (("verify", ["verify", str(bundle), "--runtime", FORMAT[extra], "--json"]),
                       # a device bundle's few reference images rarely *show* parity: the workflow checks that
                       # bench runs and recommends, so it accepts inconclusive parity
                       ("bench", ["bench", str(bundle), "--runtime", FORMAT[extra], "--min-runs", "20",
                                  "--min-time", "0.2", "--accept-inconclusive", "--json", "-"]),
                       ("predict", ["predict", str(image), "--bundle", str(bundle), "--format", FORMAT[extra],
                                    "--json"])):
        r = run_edgecls(py, *args, cwd=cwd)
        if r.returncode != 0:
            raise RuntimeError(f"{extra}: edgecls {name} exited {r.returncode}: {r.stderr[-2000:]}")
        out[name] = json.loads(r.stdout)
    return out


def measure(py: Path, extra: str, bundle: Path, image: Path, tries: int = 3) -> dict:
    dists = json.loads(subprocess.run([py, "-c", SIZES], capture_output=True, text=True, check=True).stdout)
    sizes = {k: v["bytes"] for k, v in dists.items()}
    theirs = closure(dists, RUNTIME_DISTS[extra] + BASE_DISTS)
    runtime = sum(sizes[d] for d in theirs)
    tooling = sum(sizes.get(d, 0) for d in ("pip", "setuptools"))
    total = sum(sizes.values()) - tooling
    colds = []
    for _ in range(tries):
        r = subprocess.run([py, "-c", COLD, str(bundle), FORMAT[extra], "fp32", str(image)], capture_output=True,
                           text=True, check=True)
        colds.append([float(v) for v in r.stdout.split()])
    best = min(colds, key=lambda c: c[3])
    return {"extra": extra, "installed_mb": total / 1e6, "runtime_numpy_pillow_mb": runtime / 1e6,
            "edgecls_share_mb": (total - runtime) / 1e6, "edgecls_own_mb": sizes.get("edgecls", 0) / 1e6,
            "cold_start_s": {"import": best[0], "load": best[1], "first_prediction": best[2], "total": best[3]},
            "runtime_closure": sorted(theirs),
            "largest_others_mb": {k: round(v / 1e6, 2) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])
                                  if k not in theirs | {"pip", "setuptools"} and v > 5e5}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("--extras", nargs="*", default=list(FORMAT))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="the onnx extra only, one cold start (CI)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.extras = ["onnx"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecls-device-") as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(args.bundle, copy)
        for extra in args.extras:
            py = make_venv(extra, Path(tmp) / f"venv-{extra}")
            workflow(py, extra, copy, args.image, Path(tmp))
            row = measure(py, extra, copy, args.image, tries=1 if args.smoke else 3)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print("| extra | venv installed | runtime + numpy + Pillow (with what they require) | edgecls's share | "
          "cold start (import / load / first prediction) |\n|---|---|---|---|---|")
    for r in rows:
        c = r["cold_start_s"]
        print(f"| [{r['extra']}] | {r['installed_mb']:.0f} MB | {r['runtime_numpy_pillow_mb']:.0f} MB | "
              f"{r['edgecls_share_mb']:.1f} MB | {c['total']:.2f} s ({c['import']:.2f} / {c['load']:.2f} / "
              f"{c['first_prediction']:.3f}) |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
