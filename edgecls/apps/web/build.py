"""`edgecls app`: a self-contained static web app for a bundle's exported model.

    >>> from edgecls.apps.web import build_app
    >>> app = build_app("models/digits-small", "web/digits")        # the recommended artifact
    >>> app = build_app("models/digits-small", "web/digits-lite", fmt="tflite", precision="int8")

The folder (written whole or not at all):

    index.html, app.js, pixels.js   the page: decode, the preprocessing contract, classify, self-test
    config.json                     the artifact (file, sha256), input/output spec, labels, runtime versions,
                                    every file of the app with its sha256
    model/<file>                    the artifact (TFLite: a fixed-batch copy, checked natively against it)
    golden/                         the bundle's golden vectors (images, input tensors, golden.json)
    runtime/                        onnxruntime-web or LiteRT.js: only the files the page loads
    README.md                       how to host it

Any static server hosts it, offline; threads need cross-origin isolation (COOP/COEP headers,
`python -m edgecls.apps.web.serve DIR` sends them).
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ... import __version__
from ...core.bundle import Bundle
from ...core.errors import EdgeclsError
from ...core.files import atomic_write, ensure_writable, file_entry, sha256, staged_bundle
from ...core.names import Format, Precision
from . import npm

CONFIG = "config.json"
APP_VERSION = 1
SAME_TOLERANCE = 1e-6  # the fixed-batch TFLite copy vs its original, natively


@dataclass
class AppConfig:
    """Options of `edgecls app` (the CLI's defaults are these)."""

    out: Path = Path("web/app")  # the app folder, replaced whole
    fmt: str | None = None  # onnx or tflite; None: the recommendation's, else onnx
    precision: str | None = None  # fp32, fp16 or int8; None: the recommendation's, else fp32
    golden: bool | str | Path | None = None  # None or True: the bundle's (made when missing or stale); a folder;
    # False: none
    data_dir: str | None = None  # where the dataset lives now (only to make golden vectors)


@dataclass
class AppResult:
    folder: Path
    config: dict
    notes: list[str] = field(default_factory=list)

    def bytes_by_part(self) -> dict[str, int]:
        parts: dict[str, int] = {}
        for f in self.config["files"]:
            part = f["file"].split("/", 1)[0] if "/" in f["file"] else "page"
            parts[part] = parts.get(part, 0) + f["bytes"]
        return parts

    @property
    def total_bytes(self) -> int:
        return sum(f["bytes"] for f in self.config["files"])


def choose_artifact(bundle: Bundle, fmt: str | None, precision: str | None) -> tuple[dict, list[str]]:
    """The artifact the app serves: the one asked for, else the one the recommendation names (the
    same precision in ONNX when it names a format no web runtime runs), else ONNX fp32."""
    notes = []
    arts = [a for a in bundle.manifest["artifacts"] if a["format"] != "keras"]
    web = npm.web_formats()  # the formats whose module declares a web runtime (onnx, tflite)
    if fmt is not None and fmt not in web:
        raise EdgeclsError(f"--format {fmt}: no web runtime runs {fmt} files (onnxruntime-web runs .onnx, LiteRT.js "
                           f".tflite): choose {' or '.join(web)}")
    if fmt is None and precision is None:
        rec = bundle.recommended()  # only while current: same bytes, current parity and bench results
        chosen = {"file": rec.artifact["file"], "runtime": rec.artifact["format"],
                  "precision": rec.artifact["precision"]} if rec.current else {}
        if not rec.current and bundle.manifest.get("decision"):
            notes.append(f"not following the recommendation: {rec.why}")
        if chosen.get("file"):
            kind = next((a["format"] for a in arts if a["file"] == chosen["file"]), chosen["runtime"])
            if kind in web:
                fmt, precision = kind, chosen["precision"]
                notes.append(f"serving {chosen['file']}: the bundle's recommendation")
            else:
                fmt, precision = Format.onnx.value, chosen["precision"]
                notes.append(f"the recommendation is {chosen['file']} ({chosen['runtime']}), which no web runtime "
                             f"runs: serving the {precision} ONNX file instead")
    fmt, precision = fmt or Format.onnx.value, precision or Precision.fp32.value
    match = next((a for a in arts if a["format"] == fmt and a["precision"] == precision), None)
    if match is None:
        have = ", ".join(f"{a['format']} {a['precision']}" for a in arts if a["format"] in web) or "none"
        raise EdgeclsError(f"{bundle.path}: no {fmt} {precision} artifact to serve (web-runnable here: {have}); "
                           f"run 'edgecls export{' --int8' if precision == 'int8' else ''}' or choose another")
    if not any("serving" in n for n in notes):
        notes.append(f"serving {match['file']} ({fmt} {precision})")
    return match, notes


def _golden_file(folder: Path, rel, where: str) -> Path:
    """`folder/rel` for a file named in a golden index (not hashed by the manifest): relative, '/'-separated,
    no '..', resolving inside `folder` through any symbolic link, a regular file; else refused by name."""
    from ...core.contained import escapes

    why = escapes(rel, folder)
    if why is None and not (folder / rel).is_file():
        why = "not a file"
    if why is not None:
        raise EdgeclsError(f"{folder / 'golden.json'}: {where} {rel!r} is outside the golden folder or not a file "
                           f"({why}): refused")
    return folder / rel


def _golden(bundle: Bundle, artifact: dict, golden: Path | None, stage: Path, data_dir: str | None) -> list[str]:
    """Copy the golden vectors for `artifact` into stage/golden (made into the app when the bundle's are
    missing or for other bytes); notes. Every file copied is named relative to the golden folder, stays
    inside it and matches its sha256 in the index before a byte of it is written into the app."""
    from ...core.untrusted import load_json
    from ...verify.golden import GOLDEN, write_golden

    src = Path(golden) if golden is not None else bundle.inside("golden", "the golden folder")

    def read(folder: Path):
        index = load_json(_golden_file(folder, GOLDEN, "the index"), "golden index")
        if not isinstance(index, dict) or not isinstance(index.get("outputs", []), list) \
                or not isinstance(index.get("images", []), list):
            raise EdgeclsError(f"{folder / GOLDEN}: not a golden index")
        return index

    def fits(folder: Path) -> bool:
        if not (folder / GOLDEN).is_file():
            return False
        return any(isinstance(o, dict) and o.get("artifact") == artifact["file"]
                   and o.get("artifact_sha256") == artifact["sha256"] for o in read(folder).get("outputs", []))

    notes = []
    made = stage / ".golden-made"
    if not fits(src):
        if golden is not None:
            raise EdgeclsError(f"--golden {golden}: no {GOLDEN} with outputs of {artifact['file']} (sha256 "
                               f"{artifact['sha256'][:12]}…); run 'edgecls golden {bundle.path} --out {golden}'")
        try:
            write_golden(bundle.path, out=made, data_dir=data_dir)
        except EdgeclsError as e:
            raise EdgeclsError(f"{bundle.path}: no golden vectors for {artifact['file']} ({src} is missing or made "
                               f"for other bytes) and they cannot be made here: {e}; run 'edgecls golden "
                               f"{bundle.path}' where the dataset is, then build the app again") from e
        src = made
        notes.append(f"golden vectors made for the app ({bundle.path}/golden was missing or stale)")
    index = read(src)
    dest = stage / "golden"
    dest.mkdir()
    copies = []
    try:
        for i, img in enumerate(index["images"]):
            for key in ("file", "input"):
                rel, digest = img[key]["file"], img[key]["sha256"]
                path = _golden_file(src, rel, f"images[{i}].{key}.file")
                if sha256(path) != digest:
                    raise EdgeclsError(f"{path}: does not match its sha256 in {src / GOLDEN} (damaged golden folder)")
                copies.append((path, rel, digest))
    except (KeyError, TypeError) as e:
        raise EdgeclsError(f"{src / GOLDEN}: not a golden index (images: {type(e).__name__} {e})") from e
    for path, rel, digest in copies:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if _escapes_dest(dest, rel):
            raise EdgeclsError(f"{src / GOLDEN}: {rel!r} would be written outside the app's golden folder: refused")
        shutil.copyfile(path, dest / rel)
        if sha256(dest / rel) != digest:  # the source changed while it was copied
            raise EdgeclsError(f"{path}: changed while it was copied into the app")
    atomic_write(dest / GOLDEN, json.dumps(index, indent=1) + "\n")
    shutil.rmtree(made, ignore_errors=True)
    return notes


def _escapes_dest(dest: Path, rel: str) -> bool:
    """Would writing `dest/rel` land outside `dest` (a folder of the staged app, which the build made)?"""
    from ...core.contained import escapes

    return escapes(rel, dest) is not None or (dest / rel).is_symlink()


def _check_images(bundle: Bundle, count: int = 16) -> np.ndarray:
    """Images to compare the fixed-batch copy with its original: the reference images, else seeded noise."""
    if "reference" in bundle.manifest:
        from ...export import reference

        return reference.load(bundle).images[:count]
    return np.random.default_rng(0).integers(0, 256, (count, *bundle.input_shape()), dtype=np.uint8)


def _model(bundle: Bundle, artifact: dict, stage: Path) -> tuple[str, dict, dict, dict]:
    """Put the model file into stage/model/; (its path, input spec, output spec, what was done)."""
    src = bundle.checked_path(artifact["file"])
    h, w, c = bundle.input_shape()
    spec_in = {"height": h, "width": w, "channels": c, "dtype": "float32", "scale": 1.0, "zero_point": 0}
    spec_out = {"dtype": "float32", "scale": 1.0, "zero_point": 0}
    (stage / "model").mkdir()
    if artifact["format"] == Format.onnx:
        rel = f"model/{Path(artifact['file']).name}"
        shutil.copyfile(src, stage / rel)
        return rel, spec_in, spec_out, {"copy": "unchanged"}
    from ...runtimes.tflite import TFLiteRunner
    from .fixbatch import check_same, fixed_batch

    rel = f"model/{Path(artifact['file']).stem}.batch1.tflite"
    changed = fixed_batch(src, stage / rel, batch=1)
    diff = check_same(src, stage / rel, _check_images(bundle))
    if diff > SAME_TOLERANCE:
        raise EdgeclsError(f"{artifact['file']}: its fixed-batch copy for LiteRT.js computes something else "
                           f"(max |Δp| {diff:.2e} natively); the web app cannot serve it")
    runner = TFLiteRunner()
    runner.load(stage / rel, threads=1)
    for spec, detail in ((spec_in, runner.inp), (spec_out, runner.out)):
        if detail["dtype"] != np.float32:
            if detail["dtype"] != np.uint8:
                raise EdgeclsError(f"{artifact['file']}: {np.dtype(detail['dtype']).name} input/output; the web app "
                                   "handles float32 and uint8 (edgecls's own exports)")
            scale, zero = detail["quantization"]
            spec.update(dtype="uint8", scale=float(scale), zero_point=int(zero))
    return rel, spec_in, spec_out, {"copy": "fixed batch 1 (LiteRT.js 2.5 refuses a dynamic batch dimension)",
                                     "tensors_changed": changed, "native_max_abs_diff": diff,
                                     "checked_images": len(_check_images(bundle))}


def _check_out(out: Path, bundle_path: Path) -> None:
    ensure_writable(out, "--out")
    target, bundle = out.resolve(), bundle_path.resolve()
    if target == bundle or target in bundle.parents or bundle in target.parents:
        raise EdgeclsError(f"--out {out}: is, holds or lies inside the bundle folder; choose a folder outside it")
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG).is_file():
        raise EdgeclsError(f"--out {out}: a folder of other files (no {CONFIG}); it would be replaced whole: "
                           "choose a new or empty folder")


def csp(inline_script: str | None = None) -> str:
    """The app's Content-Security-Policy: its own files, WebAssembly, images the user drops (blob:) and no
    other origin, no inline script but the import map (by its hash), no plugin, no form, no <base>.
    In index.html (a meta tag) and sent by the serve helper (`serve.py`, from config.json)."""
    import base64
    import hashlib

    scripts = "'self' 'wasm-unsafe-eval'"
    if inline_script is not None:
        digest = base64.b64encode(hashlib.sha256(inline_script.encode()).digest()).decode()
        scripts += f" 'sha256-{digest}'"
    return (f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; form-action 'none'")


def _page(stage: Path, fmt: str, bundle: Bundle) -> None:
    static = resources.files(__package__) / "static"
    for name in ("app.js", "pixels.js"):
        (stage / name).write_bytes((static / name).read_bytes())
    imap = npm.web_runtime(fmt).import_map
    text = (static / "index.html").read_text()
    imap_text = json.dumps(imap) if imap else None
    for key, value in {"title": html.escape(f"{bundle.manifest['name']}: image classifier"),
                       "csp": html.escape(csp(imap_text)),
                       "importmap": f'<script type="importmap">{imap_text}</script>' if imap else "",
                       "labels": html.escape(", ".join(bundle.labels())), "version": __version__,
                       "bundle": html.escape(bundle.manifest["name"])}.items():
        text = text.replace("{{" + key + "}}", value)
    (stage / "index.html").write_text(text)
    (stage / "README.md").write_text(README.format(name=bundle.manifest["name"]))


README = """# {name}: web app (made by `edgecls app`)

Host this folder on any static web server, offline: `python -m http.server` works (one thread);
for WebAssembly threads the page must be cross-origin isolated, i.e. served with the headers
`Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`
(`python -m edgecls.apps.web.serve .` sends them). Opened from `file://` it does not work (modules, fetch).

On load the page classifies the golden images in `golden/` and shows whether it agrees with the
probabilities edgecls stored (`?selftest=0` skips that). `config.json` lists every file with its sha256.
"""


def build_app(bundle_dir: str | Path, out: str | Path | AppConfig, fmt: str | None = None,
              precision: str | None = None, *, golden: bool | str | Path = True,
              data_dir: str | None = None) -> AppResult:
    """Write the web app of one artifact of a bundle into `out` (replaced whole; never half-written).

    Args:
        bundle_dir: an exported bundle.
        out: the app folder, or an `AppConfig` holding every option (the others are then ignored).
        fmt, precision: the artifact (onnx or tflite; fp32, fp16 or int8); default: the recommendation's.
        golden: True: the bundle's golden vectors (made into the app when missing or stale); a folder:
            those; False: none (no self-test; what `edgecls verify --runtime web-*` builds).
        data_dir: where the dataset lives now (only to make golden vectors).

    Raises:
        EdgeclsError: no such artifact, a format no web runtime runs, a tampered file, npm missing,
            no golden vectors and no way to make them, an --out that is not a new or app folder.
    """
    if isinstance(out, AppConfig):
        out, fmt, precision, golden, data_dir = out.out, out.fmt, out.precision, out.golden, out.data_dir
    golden = True if golden is None else golden
    bundle = Bundle.open(bundle_dir)
    artifact, notes = choose_artifact(bundle, fmt, precision)
    out = Path(out)
    _check_out(out, bundle.path)
    why = npm.missing_npm()
    if why and not (npm.cache_root() / npm.lock_hash() / "node_modules" / ".edgecls-complete").is_file():
        raise EdgeclsError(f"cannot build the web app: {why}")
    with staged_bundle(out) as stage:
        model, spec_in, spec_out, model_note = _model(bundle, artifact, stage)
        if golden is not False:
            notes += _golden(bundle, artifact, None if golden is True else Path(golden), stage, data_dir)
        npm.copy_runtime(artifact["format"], stage)
        _page(stage, artifact["format"], bundle)
        package = npm.web_runtime(artifact["format"]).package
        config = {"edgecls_app": APP_VERSION, "edgecls_version": __version__, "bundle": bundle.manifest["name"],
                  "bundle_id": bundle.manifest.get("bundle_id"), "format": artifact["format"],
                  "precision": artifact["precision"],
                  "artifact": {"file": artifact["file"], "sha256": artifact["sha256"]},
                  "model": model, "model_sha256": sha256(stage / model), "model_note": model_note,
                  "input": spec_in, "output": spec_out, "labels": bundle.labels(),
                  "golden": "golden/golden.json" if (stage / "golden").is_dir() else None,
                  "runtime": {"package": package, "version": npm.versions()[package], "lockfile": npm.lock_hash()},
                  "csp": csp(json.dumps(npm.web_runtime(artifact["format"]).import_map)
                             if npm.web_runtime(artifact["format"]).import_map else None)}
        config["files"] = sorted((file_entry(p, stage) for p in stage.rglob("*") if p.is_file()),
                                 key=lambda e: e["file"])
        atomic_write(stage / CONFIG, json.dumps(config, indent=1) + "\n")
    return AppResult(out, config, notes)
