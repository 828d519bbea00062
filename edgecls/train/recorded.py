"""The images a bundle recorded: its held-out, validation and training parts, opened again from the dataset
(or the folder) the manifest names. Used by export (calibration, int8 selection and judging sets, reference
data), verify and bench."""

from __future__ import annotations

import numpy as np

from ..core.bundle import Bundle
from . import sources, splits


def unseen(bundle: Bundle, seen: set, limit: int, data_dir: str | None = None,
           parts: tuple[str, ...] = ("val", "train")):
    """(uint8 images, labels) of the images of `parts` (validation, training) not in `seen` (e.g. those
    int8 calibration used), a stratified, seeded sample of at most `limit`, in the order of `parts`."""
    seed = bundle.manifest["dataset"]["split"]["seed"]
    xs, ys = [], []
    for part in parts:
        n = sum(1 for i in bundle.split_ids(part) if i not in seen)
        if limit <= 0 or n == 0:
            continue
        _, x, y = select(bundle, part, data_dir=data_dir, exclude=seen, limit=min(n, limit), seed=seed)
        xs.append(x)
        ys.append(y)
        limit -= len(x)
    if not xs:
        return np.zeros((0, *bundle.input_shape()), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)

def heldout(bundle: Bundle, data_dir: str | None = None, limit: int | None = None):
    """The held-out (test) images and labels recorded in the manifest, as uint8 NHWC + int64."""
    return split_images(bundle, "test", data_dir=data_dir, limit=limit)

def split_images(bundle: Bundle, part: str, *, data_dir: str | None = None, limit: int | None = None,
                 seed: int = 0):
    """Images and labels of one recorded split part ("train", "val", "test").

    `limit` takes a stratified, seeded subset (e.g. calibration images from "train").
    """
    _, x, y = select(bundle, part, data_dir=data_dir, limit=limit, seed=seed)
    return x, y

def select(bundle: Bundle, part: str, *, data_dir: str | None = None, limit: int | None = None, seed: int = 0,
           exclude: set | None = None):
    """(ids, uint8 NHWC images, labels) of a recorded split part, less the ids in `exclude`;
    `limit` takes a stratified, seeded subset of what is left."""
    ds = bundle.manifest["dataset"]
    ids = [i for i in bundle.split_ids(part) if not exclude or i not in exclude]
    folder = ds["source"]["name"] == "folder"
    data = sources.open_source(ds["source"], ids=ids if folder else None, classes=ds["classes"],
                                data_dir=data_dir, base=bundle.path)
    idx = np.arange(len(ids)) if folder else np.asarray(ids, dtype=np.int64)
    pick = np.arange(len(ids))
    if limit is not None and limit < len(idx):
        pick = splits.subset(data.labels[idx], limit, seed)
    return [ids[i] for i in pick], data.images(idx[pick]), data.labels[idx[pick]]


def digests(bundle: Bundle, part: str, data_dir: str | None = None, chunk: int = 4096) -> set[str]:
    """The pixel sha256 of every image of a recorded split part (decoded as the model sees it), to recognise
    the bundle's own images in a folder of unlabelled ones (`edgecls.train.unlabelled`)."""
    from ..core.inputs import pixel_digests

    ds = bundle.manifest["dataset"]
    ids = list(bundle.split_ids(part))
    if ds["source"]["name"] != "folder":  # in memory: one load
        return set(pixel_digests(select(bundle, part, data_dir=data_dir)[1]))
    out: set[str] = set()
    for start in range(0, len(ids), chunk):  # a large folder is decoded a chunk at a time
        part_ids = ids[start:start + chunk]
        data = sources.open_source(ds["source"], ids=part_ids, classes=ds["classes"], data_dir=data_dir,
                                   base=bundle.path)
        out.update(pixel_digests(data.images(np.arange(len(part_ids)))))
    return out
