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


MAX_MEMBERS = 16  # arrays a reference.npz may hold


def read_npz(path: Path, expect: dict[str, tuple[str, tuple]], max_bytes: int) -> dict[str, np.ndarray]:
    """Every array of an .npz file from a bundle, each header checked before a byte of it is decoded.

    `expect` maps a member name to (dtype kinds, shape) where the shape holds ints and None (any);
    a name it does not list still passes, bounded like the rest. Checks, from the zip directory and
    each .npy header alone: at most MAX_MEMBERS arrays; no pickled objects; sizes declared by the zip
    directory within `max_bytes` in all (a zip bomb is refused before it is inflated: no member is read
    past its declared size) and each header's array within its member; each expected array of its dtype
    kind and shape. Only then are the arrays read.

    Raises:
        EdgeclsError: naming the file, the array and what is wrong.
    """
    import zipfile
    import zlib

    def bad(why: str) -> EdgeclsError:
        return EdgeclsError(f"{path}: unreadable reference data ({why})")

    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            if len(infos) > MAX_MEMBERS:
                raise bad(f"{len(infos)} members, at most {MAX_MEMBERS}")
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise bad(f"declares {total:,} bytes of arrays, over the limit of {max_bytes:,}")
            headers = {}
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise bad(f"{name}: .npy format version {version}")
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f, max_header_size=10_000)
                if dtype.hasobject:
                    raise bad(f"{name}: holds Python objects")
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise bad(f"{name}: its header declares {shape} {dtype}, more than the member holds")
                if name in expect:
                    kinds, want = expect[name]
                    if dtype.kind not in kinds or len(shape) != len(want) or any(
                            w is not None and w != d for w, d in zip(want, shape)):
                        raise bad(f"{name}: {dtype} {list(shape)}, expected "
                                  f"{'/'.join(kinds)} [{', '.join('N' if w is None else str(w) for w in want)}]")
                headers[name] = info
            missing = sorted(set(expect) - set(headers))
            if missing:
                raise bad(f"no {', '.join(missing)} array")
            for name, info in headers.items():
                with z.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
    except EdgeclsError:
        raise
    except (OSError, zipfile.BadZipFile, zlib.error, ValueError, EOFError, KeyError, TypeError, SyntaxError,
            NotImplementedError, MemoryError, RuntimeError) as e:  # whatever a damaged zip or header raises
        raise bad(f"{type(e).__name__}: {str(e)[:200]}") from e
    return out


def load(bundle: Bundle) -> Reference:
    """The bundle's reference data after its sha256 check and `read_npz`'s header checks; labels are class
    indices of the bundle. EdgeclsError if the bundle has none or it is damaged."""
    if "reference" not in bundle.manifest:
        raise EdgeclsError(f"{bundle.path}: no reference data in this bundle (re-export it with 'edgecls export', "
                           "which stores reference.npz)")
    path = bundle.checked_path(bundle.manifest["reference"]["file"])
    shape, classes = bundle.input_shape(), len(bundle.labels())
    arrays = read_npz(path, {"images": ("u", (None, *shape)), "labels": ("iu", (None,)),
                             "keras_probabilities": ("f", (None, classes))},
                      max_bytes=4 * MAX_BYTES + 64 * MAX_IMAGES * max(classes, 1))
    ref = Reference(arrays["images"], arrays["labels"], arrays["keras_probabilities"])
    n = len(ref.images)
    if ref.images.dtype != np.uint8 or not (len(ref.labels) == len(ref.keras_probabilities) == n) \
            or n > MAX_IMAGES:
        raise EdgeclsError(f"{path}: reference data does not match the bundle's input {shape} "
                           f"(uint8 images, as many labels and probabilities, at most {MAX_IMAGES:,})")
    if n and (ref.labels.min() < 0 or ref.labels.max() >= classes):
        raise EdgeclsError(f"{path}: reference labels outside 0..{classes - 1} (the bundle has {classes} labels)")
    if not np.isfinite(ref.keras_probabilities).all():
        raise EdgeclsError(f"{path}: reference probabilities that are not finite numbers")
    return ref
