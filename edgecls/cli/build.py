"""`edgecls train` and `edgecls export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..distribute import Strategy
from ..names import Format
from ..render import (
    TrainView,
    err,
    human,
    out,
    render_export,
    render_metrics,
    render_note,
)
from .common import (
    DEFAULT_BUNDLE,
    ArchOpt,
    BackboneSizeOpt,
    FineTuneOpt,
    PretrainedOpt,
    _choices,
    _emit_json,
    handled,
)


@handled
def train(
    data: Annotated[str, typer.Option(help="Dataset: digits (default, bundled), fashion-mnist, synthetic "
                                           "(tiny generated images, for tests only), or a folder "
                                           "root/<class>/<image>.")] = "digits",
    arch: ArchOpt = None,
    pretrained: PretrainedOpt = True,
    backbone_size: BackboneSizeOpt = None,
    fine_tune_blocks: FineTuneOpt = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="Epochs (default: from the data's size, at least 1,000 optimiser steps; early stopping "
             "where the validation set has 200+ images).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Batch size (default: 16 under 512 training images, 32 under 1,024, else 64).")] = None,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (warm-up, then cosine decay).")] = 3e-3,
    image_size: Annotated[Optional[int], typer.Option(
        help="Input size in pixels (default: digits 32, fashion-mnist 28, synthetic 16, folder 64).")] = None,
    val_split: Annotated[float, typer.Option(help="Validation fraction of the training part.")] = 0.1,
    test_split: Annotated[float, typer.Option(
        help="Held-out fraction (sources without an official test split).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Fixes split, initialisation and augmentation.")] = 0,
    augment: Annotated[bool, typer.Option(help="Random flip/rotation during training.")] = True,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = 5,
    width: Annotated[float, typer.Option(help="Width multiplier (mobile).")] = 1.0,
    limit: Annotated[Optional[int], typer.Option(help="Use a stratified subset of N images.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(
        help="Folder of the Fashion-MNIST IDX files (default $EDGECLS_FASHION_MNIST_DIR or "
             "/usr/share/datasets/fashion-mnist).")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable image files (and count them).")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder (default "
                                                    "models/<dataset>-<arch>).")] = None,
    cache: Annotated[Optional[Path], typer.Option(
        help="Folder for an on-disk cache of decoded images (large folders: decoded once, not every "
             "epoch). Small folders are cached in memory anyway.")] = None,
    strategy: Annotated[Strategy, typer.Option(
        help="default (one device), mirrored (every local GPU) or multiworker (the machines in "
             "TF_CONFIG; see docs/scale.md).")] = Strategy.default,
    worker_timeout: Annotated[float, typer.Option(
        help="multiworker: seconds to wait for every worker to come up.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Train a CNN and write the bundle (manifest.json, model.keras, history.json).

    Examples:

      edgecls train                                  # digits, small CNN → models/digits-small

      edgecls train --data fashion-mnist --epochs 15

      edgecls train --data ~/pets --arch mobile --image-size 96 --skip-bad

      edgecls train --data ~/pets --arch efficientnet-lite0 --backbone-size 160   # ImageNet-pretrained

      edgecls train --data /data/big --cache /scratch/edgecls-cache

      TF_CONFIG='{"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        edgecls train --strategy multiworker     # on each machine, its own task
    """
    from ..train import TrainConfig
    from ..train import train as run

    cfg = TrainConfig(data=data, arch=arch.value if arch else None, pretrained=pretrained,
                      backbone_size=backbone_size, fine_tune_blocks=fine_tune_blocks, epochs=epochs,
                      batch_size=batch_size, lr=lr,
                      image_size=image_size, val_split=val_split, test_split=test_split, seed=seed,
                      augment=augment, patience=patience, width=width, limit=limit, data_dir=data_dir,
                      skip_bad=skip_bad, out=out_dir, cache=cache, strategy=strategy.value,
                      worker_timeout=worker_timeout)
    view = TrainView(err)
    try:
        result = run(cfg, view)
    finally:
        view.progress.stop()
    if not result.written:  # a worker that is not the chief: the chief writes the bundle
        if as_json:
            _emit_json({"bundle": None, "history": result.history})
        else:
            render_note("training done on this worker; the chief writes the bundle")
    elif as_json:
        m = result.manifest
        _emit_json({"bundle": str(result.bundle), "metrics": m["metrics"], "baseline": m["baseline"],
                    "training": m["training"], "history": result.history})
    else:
        render_metrics(result.manifest)
        out.print(f"bundle written: [bold]{result.bundle}[/]")
    if result.interrupted:
        raise typer.Exit(130)


@handled
def export(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    int8: Annotated[bool, typer.Option(help="Also write the int8 form of each format.")] = False,
    fp16: Annotated[bool, typer.Option(help="Also write float16 TFLite and OpenVINO.")] = False,
    fmt: Annotated[str, typer.Option("--format", help=f"Comma-separated: {_choices(Format)}, or all.")] = "all",
    calib_size: Annotated[int, typer.Option(
        help="Calibration images for int8 (from the training split, at most half of it).")] = 300,
    reference_size: Annotated[int, typer.Option(
        help="Held-out images stored in reference.npz with the Keras probabilities, so verify and bench run "
             "on a device without TensorFlow or the dataset (at most 2048).")] = 256,
    max_drop: Annotated[float, typer.Option(
        help="int8 gate at export, as verify's: accuracy points an int8 file may lose vs Keras on the "
             "validation + unseen training images; a file that misses it is re-made with the format's "
             "accuracy-aware recipe.")] = 1.0,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the artifacts as JSON.")] = False,
):
    """Export the bundle's model to ONNX, TFLite and OpenVINO IR (float32; --int8, --fp16 add more).

    Every file is loaded by its runtime and run on a few held-out images right after writing,
    and recorded with its sha256 in manifest.json. Each int8 file is judged with verify's gate on
    images that are not held out; one that misses it is re-made with the format's accuracy-aware
    recipe (some layers left in float). Exit 1 if any format failed or an int8 file misses the gate.

    Examples:

      edgecls export --int8                       # all formats, float32 and int8

      edgecls export models/pets-mobile --format onnx,tflite --fp16
    """
    from ..export import ExportConfig
    from ..export import export as run
    from ..names import parse

    cfg = ExportConfig(formats=parse(Format, fmt, "--format") or list(Format), int8=int8, fp16=fp16,
                       calib_size=calib_size, data_dir=data_dir, reference_size=reference_size, max_drop=max_drop)

    def progress(entry, failure):
        if entry:
            err.print(f"wrote {entry['file']} ({human(entry['total_bytes'])}, {entry['export_seconds']:.1f}s)",
                      highlight=False)

    result = run(bundle, cfg, progress)
    if as_json:
        _emit_json({"artifacts": result.artifacts, "failures": result.failures})
    else:
        render_export(result)
    if not result.passed:
        raise typer.Exit(1)
