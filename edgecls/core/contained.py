"""Which files a manifest names, and whether a path stays inside the bundle folder: a bundle is
self-contained, whoever made it (docs/bundle.md, "A bundle is a trust boundary")."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator


def manifest_paths(manifest: dict) -> Iterator[tuple[str, str]]:
    """(where, path) of every bundle file a manifest names: artifacts and their parts, files, the
    reference data, the split ids file, golden vectors."""
    for key in ("artifacts", "files"):
        for i, e in enumerate(manifest.get(key, [])):
            yield f"{key}[{i}].file", e["file"]
            for j, part in enumerate(e.get("parts", [])):
                yield f"{key}[{i}].parts[{j}].file", part["file"]
    if isinstance(manifest.get("reference"), dict) and "file" in manifest["reference"]:
        yield "reference.file", manifest["reference"]["file"]
    split = manifest.get("dataset", {}).get("split", {})
    if "ids_file" in split:
        yield "dataset.split.ids_file", split["ids_file"]
    golden = manifest.get("golden")
    if isinstance(golden, dict):
        for key in ("file", "folder"):
            if key in golden:
                yield f"golden.{key}", golden[key]


def escapes(rel, root: Path) -> str | None:
    """Why `rel` (a manifest path) does not stay inside the bundle folder `root`, or None."""
    if not isinstance(rel, str) or not rel or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in rel):
        return "not a file name (empty, or a control character)"
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        return "an absolute path"
    if "\\" in rel:
        return "a backslash: bundle paths are '/'-separated"
    if ".." in PurePosixPath(rel).parts:
        return "'..' leaves the bundle folder"
    real, top = (root / rel).resolve(), root.resolve()
    if real != top and top not in real.parents:
        return f"a symbolic link leads outside the bundle folder, to {real}"
    return None
