"""The `edgecls` command line: parse options, call the library, render results. No logic here."""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .distribute import Strategy
from .errors import EdgeclsError
from .models import ARCHITECTURES
from .names import Device, Format, Precision, Runtime
from .render import (
    TrainView,
    err,
    human,
    out,
    render_bench,
    render_explain,
    render_export,
    render_golden,
    render_info,
    render_metrics,
    render_note,
    render_predict,
    render_verify,
)

app = typer.Typer(
    help="Train small image classifiers and ship them to edge devices: ONNX, TFLite and OpenVINO, "
         "float and int8, verified against Keras and benchmarked.",
    no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode="rich",
    add_completion=False)

Arch = enum.Enum("Arch", {n: n for n in ARCHITECTURES}, type=str)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
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


# ----------------------------------------------------------------------------- train


@app.command()
@handled
def train(
    data: Annotated[str, typer.Option(help="Dataset: digits (default, bundled), fashion-mnist, synthetic "
                                           "(tiny generated images, for tests only), or a folder "
                                           "root/<class>/<image>.")] = "digits",
    arch: Annotated[Arch, typer.Option(help="Architecture.")] = Arch.small,
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

      edgecls train --data /data/big --cache /scratch/edgecls-cache

      TF_CONFIG='{"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        edgecls train --strategy multiworker     # on each machine, its own task
    """
    from .train import TrainConfig
    from .train import train as run

    cfg = TrainConfig(data=data, arch=arch.value, epochs=epochs, batch_size=batch_size, lr=lr,
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


# ----------------------------------------------------------------------------- export

DEFAULT_BUNDLE = Path("models/digits-small")


def _choices(kind) -> str:
    return ",".join(m.value for m in kind)


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


def _finish_with_decision(decision, verified: bool) -> None:
    """Render the recommendation; exit 1 when nothing qualifies (after verify: otherwise say what to run)."""
    from .render import render_decision

    if not verified:
        render_note("recommendation: none yet: parity is unknown (run 'edgecls verify', then bench again)")
        return
    render_decision(decision)
    if not decision.found:
        raise typer.Exit(1)


@app.command()
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
    from .export import ExportConfig
    from .export import export as run
    from .names import parse

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


# ----------------------------------------------------------------------------- verify


@app.command()
@handled
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    runtime: Annotated[str, typer.Option(help=f"Comma-separated: {_choices(Format)}, or all.")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (no silent CPU fallback).")] = Device.cpu,
    threads: Annotated[Optional[int], typer.Option(help="Threads for every runtime.")] = None,
    max_drop: Annotated[float, typer.Option(help="int8 gate: accuracy points it may lose vs Keras.")] = 1.0,
    ov_precision: Annotated[str, typer.Option(
        help="OpenVINO: what float parts compute in: f32 (parity), or bf16/f16 to measure those on purpose.")] = "f32",
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also, for each int8 artifact, a per-layer table of SQNR vs the float model, flagged "
                          "where the error jumps (each vendor's tool, 32 held-out images).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
):
    """Prove each exported model still gives the Keras model's answers on the held-out images.

    Float artifacts must agree on top-1 for >= 99.9% of images with max |Δp| <= 1e-4; int8
    artifacts may lose at most --max-drop accuracy points. Exit 1 when any gate fails.

    Examples:

      edgecls verify                               # models/digits-small, every artifact

      edgecls verify models/fashion-mnist-small --runtime onnx,tflite --max-drop 0.5

      edgecls verify --explain                     # and where each int8 file loses precision, layer by layer
    """

    from .verify import verify as run

    if explain:  # before any work: a bundle with no int8 artifact is a usage error
        from .bundle import Bundle
        from .explain import int8_artifacts

        int8_artifacts(Bundle.open(bundle), runtime)
    result = run(bundle, runtime_names=runtime, device=device, threads=threads, max_drop=max_drop,
                 runtime_options={"compute": ov_precision}, data_dir=data_dir)
    explanations = None
    if explain:
        from .explain import explain as explain_layers

        explanations = explain_layers(bundle, runtime, data_dir=data_dir)
    if as_json:
        _emit_json(result.to_dict() | ({"explain": [e.to_dict() for e in explanations]} if explain else {}))
    else:
        render_verify(result)
        if explain:
            render_explain(explanations)
    if not result.passed:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- bench


def _ints(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise EdgeclsError(f"{option} {value!r}: expected comma-separated whole numbers, e.g. 1,8,32") from None


@app.command()
@handled
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    runtime: Annotated[str, typer.Option(help=f"Comma-separated: {_choices(Runtime)}, or all.")] = "all",
    precision: Annotated[str, typer.Option(
        help=f"Comma-separated: {_choices(Precision)}, or all (fp32,int8).")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (a clear error where there is none).")] = Device.cpu,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes, e.g. 1,8,32.")] = "1",
    threads: Annotated[Optional[int], typer.Option(
        help="Threads for every runtime (default: the number of physical cores, the same for all).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the first inference.")] = 10,
    min_runs: Annotated[int, typer.Option(help="At least this many timed runs...")] = 50,
    min_time: Annotated[float, typer.Option(help="...and at least this many seconds of them.")] = 1.0,
    rounds: Annotated[int, typer.Option(help="Measure each configuration this many times, taking turns with the "
                                             "others, timings pooled: steadier ratios on a busy machine.")] = 1,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write results as JSON ('-': stdout).")] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Write results as CSV.")] = None,
    for_batch: ForBatch = None,
    max_latency: MaxLatency = None,
    percentile: PercentileOpt = Percentile.p90,
    max_size: MaxSize = None,
    max_drop: Annotated[Optional[float], typer.Option(
        help="Recommend only artifacts losing at most this many accuracy points vs Keras.")] = None,
):
    """Measure latency and throughput of every runtime x precision (x batch size), each in a fresh process,
    then recommend the artifact to ship: the fastest at --for-batch among those that pass parity, under
    the constraints given. Exit 1 when none qualifies.

    Examples:

      edgecls bench                                        # every available runtime, fp32 and int8, batch 1

      edgecls bench --batch 1,32 --for-batch 32 --max-size 100 --max-latency 5 --percentile p99

      edgecls bench --runtime onnx,openvino --batch 1,32 --threads 1 --csv bench.csv

      edgecls bench --rounds 3 --min-time 0.5                # 3 interleaved rounds per configuration
    """
    from .bench import BenchConfig, to_csv
    from .bench import bench as run
    from .bundle import Bundle, atomic_write, ensure_writable
    from .decide import Constraints
    from .render import use_stderr

    for option, path in (("--json", json_file), ("--csv", csv_file)):
        if path is not None and str(path) != "-":
            ensure_writable(path, option)  # before minutes of measuring
    cfg = BenchConfig(runtimes=runtime, precisions=precision, device=device,
                      batches=_ints(batch, "--batch"), threads=threads, warmup=warmup, min_runs=min_runs,
                      min_time=min_time, rounds=rounds,
                      constraints=Constraints(for_batch, max_latency, percentile.value, max_size, max_drop))

    def progress(row):
        done = f"round {row['round']}/{row['rounds']}" if "round" in row else f"{row['runs']} runs"
        err.print(f"{row['runtime']} {row['precision']} batch {row['batch']}: p50 {row['p50_ms']:.3f} ms ({done})",
                  highlight=False)

    result = run(bundle, cfg, progress)
    if json_file is not None and str(json_file) == "-":
        _emit_json(result.to_dict())
    else:
        render_bench(result)
        if json_file is not None:
            atomic_write(json_file, json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    if csv_file is not None:
        atomic_write(csv_file, to_csv(result.rows))
    with use_stderr(json_file is not None and str(json_file) == "-"):  # stdout carries the JSON alone
        _finish_with_decision(result.decision, "verify" in Bundle.open(bundle).manifest)


# ----------------------------------------------------------------------------- predict


@app.command()
@handled
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    bundle: Annotated[Path, typer.Option(help="Bundle folder.")] = DEFAULT_BUNDLE,
    fmt: Annotated[Optional[Format], typer.Option("--format", help="Format (default: the first exported of "
                                                                   "onnx, openvino, tflite).")] = None,
    precision: Annotated[Precision, typer.Option(help="Precision.")] = Precision.fp32,
    top: Annotated[int, typer.Option(help="How many classes to show per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
):
    """Classify image files with an exported model (no TensorFlow needed).

    Example: edgecls predict photo1.png photo2.jpg --bundle models/digits-small --format tflite --precision int8
    """
    from .runtime import Classifier

    if top < 1:
        raise EdgeclsError(f"--top {top}: must be at least 1")
    clf = Classifier.open(bundle, format=fmt, precision=precision)
    result = clf.classify_files(images, top=top)
    if as_json:
        _emit_json(result.to_json())
    else:
        render_predict(result)


# ----------------------------------------------------------------------------- golden


@app.command()
@handled
def golden(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (exported).")] = DEFAULT_BUNDLE,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder to write (default BUNDLE/golden); "
                                                    "replaced whole.")] = None,
    count: Annotated[int, typer.Option(help="Held-out images, stratified.")] = 4,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print golden.json to stdout.")] = False,
):
    """Write golden vectors for native ports: images, exact input tensors, every artifact's probabilities.

    A C++, Android or iOS app decodes the images, compares its input with the .npy tensors and its
    output with golden.json's probabilities, within the tolerances listed there (docs/embedding.md).

    Examples:

      edgecls golden                                   # models/digits-small/golden/

      edgecls golden models/pets-mobile --out app/src/test/golden --count 8
    """
    from .golden import write_golden

    result = write_golden(bundle, out=out_dir, count=count, data_dir=data_dir)
    if as_json:
        _emit_json(result.index)
    else:
        render_golden(result)


# ----------------------------------------------------------------------------- info


@app.command()
@handled
def info(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = Path("models/digits-small"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
):
    """Show a bundle: dataset, input spec, metrics and every artifact with its size and hash check.

    Example: edgecls info models/digits-small
    """
    from .bundle import Bundle

    b = Bundle.open(bundle)
    m = b.manifest
    if as_json:
        _emit_json({k: v for k, v in m.items() if k != "dataset"} | {
            "dataset": {k: v for k, v in m["dataset"].items() if k != "split"}})
        return
    render_info(b.info())


# ----------------------------------------------------------------------------- pipeline


@app.command()
@handled
def pipeline(
    data: Annotated[str, typer.Option(help="Dataset (see 'edgecls train --help').")] = "digits",
    arch: Annotated[Arch, typer.Option(help="Architecture.")] = Arch.small,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: from the data's size).")] = None,
    batch: Annotated[str, typer.Option(help="Bench batch sizes.")] = "1,32",
    runtime: Annotated[str, typer.Option(
        help=f"Runtimes to bench and recommend from (comma-separated: {_choices(Runtime)}, or all).")] = "all",
    for_batch: ForBatch = None,
    max_latency: MaxLatency = None,
    percentile: PercentileOpt = Percentile.p90,
    max_size: MaxSize = None,
    max_drop: Annotated[float, typer.Option(
        help="int8 gate (accuracy points it may lose vs Keras) and the recommendation's limit.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every stage's result as JSON (tables and "
                                                          "progress go to stderr).")] = False,
):
    """The main job end to end: train, export (float and int8), verify, bench, report — and the answer:
    the artifact to ship.

    With no arguments it runs on the bundled digits dataset and writes models/digits-small/
    (report.html and report.md inside). Exit 1 if an export or a parity gate fails, or nothing
    qualifies under the constraints.

    Examples:

      edgecls pipeline

      edgecls pipeline --data ~/pets --for-batch 1 --max-latency 2 --max-size 200
    """
    import dataclasses

    from .decide import Constraints
    from .pipeline import PipelineConfig, PipelineHooks, run
    from .render import render_decision, use_stderr

    defaults = PipelineConfig()
    cfg = dataclasses.replace(
        defaults, train=dataclasses.replace(defaults.train, data=data, arch=arch.value, out=out_dir, seed=seed,
                                            epochs=epochs),
        bench=dataclasses.replace(defaults.bench, batches=_ints(batch, "--batch"), runtimes=runtime,
                                  constraints=Constraints(for_batch, max_latency, percentile.value, max_size,
                                                          max_drop)),
        max_drop=max_drop)
    view = TrainView(err)

    class Hooks(PipelineHooks):
        def stage(self, name, result):
            if name == "train":
                view.progress.stop()
                render_metrics(result.manifest)
                err.print("[bold]export[/] (float32 and int8) …")
            elif name == "export":
                render_export(result)
                err.print("[bold]verify[/] …")
            elif name == "verify":
                render_verify(result)
                err.print("[bold]bench[/] (each configuration in a fresh process) …")
            elif name == "bench":
                render_bench(result)
                render_decision(result.decision)
            elif name == "report":
                render_note(f"report: [bold]{result}[/]")

    try:
        with use_stderr(as_json):  # with --json, stdout carries the JSON alone
            result = run(cfg, view, Hooks())
    finally:
        view.progress.stop()
    if as_json:
        _emit_json(result.to_dict())
    if not result.passed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
