"""The `edgecls` command line: parse options, call the library, render results. No logic here.

One Typer app; each command lives in the module named for what it does and is registered here.
"""

from __future__ import annotations

import typer

from . import app as app_cmd
from . import bench, bundle, export, import_, pipeline, report, train, tune, verify
from .platform import platform_app

app = typer.Typer(
    help="Train small image classifiers and ship them to edge devices: ONNX, TFLite and OpenVINO, "
         "float and int8, verified against Keras and benchmarked.",
    no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode="rich",
    add_completion=False)

for command in (train.train, export.export, verify.verify, bench.bench, bundle.predict, bundle.golden, bundle.info,
                pipeline.pipeline, tune.tune, app_cmd.app):
    app.command()(command)
app.add_typer(platform_app, name="platform")
app.command(name="import")(import_.import_model)
app.command()(report.report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
