"""`edgecls verify`: parity of every exported file with Keras, pass / inconclusive / fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import EdgeclsError
from ..core.gates import MAX_DROP_HELP, summary
from ..core.names import Device
from ..report.console import render_explain, render_verify
from ..runtimes import RUNTIMES
from ..verify.parity import VerifyConfig
from .common import (
    DEFAULT_BUNDLE,
    ImagesOpt,
    SkipBadImagesOpt,
    _choices,
    _emit_json,
    handled,
)


@handled
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    runtime: Annotated[str, typer.Option(help=f"Comma-separated: {_choices(RUNTIMES)}, or all.")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (no silent CPU fallback).")] = VerifyConfig.device,
    threads: Annotated[Optional[int], typer.Option(help="Threads for every runtime.")] = VerifyConfig.threads,
    max_drop: Annotated[float, typer.Option(help="int8 gate: " + MAX_DROP_HELP + ".")] = VerifyConfig.max_drop,
    ov_precision: Annotated[str, typer.Option(
        help="OpenVINO: what float parts compute in, one row each (comma-separated): f32 (parity), default (what "
             "this CPU picks for an fp32 IR: bf16 on AVX-512 BF16/AMX, f16 on ARM with fp16; the row names it), "
             "bf16 or f16 on purpose.")] = VerifyConfig.compute,
    platform: Annotated[Optional[str], typer.Option(
        help="Verify on another instruction set instead, emulated: arm64, shown beside this machine's stored rows "
             "(needs 'edgecls platform setup arm64'; onnx, tflite, openvino on the bundle's reference images).")
    ] = None,
    cpu: Annotated[Optional[str], typer.Option(
        help="With --platform: emulated CPU models, comma-separated (default neoverse-v1,cortex-a72); a verdict "
             "is believed when two agree.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="With --platform: the cache 'edgecls platform setup' built (default ~/.cache/edgecls/platforms).")
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(
        help="With --platform: seconds each emulated CPU model may run before it is stopped.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now, if it moved.")
                        ] = VerifyConfig.data_dir,
    images: ImagesOpt = VerifyConfig.images,
    skip_bad: SkipBadImagesOpt = VerifyConfig.skip_bad,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also the float model's own noise floor (the answers it changes under noise below a gray "
                          "level: no int8 file is expected to change fewer), then for each int8 artifact a per-layer "
                          "table of SQNR vs the float model, flagged where the error jumps (each vendor's tool, 32 "
                          "held-out images).")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 when any file's parity is inconclusive (not shown either way), not only on a fail.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
):
    """Prove each exported model still gives the Keras model's answers.

    Float files (fp32, fp16) are conversions: they are judged on every image the bundle can reach
    (held-out, validation, training) plus label-free variants (flips, crops, brightness, contrast),
    with edge-case tensors checked for gross faults. int8 files were fitted to images: they are
    judged only on images they never saw (held-out, validation, --images).

    {gates} Inconclusive says how many images would decide. Exit 1 when a file fails (with --strict
    also when one is inconclusive); inconclusive alone exits 0 with a warning. Results are stored per
    file, bound to its sha256.

    Examples:

      edgecls verify                               # models/digits-small, every artifact

      edgecls verify models/fashion-mnist-small --runtime onnx,tflite --max-drop 0.5

      edgecls verify models/pets --images ~/more-pets    # unlabelled photos judge the int8 files too

      edgecls verify --explain                     # and why int8 changes answers: the float model's noise
                                                   # floor, then each int8 file's error layer by layer

      edgecls verify --platform arm64              # the same files inside an emulated arm64 userland
    """

    from ..verify.parity import verify as run

    if platform is not None:
        if device != Device.cpu or threads or data_dir:
            raise EdgeclsError("--device, --threads and --data-dir do not go with --platform (an emulated CPU, one "
                               "thread per CPU model, the bundle's reference images)")
        return _on_platform(bundle, platform, cpu, runtime, ov_precision, max_drop, cache_dir, timeout, explain,
                            as_json)
    if cpu or cache_dir or timeout:
        raise EdgeclsError("--cpu, --cache-dir and --timeout go with --platform")
    if explain:  # before any work: a bundle with no int8 artifact is a usage error
        from ..core.bundle import Bundle
        from ..verify.explain import int8_artifacts

        int8_artifacts(Bundle.open(bundle), runtime)
    cfg = VerifyConfig(runtimes=runtime, device=device, threads=threads, max_drop=max_drop, compute=ov_precision,
                       data_dir=data_dir, images=images, skip_bad=skip_bad)
    result = run(bundle, cfg)
    explanations = floor = None
    if explain:
        from ..verify.explain import explain as explain_layers
        from ..verify.noise_floor import floor_or_why

        floor = floor_or_why(bundle, data_dir, max_drop)
        explanations = explain_layers(bundle, runtime, data_dir=data_dir)
    if as_json:
        _emit_json(result.to_dict() | ({"explain": [e.to_dict() for e in explanations], "noise_floor": floor}
                                       if explain else {}))
    else:
        render_verify(result, strict=strict)
        if explain:
            render_explain(explanations, floor)
    if result.save_error:  # the results are shown above; say why they are not stored
        raise EdgeclsError(f"{result.save_error} (the results above are not stored)")
    if not result.passed or (strict and result.outcome.value == "inconclusive"):
        raise typer.Exit(1)


# the help text states the gates from their one definition (edgecls.core.gates)
verify.__doc__ = verify.__doc__.replace("{gates}", summary())


def _on_platform(bundle, platform, cpu, runtime, ov_precision, max_drop, cache_dir, timeout, explain, as_json):
    from ..platforms.verify import verify_platform
    from ..report.console import render_platform_verify

    if explain:
        raise EdgeclsError("--explain runs on this machine only, not with --platform")
    from ..core.hooks import Hooks
    from ..report.console import err

    class Say(Hooks):
        def note(self, text):
            err.print(text, highlight=False)

    result = verify_platform(bundle, platform, cpu, runtime_names=runtime, runtime_options={"compute": ov_precision},
                             max_drop=max_drop, cache_dir=cache_dir, timeout=timeout, hooks=Say())
    if as_json:
        _emit_json(result.to_dict())
    else:
        render_platform_verify(result.to_dict())
    if result.save_error:
        raise EdgeclsError(f"{result.save_error} (the results above are not stored)")
    if result.failed:
        raise typer.Exit(1)
