"""`edgecls platform setup|status`: the emulated userland that `verify --platform` runs in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..report.console import err, out, size_text
from .common import _emit_json, handled

platform_app = typer.Typer(help="Emulated platforms for 'edgecls verify --platform' (arm64 under qemu-user).",
                           no_args_is_help=True)

CacheDir = Annotated[Optional[Path], typer.Option(
    help="Cache folder (default $EDGECLS_PLATFORM_CACHE, else ~/.cache/edgecls/platforms).")]


@platform_app.command("setup")
@handled
def setup(
    name: Annotated[str, typer.Argument(help="Platform: arm64.")],
    offline: Annotated[bool, typer.Option("--offline", help="Fetch nothing: fail, saying what is missing, unless "
                                                            "the cache is already complete.")] = False,
    cache_dir: CacheDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cache's state as JSON.")] = False,
):
    """Build (or check) the cache an emulated verify runs in: Debian's arm64 Python and libraries and
    qemu-user 10 through apt (a private configuration: the system's sources are not touched), the aarch64
    wheels of this machine's runtime versions through pip. Re-running is a no-op; a half-built cache or
    one for other runtime versions is rebuilt, and this says why. About 360 MB on disk (1.2 GB free while
    building), about a minute on a fast mirror (docs/platforms.md).

    Examples:

      edgecls platform setup arm64

      edgecls platform setup arm64 --offline         # CI: use the cache, never fetch
    """
    from ..platforms import cache, platform

    p = platform(name)
    result = cache.setup(p, cache_dir, offline=offline, log=lambda line: err.print(line, highlight=False))
    if as_json:
        _emit_json(result.to_dict())
        return
    for why in result.replaced:
        err.print(f"[yellow]rebuilt: {why}[/]", soft_wrap=True, highlight=False)
    _render(result.to_dict(), "built in %.0f s" % result.seconds if result.built else "already complete (nothing "
                                                                                       "fetched)")


@platform_app.command("status")
@handled
def status(
    name: Annotated[str, typer.Argument(help="Platform: arm64.")],
    cache_dir: CacheDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cache's state as JSON.")] = False,
):
    """Say whether the platform's cache is complete for this machine's runtime versions (fetches nothing)."""
    from ..platforms import cache, platform

    state = cache.inspect(platform(name), cache_dir)
    m = state.manifest or {}
    info = {"folder": str(state.folder), "status": state.status, "reasons": state.reasons, "bytes": m.get("bytes"),
            "runtimes": m.get("runtimes"), "missing": (m.get("wheels") or {}).get("missing"),
            "qemu": (m.get("qemu") or {}).get("version"), "python": (m.get("python") or {}).get("version")}
    if as_json:
        _emit_json(info)
    else:
        _render(info, state.status + (": " + "; ".join(state.reasons) if state.reasons else ""))
    if not state.usable:
        raise typer.Exit(1)


def _render(info: dict, how: str) -> None:
    out.print(f"{info['folder']}: {how}", soft_wrap=True, highlight=False)
    if info.get("bytes"):
        out.print(f"  {size_text(info['bytes'])} on disk; qemu-user {info['qemu']}, Python {info['python']}; runtimes: "
                  + ", ".join(f"{k} {v}" for k, v in (info.get("runtimes") or {}).items()),
                  soft_wrap=True, highlight=False)
    for runtime, why in (info.get("missing") or {}).items():
        out.print(f"  [yellow]{runtime}: not in the cache: {why}[/]", soft_wrap=True, highlight=False)
