"""Reference data carried in the bundle, so that verify and bench run on a device.

At export, `reference.npz` stores a stratified, seeded sample of the held-out images (uint8, as the
model sees them), their labels, and the Keras model's probabilities for them. On a device there
is no TensorFlow, no scikit-learn and no copy of the training folder: `verify` then compares each
artifact with the stored Keras probabilities under the same gates, and `bench` times the stored
images. The file is hashed in the manifest (`files`, and the `reference` section) and refused by
name if it changed.

It also stores **float inputs** (`float_images`, `float_kinds`, `float_keras_probabilities`): a
stratified sample of the training and validation images and label-free variants of the stored
images (`edgecls.core.inputs`), at most `FLOAT_IMAGES` and `FLOAT_BYTES`, and the Keras
probabilities of the edge-case tensors (`edge_keras_probabilities`): with the held-out ones, enough
inputs for a device to show float parity (381 inputs with no moved probability show a rate below
1%). int8 files are judged on the held-out ones only (the others were fitted or selected on).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.inputs import edge_cases, ids_hash, variants
from ..runtimes.keras import probabilities
from ..train import recorded

FILE = "reference.npz"
DEFAULT_IMAGES = 400  # enough to show a 1% change rate (381 unchanged images do), a small file
MAX_IMAGES = 2048  # the cap for --reference-size
MAX_BYTES = 32 << 20  # and never more than 32 MiB of pixels, whatever the image size
FLOAT_IMAGES = 512  # float inputs beside the held-out ones: training/validation images and variants
FLOAT_BYTES = 16 << 20  # and never more than 16 MiB of their pixels


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
    fx, kinds, float_section = _float_inputs(bundle, x, seed, data_dir)
    edge, _ = edge_cases(bundle.input_shape(), seed=seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=x.astype(np.uint8), labels=y.astype(np.int64), keras_probabilities=probs,
                        float_images=fx, float_kinds=np.array(kinds, dtype="U16"),
                        float_keras_probabilities=probabilities(model, fx) if len(fx) else probs[:0],
                        edge_keras_probabilities=probabilities(model, edge))
    data = buf.getvalue()
    section = {"file": FILE, "images": len(x), "ids": list(ids), "sha256": hashlib.sha256(data).hexdigest(),
               "selection": "held-out split, stratified, seeded",
               "keras_accuracy": float((probs.argmax(1) == y).mean()), "float_inputs": float_section,
               "edge_cases": len(edge)}
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


def float_size(input_shape: tuple[int, int, int]) -> int:
    """How many float inputs to store: FLOAT_IMAGES, within FLOAT_BYTES."""
    return max(0, min(FLOAT_IMAGES, FLOAT_BYTES // int(np.prod(input_shape))))


def _float_inputs(bundle: Bundle, heldout: np.ndarray, seed: int, data_dir: str | None):
    """(images, kind of each, manifest record): half training/validation images (stratified, seeded), half
    label-free variants of the held-out and those images."""
    n = float_size(bundle.input_shape())
    real_n = n // 2
    xs, kinds, ids = [], [], []
    for part, kind in (("val", "validation"), ("train", "training")):
        avail = len(bundle.split_ids(part))
        take = min(avail, real_n - sum(len(x) for x in xs))
        if take > 0:
            part_ids, x, _ = recorded.select(bundle, part, data_dir=data_dir, limit=take, seed=seed)
            xs.append(x)
            kinds += [kind] * len(x)
            ids += [f"{kind}:{i}" for i in part_ids]
    real = np.concatenate(xs) if xs else np.zeros((0, *bundle.input_shape()), np.uint8)
    var, var_keys = variants(np.concatenate([heldout, real]), n - len(real), seed=seed)
    kinds += ["variant"] * len(var)
    ids += [f"variant:{k}" for k in var_keys]
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return (np.concatenate([real, var]).astype(np.uint8), kinds,
            {"images": len(kinds), "kinds": counts, "ids_sha256": ids_hash(ids),
             "selection": "training and validation images (stratified, seeded) and label-free variants (flips, "
                          "crops, brightness, contrast) of them and the held-out ones; float parity only"})


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


@dataclass
class FloatInputs:
    images: np.ndarray  # uint8 NHWC
    kinds: list[str]  # training, validation, variant
    keras_probabilities: np.ndarray  # float32 (N, classes)
    edge_keras_probabilities: np.ndarray  # Keras on `edgecls.core.inputs.edge_cases(input shape, seed)`


def load_float_inputs(bundle: Bundle) -> FloatInputs | None:
    """The float inputs stored beside the held-out images (after the file's sha256 check); None for a
    reference.npz written before they were stored."""
    if not (bundle.manifest.get("reference") or {}).get("float_inputs"):
        return None
    path = bundle.checked_path(bundle.manifest["reference"]["file"])
    shape, classes = bundle.input_shape(), len(bundle.labels())
    z = read_npz(path, {"float_images": ("u", (None, *shape)), "float_kinds": ("U", (None,)),
                        "float_keras_probabilities": ("f", (None, classes)),
                        "edge_keras_probabilities": ("f", (None, classes))},
                 max_bytes=4 * MAX_BYTES + 64 * MAX_IMAGES * max(classes, 1))
    out = FloatInputs(z["float_images"], [str(k) for k in z["float_kinds"]], z["float_keras_probabilities"],
                      z["edge_keras_probabilities"])
    n = len(out.images)
    if (out.images.dtype != np.uint8 or (n and out.images.shape[1:] != bundle.input_shape())
            or len(out.kinds) != n or out.keras_probabilities.shape != (n, classes)
            or out.edge_keras_probabilities.shape[1:] != (classes,) or n > FLOAT_IMAGES
            or not np.isfinite(out.keras_probabilities).all() or not np.isfinite(out.edge_keras_probabilities).all()):
        raise EdgeclsError(f"{path}: float inputs do not match the bundle's input {bundle.input_shape()} and "
                           f"{classes} classes (or exceed {FLOAT_IMAGES} images)")
    return out

