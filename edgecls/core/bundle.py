"""The bundle on disk (models/NAME/): the manifest read, merged and saved under a lock, files added with a
journaled commit, every path it names kept inside it, every file checked against its sha256.

Writes go through `edgecls.core.files` (one durable write-then-rename primitive). Files added to an
existing bundle are staged in a private folder and committed together with the manifest by a durable
journal (`.commit.json`): a killed writer's commit is finished by the next reader or writer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .. import __version__
from . import results
from .contained import escapes, manifest_paths
from .errors import EdgeclsError
from .files import atomic_write, file_entry, fsync_dir, fsync_file, manifest_lock, owner_tag, remove_stale, sha256
from .journal import JOURNAL, MANIFEST, _commit, _journal_names, _recover, recover
from .manifest import SCHEMA, validate
from .untrusted import load_json

SPLIT_FILE = "split.json"


def _read(mpath: Path) -> dict:
    if not mpath.is_file():
        raise EdgeclsError(f"{mpath}: missing; {mpath.parent} is not an edgecls bundle")
    manifest = load_json(mpath, "manifest")  # size and depth bounded before and while parsing
    validate(manifest, str(mpath))
    return manifest


def _merge(base: dict, mine: dict, theirs: dict) -> dict:
    """`theirs` (on disk now) with what changed from `base` to `mine` applied on top."""
    out = dict(theirs)
    for key in set(base) | set(mine):
        if key in ("artifacts", "files"):
            out[key] = _merge_entries(base.get(key, []), mine.get(key, []), theirs.get(key, []))
        elif key in results.KEYS and key in mine:
            out[key] = _merge_results(key, base.get(key) or {}, mine[key], theirs.get(key) or {})
        elif key not in mine:
            if key in base:
                out.pop(key, None)
        elif mine[key] != base.get(key):
            out[key] = mine[key]
    return out


def _merge_results(section: str, base: dict, mine: dict, theirs: dict) -> dict:
    """A verify or bench section: rows merge per artifact (what this process added or changed goes on
    top of what is on disk), the section's other fields are this process's if it changed them."""
    out = dict(theirs)
    for k, v in mine.items():
        if k != "rows" and v != base.get(k):
            out[k] = v
    before = {results.key(r, section): r for r in base.get("rows", [])}
    changed = [r for r in mine.get("rows", []) if before.get(results.key(r, section)) != r]
    out["rows"] = results.merge(theirs.get("rows", []), changed, section)
    return out


def _merge_entries(base: list[dict], mine: list[dict], theirs: list[dict]) -> list[dict]:
    entries = {e["file"]: e for e in theirs}
    before = {e["file"]: e for e in base}
    mine_by_file = {e["file"]: e for e in mine}
    for file in before.keys() - mine_by_file.keys():  # removed here
        entries.pop(file, None)
    for file, e in mine_by_file.items():
        if before.get(file) != e:  # added or changed here
            entries[file] = e
    return list(entries.values())


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_manifest(name: str) -> dict:
    import uuid

    return {"schema": SCHEMA, "edgecls_version": __version__, "created_at": now(), "bundle_id": uuid.uuid4().hex,
            "name": name, "artifacts": [], "files": []}


@dataclasses.dataclass
class BundleInfo:
    path: Path
    manifest: dict
    files: list[tuple[dict, bool]]  # (artifact entry, its hash matches)
    problems: dict[str, str] = dataclasses.field(default_factory=dict)  # file -> why it fails its check

    @property
    def intact(self) -> bool:
        return not self.problems

    def verdicts(self) -> list[dict]:
        """Per recorded file (artifacts, their parts, other files): ok, and the problem where not."""
        out = []
        for kind in ("artifacts", "files"):
            for e in self.manifest.get(kind, []):
                for f in [e["file"], *(p["file"] for p in e.get("parts", []))]:
                    out.append({"file": f, "kind": kind[:-1], "ok": f not in self.problems,
                                **({"problem": self.problems[f]} if f in self.problems else {})})
        return out


class Bundle:
    """A bundle folder and its manifest.

    Example:
        >>> b = Bundle.open("models/digits-small")
        >>> b.checked_path("model.keras")       # the path, after checking it against its sha256
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._loaded: dict | None = None  # the manifest as read: what save() merges this process's changes onto
        self._split: dict | None = None  # dataset.split.ids_file, once read

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        path = Path(path)
        if not path.is_dir():
            raise EdgeclsError(f"{path}: no such bundle folder (train one with 'edgecls train')")
        recover(path)
        bundle = cls(path, _read(path / MANIFEST))
        for where, rel in manifest_paths(bundle.manifest):
            bundle.inside(rel, where)
        bundle._loaded = copy.deepcopy(bundle.manifest)
        return bundle

    # -- files ---------------------------------------------------------------------------

    def entry(self, file: str) -> dict | None:
        for e in self.manifest.get("artifacts", []) + self.manifest.get("files", []):
            if e["file"] == file:
                return e
        return None

    def checked_path(self, file: str) -> Path:
        """The path of a recorded file, after checking that it (and its parts, e.g. OpenVINO's .bin)
        exists and matches its sha256, and that an ONNX file loads no byte its entry does not record.

        Checked under the bundle's lock, so a writer's commit is never seen half-done; when the file
        no longer matches because another command committed a new version since this one read the
        manifest, that version is taken (one retry on a fresh snapshot), not reported as damage."""
        path = self.inside(file, "file")
        if self.entry(file) is None:
            raise EdgeclsError(f"{path}: not recorded in {self.path / MANIFEST}")
        with self._reading():
            try:
                self._check_entry(self.entry(file))
            except EdgeclsError:
                if not self._refresh(file):
                    raise
                self._check_entry(self.entry(file))
        return path

    def _check_entry(self, entry: dict) -> None:
        file = entry["file"]
        for part in entry.get("parts", []):
            self._check_hash(self.inside(part["file"], f"{file}: part"), part)
        self._check_hash(self.inside(file, "file"), entry)
        if entry.get("format") == "onnx" or file.endswith(".onnx"):
            from .onnxdata import check_external

            check_external(self.inside(file, "file"), entry)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The bundle's lock while a reader checks files against the manifest (a writer commits under it);
        a folder where the lock cannot be created (read-only) has no writer to wait for."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(manifest_lock(self.path))
            except OSError:
                pass
            yield

    def _refresh(self, file: str) -> bool:
        """Take the entry of `file` (and the reference section) from the manifest on disk when another
        command changed it since this one read it; whether it did."""
        try:
            disk = _read(self.path / MANIFEST)
        except EdgeclsError:
            return False
        if results.identity(disk) != results.identity(self._loaded or self.manifest):
            return False
        fresh = next((e for k in ("artifacts", "files") for e in disk.get(k, []) if e["file"] == file), None)
        if fresh is None or fresh == self.entry(file):
            return False
        for where, rel in manifest_paths({"artifacts": [fresh]}):
            self.inside(rel, where)
        for m in filter(None, (self.manifest, self._loaded)):
            for key in ("artifacts", "files"):
                m[key] = [fresh if e["file"] == file else e for e in m.get(key, [])]
            if isinstance(disk.get("reference"), dict) and disk["reference"].get("file") == file:
                m["reference"] = copy.deepcopy(disk["reference"])
        return True

    def inside(self, rel: str, where: str = "file") -> Path:
        """The path of `rel` in the bundle, after checking it stays inside the bundle folder (relative,
        no '..', no symbolic link leading out): a bundle is self-contained, whoever made it.

        Raises:
            EdgeclsError: naming the manifest entry and why the path leaves the bundle.
        """
        why = escapes(rel, self.path)
        if why is not None:
            raise EdgeclsError(f"{self.path / MANIFEST}: {where} {rel!r} is outside the bundle ({why}); "
                               "a bundle must be self-contained: refused")
        return self.path / rel

    def _check_hash(self, path: Path, entry: dict) -> Path:
        if not path.is_file():
            raise EdgeclsError(f"{path}: missing (the manifest records it)")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise EdgeclsError(f"{path}: sha256 {digest[:12]}… does not match the manifest's "
                               f"{entry['sha256'][:12]}… (the file changed after it was written)")
        return path

    def info(self) -> "BundleInfo":
        """The manifest, every recorded artifact with whether it (and its parts) match their sha256, and
        the problem of every recorded file (artifacts, parts, other files) that does not."""
        checked, problems = [], {}
        with self._reading():  # a consistent snapshot: the manifest as it is now, its files as it names them
            manifest = self.manifest
            try:
                disk = _read(self.path / MANIFEST)
                if disk != self._loaded and self._loaded is not None:
                    for where, rel in manifest_paths(disk):
                        self.inside(rel, where)
                    manifest = disk
            except EdgeclsError:
                pass
            for kind in ("artifacts", "files"):
                for e in manifest.get(kind, []):
                    ok = True
                    for part in [*e.get("parts", []), e]:
                        try:
                            self._check_hash(self.inside(part["file"]), part)
                            if part is e and kind == "artifacts" and e.get("format") == "onnx":
                                from .onnxdata import check_external

                                check_external(self.inside(e["file"]), e)
                        except EdgeclsError as err:
                            problems[part["file"]] = str(err)
                            ok = False
                    if kind == "artifacts":
                        checked.append((e, ok))
        return BundleInfo(self.path, manifest, checked, problems)

    def record(self, entry: dict, key: str = "artifacts") -> None:
        """Add or replace (same file) an entry in the manifest's artifacts or files list."""
        items = [e for e in self.manifest.setdefault(key, []) if e["file"] != entry["file"]]
        items.append(entry)
        self.manifest[key] = items
        if key == "artifacts":
            results.mark_stale(self.manifest, entry["file"], entry["sha256"])

    def save(self, installs: dict[str, Path] | None = None) -> None:
        """Write this process's changes to the manifest, under the bundle's lock, and swap in the
        staged files of `installs` (bundle path -> a file written in `staging()`) with it.

        Read-modify-write: the manifest on disk is read again under the lock and only what this
        process changed since it read it (top-level sections; artifact and file entries by file) is
        applied, so two commands writing one bundle at once (`verify` and `bench`) both keep their
        results. Validated against the schema, written atomically (fsync before the rename).

        With `installs`, the staged files are flushed to disk, then a journal naming them and the new
        manifest is written (the commit point), then the files are renamed into place and the
        manifest written: a crash before the journal leaves the old bundle, after it the next run
        finishes the commit (`recover`), so files and manifest always match, and a multi-file artifact
        (OpenVINO's .xml and .bin) changes as a unit.
        """
        mpath = self.path / MANIFEST
        fresh = self._loaded is None  # a new bundle being staged: nobody else writes it
        try:
            with contextlib.nullcontext() if fresh else manifest_lock(self.path):
                if not fresh:
                    _recover(self.path)  # a killed writer's commit first: its staged files are still named
                    remove_stale(self.path)
                on_disk = None if fresh or not mpath.is_file() else _read(mpath)
                if on_disk is not None and results.identity(on_disk) != results.identity(self._loaded):
                    raise EdgeclsError(f"{self.path}: the bundle was replaced (trained again) while this command "
                                       "ran; its results belong to the old model and were not saved")
                merged = self.manifest if on_disk is None else _merge(self._loaded, self.manifest, on_disk)
                merged["updated_at"] = now()
                validate(merged, str(mpath))
                text = json.dumps(merged, indent=1) + "\n"
                if installs:
                    renames = []
                    for dst, src in installs.items():
                        self.inside(dst, "installed file")
                        fsync_file(src)
                        fsync_dir(Path(src).parent)
                        renames.append([Path(src).relative_to(self.path).as_posix(), dst])
                    journal = {"renames": renames, "manifest": text}
                    atomic_write(self.path / JOURNAL, json.dumps(journal))
                    _commit(self.path, journal)
                else:
                    atomic_write(mpath, text)
        except OSError as e:
            raise EdgeclsError(f"{mpath}: cannot save the results ({e.strerror or e}); "
                               "is the bundle read-only?") from e
        self.manifest = merged
        self._loaded = copy.deepcopy(merged)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private folder inside the bundle for new files: write them there (same relative paths),
        check them, then `save(installs=...)` swaps them in. Removed when the block ends; a killed
        writer's is removed by the next writer (`remove_stale`)."""
        stage = Path(tempfile.mkdtemp(prefix=f".stage-{owner_tag()}-", dir=self.path))
        try:
            yield stage
        finally:
            if not _journal_names(self.path, stage):  # else a commit failed half-way: the next run finishes it
                shutil.rmtree(stage, ignore_errors=True)

    def put(self, rel: str, data: bytes | str, key: str = "files") -> dict:
        """Write one small file into the bundle and record it (staged, then committed with the manifest)."""
        with self.staging() as stage:
            atomic_write(stage / rel, data)
            entry = file_entry(stage / rel, stage)
            self.record(entry, key=key)
            self.save(installs={rel: stage / rel})
        return entry

    # -- contents ------------------------------------------------------------------------

    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def recommended(self):
        """The file the last bench recommended, if that recommendation is still current (same bytes, current
        parity and bench results), else why not: an `edgecls.core.recommended.Recommendation`."""
        from .recommended import recommended

        return recommended(self.manifest)

    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["input"]["shape"][1:])

    def split_ids(self, part: str) -> list:
        """The ids of one split part ("train", "val", "test"): inline in the manifest, or from its
        hashed ids file (large datasets)."""
        split = self.manifest["dataset"]["split"]
        if part in split:
            return split[part]
        if self._split is None:
            path = self.checked_path(split["ids_file"])
            ids = load_json(path, "split ids file")
            if not isinstance(ids, dict) or not all(isinstance(ids.get(p), list) for p in ("train", "val", "test")):
                raise EdgeclsError(f"{path}: cannot read the split ids (expected train, val and test lists)")
            self._split = ids
        return self._split[part]
