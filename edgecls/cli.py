"""The `edgecls` command line: parse options, call the library, render results. No logic here."""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .errors import EdgeclsError
from .models import ARCHITECTURES
from .render import TrainView, err, human, out, render_bench, render_export, render_metrics, render_verify
from .runtimes import Device

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
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation loss).")] = 40,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-3,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Train a CNN and write the bundle (manifest.json, model.keras, history.json).

    Examples:

      edgecls train                                  # digits, small CNN → models/digits-small

      edgecls train --data fashion-mnist --epochs 15

      edgecls train --data ~/pets --arch mobile --image-size 96 --skip-bad
    """
    from .train import TrainConfig
    from .train import train as run

    cfg = TrainConfig(data=data, arch=arch.value, epochs=epochs, batch_size=batch_size, lr=lr,
                      image_size=image_size, val_split=val_split, test_split=test_split, seed=seed,
                      augment=augment, patience=patience, width=width, limit=limit, data_dir=data_dir,
                      skip_bad=skip_bad, out=out_dir)
    view = TrainView(err)
    try:
        result = run(cfg, view)
    finally:
        view.progress.stop()
    if as_json:
        m = result.manifest
        _emit_json({"bundle": str(result.bundle), "metrics": m["metrics"], "training": m["training"],
                    "history": result.history})
    else:
        render_metrics(result.manifest)
        out.print(f"bundle written: [bold]{result.bundle}[/]")
    if result.interrupted:
        raise typer.Exit(130)


# ----------------------------------------------------------------------------- export

DEFAULT_BUNDLE = Path("models/digits-small")


def _names(value: str) -> list[str] | None:
    """A comma-separated option value as a list; None for "all"."""
    return None if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]


@app.command()
@handled
def export(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    int8: Annotated[bool, typer.Option(help="Also write the int8 form of each format.")] = False,
    fp16: Annotated[bool, typer.Option(help="Also write float16 TFLite and OpenVINO.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="Comma-separated: onnx,tflite,openvino, or all.")] = "all",
    calib_size: Annotated[int, typer.Option(help="Calibration images for int8 (from the training split).")] = 300,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the artifacts as JSON.")] = False,
):
    """Export the bundle's model to ONNX, TFLite and OpenVINO IR (float32; --int8, --fp16 add more).

    Every file is loaded by its runtime and run on a few held-out images right after writing,
    and recorded with its sha256 in manifest.json. Exit 1 if any format failed.

    Examples:

      edgecls export --int8                       # all formats, float32 and int8

      edgecls export models/pets-mobile --format onnx,tflite --fp16
    """
    from .export import FORMATS, ExportConfig
    from .export import export as run

    formats = _names(fmt)
    cfg = ExportConfig(formats=list(FORMATS) if formats is None else formats, int8=int8, fp16=fp16,
                       calib_size=calib_size, data_dir=data_dir)

    def progress(entry, failure):
        if entry:
            err.print(f"wrote {entry['file']} ({human(entry['total_bytes'])}, {entry['export_seconds']:.1f}s)",
                      highlight=False)

    result = run(bundle, cfg, progress)
    if as_json:
        _emit_json({"artifacts": result.artifacts, "failures": result.failures})
    else:
        render_export(result)
    if result.failures:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- verify


@app.command()
@handled
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    runtime: Annotated[str, typer.Option(help="Comma-separated: onnx,tflite,openvino, or all.")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (no silent CPU fallback).")] = Device.cpu,
    threads: Annotated[Optional[int], typer.Option(help="Threads for every runtime.")] = None,
    max_drop: Annotated[float, typer.Option(help="int8 gate: accuracy points it may lose vs Keras.")] = 1.0,
    ov_precision: Annotated[str, typer.Option(
        help="OpenVINO execution precision: f32 (parity), or bf16/f16 to measure those on purpose.")] = "f32",
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
):
    """Prove each exported model still gives the Keras model's answers on the held-out images.

    Float artifacts must agree on top-1 for >= 99.9% of images with max |Δp| <= 1e-4; int8
    artifacts may lose at most --max-drop accuracy points. Exit 1 when any gate fails.

    Examples:

      edgecls verify                               # models/digits-small, every artifact

      edgecls verify models/fashion-mnist-small --runtime onnx,tflite --max-drop 0.5
    """
    from dataclasses import asdict

    from .verify import verify as run

    result = run(bundle, runtime_names=_names(runtime), device=device, threads=threads, max_drop=max_drop,
                 ov_precision=ov_precision, data_dir=data_dir)
    if as_json:
        _emit_json({"images": result.images, "keras_accuracy": result.keras_accuracy, "passed": result.passed,
                    "rows": [asdict(r) | {"passed": r.passed} for r in result.rows]})
    else:
        render_verify(result)
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
    runtime: Annotated[str, typer.Option(help="Comma-separated: onnx,tflite,openvino,keras, or all.")] = "all",
    precision: Annotated[str, typer.Option(help="Comma-separated: fp32,fp16,int8, or all (fp32,int8).")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (a clear error where there is none).")] = Device.cpu,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes, e.g. 1,8,32.")] = "1",
    threads: Annotated[Optional[int], typer.Option(help="Threads for every runtime (default: its own).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the first inference.")] = 10,
    min_runs: Annotated[int, typer.Option(help="At least this many timed runs...")] = 50,
    min_time: Annotated[float, typer.Option(help="...and at least this many seconds of them.")] = 1.0,
    rounds: Annotated[int, typer.Option(help="Measure each configuration this many times, taking turns with the "
                                             "others, timings pooled: steadier ratios on a busy machine.")] = 1,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write results as JSON ('-': stdout).")] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Write results as CSV.")] = None,
):
    """Measure latency and throughput of every runtime x precision (x batch size), each in a fresh process.

    Examples:

      edgecls bench                                        # every available runtime, fp32 and int8, batch 1

      edgecls bench --runtime onnx,openvino --batch 1,32 --threads 1 --csv bench.csv

      edgecls bench --rounds 3 --min-time 0.5                # 3 interleaved rounds per configuration
    """
    from .bench import BenchConfig, to_csv
    from .bench import bench as run
    from .bundle import atomic_write

    cfg = BenchConfig(runtimes=_names(runtime) or [], precisions=_names(precision) or [], device=device,
                      batches=_ints(batch, "--batch"), threads=threads, warmup=warmup, min_runs=min_runs,
                      min_time=min_time, rounds=rounds)

    def progress(row):
        done = f"round {row['round']}/{row['rounds']}" if "round" in row else f"{row['runs']} runs"
        err.print(f"{row['runtime']} {row['precision']} batch {row['batch']}: p50 {row['p50_ms']:.3f} ms ({done})",
                  highlight=False)

    result = run(bundle, cfg, progress)
    if json_file is not None and str(json_file) == "-":
        _emit_json(result)
    else:
        render_bench(result)
        if json_file is not None:
            atomic_write(json_file, json.dumps(result, indent=1, default=str) + "\n")
    if csv_file is not None:
        atomic_write(csv_file, to_csv(result["rows"]))


# ----------------------------------------------------------------------------- predict


@app.command()
@handled
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    bundle: Annotated[Path, typer.Option(help="Bundle folder.")] = DEFAULT_BUNDLE,
    fmt: Annotated[Optional[str], typer.Option("--format", help="onnx, tflite or openvino (default: the "
                                                                "first exported).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp32",
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
    results = clf.classify(images, top=top)
    if as_json:
        _emit_json([{"file": str(p), "top": [{"label": k, "probability": v} for k, v in r]}
                    for p, r in zip(images, results)])
        return
    table = Table(title=f"{clf.artifact['file']} ({clf.runner.name}, {clf.artifact['precision']})")
    table.add_column("image")
    for i in range(min(top, len(clf.labels))):
        table.add_column(f"#{i + 1}")
    for p, r in zip(images, results):
        table.add_row(str(p), *[f"{k} {v:.3f}" for k, v in r])
    out.print(table)


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
    ds, inp = m["dataset"], m["input"]
    out.print(f"[bold]{b.path}[/]  ({m['architecture']['name']}, {m['architecture']['params']:,} parameters)")
    out.print(f"dataset {ds['name']}: {len(ds['classes'])} classes; held-out {len(ds['split']['test'])} images")
    out.print(f"input {inp['shape']} {inp['dtype']} {inp['layout']} {inp['color']}, raw pixels 0-255")
    acc = m.get("metrics", {}).get("test", {}).get("accuracy")
    if acc is not None:
        out.print(f"held-out accuracy {acc:.4f}")
    if "verify" in m:
        v = m["verify"]
        out.print(f"verify ({v['at']}): {'[green]pass[/]' if v['passed'] else '[red]FAIL[/]'}, "
                  f"{len(v['rows'])} artifacts on {v['images']} held-out images")
    if "bench" in m:
        rows = m["bench"]["rows"]
        best = min(rows, key=lambda r: r["p50_ms"])
        out.print(f"bench ({m['bench']['at']}): {len(rows)} configurations; fastest {best['runtime']} "
                  f"{best['precision']} at batch {best['batch']}, p50 {best['p50_ms']:.3f} ms")
    table = Table(title="artifacts")
    for col in ("format", "precision", "file", "bytes", "sha256"):
        table.add_column(col)
    for a in m["artifacts"]:
        try:
            b.checked(a["file"])
            ok = "[green]ok[/]"
        except EdgeclsError:
            ok = "[red]MISMATCH[/]"
        table.add_row(a["format"], a["precision"], a["file"], f"{a['bytes']:,}", f"{a['sha256'][:12]}… {ok}")
    out.print(table)


# ----------------------------------------------------------------------------- pipeline


@app.command()
@handled
def pipeline(
    data: Annotated[str, typer.Option(help="Dataset (see 'edgecls train --help').")] = "digits",
    arch: Annotated[Arch, typer.Option(help="Architecture.")] = Arch.small,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Bundle folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 40,
    batch: Annotated[str, typer.Option(help="Bench batch sizes.")] = "1,32",
):
    """The main job end to end: train, export (float and int8), verify, bench, report.

    With no arguments it runs on the bundled digits dataset and writes models/digits-small/
    (report.md inside). Exit 1 if an export or a parity gate fails.

    Example: edgecls pipeline
    """
    from .bench import BenchConfig
    from .export import ExportConfig
    from .pipeline import PipelineConfig, PipelineHooks, run
    from .train import TrainConfig

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
            elif name == "report":
                out.print(f"report: [bold]{result}[/]")

    cfg = PipelineConfig(train=TrainConfig(data=data, arch=arch.value, out=out_dir, seed=seed, epochs=epochs),
                         export=ExportConfig(int8=True),
                         bench=BenchConfig(batches=_ints(batch, "--batch"), min_runs=50, min_time=0.5))
    try:
        result = run(cfg, view, Hooks())
    finally:
        view.progress.stop()
    if result.export.failures or not result.verify.passed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
