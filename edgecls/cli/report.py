"""`edgecls report`: report.html and report.md rendered again from the manifest, nothing rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..report.console import render_note
from .common import DEFAULT_BUNDLE, _emit_json, handled


@handled
def report(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the files written as JSON.")] = False,
):
    """Write report.html and report.md again from what the manifest holds now, running nothing.

    After a later export, verify, bench or import: report.html (self-contained) and report.md with its
    figures, recorded in the manifest; pipeline writes its report with the same code.

    Example: edgecls report models/pets-imported
    """
    from ..report.document import write_report

    path = write_report(bundle)
    if as_json:
        _emit_json({"report": str(path), "markdown": str(path.with_name("report.md"))})
    else:
        render_note(f"report: [bold]{path}[/] (and {path.with_name('report.md')})")
