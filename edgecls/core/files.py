"""Durable files: every write goes through one write-then-rename primitive.

`atomic_target` yields a temporary name in the target's folder (owner-tagged, so only a dead
writer's leftovers are ever removed); the writer fills it, the primitive flushes and fsyncs it,
renames it into place and fsyncs the folder. A reader sees the old file or the new one, never half
of one, and a crash loses neither. A whole new bundle is staged in a sibling folder and swapped in
in one step (`staged_bundle`). Used by every writer of edgecls.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import EdgeclsError

LOCK = ".manifest.lock"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def owner_tag() -> str:
    """``PID@HOST``-tag put in every temporary name, so a later run can tell the leftovers of a killed
    writer (its process is gone) from those of a writer still running."""
    return f"{os.getpid()}@{hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]}"


STALE_NAME = re.compile(r"^\.(?:.*\.)?(?:tmp|stage|staging|old)-(\d+)@([0-9a-f]{6})-")


def is_stale(name: str) -> bool:
    """A temporary name of this machine whose writing process no longer runs."""
    m = STALE_NAME.match(name)
    if not m or m.group(2) != owner_tag().split("@")[1]:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def remove_stale(folder: Path, prefix: str = ".") -> list[str]:
    """Remove what killed writers left in `folder` (temporary files, staging folders), names starting
    with `prefix`; return their names. A live writer's files are never touched."""
    gone = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return gone
    for p in entries:
        if p.name.startswith(prefix) and is_stale(p.name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def fsync_file(path: Path) -> None:
    """Flush a file another library wrote (and closed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (a staged bundle, before it is swapped in)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """The one write-then-rename primitive: yield a temporary path beside `path` (same folder, same
    suffix); when the block ends, flush it to disk (fsync), rename it onto `path`, fsync the folder.

    A reader sees the old file or the new one, never half of one, and after a crash the new file is
    either complete or absent. For libraries that write files themselves (``model.save``,
    ``onnx.save``) as well as `atomic_write`. On any error, or Ctrl-C, the temporary file is removed
    and `path` is left as it was; a kill -9 leaves a temporary name that `remove_stale` clears.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-{owner_tag()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # some writers refuse to overwrite; they get a fresh name
    tmp = Path(tmp)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through `atomic_target` (temporary file, fsync, rename, fsync the folder)."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the OS allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the OS cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


_HELD: dict[tuple[int, Path], int] = {}  # (thread, lock path) -> depth: the lock is re-entrant in one thread


@contextlib.contextmanager
def manifest_lock(folder: Path) -> Iterator[None]:
    """Serialise the writers (and the consistent readers) of one bundle: an exclusive OS file lock on
    ``folder/.manifest.lock`` (`filelock`: flock on Linux and macOS, LockFileEx on Windows — never a silent
    no-op). Re-entrant within one thread. A lock file that is a symbolic link (a copied bundle could
    point it at any file, which opening it would truncate) is refused, whatever filelock's version.

    Raises:
        EdgeclsError: the lock file is a symbolic link or not a regular file.
    """
    import stat
    import threading

    from filelock import FileLock

    path = Path(folder) / LOCK
    key = (threading.get_ident(), Path(os.path.realpath(folder)) / LOCK)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise EdgeclsError(f"{path}: {'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'not a regular file'}; "
                           "a bundle's lock file must be a plain file inside it: refused (delete it)")
    with FileLock(path):
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)


def file_entry(path: Path, root: Path) -> dict:
    return {"file": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}


def ensure_writable(path: Path, option: str = "--out") -> None:
    """Fail now, naming the option and path, if `path` (a bundle folder or a result file) cannot be
    written: before minutes of training or measuring, not after."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EdgeclsError(f"{option} {path}: cannot write there ({e.strerror or e})") from e
    if option == "--out" and path.exists() and not path.is_dir():
        raise EdgeclsError(f"--out {path}: exists and is not a folder")


@contextlib.contextmanager
def staged_bundle(dest: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces `dest` whole.

    Until the swap, an existing bundle at `dest` is untouched; after it, `dest` is the complete
    new bundle: every file in the stage is flushed to disk (fsync) before the swap. On failure (or
    Ctrl-C before the swap) the staging folder is removed; what a killed run left beside `dest` is
    removed by the next one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest.parent, prefix=f".{dest.name}.")
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-{owner_tag()}-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp's 0700 would hide the bundle from other users
    try:
        yield stage
        fsync_tree(stage)
        if dest.exists() and exchange(stage, dest):  # one step: `dest` is never missing
            shutil.rmtree(stage, ignore_errors=True)  # now the old bundle
        elif dest.exists():  # no atomic exchange on this OS: two renames
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{owner_tag()}-", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(stage, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, dest)
        fsync_dir(dest.parent)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
