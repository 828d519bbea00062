"""The bundle on disk (models/NAME/): manifest read/write, atomic writes, sha256, loading.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader sees either the old file or the new one, never half of one. A new bundle is staged in a
sibling folder and swapped in whole. The manifest records each file's size and sha256, and
loading refuses a file whose hash does not match.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from . import __version__
from .errors import EdgeclsError

SCHEMA = 1
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it onto `path` on success.

    For libraries that write files themselves (``model.save``, ``onnx.save``). On any error,
    or Ctrl-C, the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # some writers refuse to overwrite; they get a fresh name
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def file_entry(path: Path, root: Path) -> dict:
    return {"file": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}


@contextlib.contextmanager
def staged_bundle(dest: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces `dest` whole.

    Until the swap, an existing bundle at `dest` is untouched; after it, `dest` is the complete
    new bundle. On failure (or Ctrl-C before the swap) the staging folder is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp's 0700 would hide the bundle from other users
    try:
        yield stage
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(stage, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_manifest(name: str) -> dict:
    return {"schema": SCHEMA, "edgecls_version": __version__, "created_at": now(), "name": name,
            "artifacts": [], "files": []}


class Bundle:
    """A bundle folder and its manifest.

    Example:
        >>> b = Bundle.open("models/digits-small")
        >>> model = b.load_keras()        # checks model.keras against its sha256
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        path = Path(path)
        mpath = path / MANIFEST
        if not path.is_dir():
            raise EdgeclsError(f"{path}: no such bundle folder (train one with 'edgecls train')")
        if not mpath.is_file():
            raise EdgeclsError(f"{mpath}: missing; {path} is not an edgecls bundle")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EdgeclsError(f"{mpath}: corrupt manifest ({e})") from e
        if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
            raise EdgeclsError(f"{mpath}: unsupported manifest schema {manifest.get('schema')!r} "
                               f"(this edgecls reads schema {SCHEMA})" if isinstance(manifest, dict)
                               else f"{mpath}: corrupt manifest (not a JSON object)")
        return cls(path, manifest)

    # -- files ---------------------------------------------------------------------------

    def entry(self, file: str) -> dict | None:
        for e in self.manifest.get("artifacts", []) + self.manifest.get("files", []):
            if e["file"] == file:
                return e
        return None

    def checked(self, file: str) -> Path:
        """The path of a recorded file, after checking that it (and its parts, e.g. OpenVINO's .bin)
        exists and matches its sha256."""
        entry = self.entry(file)
        path = self.path / file
        if entry is None:
            raise EdgeclsError(f"{path}: not recorded in {self.path / MANIFEST}")
        for part in entry.get("parts", []):
            self._check_hash(self.path / part["file"], part)
        return self._check_hash(path, entry)

    def _check_hash(self, path: Path, entry: dict) -> Path:
        if not path.is_file():
            raise EdgeclsError(f"{path}: missing (the manifest records it)")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise EdgeclsError(f"{path}: sha256 {digest[:12]}… does not match the manifest's "
                               f"{entry['sha256'][:12]}… (the file changed after it was written)")
        return path

    def record(self, entry: dict, key: str = "artifacts") -> None:
        """Add or replace (same file) an entry in the manifest's artifacts or files list."""
        items = [e for e in self.manifest.setdefault(key, []) if e["file"] != entry["file"]]
        items.append(entry)
        self.manifest[key] = items

    def save(self) -> None:
        self.manifest["updated_at"] = now()
        atomic_write(self.path / MANIFEST, json.dumps(self.manifest, indent=1) + "\n")

    # -- contents ------------------------------------------------------------------------

    def load_keras(self):
        """Load model.keras (safe mode) after the sha256 check."""
        from ._tf import keras

        path = self.checked("model.keras")
        try:
            return keras().models.load_model(path, compile=False, safe_mode=True)
        except Exception as e:  # Keras raises many types for a bad archive
            raise EdgeclsError(f"{path}: cannot load Keras model ({type(e).__name__}: {e})") from e

    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["input"]["shape"][1:])

    def heldout(self, data_dir: str | None = None, limit: int | None = None):
        """The held-out (test) images and labels recorded in the manifest, as uint8 NHWC + int64."""
        return self.split_images("test", data_dir=data_dir, limit=limit)

    def split_images(self, part: str, *, data_dir: str | None = None, limit: int | None = None,
                     seed: int = 0):
        """Images and labels of one recorded split part ("train", "val", "test").

        `limit` takes a stratified, seeded subset (e.g. calibration images from "train").
        """
        import numpy as np

        from . import data as data_mod

        ds = self.manifest["dataset"]
        ids = ds["split"][part]
        folder = ds["source"]["name"] == "folder"
        data = data_mod.open_source(ds["source"], ids=ids if folder else None, classes=ds["classes"],
                                    data_dir=data_dir)
        idx = np.arange(len(ids)) if folder else np.asarray(ids, dtype=np.int64)
        if limit is not None and limit < len(idx):
            idx = idx[data_mod.subset(data.labels[idx], limit, seed)]
        return data.images(idx), data.labels[idx]
