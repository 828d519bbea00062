"""`edgecls import`: a Keras classifier made elsewhere + a labelled folder -> a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import EdgeclsError
from ..report.console import render_import
from .common import _emit_json, handled


def _floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise EdgeclsError(f"{option} {value!r}: expected comma-separated numbers, e.g. 123.7,116.3,103.5") from None


@handled
def import_model(
    model: Annotated[Path, typer.Argument(help="A .keras or .h5 file, or a SavedModel folder.", show_default=False)],
    data: Annotated[str, typer.Option(help="A folder root/<class>/<image> (or a bundled dataset: digits, "
                                           "fashion-mnist, synthetic).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(help="Bundle folder (default models/<data>-imported).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle folder (atomically).")] = False,
    labels: Annotated[Optional[Path], typer.Option(
        help="Class names in the model's output order, one a line (default: the folder's class names, "
             "sorted).")] = None,
    scale: Annotated[Optional[float], typer.Option(help="The model expects pixel * SCALE (+ --offset), e.g. "
                                                        "0.00392157 for 0-1.")] = None,
    offset: Annotated[Optional[float], typer.Option(help="...plus OFFSET, e.g. -1 with --scale 0.00784314 for "
                                                         "-1..1.")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Then minus MEAN per channel (comma-separated, 1 or C "
                                                     "values, in the model's channel order).")] = None,
    std: Annotated[Optional[str], typer.Option(help="...divided by STD per channel.")] = None,
    channels_order: Annotated[str, typer.Option(help="rgb, or bgr: the model was trained on BGR images "
                                                     "(Caffe-style, e.g. Keras' ResNet50).")] = "rgb",
    raw_pixels: Annotated[bool, typer.Option("--raw-pixels", help="The model takes 0-255 pixels as they are "
                                                                  "(needed only when it has no normalising layer "
                                                                  "at its input).")] = False,
    output: Annotated[str, typer.Option(help="auto (read from the model), probabilities or logits.")] = "auto",
    image_size: Annotated[Optional[int], typer.Option(help="For a model that takes any size: the side to decode "
                                                           "images at.")] = None,
    test_split: Annotated[float, typer.Option(help="Held-out fraction (stratified).")] = 0.2,
    val_split: Annotated[float, typer.Option(help="Validation fraction of the rest (int8 judging).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="A stratified subset of this many images.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images instead of refusing.")
                        ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundle's import record as JSON.")] = False,
):
    """Import a Keras classifier made elsewhere: a bundle that export, verify, bench, app, golden and report
    treat like a trained one.

    The input size and channels are read from the model; the data are split as training splits them and
    the model's held-out accuracy and the pixel baseline recorded. A model that normalises its pixels itself
    (a Rescaling or Normalization layer, as Keras Applications have) needs nothing more; otherwise say what it
    expects with --scale/--offset or --mean/--std (and --channels-order): edgecls bakes it into the bundle's
    model as its first layer, so every exported file takes raw 0-255 pixels. A logits model gets a Softmax.

    Examples:

      edgecls import mobilenet.keras --data ~/pets

      edgecls import resnet50.keras --data ~/pets --mean 103.939,116.779,123.68 --channels-order bgr

      edgecls import exported_savedmodel/ --data ~/pets --scale 0.00392157 --labels classes.txt --out models/pets

    Then: edgecls export --int8 BUNDLE; edgecls verify BUNDLE; edgecls bench BUNDLE; edgecls report BUNDLE.
    """
    from ..train.importer import ImportConfig
    from ..train.importer import import_model as run

    cfg = ImportConfig(model=model, data=data, out=out, force=force, labels=labels, scale=scale, offset=offset,
                       mean=_floats(mean, "--mean"), std=_floats(std, "--std"), channels_order=channels_order,
                       raw=raw_pixels, output=output, image_size=image_size, test_split=test_split,
                       val_split=val_split, seed=seed, limit=limit, skip_bad=skip_bad)
    result = run(cfg)
    if as_json:
        m = result.manifest
        _emit_json({"bundle": str(result.bundle), "imported": m["imported"], "input": m["input"],
                    "labels": m["labels"], "metrics": m["metrics"], "baseline": m["baseline"]})
    else:
        render_import(result)
