"""Results bound to the bytes they measured.

Every verify and bench row records the sha256 of the artifact it judged and the identity of the
bundle (`bundle_id`, written by `train`; `created_at` for older bundles). Whatever reads results
(the decision, golden, info, the report, verify and bench themselves) takes only *current* rows —
same bundle, same bytes — and says which it ignored and why. Rows merge per artifact, so
`verify --runtime onnx` keeps the other runtimes' rows.
"""

from __future__ import annotations

from enum import Enum

VERIFY_KEY = ("file", "runtime", "device", "compute_requested")
BENCH_KEY = ("file", "runtime", "device", "batch")
#: an emulated platform's rows (edgecls verify --platform): per file x runtime x platform x CPU model
PLATFORM_KEY = ("file", "runtime", "platform", "cpu", "compute_requested")
KEYS = {"verify": VERIFY_KEY, "bench": BENCH_KEY, "platform_verify": PLATFORM_KEY}


class Binding(str, Enum):
    current = "current"
    stale = "stale"  # the artifact's bytes changed since (re-exported)
    unbound = "unbound"  # written by an older edgecls: no hash to check
    gone = "gone"  # the file is no longer in the bundle
    foreign = "foreign"  # measured on another bundle (retrained since)


EXPLAIN = {Binding.stale: "stale: the file changed since (run it again)",
           Binding.unbound: "unbound: no hash recorded (run it again)",
           Binding.gone: "the file is no longer in the bundle",
           Binding.foreign: "from another bundle (retrained since; run it again)"}


def identity(manifest: dict) -> str:
    """The bundle's identity: its `bundle_id`, or `created_at` for bundles made before ids existed."""
    return manifest.get("bundle_id") or manifest["created_at"]


def _artifact(manifest: dict, file: str) -> dict | None:
    return next((a for a in manifest.get("artifacts", []) if a["file"] == file), None)


def bind(row: dict, manifest: dict) -> dict:
    """`row` with the sha256 of its file and the bundle's identity."""
    art = _artifact(manifest, row["file"])
    return row | {"sha256": art["sha256"] if art else None, "bundle_id": identity(manifest)}


def binding(row: dict, manifest: dict) -> Binding:
    art = _artifact(manifest, row.get("file", ""))
    if art is None:
        return Binding.gone
    if not row.get("sha256"):
        return Binding.unbound
    if row.get("bundle_id") not in (None, identity(manifest)):
        return Binding.foreign
    return Binding.current if row["sha256"] == art["sha256"] else Binding.stale


def rows(manifest: dict, section: str) -> list[dict]:
    """Every stored row of `section` ("verify", "bench" or "platform_verify"), current or not."""
    return list((manifest.get(section) or {}).get("rows", []))


def current(manifest: dict, section: str) -> list[dict]:
    """The rows of `section` that judged the bytes now in the bundle."""
    return [r for r in rows(manifest, section) if binding(r, manifest) == Binding.current]


def ignored(manifest: dict, section: str) -> list[tuple[dict, Binding]]:
    """The rows of `section` that readers ignore, with why."""
    out = []
    for r in rows(manifest, section):
        b = binding(r, manifest)
        if b != Binding.current:
            out.append((r, b))
    return out


def ignored_lines(manifest: dict, section: str, exclude: set[str] = frozenset()) -> list[str]:
    """One line per ignored row (less those of the files in `exclude`), e.g.
    "tflite int8 (model.int8.tflite): stale: the file changed since (run it again)"."""
    seen, out = set(), []
    for r, b in ignored(manifest, section):
        key = (r.get("runtime"), r.get("precision"), r.get("file"))
        if key not in seen and r.get("file") not in exclude:
            seen.add(key)
            out.append(f"{r.get('runtime')} {r.get('precision')} ({r.get('file')}): {EXPLAIN[b]}")
    return out


def _keyed(name: str, value):
    """OpenVINO's f32 request is the baseline: rows written before it was recorded key with it."""
    return "" if name == "compute_requested" and value in (None, "", "f32") else value


def key(row: dict, section: str) -> tuple:
    return tuple(_keyed(k, row.get(k)) for k in KEYS[section])


def merge(old: list[dict], new: list[dict], section: str) -> list[dict]:
    """`old` rows with `new` ones replacing those of the same artifact (and runtime, device, batch; the
    requested precision; an emulated platform's CPU model)."""
    out = {key(r, section): r for r in old}
    for r in new:
        out[key(r, section)] = r
    return list(out.values())


DISAGREEMENT = "emulator disagreement"


def platform_verdicts(rows: list[dict]) -> dict[tuple, str]:
    """An emulated platform's verdict for each row (by its key): the outcome when every CPU model that ran
    the file in the same float precision agrees; "emulator disagreement" when they differ (an emulator
    fault looks exactly like a parity fault, so neither outcome is believed); "<outcome> (one CPU model)"
    when only one ran it, not cross-checked. Rows of the device's default precision that ran in different
    precisions on different CPU models are different configurations, not compared."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        asked = _keyed("compute_requested", r.get("compute_requested"))
        g = (r.get("file"), r.get("runtime"), r.get("platform"), asked, r.get("compute") if asked == "default" else "")
        groups.setdefault(g, []).append(r)
    out = {}
    for members in groups.values():
        outcomes = {r.get("outcome") for r in members}
        verdict = (f"{members[0].get('outcome')} (one CPU model)" if len(members) == 1
                   else outcomes.pop() if len(outcomes) == 1 else DISAGREEMENT)
        for r in members:
            out[key(r, "platform_verify")] = verdict
    return out


def mark_stale(manifest: dict, file: str, sha: str) -> None:
    """After `file` was (re)written with hash `sha`: mark the rows that judged other bytes as stale."""
    for section in KEYS:
        for r in rows(manifest, section):
            if r.get("file") == file and r.get("sha256") and r["sha256"] != sha:
                r["stale"] = True


__all__ = ["Binding", "DISAGREEMENT", "bind", "binding", "current", "identity", "ignored", "ignored_lines",
           "merge", "mark_stale", "platform_verdicts", "rows"]
