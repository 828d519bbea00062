"""Small image folders, as a user has them: the CNN against the pixel baseline (issue: small data).

Writes folders of 64x64 RGB PNG files (root/<class>/<image>) from the data that is reachable
offline (scikit-learn's digits; Fashion-MNIST where `apt-get install dataset-fashion-mnist` put it),
trains `edgecls train --data FOLDER` with its defaults on each, several seeds, and prints one table:
held-out accuracy of the CNN, of the pixel baseline that every training run computes (logistic
regression on downsampled pixels, same split), and of the issue's reference baseline (logistic
regression on the full-resolution standardised pixels, 5-fold cross-validation on the same images).

    .venv/bin/python -m benchmarks.small_data                     # every case, seeds 0 1 2
    .venv/bin/python -m benchmarks.small_data --cases digits-200 --seeds 0 --json out.json

Targets (means over seeds): the CNN beats the baseline by >= 3 points at 1,000 images, is at least
level with it at 200-300 images, and is never at chance. `--smoke` (CI): digits-200, seed 0, two
epochs; it proves the script runs, and judges nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "digits" or "fashion-mnist"
    n: int  # images in the folder
    classes: tuple[int, ...]  # source labels kept


CASES = [
    Case("digits-200", "digits", 200, tuple(range(10))),
    Case("digits-300-3cls", "digits", 300, (3, 5, 8)),
    Case("digits-1000", "digits", 1000, tuple(range(10))),
    Case("fashion-300-3cls", "fashion-mnist", 300, (0, 1, 2)),
    Case("fashion-1000", "fashion-mnist", 1000, tuple(range(10))),
    Case("fashion-1000-tshirt-shirt", "fashion-mnist", 1000, (0, 6)),
]


def _source(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 N x H x W grayscale images, labels, class names) of the source at its native size."""
    from edgecls.train import sources

    d = sources.digits(image_size=8) if name == "digits" else sources.fashion_mnist(image_size=28)
    return d.array[..., 0], d.labels, [c.replace("/", "-") for c in d.classes]


def write_folder(case: Case, root: Path, seed: int = 0, size: int = 64) -> Path:
    """A folder of `case.n` 64x64 RGB PNGs, balanced over `case.classes`, picked with `seed`."""
    from PIL import Image

    x, y, names = _source(case.source)
    rng = np.random.default_rng(seed)
    per = case.n // len(case.classes)
    for k in case.classes:
        pick = rng.choice(np.flatnonzero(y == k), per, replace=False)
        (root / names[k]).mkdir(parents=True, exist_ok=True)
        for i in pick:
            img = Image.fromarray(x[i]).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
            img.save(root / names[k] / f"{i}.png")
    return root


def reference_baseline(root: Path, seed: int = 0) -> float:
    """The issue's baseline: logistic regression on full-resolution standardised pixels, 5-fold CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from edgecls.train.sources import folder

    d = folder(root, image_size=64)
    x = d.images(np.arange(len(d))).reshape(len(d), -1).astype(np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x, d.labels, cv=cv).mean())


def run_case(case: Case, seed: int, work: Path, **train_kw) -> dict:
    from edgecls.train.fit import TrainConfig, train

    root = write_folder(case, work / f"{case.name}-{seed}" / "images", seed=seed)
    t0 = time.perf_counter()
    result = train(TrainConfig(data=str(root), seed=seed, out=work / f"{case.name}-{seed}" / "bundle", **train_kw))
    seconds = time.perf_counter() - t0
    m = result.manifest
    return {"case": case.name, "seed": seed, "images": case.n, "classes": len(case.classes),
            "cnn": m["metrics"]["test"]["accuracy"], "baseline": m["baseline"]["accuracy"],
            "reference_baseline": reference_baseline(root, seed), "chance": m["baseline"]["chance"],
            "epochs": m["training"]["epochs_run"], "steps": m["training"]["plan"]["total_steps"],
            "batch": m["training"]["plan"]["batch_size"], "seconds": round(seconds, 1)}


def summarise(rows: list[dict]) -> str:
    lines = ["| folder (64x64 RGB PNG) | seeds | edgecls CNN | pixel baseline (same split) | "
             "reference baseline (5-fold) | CNN - baseline | train s |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == name]

        def mean(key, rs=rs):
            return float(np.mean([r[key] for r in rs]))

        lines.append(f"| {name} | {len(rs)} | {mean('cnn'):.1%} | {mean('baseline'):.1%} | "
                     f"{mean('reference_baseline'):.1%} | {100 * (mean('cnn') - mean('baseline')):+.1f} pts | "
                     f"{mean('seconds'):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--json", type=Path, help="write every row here")
    ap.add_argument("--smoke", action="store_true", help="digits-200, seed 0, 2 epochs (CI)")
    args = ap.parse_args(argv)
    train_kw = {}
    if args.smoke:
        args.cases, args.seeds, train_kw = ["digits-200"], [0], {"epochs": 2}
    from benchmarks.conftest import fashion_available

    cases = [c for c in CASES if c.name in args.cases]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if case.source == "fashion-mnist" and not fashion_available():
                print(f"skip {case.name}: Fashion-MNIST not installed", file=sys.stderr)
                continue
            for seed in args.seeds:
                row = run_case(case, seed, Path(tmp), **train_kw)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    print(summarise(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
