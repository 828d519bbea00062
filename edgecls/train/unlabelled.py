"""`--images DIR`: a folder of unlabelled images of the same kind, as label-free evidence for int8 files.

Changed answers and probability differences need no labels, and users have far more unlabelled
photos than labelled ones. The folder is read recursively (hidden files and folders skipped) with
the rules of a training folder (`edgecls.core.images.load_image`: the same formats, decoding,
orientation, colour mode and resize to the bundle's input). A file that is not a readable image is
an error naming it, as in a training folder, unless `skip_bad` (``--skip-bad``): then it is skipped
and counted. Images the bundle already holds — its training images (the model fitted them), and its
validation or held-out ones (already counted) — are recognised by their decoded pixels, dropped and
said; so are repeats within the folder. Beyond `MAX_IMAGES` a seeded sample is taken, and said.

A folder is decoded once per process: the decoded images are kept (the most recent folder only),
keyed by the folder, its listing (each file's name, size and modification time), the sample's seed
and the size decoded at, so export and verify in one pipeline share one decode, and a changed
folder is read again.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import EdgeclsError
from ..core.images import BadImage, load_image
from ..core.inputs import ids_hash, pixel_digests

MAX_IMAGES = 20000  # images decoded from --images: a seeded sample beyond (verify stays within minutes)
DIGEST_CHARS = 16  # the manifest names an --images image by the first 16 hex digits of its pixel sha256
OPTION = "--images"
# a folder checked before its bundle exists (pipeline, before training) keeps its images for export and verify
# when they take at most this (20,000 images at 96x96 RGB, 4,000 at 224x224); beyond, decoded again once it is
KEEP_CHECKED_BYTES = 600 * 2**20


@dataclass
class Unlabelled:
    """The usable images of an `--images` folder, and what was left out and why."""

    root: str
    images: np.ndarray  # uint8 NHWC at the bundle's input size
    names: list[str]  # paths relative to the root
    digests: list[str]  # DIGEST_CHARS hex digits of each image's pixel sha256
    found: int  # files found under the root
    sampled: bool = False  # more than MAX_IMAGES: a seeded sample was decoded
    dropped: dict[str, int] = field(default_factory=dict)  # why -> how many (training, validation, ...)
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped (--skip-bad): one message each

    @property
    def files_sha256(self) -> str:
        """A hash of the images used (names and pixels): a changed folder gives another hash."""
        return ids_hash(f"{n}:{d}" for n, d in zip(self.names, self.digests))

    def notes(self) -> list[str]:
        out = []
        if self.sampled:
            out.append(f"{OPTION} {self.root}: {self.found:,} files, over the cap of {MAX_IMAGES:,}: a seeded "
                       f"sample of {MAX_IMAGES:,} decoded")
        if self.skipped:
            n = len(self.skipped)
            out.append(f"{OPTION} {self.root}: {n:,} unreadable file{'s' * (n != 1)} skipped (--skip-bad), e.g. "
                       f"{self.skipped[0]}")
        for why, n in self.dropped.items():
            if n:
                out.append(f"{OPTION} {self.root}: {n:,} image{'s' * (n != 1)} dropped: {DROP_REASON[why]}")
        return out

    def record(self) -> dict:
        return {"folder": self.root, "images": len(self.images), "found": self.found, "sampled": self.sampled,
                "dropped": dict(self.dropped), "skipped": len(self.skipped), "files_sha256": self.files_sha256}


DROP_REASON = {"training": "the same pixels as training images (the model fitted them)",
               "validation": "the same pixels as the bundle's validation images (already counted)",
               "held-out": "the same pixels as the bundle's held-out images (already counted)",
               "repeats": "repeats of another image in the folder"}


def files(root: str | Path) -> list[Path]:
    """The files under `root` (recursive, sorted, hidden ones skipped).

    Raises:
        EdgeclsError: no such folder, a file instead of a folder, or no file in it.
    """
    path = Path(root)
    if not path.exists():
        raise EdgeclsError(f"{OPTION} {root}: no such folder")
    if not path.is_dir():
        raise EdgeclsError(f"{OPTION} {root}: not a folder (expected a folder of images, searched recursively)")
    found = sorted(f for f in path.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(path).parts))
    if not found:
        raise EdgeclsError(f"{OPTION} {root}: no image files in it (searched recursively)")
    return found


@dataclass
class _Decoded:
    """One decode of a folder's (sampled) files: which failed and why, and the images of the others."""

    names: list[str]  # the files decoded, relative to the root (a seeded sample beyond MAX_IMAGES)
    found: int  # files under the root
    bad: list[str]  # one message per unreadable file
    good: list[int] = field(default_factory=list)  # indices into `names` of the files that decoded
    images: np.ndarray | None = None  # their pixels at `shape` (read-only); None: only checked
    shape: tuple | None = None
    digests: list[str] | None = None  # the full pixel sha256 of each image, once asked for


_cache: dict[tuple, _Decoded] = {}  # the most recent folder: (root, listing, seed) -> its decode


def _listing_key(root: str | Path, found: list[Path], seed: int) -> tuple:
    """The folder (resolved), a hash of its listing (names, sizes, modification times) and the sample's seed."""
    h = hashlib.sha256()
    for f in found:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return str(Path(root).resolve()), h.hexdigest(), seed


def _decode_all(paths: list[Path], size: tuple[int, int], channels: int) -> tuple[list, list[str]]:
    def one(p):
        try:
            return load_image(p, size, channels), None
        except BadImage as e:
            return None, str(e)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        out = list(pool.map(one, paths))
    return [a for a, _ in out], [e for _, e in out if e]


def _decoded(root: str | Path, seed: int, shape: tuple[int, int, int] | None,
             found: list[Path] | None = None) -> _Decoded:
    """The folder's files decoded at `shape` (None: only checked that they decode), from the cache when the
    folder, its listing and the seed are the same (and the shape, where pixels are asked for)."""
    found = files(root) if found is None else found
    key = _listing_key(root, found, seed)
    hit = _cache.get(key)
    if hit is not None and (shape is None or hit.shape == tuple(shape)):
        return hit
    paths = _sample(found, seed)
    h, w, c = shape or (8, 8, 3)
    arrays, bad = _decode_all(paths, (h, w), c)
    good = [i for i, a in enumerate(arrays) if a is not None]
    images = None
    if shape is not None and good:
        images = np.stack([arrays[i] for i in good])
        images.setflags(write=False)  # shared by every user of the cache
    del arrays
    names = [p.relative_to(root).as_posix() for p in paths]
    out = _Decoded(names, len(found), bad, good, images, tuple(shape) if shape is not None else None)
    _cache.clear()  # one folder at a time: the memory of one decode, not of every folder seen
    _cache[key] = out
    return out


def forget() -> None:
    """Drop the decoded folder kept in memory (a long-lived process done with it)."""
    _cache.clear()


def check(root: str | Path, *, shape: tuple[int, int, int] | None = None, seed: int = 0,
          skip_bad: bool = False) -> int:
    """Check `root` before any work (every file decodes as an image, or `skip_bad`); return how many files it
    holds. With `shape` (the bundle's input, where known before it exists) the images are decoded at it and
    kept for `load` when they take at most `KEEP_CHECKED_BYTES`, so the folder is decoded once.

    Raises:
        EdgeclsError: as `files`, a file that is not a readable image (unless `skip_bad`), or no readable one.
    """
    found = files(root)
    small = shape is not None and min(len(found), MAX_IMAGES) * int(np.prod(shape)) <= KEEP_CHECKED_BYTES
    d = _decoded(root, seed, shape if small else None, found=found)
    _refuse_bad(root, d.bad, len(d.names), skip_bad)
    return d.found


def _sample(found: list[Path], seed: int = 0) -> list[Path]:
    if len(found) <= MAX_IMAGES:
        return found
    keep = np.sort(np.random.default_rng(seed).choice(len(found), MAX_IMAGES, replace=False))
    return [found[i] for i in keep]


def _refuse_bad(root, bad: list[str], n: int, skip_bad: bool = False) -> None:
    if not bad:
        return
    if len(bad) == n:
        raise EdgeclsError(f"{OPTION} {root}: none of its {n:,} files is a readable image (e.g. {bad[0]})")
    if skip_bad:
        return
    more = f" (and {len(bad) - 1:,} more bad files)" if len(bad) > 1 else ""
    raise EdgeclsError(f"{OPTION} {root}: {bad[0]}{more}; fix or remove it, or pass --skip-bad to skip bad files")


def load(root: str | Path, input_shape: tuple[int, int, int],
         known: dict[str, set[str]] | Callable[[], dict[str, set[str]]] | None = None,
         seed: int = 0, skip_bad: bool = False) -> Unlabelled:
    """The images of `root` decoded at `input_shape`, less those whose pixels are in `known` (why -> set of
    full pixel sha256s: "training", "validation", "held-out"; or a function giving them, called once the folder
    is known to be good) and repeats; unreadable files skipped and counted with `skip_bad`. Decoded once per
    process while the folder is unchanged (`check`, `forget`).

    Raises:
        EdgeclsError: as `check`; or no image is left once the bundle's own are dropped.
    """
    d = _decoded(root, seed, tuple(input_shape))
    _refuse_bad(root, d.bad, len(d.names), skip_bad)
    if d.digests is None:
        d.digests = pixel_digests(d.images)
    full = d.digests
    if callable(known):
        known = known()
    dropped = {why: 0 for why in DROP_REASON}
    keep, seen = [], set()
    for i, digest in enumerate(full):
        why = next((k for k, s in (known or {}).items() if digest in s), None)
        if why is None and digest in seen:
            why = "repeats"
        if why is None:
            keep.append(i)
            seen.add(digest)
        else:
            dropped[why] += 1
    images = d.images if len(keep) == len(full) else d.images[keep]  # nothing dropped: the cached (read-only) array
    u = Unlabelled(str(root), images, [d.names[d.good[i]] for i in keep],
                   [full[i][:DIGEST_CHARS] for i in keep], d.found, d.found > len(d.names),
                   {k: v for k, v in dropped.items() if v}, list(d.bad))
    if not keep:
        raise EdgeclsError(f"{OPTION} {root}: all {len(full):,} images are already in the bundle or repeat one "
                           f"another ({'; '.join(u.notes())}): give images the model never saw")
    return u


__all__ = ["KEEP_CHECKED_BYTES", "MAX_IMAGES", "Unlabelled", "check", "files", "forget", "load"]
