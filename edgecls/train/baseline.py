"""The pixel baseline every training run is compared with, and the verdict on the comparison.

A logistic regression (scikit-learn) on raw pixels downsampled to 16x16 and standardised, fitted
on the model's own training split and scored on the same held-out split. A model that does not beat
it has learned less than the pixels alone give: the user is told so, with the likely cause.

The solver (lbfgs) gets `MAX_ITER` iterations, enough to converge on the largest case (5,000
Fashion-MNIST images, 10 classes: 456 iterations); scikit-learn's ConvergenceWarning never reaches
the user: whether it converged is recorded (``converged``) instead.

BLAS runs on one thread here (threadpoolctl): the matrices are small (at most 5,000 x 768), and OpenBLAS
threads that spin-wait for a busy core made the same fit up to 60x slower on a loaded 2-core machine
(6.5 s instead of 0.07 s for the synthetic set's 172 images).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..core.stats import wilson
from .sources import Data

SIZE = 16  # pixels per side after downsampling (area average)
MAX_TRAIN = 5000  # a stratified subset beyond this: the baseline stays within seconds
CHUNK = 1024  # images decoded at a time (a folder is never held in memory whole)
MAX_ITER = 1000  # lbfgs iterations (200, scikit-learn's default, stopped short on Fashion-MNIST)


@dataclass
class Baseline:
    method: str
    accuracy: float
    chance: float  # the held-out share of the most common class: what always guessing it scores
    train_images: int
    test_images: int
    seconds: float
    iterations: int = 0
    converged: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _features(data: Data, idx: np.ndarray) -> np.ndarray:
    """Downsampled pixels of `idx`, float32 (N, SIZE*SIZE*C), decoded CHUNK images at a time."""
    from PIL import Image

    out = []
    for start in range(0, len(idx), CHUNK):
        images = data.images(idx[start:start + CHUNK])
        small = [np.asarray(Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im)
                            .resize((SIZE, SIZE), Image.Resampling.BOX), np.float32) for im in images]
        out.append(np.stack(small).reshape(len(images), -1))
    return np.concatenate(out) if out else np.zeros((0, SIZE * SIZE * data.input_shape[2]), np.float32)


def pixel_baseline(data: Data, train_idx: np.ndarray, test_idx: np.ndarray, seed: int = 0) -> Baseline:
    """Fit the baseline on `train_idx` (at most MAX_TRAIN of them, stratified) and score it on `test_idx`."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from .splits import subset

    t0 = time.perf_counter()
    fit_idx = train_idx[subset(data.labels[train_idx], MAX_TRAIN, seed)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    with warnings.catch_warnings(), threadpool_limits(1):  # warnings: recorded below, never printed over the output
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(_features(data, fit_idx), data.labels[fit_idx])
        predicted = clf.predict(_features(data, test_idx))
    iterations = int(max(clf[-1].n_iter_))
    y = data.labels[test_idx]
    accuracy = float((predicted == y).mean())
    chance = float(np.bincount(y).max() / len(y))
    return Baseline(f"logistic regression on {SIZE}x{SIZE} standardised pixels", accuracy, chance,
                    len(fit_idx), len(test_idx), round(time.perf_counter() - t0, 2), iterations,
                    iterations < MAX_ITER)


def verdict(cnn_accuracy: float, base: Baseline, train_per_class: int, arch: str = "small",
            pretrained: bool = False) -> list[str]:
    """Plain-language warnings when the model (`arch`) has not learned (at chance) or does not beat the baseline."""
    n = base.test_images
    model = f"the {arch} model" + (" (ImageNet-pretrained)" if pretrained else "")
    if cnn_accuracy <= wilson(base.chance * n, n)[1]:  # within chance's 95% interval
        return [f"{model} is at chance level: {cnn_accuracy:.1%} held-out accuracy, and always answering the most "
                f"common class scores {base.chance:.1%} ({n} held-out images). It has not learned. Likely cause: "
                "labels that do not match the images (check a few files in each class folder), or classes that "
                "the images cannot tell apart. Try: fix the labels; more images per class "
                f"(now {train_per_class} training images in the smallest class)."]
    if cnn_accuracy <= base.accuracy:
        tries = ("--arch small (the scratch CNN: line drawings and other images unlike photos); a larger "
                 "--backbone-size; more --epochs" if pretrained else
                 "more --epochs; --image-size 32 if the objects are large in the frame; --arch tiny")
        return [f"{model} ({cnn_accuracy:.1%}) does not beat a linear model on the pixels ({base.accuracy:.1%}, "
                f"{base.method}) on the same {n} held-out images: it has learned less than the raw pixels give. "
                f"Likely cause: too few images ({train_per_class} training images in the smallest "
                f"class). Try: more images per class; {tries}."]
    return []
