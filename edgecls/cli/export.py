"""`edgecls export`: ONNX, TFLite and OpenVINO IR, float and int8, each self-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..export.base import FORMATS, ExportConfig
from ..export.qat import QatSettings
from ..report.console import err, render_export, size_text
from .common import DEFAULT_BUNDLE, ImagesOpt, SkipBadImagesOpt, _choices, _emit_json, handled


@handled
def export(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    int8: Annotated[bool, typer.Option(help="Also write the int8 form of each format.")] = ExportConfig.int8,
    fp16: Annotated[bool, typer.Option(help="Also write float16 TFLite and OpenVINO.")] = ExportConfig.fp16,
    fmt: Annotated[str, typer.Option("--format", help=f"Comma-separated: {_choices(FORMATS)}, or all.")] = "all",
    calib_size: Annotated[int, typer.Option(
        help="Calibration images for int8 (from the training split, at most half of it).")] = ExportConfig.calib_size,
    reference_size: Annotated[int, typer.Option(
        help="Held-out images stored in reference.npz with the Keras probabilities, so verify and bench run "
             "on a device without TensorFlow or the dataset (at most 2048).")] = ExportConfig.reference_size,
    max_drop: Annotated[float, typer.Option(
        help="int8 gate at export, as verify's (drop and changed answers, each shown at most this; the changed-"
             "answers limit never below 1%): accuracy points an int8 file may lose vs Keras on images the "
             "model never trained on (half the validation split, and --images); a file that misses it is "
             "re-made with the format's accuracy-aware recipe.")] = ExportConfig.max_drop,
    qat: Annotated[bool, typer.Option(
        "--qat", help="With --int8: make every int8 file from a short quantization-aware fine-tune (QAT) of the "
                      "model.")] = False,
    qat_auto: Annotated[bool, typer.Option(
        "--qat-auto", help="With --int8: run QAT only for the int8 files that miss the gate after the "
                           "accuracy-aware recipes (said and recorded).")] = False,
    qat_time_limit: Annotated[float, typer.Option(
        help="Seconds the QAT fine-tune may take at most (it keeps its best epoch so far).")
    ] = QatSettings.time_limit,
    qat_epochs: Annotated[int, typer.Option(help="QAT epochs at most (early stopping on the validation images).")
                          ] = QatSettings.max_epochs,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")
                        ] = ExportConfig.data_dir,
    images: ImagesOpt = ExportConfig.images,
    skip_bad: SkipBadImagesOpt = ExportConfig.skip_bad,
    as_json: Annotated[bool, typer.Option("--json", help="Print the artifacts as JSON.")] = False,
):
    """Export the bundle's model to ONNX, TFLite and OpenVINO IR (float32; --int8, --fp16 add more).

    Every file is loaded by its runtime and run on a few held-out images right after writing,
    and recorded with its sha256 in manifest.json. Each int8 file is judged with verify's gate on
    images the model never trained on (half the validation split, and up to half of --images; never
    held-out ones); one that misses it is re-made with the format's accuracy-aware recipe (some
    layers left in float), and verify later judges it on images that choice did not see. Exit 1 if
    any format failed or an int8 file misses the gate.

    Examples:

      edgecls export --int8                       # all formats, float32 and int8

      edgecls export models/pets-mobile --format onnx,tflite --fp16

      edgecls export models/pets --int8 --images ~/more-pets   # unlabelled photos choose the int8 recipe
      edgecls export models/photos --int8 --qat       # int8 from quantization-aware fine-tuning
    """
    from ..core.errors import EdgeclsError
    from ..core.hooks import Hooks
    from ..core.names import parse
    from ..export import export as run

    if qat and qat_auto:
        raise EdgeclsError("--qat and --qat-auto: give one (--qat: every int8 file from QAT; --qat-auto: only "
                           "those that miss the gate)")

    cfg = ExportConfig(formats=parse(FORMATS, fmt, "--format") or list(FORMATS), int8=int8, fp16=fp16,
                       calib_size=calib_size, data_dir=data_dir, reference_size=reference_size, max_drop=max_drop,
                       images=images, skip_bad=skip_bad,
                       qat="on" if qat else "auto" if qat_auto else "off",
                       qat_settings=QatSettings(time_limit=qat_time_limit, max_epochs=qat_epochs))

    class Progress(Hooks):
        def artifact(self, entry, failure):
            made = ((entry or {}).get("int8") or {}).get("qat")
            if made:  # never silent: say that the file came from QAT, why, and what the phase did
                err.print(f"{entry['file']}: from quantization-aware fine-tuning ({made['why']}; {made['epochs']} "
                          f"epochs, best {made['best_epoch']}, {made['seconds']:.0f}s, {made['stopped']})",
                          highlight=False)
            if entry:
                err.print(f"wrote {entry['file']} ({size_text(entry['total_bytes'])}, "
                          f"{entry['export_seconds']:.1f}s)", highlight=False)

    result = run(bundle, cfg, hooks=Progress())
    if as_json:
        _emit_json({"artifacts": result.artifacts, "failures": result.failures})
    else:
        render_export(result, str(bundle))
    if not result.passed:
        raise typer.Exit(1)
