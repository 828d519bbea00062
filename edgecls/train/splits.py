"""The stratified, seeded split of a dataset into train, validation and held-out parts, and stratified
subsets (calibration, judging sets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import EdgeclsError
from .sources import Data


@dataclass
class Split:
    """Indices into a `Data`: train (fit), val (early stopping), test (held out, reported)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _stratified(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    from ..core.errors import require

    split = require("sklearn.model_selection", "train").train_test_split
    return split(idx, test_size=fraction, stratify=labels[idx], random_state=seed)


def subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of a stratified, seeded subset of `n` of `labels` (all if n >= len)."""
    idx = np.arange(len(labels))
    if n >= len(idx):
        return idx
    classes = len(np.unique(labels))
    # too few to hold every class on either side of a stratified cut (scikit-learn needs both): a plain seeded sample
    if n < classes or len(idx) - n < classes:
        return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))
    from ..core.errors import require

    keep, _ = require("sklearn.model_selection", "train").train_test_split(idx, train_size=n, stratify=labels,
                                                                          random_state=seed)
    return np.sort(keep)


def split(data: Data, *, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0,
          limit: int | None = None) -> Split:
    """Stratified, seeded train/val/test split.

    The test part is the source's official test split where it has one (Fashion-MNIST), else
    `test_fraction` of the data. The validation part is `val_fraction` of the training part.
    `limit` keeps a stratified subset of that many images first (in the official ratio).

    Raises:
        EdgeclsError: a fraction out of range, or a class too small to appear in every part.
    """
    for name, f in (("--test-split", test_fraction), ("--val-split", val_fraction)):
        if not 0 < f < 1:
            raise EdgeclsError(f"{name} {f}: must be between 0 and 1 (exclusive)")
    if limit is not None and limit < 1:
        raise EdgeclsError(f"--limit {limit}: must be a positive number of images")
    idx = subset(data.labels, limit, seed) if limit else np.arange(len(data))
    if data.official_test is not None:
        official = np.isin(idx, data.official_test)
        rest, test = idx[~official], idx[official]
    else:
        need = int(np.ceil(1 / min(test_fraction, 1 - test_fraction)))
        need = max(need, 3)
        for k, c in enumerate(data.classes):
            n = int((data.labels[idx] == k).sum())
            if n < need:
                where = data.source.get("root", data.name)
                raise EdgeclsError(
                    f"{where}: class '{c}' has {n} image{'s' * (n != 1)}; at least {need} are needed "
                    f"for a {test_fraction:.0%} held-out split and a validation split")
        rest, test = _stratified(idx, data.labels, test_fraction, seed)
    try:
        train, val = _stratified(rest, data.labels, val_fraction, seed)
    except ValueError as e:
        raise EdgeclsError(f"{data.name}: too few images per class for a {val_fraction:.0%} validation "
                           f"split ({e})") from e
    return Split(np.sort(train), np.sort(val), np.sort(test))


