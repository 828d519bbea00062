"""`edgecls pipeline`: the main job end to end, ending with the artifact to ship."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.bundle import Bundle
from ..core.errors import EdgeclsError
from ..core.gates import MAX_DROP_HELP
from ..pipeline import PipelineConfig
from ..report.console import (
    err,
    parity_outcomes,
    render_bench,
    render_export,
    render_import,
    render_metrics,
    render_note,
    render_verify,
)
from ..runtimes import RUNTIMES
from .common import (
    AcceptInconclusive,
    ArchOpt,
    BackboneSizeOpt,
    ForBatch,
    ImagesOpt,
    MaxLatency,
    MaxSize,
    Percentile,
    PercentileOpt,
    PretrainedOpt,
    TieMargin,
    _choices,
    _emit_json,
    _ints,
    handled,
)
from .progress import TrainView

DEFAULTS = PipelineConfig()  # the options' defaults are the library's
DEFAULT_PERCENTILE = Percentile(DEFAULTS.bench.constraints.percentile)


@handled
def pipeline(
    data: Annotated[str, typer.Option(help="Dataset (see 'edgecls train --help').")] = DEFAULTS.train.data,
    arch: ArchOpt = DEFAULTS.train.arch,
    pretrained: PretrainedOpt = DEFAULTS.train.pretrained,
    backbone_size: BackboneSizeOpt = DEFAULTS.train.backbone_size,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder.")] = DEFAULTS.train.out,
    seed: Annotated[int, typer.Option(help="Seed.")] = DEFAULTS.train.seed,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: from the data's size).")
                      ] = DEFAULTS.train.epochs,
    batch: Annotated[str, typer.Option(help="Bench batch sizes.")] = ",".join(map(str, DEFAULTS.bench.batches)),
    runtime: Annotated[str, typer.Option(
        help=f"Runtimes to bench and recommend from (comma-separated: {_choices(RUNTIMES)}, or all).")] = "all",
    for_batch: ForBatch = DEFAULTS.bench.constraints.for_batch,
    max_latency: MaxLatency = DEFAULTS.bench.constraints.max_latency_ms,
    percentile: PercentileOpt = DEFAULT_PERCENTILE,
    max_size: MaxSize = DEFAULTS.bench.constraints.max_size_kb,
    max_drop: Annotated[float, typer.Option(
        help="int8 gate for export, verify and the recommendation alike: " + MAX_DROP_HELP + ".")
    ] = DEFAULTS.max_drop,
    tie_margin: TieMargin = DEFAULTS.bench.constraints.tie_margin,
    accept_inconclusive: AcceptInconclusive = DEFAULTS.bench.constraints.accept_inconclusive,
    images: ImagesOpt = DEFAULTS.images,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Skip unreadable files in the --data folder and the --images folder (and count them) "
                           "instead of refusing.")] = DEFAULTS.skip_bad,
    qat_auto: Annotated[bool, typer.Option(
        "--qat-auto", help="Make again from a quantization-aware fine-tune (QAT) the int8 files that miss the "
                           "gate after the accuracy-aware recipes (edgecls[qat]; said and recorded).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print every stage's result as JSON (tables and "
                                                          "progress go to stderr).")] = False,
    model: Annotated[Optional[Path], typer.Option(help="Import this Keras model (.keras, .h5, SavedModel folder) "
                                                       "with --data instead of training one (see 'edgecls import "
                                                       "--help'); --out is replaced whole.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="With --model: class names in its output order.")] = None,
    scale: Annotated[Optional[float], typer.Option(help="With --model: it expects pixel * SCALE (+ --offset).")
                     ] = None,
    offset: Annotated[Optional[float], typer.Option(help="With --model: ...plus OFFSET.")] = None,
    mean: Annotated[Optional[str], typer.Option(help="With --model: then minus MEAN per channel.")] = None,
    std: Annotated[Optional[str], typer.Option(help="With --model: ...divided by STD per channel.")] = None,
    channels_order: Annotated[str, typer.Option(help="With --model: rgb, or bgr.")] = "rgb",
    raw_pixels: Annotated[bool, typer.Option("--raw-pixels", help="With --model: it takes 0-255 pixels as they "
                                                                  "are.")] = False,
):
    """The main job end to end: train, export (float and int8), verify, bench, report — and the answer:
    the artifact to ship.

    With no arguments it runs on the bundled digits dataset and writes models/digits-small/
    (report.html and report.md inside). Exit 0 when a file ships (what stopped the others is said
    beside it); exit 1 when nothing qualifies, with what evidence would change that.

    Examples:

      edgecls pipeline

      edgecls pipeline --data ~/pets --for-batch 1 --max-latency 2 --max-size 200

      edgecls pipeline --data ~/pets --arch efficientnet-lite0      # ImageNet-pretrained, fine-tuned

      edgecls pipeline --model mobilenet.keras --data ~/pets        # your own model: import, then the rest

      edgecls pipeline --data ~/pets --images ~/more-pets  # unlabelled photos judge the int8 files
    """
    import dataclasses

    from ..bench.decide import Constraints
    from ..bench.latency import MIN_RUNS
    from ..pipeline import run
    from ..report.console import render_decision, use_stderr

    defaults = PipelineConfig()
    cfg = dataclasses.replace(
        defaults, train=dataclasses.replace(defaults.train, data=data, arch=arch,
                                            pretrained=pretrained, backbone_size=backbone_size, out=out_dir,
                                            seed=seed, epochs=epochs, skip_bad=skip_bad),
        bench=dataclasses.replace(defaults.bench, batches=_ints(batch, "--batch"), runtimes=runtime,
                                  # pipeline has no --min-runs: enough runs for the tail it is asked to bound
                                  min_runs=max(defaults.bench.min_runs, -(-MIN_RUNS[percentile.value]
                                                                          // defaults.bench.rounds)),
                                  constraints=Constraints(for_batch, max_latency, percentile.value, max_size,
                                                          max_drop, tie_margin=tie_margin,
                                                          accept_inconclusive=accept_inconclusive)),
        export=dataclasses.replace(defaults.export, qat="auto" if qat_auto else "off"),
        max_drop=max_drop, images=images, skip_bad=skip_bad)
    if model is not None:
        from ..train.importer import ImportConfig
        from .import_ import _floats

        cfg.imported = ImportConfig(model=model, data=data, out=out_dir, force=True, labels=labels, scale=scale,
                                    offset=offset, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
                                    channels_order=channels_order, raw=raw_pixels, seed=seed, skip_bad=skip_bad)
    elif any(v is not None for v in (labels, scale, offset, mean, std)) or raw_pixels or channels_order != "rgb":
        raise EdgeclsError("--labels, --scale, --offset, --mean, --std, --channels-order and --raw-pixels describe "
                           "an imported model: add --model FILE")

    class View(TrainView):  # train's progress, then each stage's result (no per-file lines for export/verify/bench)
        def stage(self, name, result):
            if name in ("train", "import"):
                self.bundle = result.bundle
            if name == "train":
                self.progress.stop()
                render_metrics(result.manifest)
                err.print("[bold]export[/] (float32 and int8) …")
            elif name == "import":
                render_import(result)
                err.print("[bold]export[/] (float32 and int8) …")
            elif name == "export":
                render_export(result, str(getattr(self, "bundle", None) or "BUNDLE"))
                err.print("[bold]verify[/] …")
            elif name == "verify":
                render_verify(result)
                err.print("[bold]bench[/] (each configuration in a fresh process) …")
            elif name == "bench":
                render_bench(result, parity_outcomes(Bundle.open(self.bundle).manifest))
                render_decision(result.decision)
            elif name == "report":
                render_note(f"report: [bold]{result}[/]")

    view = View(err)
    try:
        with use_stderr(as_json):  # with --json, stdout carries the JSON alone
            result = run(cfg, hooks=view)
    finally:
        if view.progress.live.is_started:  # stopping one never started prints a blank line
            view.progress.stop()
    if as_json:
        _emit_json(result.to_dict())
    if not result.passed:
        raise typer.Exit(1)
