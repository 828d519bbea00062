"""Small image folders, as a user has them: the CNN against the pixel baseline (issue: small data).

Writes folders of 64x64 RGB PNG files (root/<class>/<image>) from the data that is reachable
offline (scikit-learn's digits; Fashion-MNIST where `apt-get install dataset-fashion-mnist` put it; real
photos, 149 in 4 classes, where `apt-get install tuxpaint-stamps-default` put them: case photos-4cls),
trains `edgecls train --data FOLDER` with its defaults on each, several seeds, and prints one table:
held-out accuracy of the CNN, of the pixel baseline that every training run computes (logistic
regression on downsampled pixels, same split), and of the issue's reference baseline (logistic
regression on the full-resolution standardised pixels, 5-fold cross-validation on the same images).

    .venv/bin/python -m benchmarks.small_data                     # every case, seeds 0 1 2
    .venv/bin/python -m benchmarks.small_data --cases digits-200 --seeds 0 --json out.json

Targets (means over seeds): the CNN beats the baseline by >= 3 points at 1,000 images, is at least
level with it at 200-300 images, and is never at chance. `--smoke` (CI): digits-200, seed 0, two
epochs; it proves the script runs, and judges nothing.

Pretrained backbones (issue #21) run beside the scratch CNN on the same folders and seeds: `--archs`
names the architectures, `--backbone-sizes` the sizes a backbone resizes the 64x64 images to inside
itself (one run per size), `--latency` adds each bundle's onnxruntime fp32 batch-1 p50 (ms; ONNX
exported for it, timed by `edgecls.bench`), so accuracy and latency are one table:

    .venv/bin/python -m benchmarks.small_data --cases fashion-1000 --archs small efficientnet-lite0 \
        --backbone-sizes 64 96 128 160 224 --latency --json docs/small-data-pretrained.json

Targets: the backbone at its best size >= the scratch CNN + 3 points on fashion-1000, and never below
the pixel baseline. `--smoke` also runs efficientnet-lite0 (where installed) at size 32, one epoch a phase.
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

from edgecls.train.models import pretrained  # noqa: E402  (after the log level is set)


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "digits", "fashion-mnist" or "photos"
    n: int  # images in the folder (0: every image of the source)
    classes: tuple[int, ...]  # source labels kept


CASES = [
    Case("digits-200", "digits", 200, tuple(range(10))),
    Case("digits-300-3cls", "digits", 300, (3, 5, 8)),
    Case("digits-1000", "digits", 1000, tuple(range(10))),
    Case("fashion-300-3cls", "fashion-mnist", 300, (0, 1, 2)),
    Case("fashion-1000", "fashion-mnist", 1000, tuple(range(10))),
    Case("fashion-1000-tshirt-shirt", "fashion-mnist", 1000, (0, 6)),
    Case("photos-4cls", "photos", 0, (0, 1, 2, 3)),
]

#: Real photos: the photo cut-outs of `apt-get install tuxpaint-stamps-default` (GPL-2), one class per folder,
#: drawings ("cartoon"), toys and plastic flowers left out: about 150 images, the only labelled natural photos
#: found in the package registries reachable here (benchmarks only; tests never need them).
STAMPS = Path("/usr/share/tuxpaint/stamps")
PHOTO_CLASSES = {"mammal": "animals/mammals", "bird": "animals/birds", "fruit": "food/fruit",
                 "flower": "plants/flowers"}
NOT_PHOTOS = ("cartoon", "toys", "plastic")


def photos_available() -> bool:
    return all((STAMPS / d).is_dir() for d in PHOTO_CLASSES.values())


def _photos(size: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 N x size x size x 3 RGB, labels, class names): each cut-out on white, fitted and centred."""
    from PIL import Image

    xs, ys = [], []
    for k, d in enumerate(PHOTO_CLASSES.values()):
        for f in sorted((STAMPS / d).rglob("*.png")):
            if f.stem.endswith("_mirror") or any(part in NOT_PHOTOS for part in f.relative_to(STAMPS).parts):
                continue
            img = Image.open(f).convert("RGBA")
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
            canvas.alpha_composite(img, ((size - img.width) // 2, (size - img.height) // 2))
            xs.append(np.asarray(canvas.convert("RGB")))
            ys.append(k)
    return np.stack(xs), np.asarray(ys), list(PHOTO_CLASSES)


def _source(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 N x H x W grayscale or N x H x W x 3 RGB images, labels, class names) of the source."""
    from edgecls.train import sources

    if name == "photos":
        return _photos()
    d = sources.digits(image_size=8) if name == "digits" else sources.fashion_mnist(image_size=28)
    return d.array[..., 0], d.labels, [c.replace("/", "-") for c in d.classes]


def write_folder(case: Case, root: Path, seed: int = 0, size: int = 64) -> Path:
    """A folder of `case.n` 64x64 RGB PNGs, balanced over `case.classes`, picked with `seed` (every image of
    the source when `case.n` is 0)."""
    from PIL import Image

    x, y, names = _source(case.source)
    rng = np.random.default_rng(seed)
    per = case.n // len(case.classes)
    for k in case.classes:
        pick = np.flatnonzero(y == k) if not case.n else rng.choice(np.flatnonzero(y == k), per, replace=False)
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


def onnx_latency_ms(bundle: Path, smoke: bool = False) -> float:
    """onnxruntime fp32 batch-1 p50 of the bundle's model (ONNX exported for it), in ms."""
    from edgecls.bench.measure import BenchConfig, bench
    from edgecls.export import ExportConfig, export

    export(bundle, ExportConfig(formats=["onnx"], reference_size=8))
    cfg = (BenchConfig(runtimes=["onnx"], batches=[1], min_runs=5, min_time=0.01, warmup_time=0, rounds=1) if smoke
           else BenchConfig(runtimes=["onnx"], batches=[1], min_runs=100, min_time=1.0, rounds=3))
    row = next(r for r in bench(bundle, cfg).rows if r["precision"] == "fp32")
    return float(row["p50_ms"])


def run_case(case: Case, seed: int, work: Path, arch: str | None = None, backbone_size: int | None = None,
             latency: bool = False, smoke: bool = False, **train_kw) -> dict:
    from edgecls.train.fit import TrainConfig, train

    root = work / f"{case.name}-{seed}" / "images"
    if not root.exists():  # every architecture and size of a case and seed trains on the same folder
        write_folder(case, root, seed=seed)
    tag = f"{arch or 'default'}-{backbone_size or 'na'}"
    t0 = time.perf_counter()
    result = train(TrainConfig(data=str(root), seed=seed, arch=arch, backbone_size=backbone_size,
                               out=work / f"{case.name}-{seed}" / tag, **train_kw))
    seconds = time.perf_counter() - t0
    m = result.manifest
    images = case.n or sum(1 for _ in root.rglob("*.png"))
    return {"case": case.name, "seed": seed, "images": images, "classes": len(case.classes),
            "arch": m["architecture"]["name"], "backbone_size": m["architecture"].get("backbone_size"),
            "pretrained": m["architecture"].get("pretrained", False),
            "cnn": m["metrics"]["test"]["accuracy"], "baseline": m["baseline"]["accuracy"],
            "reference_baseline": reference_baseline(root, seed), "chance": m["baseline"]["chance"],
            "epochs": m["training"]["epochs_run"], "steps": m["training"]["plan"]["total_steps"],
            "batch": m["training"]["plan"]["batch_size"], "seconds": round(seconds, 1),
            "onnx_fp32_p50_ms": round(onnx_latency_ms(result.bundle, smoke), 3) if latency else None}


def summarise(rows: list[dict]) -> str:
    lines = ["| folder (64x64 RGB PNG) | model | seeds | accuracy | pixel baseline (same split) | "
             "reference baseline (5-fold) | model - baseline | train s | onnxruntime fp32 batch 1 p50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["case"], r.get("arch", "small"), r.get("backbone_size")) for r in rows):
        rs = [r for r in rows if (r["case"], r.get("arch", "small"), r.get("backbone_size")) == key]

        def mean(k, rs=rs):
            return float(np.mean([r[k] for r in rs]))

        model = key[1] + (f" @{key[2]}" if key[2] else "")
        ms = [r.get("onnx_fp32_p50_ms") for r in rs if r.get("onnx_fp32_p50_ms") is not None]
        lines.append(f"| {key[0]} | {model} | {len(rs)} | {mean('cnn'):.1%} | {mean('baseline'):.1%} | "
                     f"{mean('reference_baseline'):.1%} | {100 * (mean('cnn') - mean('baseline')):+.1f} pts | "
                     f"{mean('seconds'):.0f} | {f'{np.mean(ms):.2f}' if ms else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--json", type=Path, help="write every row here")
    ap.add_argument("--archs", nargs="*", default=[None], help="architectures (default: edgecls's default)")
    ap.add_argument("--backbone-sizes", nargs="*", type=int, default=[None],
                    help="pretrained backbones: the sizes to resize to inside the model (one run each)")
    ap.add_argument("--fine-tune-blocks", type=int, help="pretrained backbones: top blocks fine-tuned")
    ap.add_argument("--latency", action="store_true", help="also onnxruntime fp32 batch-1 p50 of each model")
    ap.add_argument("--smoke", action="store_true", help="digits-200, seed 0, 2 epochs (CI); efficientnet-lite0 "
                                                         "at 32 pixels, 1 epoch a phase, where installed")
    args = ap.parse_args(argv)
    train_kw = {} if args.fine_tune_blocks is None else {"fine_tune_blocks": args.fine_tune_blocks}
    runs = [(a, s if pretrained(a) else None) for a in args.archs for s in args.backbone_sizes]
    if args.smoke:
        import importlib.util

        from edgecls.train.backbones import VARIANTS

        args.cases, args.seeds, train_kw, args.latency = ["digits-200"], [0], {"epochs": 2}, True
        runs = [(None, None)] + ([("efficientnet-lite0", 32)] if importlib.util.find_spec(
            VARIANTS["efficientnet-lite0"].module) else [])
    from benchmarks.conftest import fashion_available

    cases = [c for c in CASES if c.name in args.cases]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if case.source == "fashion-mnist" and not fashion_available():
                print(f"skip {case.name}: Fashion-MNIST not installed", file=sys.stderr)
                continue
            if case.source == "photos" and not photos_available():
                print(f"skip {case.name}: apt-get install tuxpaint-stamps-default", file=sys.stderr)
                continue
            for seed in args.seeds:
                for arch, size in dict.fromkeys(runs):
                    kw = dict(train_kw, epochs=1) if args.smoke and arch else train_kw
                    row = run_case(case, seed, Path(tmp), arch=arch, backbone_size=size, latency=args.latency,
                                   smoke=args.smoke, **kw)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
    print(summarise(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
