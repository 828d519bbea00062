"""Reference data carried in the bundle, so that verify and bench run on a device.

At export, `reference.npz` stores a stratified, seeded sample of the held-out images (uint8, as the
model sees them), their labels, and the Keras model's probabilities for them. On a device there
is no TensorFlow, no scikit-learn and no copy of the training folder: `verify` then compares each
artifact with the stored Keras probabilities under the same gates, and `bench` times the stored
images. The file is hashed in the manifest (`files`, and the `reference` section) and refused by
name if it changed.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..runtimes.keras import probabilities
from ..train import recorded

FILE = "reference.npz"
DEFAULT_IMAGES = 400  # enough to show a 1% change rate (381 unchanged images do), a small file
MAX_IMAGES = 2048  # the cap for --reference-size
MAX_BYTES = 32 << 20  # and never more than 32 MiB of pixels, whatever the image size


@dataclass
class Reference:
    images: np.ndarray  # uint8 NHWC
    labels: np.ndarray  # int64
    keras_probabilities: np.ndarray  # float32 (N, classes)


def size_for(requested: int, input_shape: tuple[int, int, int]) -> int:
    """How many reference images to store: `requested`, within MAX_IMAGES and MAX_BYTES."""
    if not 1 <= requested <= MAX_IMAGES:
        raise EdgeclsError(f"--reference-size {requested}: must be between 1 and {MAX_IMAGES}")
    return max(1, min(requested, MAX_BYTES // int(np.prod(input_shape))))


def write(bundle: Bundle, model, n: int, data_dir: str | None = None) -> dict:
    """Store `n` held-out images (stratified, seeded), labels and Keras probabilities, and record the file
    and the manifest section in one commit (`Bundle.put`); return the section."""
    seed = bundle.manifest["dataset"]["split"]["seed"]
    n = size_for(n, bundle.input_shape())
    ids, x, y = recorded.select(bundle, "test", data_dir=data_dir, limit=n, seed=seed)
    probs = probabilities(model, x)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=x.astype(np.uint8), labels=y.astype(np.int64), keras_probabilities=probs)
    data = buf.getvalue()
    section = {"file": FILE, "images": len(x), "ids": list(ids), "sha256": hashlib.sha256(data).hexdigest(),
               "selection": "held-out split, stratified, seeded",
               "keras_accuracy": float((probs.argmax(1) == y).mean())}
    bundle.manifest["reference"] = section
    bundle.put(FILE, data)
    return section


def load(bundle: Bundle) -> Reference:
    """The bundle's reference data after its sha256 check; EdgeclsError if the bundle has none."""
    if "reference" not in bundle.manifest:
        raise EdgeclsError(f"{bundle.path}: no reference data in this bundle (re-export it with 'edgecls export', "
                           "which stores reference.npz)")
    path = bundle.checked_path(bundle.manifest["reference"]["file"])
    try:
        with np.load(path) as z:
            ref = Reference(z["images"], z["labels"], z["keras_probabilities"])
    except (OSError, KeyError, ValueError) as e:
        raise EdgeclsError(f"{path}: unreadable reference data ({e})") from e
    if ref.images.shape[1:] != bundle.input_shape() or len(ref.images) != len(ref.labels):
        raise EdgeclsError(f"{path}: reference data does not match the bundle's input {bundle.input_shape()}")
    return ref


def path_of(bundle: Bundle) -> Path | None:
    return bundle.path / FILE if "reference" in bundle.manifest else None
