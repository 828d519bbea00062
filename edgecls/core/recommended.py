"""The bundle's current recommendation: the file the last bench chose, if it still stands.

`edgecls bench` stores its decision (`edgecls.bench.decide`) in the manifest with the sha256 of the chosen
file. Commands that run a model (`predict`, `Classifier.open`, `edgecls app`) follow it while it is
*current*: the chosen file is still in the bundle with the same bytes, its parity result (verify on its own
runtime) is current and still qualifies under the decision's own constraints, and its bench row at the
decision's batch size is current. A re-export or a re-verify that changes any of that invalidates it, and the
reader falls back to its default order and says why. The rule that chose the file is not run again here.

Example:
    >>> rec = Bundle.open("models/digits-small").recommended()
    >>> rec.artifact["file"] if rec.current else rec.why
"""

from __future__ import annotations

from dataclasses import dataclass

from . import results


@dataclass
class Recommendation:
    artifact: dict | None  # the manifest's entry of the chosen file, when the recommendation is current
    why: str  # one line: why this file, or why there is no current recommendation

    @property
    def current(self) -> bool:
        return self.artifact is not None


def recommended(manifest: dict) -> Recommendation:
    """The current recommendation of `manifest`, or why there is none (see the module's docstring)."""
    d = manifest.get("decision")
    if not d or not isinstance(d, dict):
        return Recommendation(None, "no recommendation yet (edgecls verify, then edgecls bench)")
    chosen = d.get("chosen") if isinstance(d.get("chosen"), dict) else {}
    if not d.get("found") or not isinstance(chosen.get("file"), str):
        return Recommendation(None, f"the last bench recommended nothing (ruled out by {d.get('ruled_out_by')})")
    file = chosen["file"]
    art = next((a for a in manifest.get("artifacts", []) if a.get("file") == file), None)
    if art is None:
        return Recommendation(None, f"the recommended {file} is no longer in the bundle")
    if chosen.get("sha256") and chosen["sha256"] != art["sha256"]:
        return Recommendation(None, f"the recommended {file} was re-exported since (its bytes changed): bench again")
    if chosen.get("bundle_id") and chosen["bundle_id"] != results.identity(manifest):
        return Recommendation(None, "the recommendation belongs to a bundle trained or imported before this one")
    c = d.get("constraints") if isinstance(d.get("constraints"), dict) else {}
    own = [r for r in results.current(manifest, "verify")  # rows a stranger wrote may lack fields: .get
           if r.get("file") == file and r.get("runtime") in (None, "", art["format"])]
    if not own:
        return Recommendation(None, f"the recommended {file} has no current parity result (re-exported or verified "
                                    "again since): verify and bench again")
    allowed = {"pass"} | ({"inconclusive"} if c.get("accept_inconclusive") else set())
    bad = [r.get("outcome") for r in own if r.get("outcome") not in allowed]
    if bad:
        return Recommendation(None, f"the recommended {file}'s parity is now {bad[0]} (verified again since the "
                                    "recommendation): bench again")
    batch = c.get("for_batch")
    timed = [r for r in results.current(manifest, "bench")
             if r.get("file") == file and r.get("runtime") == art["format"]
             and (batch is None or r.get("batch") == batch)]
    if not timed:
        return Recommendation(None, f"the recommended {file} has no current bench result at batch {batch}")
    return Recommendation(art, f"the bundle's recommendation ({art['format']} {art['precision']}, chosen by bench "
                               f"at batch {batch})")
