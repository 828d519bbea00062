"""`edgecls predict`, `edgecls golden`, `edgecls info`: what works with only a runtime installed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import EdgeclsError
from ..core.names import Precision
from ..report.console import render_golden, render_info, render_predict
from .common import DEFAULT_BUNDLE, _emit_json, handled


@handled
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    bundle: Annotated[Path, typer.Option(help="Bundle folder.")] = DEFAULT_BUNDLE,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Format (default: the bundle's current "
                                                                "recommendation, else the exported one whose "
                                                                "runtime ranks first: onnx, openvino, tflite).")
                   ] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Precision (default: the recommendation's, "
                                                                "else fp32).")] = None,
    top: Annotated[int, typer.Option(help="How many classes to show per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
):
    """Classify image files with an exported model (no TensorFlow needed).

    By default it runs the file the bundle's last bench recommended, while that recommendation is current
    (same bytes, current parity and bench results); otherwise the first fp32 file of onnx, openvino, tflite,
    and the first line says why. --format/--precision choose a file instead. The first line (and --json's
    "artifact") names the file that ran.

    Examples:

      edgecls predict photo1.png photo2.jpg --bundle models/digits-small

      edgecls predict photo.png --bundle models/digits-small --format tflite --precision int8
    """
    from ..runtimes.classifier import Classifier

    if top < 1:
        raise EdgeclsError(f"--top {top}: must be at least 1")
    clf = Classifier.open(bundle, format=fmt or None,
                          precision=precision.value if precision else None)
    result = clf.classify_files(images, top=top)
    if as_json:
        _emit_json(result.to_json())
    else:
        render_predict(result)


@handled
def golden(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (exported).")] = DEFAULT_BUNDLE,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder to write (default BUNDLE/golden); "
                                                    "replaced whole.")] = None,
    count: Annotated[int, typer.Option(help="Held-out images, stratified.")] = 4,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")] = None,
    platform: Annotated[Optional[str], typer.Option(
        help="Also record every artifact's outputs on this instruction set, emulated (arm64; needs 'edgecls "
             "platform setup arm64'), per CPU model.")] = None,
    cpu: Annotated[Optional[str], typer.Option(help="With --platform: emulated CPU models, comma-separated "
                                                    "(default neoverse-v1,cortex-a72).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="With --platform: the platform cache folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print golden.json to stdout.")] = False,
):
    """Write golden vectors for native ports: images, exact input tensors, every artifact's probabilities.

    A C++, Android or iOS app decodes the images, compares its input with the .npy tensors and its
    output with golden.json's probabilities, within the tolerances listed there (docs/embedding.md).

    Examples:

      edgecls golden                                   # models/digits-small/golden/

      edgecls golden models/pets-mobile --out app/src/test/golden --count 8

      edgecls golden --platform arm64              # and what each file answers on arm64 (emulated)
    """
    from ..verify.golden import write_golden

    outputs = None
    if platform is not None:
        from ..platforms.verify import golden_outputs

        outputs = golden_outputs(platform, cpu, bundle_path=bundle, cache_dir=cache_dir)
    elif cpu or cache_dir:
        raise EdgeclsError("--cpu and --cache-dir go with --platform")
    result = write_golden(bundle, out=out_dir, count=count, data_dir=data_dir, platform_outputs=outputs)
    if as_json:
        _emit_json(result.index)
    else:
        render_golden(result)


@handled
def info(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = Path("models/digits-small"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON, with the check of "
                                                          "every file under 'integrity'.")] = False,
):
    """Show a bundle: dataset, input spec, metrics and every artifact with its size and hash check.

    An integrity check you can script: every file the manifest records (artifacts, their parts,
    other files) is hashed; exit 1 naming the files that fail, 2 if the bundle is not a valid,
    self-contained bundle, 0 when all is intact.

    Example: edgecls info models/digits-small
    """
    from ..core.bundle import Bundle
    from ..core.errors import IntegrityFailed

    b = Bundle.open(bundle)
    m = b.manifest
    checked = b.info()
    rec = b.recommended()
    if as_json:
        _emit_json({k: v for k, v in m.items() if k != "dataset"} | {
            "dataset": {k: v for k, v in m["dataset"].items() if k != "split"},
            "integrity": {"intact": checked.intact, "files": checked.verdicts()},
            "recommended": {"file": rec.artifact["file"] if rec.current else None, "current": rec.current,
                            "why": rec.why}})
    else:
        render_info(checked)
    if not checked.intact:
        n = len(checked.problems)
        raise IntegrityFailed(f"{b.path}: {n} recorded file{'s' * (n != 1)} fail{'s' * (n == 1)} the check: "
                          + "; ".join(checked.problems.values()))
