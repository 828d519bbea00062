"""`edgecls train`: a model (the scratch CNN, a pretrained backbone, ...) on a dataset or a folder, as a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..report.console import err, out, render_metrics, render_note
from ..train import sources
from ..train.distribute import Strategy
from ..train.fit import TrainConfig
from .common import ArchOpt, BackboneSizeOpt, FineTuneOpt, PretrainedOpt, _emit_json, handled
from .progress import TrainView

DEFAULT_STRATEGY = Strategy(TrainConfig.strategy)


@handled
def train(
    data: Annotated[str, typer.Option(help=f"Dataset: {sources.described()}; or a folder "
                                           "root/<class>/<image>.")] = TrainConfig.data,
    arch: ArchOpt = TrainConfig.arch,
    pretrained: PretrainedOpt = TrainConfig.pretrained,
    backbone_size: BackboneSizeOpt = TrainConfig.backbone_size,
    fine_tune_blocks: FineTuneOpt = TrainConfig.fine_tune_blocks,
    epochs: Annotated[Optional[int], typer.Option(
        help="Epochs (default: from the data's size, at least 1,000 optimiser steps; early stopping "
             "where the validation set has 200+ images).")] = TrainConfig.epochs,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Batch size (default: 16 under 512 training images, 32 under 1,024, else 64).")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (warm-up, then cosine decay).")] = TrainConfig.lr,
    image_size: Annotated[Optional[int], typer.Option(
        help=f"Input size in pixels (default: {sources.image_sizes()}).")] = TrainConfig.image_size,
    val_split: Annotated[float, typer.Option(help="Validation fraction of the training part.")] = TrainConfig.val_split,
    test_split: Annotated[float, typer.Option(
        help="Held-out fraction (sources without an official test split).")] = TrainConfig.test_split,
    seed: Annotated[int, typer.Option(help="Fixes split, initialisation and augmentation.")] = TrainConfig.seed,
    augment: Annotated[bool, typer.Option(help="Random flip/rotation during training.")] = TrainConfig.augment,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = TrainConfig.patience,
    width: Annotated[float, typer.Option(help="Width multiplier (mobile).")] = TrainConfig.width,
    limit: Annotated[Optional[int], typer.Option(help="Use a stratified subset of N images.")] = TrainConfig.limit,
    data_dir: Annotated[Optional[str], typer.Option(
        help="Folder of the Fashion-MNIST IDX files (default $EDGECLS_FASHION_MNIST_DIR or "
             "/usr/share/datasets/fashion-mnist).")] = TrainConfig.data_dir,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable image files (and count them).")
                        ] = TrainConfig.skip_bad,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder (default "
                                                    "models/<dataset>-<arch>).")] = TrainConfig.out,
    cache: Annotated[Optional[Path], typer.Option(
        help="Folder for an on-disk cache of decoded images (large folders: decoded once, not every "
             "epoch). Small folders are cached in memory anyway.")] = TrainConfig.cache,
    strategy: Annotated[Strategy, typer.Option(
        help="default (one device), mirrored (every local GPU) or multiworker (the machines in "
             "TF_CONFIG; see docs/scale.md).")] = DEFAULT_STRATEGY,
    worker_timeout: Annotated[float, typer.Option(
        help="multiworker: seconds to wait for every worker to come up.")] = TrainConfig.worker_timeout,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Train a model and write the bundle (manifest.json, model.keras, history.json).

    Examples:

      edgecls train                                  # digits, small CNN → models/digits-small

      edgecls train --data fashion-mnist --epochs 15

      edgecls train --data ~/photos                  # colour photos: efficientnet-lite0 (says why)

      edgecls train --data ~/pets --arch mobile --image-size 96 --skip-bad

      edgecls train --data ~/pets --arch efficientnet-lite0 --backbone-size 160   # ImageNet-pretrained

      edgecls train --data /data/big --cache /scratch/edgecls-cache

      TF_CONFIG='{"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        edgecls train --strategy multiworker     # on each machine, its own task
    """
    options = dict(locals())  # the parameters, before any other name is bound
    from ..train.fit import train as run

    given = {name: value for name, value in options.items() if name in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**given | {"out": out_dir, "strategy": strategy.value})  # options named as the fields
    view = TrainView(err)
    try:
        result = run(cfg, hooks=view)
    finally:
        if view.progress.live.is_started:  # stopping one never started prints a blank line
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
