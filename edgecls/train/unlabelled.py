"""`--images DIR`: a folder of unlabelled images of the same kind, as label-free evidence for int8 files.

Changed answers and probability differences need no labels, and users have far more unlabelled
photos than labelled ones. The folder is read recursively (hidden files and folders skipped) with
the rules of a training folder (`edgecls.core.images.load_image`: the same formats, decoding,
orientation, colour mode and resize to the bundle's input; a bad file is an error naming it). Images
the bundle already holds — its training images (the model fitted them), and its validation or
held-out ones (already counted) — are recognised by their decoded pixels, dropped and said; so are
repeats within the folder. Beyond `MAX_IMAGES` a seeded sample is taken, and said.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.images import BadImage, load_image
from ..core.inputs import ids_hash, pixel_digests

MAX_IMAGES = 20000  # images decoded from --images: a seeded sample beyond (verify stays within minutes)
DIGEST_CHARS = 16  # the manifest names an --images image by the first 16 hex digits of its pixel sha256
OPTION = "--images"


@dataclass
class Unlabelled:
    """The usable images of an `--images` folder, and what was left out and why."""

    root: str
    images: np.ndarray  # uint8 NHWC at the bundle's input size
    names: list[str]  # paths relative to the root
    digests: list[str]  # DIGEST_CHARS hex digits of each image's pixel sha256
    found: int  # image files found under the root
    sampled: bool = False  # more than MAX_IMAGES: a seeded sample was decoded
    dropped: dict[str, int] = field(default_factory=dict)  # why -> how many (training, validation, ...)

    @property
    def files_sha256(self) -> str:
        """A hash of the images used (names and pixels): a changed folder gives another hash."""
        return ids_hash(f"{n}:{d}" for n, d in zip(self.names, self.digests))

    def notes(self) -> list[str]:
        out = []
        if self.sampled:
            out.append(f"{OPTION} {self.root}: {self.found:,} image files, a seeded sample of {MAX_IMAGES:,} used")
        for why, n in self.dropped.items():
            if n:
                out.append(f"{OPTION} {self.root}: {n:,} image{'s' * (n != 1)} dropped: {DROP_REASON[why]}")
        return out

    def record(self) -> dict:
        return {"folder": self.root, "images": len(self.images), "found": self.found, "sampled": self.sampled,
                "dropped": dict(self.dropped), "files_sha256": self.files_sha256}


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


def _decode(paths: list[Path], size: tuple[int, int], channels: int) -> tuple[list, list[str]]:
    def one(p):
        try:
            return load_image(p, size, channels), None
        except BadImage as e:
            return None, str(e)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        out = list(pool.map(one, paths))
    return [a for a, _ in out], [e for _, e in out if e]


def check(root: str | Path) -> int:
    """Check `root` before any work (every file decodes as an image); return how many files it holds.

    Raises:
        EdgeclsError: as `files`, or a file that is not a readable image.
    """
    found = files(root)
    paths = _sample(found)
    _, bad = _decode(paths, (8, 8), 3)
    _refuse_bad(root, bad, len(paths))
    return len(found)


def _sample(found: list[Path], seed: int = 0) -> list[Path]:
    if len(found) <= MAX_IMAGES:
        return found
    keep = np.sort(np.random.default_rng(seed).choice(len(found), MAX_IMAGES, replace=False))
    return [found[i] for i in keep]


def _refuse_bad(root, bad: list[str], n: int) -> None:
    if not bad:
        return
    if len(bad) == n:
        raise EdgeclsError(f"{OPTION} {root}: none of its {n:,} files is a readable image (e.g. {bad[0]})")
    more = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
    raise EdgeclsError(f"{bad[0]}{more}; fix or remove it ({OPTION} takes only image files, as a training folder)")


def load(root: str | Path, input_shape: tuple[int, int, int], known: dict[str, set[str]] | None = None,
         seed: int = 0) -> Unlabelled:
    """The images of `root` decoded at `input_shape`, less those whose pixels are in `known` (why -> set of
    full pixel sha256s: "training", "validation", "held-out") and repeats.

    Raises:
        EdgeclsError: as `check`; or no image is left once the bundle's own are dropped.
    """
    found = files(root)
    paths = _sample(found, seed)
    h, w, c = input_shape
    arrays, bad = _decode(paths, (h, w), c)
    _refuse_bad(root, bad, len(paths))
    images = np.stack(arrays)
    full = pixel_digests(images)
    dropped = {why: 0 for why in DROP_REASON}
    keep, seen = [], set()
    for i, d in enumerate(full):
        why = next((k for k, s in (known or {}).items() if d in s), None)
        if why is None and d in seen:
            why = "repeats"
        if why is None:
            keep.append(i)
            seen.add(d)
        else:
            dropped[why] += 1
    u = Unlabelled(str(root), images[keep], [paths[i].relative_to(root).as_posix() for i in keep],
                   [full[i][:DIGEST_CHARS] for i in keep], len(found), len(found) > len(paths),
                   {k: v for k, v in dropped.items() if v})
    if not keep:
        raise EdgeclsError(f"{OPTION} {root}: all {len(paths):,} images are already in the bundle or repeat one "
                           f"another ({'; '.join(u.notes())}): give images the model never saw")
    return u


__all__ = ["MAX_IMAGES", "Unlabelled", "check", "files", "load"]
