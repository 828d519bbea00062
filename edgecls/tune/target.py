"""Latency measured on the target device (`--latency-from`): `edgecls bench --json` results, hash-bound.

Every bench row names the bundle it measured (``bundle_id``) and the sha256 of the file. A row is
taken only for the very bytes in one of this search's candidate bundles; a file with any row for
other bytes or another bundle is refused whole — it was measured on something else. Rows of a
candidate's screening export (untrained, same graph) stand for its trained files of the same
format and precision, and say so: a network's latency does not depend on its weights values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core import results
from ..core.errors import EdgeclsError


@dataclass
class TargetRows:
    files: list[str] = field(default_factory=list)  # the JSON files read
    device: list[str] = field(default_factory=list)  # the CPUs they name
    rows: list[dict] = field(default_factory=list)  # bound rows, each with `_bundle` (its candidate's bundle id)

    def for_bundle(self, manifest: dict, batch: int, where: str) -> dict[str, dict]:
        """file -> the target row for this bundle's bytes at `batch` (each marked with where it came from)."""
        ident = results.identity(manifest)
        out = {}
        for r in self.rows:
            if r["bundle_id"] == ident and r["batch"] == batch and results.binding(r, manifest) == \
                    results.Binding.current:
                out[r["file"]] = r | {"_from": f"target device ({r['_cpu']}), {where}"}
        return out


def _rows_of(path: Path) -> tuple[list[dict], str]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgeclsError(f"--latency-from {path}: not a readable 'edgecls bench --json' file ({e})") from e
    docs = doc if isinstance(doc, list) else [doc]
    rows, cpu = [], "?"
    for d in docs:
        if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
            raise EdgeclsError(f"--latency-from {path}: not an 'edgecls bench --json' result (no rows)")
        cpu = (d.get("environment") or {}).get("cpu") or cpu
        rows += [r | {"_cpu": cpu} for r in d["rows"] if isinstance(r, dict)]
    if not rows:
        raise EdgeclsError(f"--latency-from {path}: holds no bench rows")
    for r in rows:
        if not r.get("sha256") or not r.get("bundle_id") or "p50_ms" not in r:
            raise EdgeclsError(f"--latency-from {path}: a row without sha256/bundle_id/p50_ms (written by an older "
                               "edgecls?): bench the candidates again with this version")
    return rows, cpu


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder: every *.json in it."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(p.glob("*.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise EdgeclsError(f"--latency-from {p}: no such file or folder")
    if paths and not out:
        raise EdgeclsError(f"--latency-from {', '.join(map(str, paths))}: no .json file there")
    return out


def load(paths: list[Path], manifests: dict[str, dict]) -> TargetRows:
    """Read and bind every row of `paths` to the candidate bundles' `manifests` (name -> manifest).

    Raises:
        EdgeclsError: a file that is not bench JSON, or that holds a row for bytes or a bundle that is
            not one of this search's (named, with what it measured).
    """
    out = TargetRows()
    by_id = {results.identity(m): (name, m) for name, m in manifests.items()}
    for path in expand(paths):
        rows, cpu = _rows_of(path)
        for r in rows:
            hit = by_id.get(r["bundle_id"])
            if hit is None:
                raise EdgeclsError(
                    f"--latency-from {path}: measured another bundle (bundle_id {r['bundle_id']}, {r.get('file')}), "
                    "not one of this search's candidates: bench the candidates' own exports on the target "
                    "(docs/tune.md)")
            name, m = hit
            b = results.binding(r, m)
            if b != results.Binding.current:
                raise EdgeclsError(f"--latency-from {path}: {r.get('runtime')} {r.get('file')} of candidate {name} "
                                   f"was measured on other bytes ({results.EXPLAIN.get(b, b.value)}): bench its "
                                   "current files on the target again")
            out.rows.append(r | {"_bundle": name})
        out.files.append(str(path))
        if cpu not in out.device:
            out.device.append(cpu)
    return out
