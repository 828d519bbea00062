"""`edgecls app`: the bundle's model as a static web app, optionally checked in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..apps.web.build import AppConfig
from ..core.errors import EdgeclsError, ParityFailed
from ..core.names import Precision
from ..report.console import err, out, render_note, size_text
from .common import DEFAULT_BUNDLE, _emit_json, handled


@handled
def app(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (exported).")] = DEFAULT_BUNDLE,
    out_dir: Annotated[Path, typer.Option("--out", help="App folder to write (replaced whole).")] = AppConfig.out,
    fmt: Annotated[Optional[str], typer.Option("--format", help="onnx (onnxruntime-web) or tflite (LiteRT.js); "
                                                              "default: the bundle's recommendation.")] = AppConfig.fmt,
    precision: Annotated[Optional[Precision], typer.Option(help="fp32, fp16 or int8 (default: the "
                                                                "recommendation's, else fp32).")] = AppConfig.precision,
    golden: Annotated[Optional[Path], typer.Option(
        help="Golden vectors folder (default BUNDLE/golden; made into the app when missing or stale, which needs "
             "the dataset).")] = AppConfig.golden,
    check: Annotated[bool, typer.Option("--check", help="Open the app in headless Chromium (served from 127.0.0.1) "
                                                        "and report its self-test; exit 1 if it fails.")] = False,
    image: Annotated[Optional[Path], typer.Option(help="With --check: also classify this image in the page.")] = None,
    screenshot: Annotated[Optional[Path], typer.Option(help="With --check: save a screenshot of the page (PNG).")
                          ] = None,
    threads: Annotated[Optional[int], typer.Option(help="With --check: WebAssembly threads in the page.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the dataset lives now (to make golden vectors).")
                        ] = AppConfig.data_dir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Write a static web app that classifies images in the browser with the bundle's model.

    onnxruntime-web runs .onnx files, LiteRT.js .tflite files (WebAssembly, SIMD, threads when the
    page is cross-origin isolated); both are installed from npm with the pinned lockfile at build
    time, so the app works offline from any static server. On load it checks itself on the golden
    vectors. Needs Node.js/npm to build, Chromium and Playwright to --check (exit 2 saying what is
    missing).

    Examples:

      edgecls app models/digits-small --out web/digits          # the recommended artifact

      edgecls app models/digits-small --out web/lite --format tflite --precision int8 --check

      python -m edgecls.apps.web.serve web/digits                 # host it (127.0.0.1, COOP/COEP)
    """
    from ..apps.web import build_app
    from ..apps.web.browser import missing

    if (image or screenshot or threads) and not check:
        raise EdgeclsError("--image, --screenshot and --threads need --check")
    if check and missing():  # before any work
        raise EdgeclsError("--check: missing " + "; ".join(missing()))
    result = build_app(bundle, AppConfig(out_dir, fmt, precision.value if precision else None, golden, data_dir))
    report = {"folder": str(result.folder), "artifact": result.config["artifact"], "model": result.config["model"],
              "runtime": result.config["runtime"], "bytes": result.total_bytes, "bytes_by_part": result.bytes_by_part(),
              "notes": result.notes}
    if check:
        from ..apps.web.browser import AppPage

        with AppPage(result.folder, threads=threads) as page:
            report |= {"selftest": page.selftest(), "browser": page.info, "timings": page.timings}
            if image is not None:
                report["image"] = page.classify_file(image)
            if screenshot is not None:
                report["screenshot"] = str(page.screenshot(screenshot))
    if as_json:
        _emit_json(report)
    else:
        for note in result.notes:
            render_note(note)
        parts = ", ".join(f"{k} {size_text(v)}" for k, v in report["bytes_by_part"].items())
        out.print(f"app written: [bold]{result.folder}[/] ({size_text(result.total_bytes)}: {parts}); "
                  f"{report['runtime']['package']} {report['runtime']['version']}", highlight=False)
        st = report.get("selftest")
        if st:
            out.print(f"self-test in Chromium ({report['browser']['runtime']}, {report['browser']['threads']} "
                      f"thread(s)): {'[green]pass[/]' if st['passed'] else '[red]FAIL[/]'}: {st['images']} golden "
                      f"images, top-1 agreement {st['top1_agreement']:.0%}, max |Δp| {st['max_abs_diff']:.2e} "
                      f"(tolerance {st['tolerance']:g}); first classification "
                      f"{report['timings'].get('first_classification_ms', 0):.0f} ms after navigation"
                      + (f" — {st['why']}" if st["why"] else ""), highlight=False)
        if "image" in report:
            best = report["image"]["top"][0]
            out.print(f"{image}: {best[0]} ({best[1]:.3f})", highlight=False)
        if "screenshot" in report:
            err.print(f"screenshot: {report['screenshot']}", highlight=False)
    if check and not (report.get("selftest") or {}).get("passed"):
        raise ParityFailed(f"{result.folder}: the app's self-test failed in Chromium"
                          + (f": {report['selftest']['why']}" if report.get("selftest") else " (no golden vectors)"))
