"""Dataset sources (a registry): where images come from.

Every source yields raw uint8 NHWC images (0-255) and integer labels. Sources:

- ``digits`` (default): scikit-learn's 1,797 real 8x8 handwritten digits, scaled to 0-255 and
  upsampled (bilinear) to 32x32 so that three 2x poolings still leave a 4x4 map.
- ``fashion-mnist``: 70,000 28x28 images from the IDX files of Debian's ``dataset-fashion-mnist``
  package, with the official 60k/10k split.
- ``synthetic``: small generated stripe/blob/ring images, for fast tests only.
- a folder path: ``root/<class>/<image>`` (JPEG, PNG, BMP, GIF, WebP), RGB, streamed from disk.
"""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import EdgeclsError
from ..core.images import BadImage, load_image
from ..core.registry import Registry

FASHION_ENV = "EDGECLS_FASHION_MNIST_DIR"
FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass
class Data:
    """A labelled image collection: labels in memory, images in memory or on disk.

    ``ids[i]`` is the JSON-able name of item ``i`` recorded in the manifest: an integer index
    for the bundled datasets, a path relative to the root for a folder.
    """

    name: str
    classes: list[str]
    input_shape: tuple[int, int, int]
    labels: np.ndarray
    ids: list
    source: dict  # what `open_source` needs to open the same data again
    flip: bool = True  # is a horizontal flip label-preserving?
    rotation: float = 0.05  # random rotation, as a fraction of a full turn (0.05: +-18 degrees)
    official_test: np.ndarray | None = None  # indices of the official test split, if any
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped (folder, --skip-bad)
    array: np.ndarray | None = None  # in-memory images, uint8 NHWC
    paths: list[Path] | None = None  # on-disk images (folder)

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, idx: np.ndarray) -> np.ndarray:
        """Images at `idx` as one uint8 NHWC array (decoded from disk for a folder)."""
        if self.array is not None:
            return self.array[idx]
        h, w, c = self.input_shape
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            out = list(pool.map(lambda i: load_image(self.paths[i], (h, w), c), idx))
        return np.stack(out) if out else np.zeros((0, h, w, c), np.uint8)

    def counts(self, idx: np.ndarray | None = None) -> dict[str, int]:
        labels = self.labels if idx is None else self.labels[idx]
        return {c: int((labels == k).sum()) for k, c in enumerate(self.classes)}


# ----------------------------------------------------------------------------- sources


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 NHW(C) stack to size x size with bilinear filtering (Pillow)."""
    from PIL import Image

    from ..core.images import RESAMPLE

    if images.shape[1:3] == (size, size):
        return images
    squeeze = images.ndim == 3
    out = np.stack([np.asarray(Image.fromarray(im).resize((size, size), RESAMPLE)) for im in images])
    return out if squeeze else out.reshape(len(images), size, size, -1)


def digits(image_size: int = 32, **_) -> Data:
    from ..core.errors import require

    d = require("sklearn.datasets", "train").load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x = _resize_all(x, image_size)[..., None]
    y = d.target.astype(np.int64)
    return Data("digits", [str(i) for i in range(10)], (image_size, image_size, 1), y,
                list(range(len(y))), {"name": "digits", "image_size": image_size},
                flip=False, array=x)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise EdgeclsError(f"{path}: cannot read IDX file ({e})") from e
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise EdgeclsError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise EdgeclsError(f"{path}: truncated IDX file ({body.size} bytes of data, expected {np.prod(dims)})")
    return body.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise EdgeclsError(
        f"Fashion-MNIST not found: {root / (stem + '.gz')} is missing. Install it with "
        f"'apt-get install dataset-fashion-mnist', or put the four upstream IDX files in a folder "
        f"and pass --data-dir DIR (or set {FASHION_ENV})")


def fashion_mnist(image_size: int = 28, data_dir: str | Path | None = None, **_) -> Data:
    root = Path(data_dir or os.environ.get(FASHION_ENV) or FASHION_DEFAULT_DIR)
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        x = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        y = _read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise EdgeclsError(f"{root}: {prefix} images and labels do not match ({x.shape} vs {y.shape})")
        parts[part] = (x, y)
    x = np.concatenate([parts["train"][0], parts["test"][0]])
    y = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    x = _resize_all(x, image_size)[..., None]
    n_train = len(parts["train"][1])
    return Data("fashion-mnist", list(FASHION_CLASSES), (image_size, image_size, 1), y,
                list(range(len(y))),
                {"name": "fashion-mnist", "image_size": image_size,
                 "data_dir": str(data_dir) if data_dir else None},  # None: $EDGECLS_FASHION_MNIST_DIR or default
                flip=True, rotation=0.02, official_test=np.arange(n_train, len(y)), array=x)


SYNTHETIC_CLASSES = ["hstripes", "vstripes", "blob", "ring"]


def synthetic(image_size: int = 16, n: int = 240, seed: int = 0, **_) -> Data:
    """Generated RGB images of four flip-invariant patterns, with random colour, phase and noise.

    For fast tests only: a tiny CNN learns it in a few epochs.
    """
    rng = np.random.default_rng(seed)
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    y = np.arange(n) % len(SYNTHETIC_CLASSES)
    x = np.empty((n, s, s, 3), np.uint8)
    for i, k in enumerate(y):
        period = rng.uniform(3.0, 5.0)
        phase = rng.uniform(0, 2 * np.pi)
        r = np.hypot(yy - (s - 1) / 2 + rng.uniform(-1, 1), xx - (s - 1) / 2 + rng.uniform(-1, 1))
        if k == 0:
            m = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
        elif k == 1:
            m = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
        elif k == 2:
            m = (r < s * rng.uniform(0.2, 0.3)).astype(np.float32)
        else:
            m = (np.abs(r - s * 0.35) < s * 0.08).astype(np.float32)
        colour = rng.uniform(0.5, 1.0, 3)
        img = m[..., None] * colour * 255 + rng.normal(0, 12, (s, s, 3))
        x[i] = np.clip(img, 0, 255).astype(np.uint8)
    return Data("synthetic", list(SYNTHETIC_CLASSES), (s, s, 3), y.astype(np.int64), list(range(n)),
                {"name": "synthetic", "image_size": s, "n": n, "seed": seed}, flip=True, array=x)


def _scan_one(path: Path, size: tuple[int, int], channels: int = 3) -> str | None:
    try:
        load_image(path, size, channels)
    except BadImage as e:
        return str(e)
    return None


def folder(root: str | Path, image_size: int = 64, skip_bad: bool = False, ids: list[str] | None = None,
           classes: list[str] | None = None, channels: int = 3, **_) -> Data:
    """An image folder ``root/<class>/<image>``: every image is decoded once up front to find bad files.

    With `ids` and `classes` (from a manifest) only those files are taken, and none is decoded.
    `channels` 1 decodes grey images (an imported model with a one-channel input).
    """
    root = Path(root)
    if not root.exists():
        raise EdgeclsError(f"{root}: no such folder")
    if not root.is_dir():
        raise EdgeclsError(f"{root}: not a folder (expected root/<class>/<image> files)")
    if ids is not None:
        rel = [_contained_id(root, i, k, classes) for k, i in enumerate(ids)]
    else:
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        rel = [f.relative_to(root) for c in dirs for f in sorted((root / c).rglob("*"))
               if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)]
    skipped: list[str] = []
    if ids is None:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            errors = list(pool.map(lambda p: _scan_one(root / p, (image_size, image_size), channels), rel))
        bad = [e for e in errors if e]
        if bad and not skip_bad:
            more = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
            raise EdgeclsError(f"{bad[0]}{more}; fix or remove it, or pass --skip-bad to skip bad files")
        skipped = bad
        rel = [p for p, e in zip(rel, errors) if not e]
    present = list(classes) if classes is not None else sorted({p.parts[0] for p in rel})
    if not present:
        raise EdgeclsError(f"{root}: no images found (expected root/<class>/<image> files)")
    if len(present) < 2:
        raise EdgeclsError(f"{root}: only one class ('{present[0]}') has images; a classifier needs at least 2")
    classes = present
    index = {c: k for k, c in enumerate(classes)}
    labels = np.array([index[p.parts[0]] for p in rel], np.int64)
    source = {"name": "folder", "root": str(root.resolve()), "image_size": image_size}
    if channels != 3:
        source["channels"] = channels
    return Data("folder", classes, (image_size, image_size, channels), labels, [p.as_posix() for p in rel],
                source,
                flip=True, skipped=skipped, paths=[root / p for p in rel])


def _contained_id(root: Path, id_, k: int, classes: list[str] | None) -> Path:
    """A folder image id from a manifest as a path under `root`: relative, '/'-separated, no '..' or hidden
    part, first part one of the classes, and resolving inside `root` (through any symbolic link). A
    manifest comes from whoever made the bundle: its ids never name a file elsewhere.

    Raises:
        EdgeclsError: naming the id and why it leaves the dataset folder.
    """
    from pathlib import PurePosixPath, PureWindowsPath

    why = None
    if not isinstance(id_, str) or not id_ or "\0" in id_:
        why = "not a file name"
    elif PurePosixPath(id_).is_absolute() or PureWindowsPath(id_).is_absolute() or PureWindowsPath(id_).drive:
        why = "an absolute path"
    elif "\\" in id_:
        why = "a backslash: ids are '/'-separated"
    elif any(p.startswith(".") for p in PurePosixPath(id_).parts) or len(PurePosixPath(id_).parts) < 2:
        why = "not <class>/<image>, or a '..' or hidden part"
    elif classes is not None and PurePosixPath(id_).parts[0] not in classes:
        why = f"its class folder {PurePosixPath(id_).parts[0]!r} is not one of the bundle's classes"
    else:
        real, top = (root / id_).resolve(), root.resolve()
        if top not in real.parents:
            why = f"a symbolic link leads outside the dataset folder, to {real}"
    if why is not None:
        raise EdgeclsError(f"dataset.split id {k} {id_!r} is outside the dataset folder {root} ({why}); "
                           "refused")
    return Path(id_)


#: name -> loader(image_size=..., data_dir=..., **recorded) -> Data, with its facts: `image_size` (pixels a side
#: when --image-size is not given), `channels` (of its images) and `about` (a few words for `train --help`). A
#: loader's `Data.source` is what the manifest records; opening the data again calls the loader with it
#: (`open_source`). A folder path is a source too (`folder`).
SOURCES: Registry[Callable[..., Data]] = Registry("dataset", "--data", {
    "digits": "edgecls.train.sources:digits",
    "fashion-mnist": "edgecls.train.sources:fashion_mnist",
    "synthetic": "edgecls.train.sources:synthetic",
}, facts={"digits": {"image_size": 32, "channels": 1, "about": "bundled, the default"},
          "fashion-mnist": {"image_size": 28, "channels": 1, "about": "apt-get install dataset-fashion-mnist"},
          "synthetic": {"image_size": 16, "channels": 3, "about": "tiny generated images, for tests only"}})
FOLDER_IMAGE_SIZE = 64  # a folder's images, decoded at this many pixels a side unless --image-size is given


def default_image_size(spec: str) -> int:
    """The image size of the source `spec` (a registered name, else a folder) when --image-size is not given."""
    return SOURCES.facts(spec)["image_size"] if spec in SOURCES else FOLDER_IMAGE_SIZE


def input_shape(spec: str, image_size: int | None = None) -> tuple[int, int, int]:
    """The input shape training on `spec` gives (a registered name, else a folder of RGB images), before loading it
    (a source that declares no `channels`: 3)."""
    size = default_image_size(spec) if image_size is None else image_size
    return size, size, SOURCES.facts(spec).get("channels", 3) if spec in SOURCES else 3


def described() -> str:
    """The registered sources with what their entries say, for a help text."""
    return ", ".join(f"{n} ({SOURCES.facts(n)['about']})" if SOURCES.facts(n).get("about") else n for n in SOURCES)


def image_sizes() -> str:
    """Each source's default image size, for a help text."""
    return ", ".join([f"{n} {default_image_size(n)}" for n in SOURCES] + [f"folder {FOLDER_IMAGE_SIZE}"])


def load(spec: str, *, image_size: int | None = None, data_dir: str | None = None,
         skip_bad: bool = False, channels: int = 3) -> Data:
    """Open a dataset by registry name or folder path.

    Raises:
        EdgeclsError: unknown name and no such folder; missing files; bad images.
    """
    kind = spec if spec in SOURCES else "folder"
    size = default_image_size(spec) if image_size is None else image_size
    if size < 8 or size > 1024:
        raise EdgeclsError(f"--image-size {size}: must be between 8 and 1024 pixels")
    if kind != "folder":
        return SOURCES.get(kind)(image_size=size, data_dir=data_dir)
    if not Path(spec).exists():
        raise EdgeclsError(
            f"--data {spec!r}: no such dataset or folder (datasets: {', '.join(SOURCES.names())}; "
            "or a folder root/<class>/<image>)")
    return folder(spec, image_size=size, skip_bad=skip_bad, channels=channels)


def portable(source: dict, bundle_dir: Path) -> dict:
    """`source` as the manifest stores it: a folder root (or a data dir given by the user) relative to
    the bundle folder, so no absolute path of the training machine is written."""
    out = dict(source)
    for key in ("root", "data_dir"):
        if out.get(key):
            out[key] = os.path.relpath(Path(out[key]).resolve(), Path(bundle_dir).resolve())
    return out


def open_source(source: dict, ids: list | None = None, classes: list[str] | None = None,
                data_dir: str | None = None, base: Path | None = None) -> Data:
    """Open the data a manifest's ``dataset.source`` describes (for verify and export calibration).

    Recorded paths are relative to the bundle folder `base`. `data_dir` replaces the recorded
    folder (the data moved, or the bundle was copied to another machine).
    """
    kind = source["name"]

    def where(key: str) -> Path | None:
        if data_dir:
            return Path(data_dir)
        recorded = source.get(key)
        if recorded and base is not None and (not isinstance(recorded, str) or Path(recorded).is_absolute()):
            # edgecls records it relative to the bundle: an absolute one was written by someone else
            raise EdgeclsError(f"{Path(base) / 'manifest.json'}: dataset.source.{key} {recorded!r} is an absolute "
                               "path, which edgecls never records; pass --data-dir DIR to say where the data is")
        return None if not recorded else Path(recorded) if base is None else Path(base) / recorded

    if kind == "folder":
        return folder(where("root"), image_size=source["image_size"], ids=ids, classes=classes,
                      channels=source.get("channels", 3))
    if kind not in SOURCES:
        raise EdgeclsError(f"manifest names an unknown dataset source {kind!r}")
    import inspect

    loader = SOURCES.get(kind)
    named = inspect.signature(loader).parameters  # what the loader recorded, and only what it takes by name
    recorded = {k: v for k, v in source.items() if k in named and k not in ("name", "data_dir")}
    return loader(**recorded, data_dir=where("data_dir"))
