"""The commit journal of a bundle (`.commit.json`): staged files to rename, then the manifest.

A writer that adds files to an existing bundle stages them in a private `.stage-*` folder, writes this
journal durably (the commit point), renames the files into place and writes the manifest. A killed
writer's journal is finished by the next reader or writer (`recover`) — but only once it is shown to
stay inside the bundle: a journal comes with the bundle, and a bundle may come from a stranger.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

from .contained import escapes, manifest_paths
from .errors import EdgeclsError
from .files import LOCK, atomic_write, fsync_dir, manifest_lock
from .manifest import validate
from .untrusted import MAX_JSON_DEPTH, depth, load_json

MANIFEST = "manifest.json"
JOURNAL = ".commit.json"  # a commit in progress: staged files to rename, then the manifest


def _commit(root: Path, journal: dict) -> None:
    """Apply a durable journal: rename each staged file onto its name, write the manifest, drop the
    journal. Idempotent, so a run that finds the journal of a killed writer finishes its commit."""
    for src, dst in journal["renames"]:
        s, d = root / src, root / dst
        if s.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)
            fsync_dir(d.parent)
    atomic_write(root / MANIFEST, journal["manifest"])
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)
    for stage in {src.split("/")[0] for src, _ in journal["renames"]}:
        if stage.startswith(".stage-"):
            shutil.rmtree(root / stage, ignore_errors=True)


def _journal_names(root: Path, stage: Path) -> bool:
    """Does a pending commit journal of `root` rename files out of `stage`?"""
    try:
        journal = json.loads((root / JOURNAL).read_text())
        return any(src.split("/")[0] == stage.name for src, _ in journal["renames"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _checked_journal(root: Path, jpath: Path) -> dict:
    """The journal of a killed writer, after checking that replaying it stays inside the bundle: every
    source a regular file in a staging folder of this bundle, every destination a contained path the
    journal's own (valid) manifest records. Nothing is changed before all of it is checked.

    Raises:
        EdgeclsError: naming the journal and the first entry that would reach outside the bundle.
    """
    journal = load_json(jpath, "commit journal")
    if not isinstance(journal, dict) or not {"renames", "manifest"} <= set(journal) \
            or not isinstance(journal["renames"], list) or not isinstance(journal["manifest"], str):
        raise EdgeclsError(f"{jpath}: corrupt commit journal (not a commit journal); the bundle was changed by hand")

    def refuse(why: str):
        return EdgeclsError(f"{jpath}: {why}; a commit journal only renames this bundle's staged files onto "
                            "its own files: refused, nothing was changed (delete the journal if you trust the rest)")

    try:
        manifest = json.loads(journal["manifest"])
    except (ValueError, RecursionError) as e:
        raise refuse("its manifest is not JSON") from e
    if depth(manifest, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise refuse("its manifest is nested too deeply")
    try:
        validate(manifest, f"{jpath} (its manifest)")
    except EdgeclsError as e:
        raise refuse(str(e).split(": ", 1)[-1]) from e
    recorded = {rel for _, rel in manifest_paths(manifest)}
    top = root.resolve()
    for i, pair in enumerate(journal["renames"]):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise refuse(f"renames[{i}] is not a [staged file, destination] pair")
        src, dst = pair
        why = escapes(src, root)
        parts = PurePosixPath(src).parts
        if why is None and not (parts[0].startswith(".stage-") and len(parts) > 1):
            why = "not a file of a staging folder (.stage-*) of this bundle"
        if why is None:
            stage = root / PurePosixPath(src).parts[0]
            if stage.is_symlink() or (stage.exists() and stage.resolve().parent != top):
                why = "its staging folder is a symbolic link"
            elif os.path.lexists(root / src) and ((root / src).is_symlink() or not (root / src).is_file()):
                why = "not a regular file (a symbolic link or a folder)"
        if why is not None:
            raise refuse(f"renames[{i}] source {src!r} ({why})")
        why = escapes(dst, root)
        if why is None and dst not in recorded:
            why = "a file its manifest does not record"
        if why is None and PurePosixPath(dst).name in (MANIFEST, JOURNAL, LOCK):
            why = "a file of edgecls's own bookkeeping"
        if why is not None:
            raise refuse(f"renames[{i}] destination {dst!r} ({why})")
    return journal


def _recover(root: Path) -> None:
    """Finish the commit a killed writer left (its journal is durable, so the commit had happened),
    once the journal is shown to stay inside the bundle. Call under the bundle's lock."""
    jpath = root / JOURNAL
    if not os.path.lexists(jpath):
        return
    if jpath.is_symlink() or not jpath.is_file():
        raise EdgeclsError(f"{jpath}: not a regular file (a symbolic link?): refused, nothing was changed")
    _commit(root, _checked_journal(root, jpath))


def recover(root: Path) -> None:
    """`_recover` under the lock; a folder that cannot be written is refused by name."""
    if not os.path.lexists(Path(root) / JOURNAL):
        return
    try:
        with manifest_lock(root):
            _recover(Path(root))
    except OSError as e:
        raise EdgeclsError(f"{Path(root) / JOURNAL}: a write of this bundle was interrupted and must be finished, "
                           f"but the folder cannot be written ({e.strerror or e}); open it where it can") from e
