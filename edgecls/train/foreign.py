"""A Keras classifier made elsewhere: loaded, its input and output read, and wrapped into the model a bundle
holds (raw 0-255 pixels in, class probabilities out), for `edgecls import` (`edgecls.train.importer`).

Loaded without running code from the file (Keras' safe mode): a ``.keras`` file, a legacy ``.h5`` file, or a
SavedModel folder (called through its serving signature, `edgecls.core.savedmodel`). What the model does to its
pixels is read from its first layers (a ``Rescaling`` or ``Normalization`` layer, as Keras Applications' built-in
preprocessing has), or declared by the user and baked into the bundle's model as a leading 1x1 convolution
(`Preprocessing`), so every exported file, runtime, the web app and golden vectors feed raw pixels as before.
Whether the model ends in a softmax is read from its output layer (or, for a graph, from its outputs); a
logits model gets a ``Softmax`` layer appended.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.files import sha256

NORMALISING = ("Rescaling", "Normalization")
PREPROCESS_LAYER = "edgecls_preprocess"
SOFTMAX_LAYER = "edgecls_softmax"


@dataclass
class Foreign:
    """The user's model as loaded, and what edgecls read from it."""

    model: object  # keras.Model
    path: Path
    kind: str  # keras, h5 or savedmodel
    input_shape: tuple  # (H, W, C), H and W None where the model takes any size
    outputs: int
    inside: list[str] = field(default_factory=list)  # normalising layers at its input: "name (Class)"
    activation: str | None = None  # the output layer's activation, where one can be read

    def source(self) -> dict:
        """What the manifest records of the file imported."""
        digest = sha256(self.path) if self.path.is_file() else _folder_digest(self.path)
        return {"file": self.path.name, "format": self.kind, "sha256": digest}


def _folder_digest(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + sha256(f).encode())
    return h.hexdigest()


def _load_error(path: Path, e: Exception) -> EdgeclsError:
    """One line for why Keras could not load `path`: a custom layer without its code, a Lambda, or not a model."""
    text = " ".join(str(e).split())
    custom = re.search(r"[Cc]ould not locate (?:class|function) '([^']+)'", text)
    if custom:
        return EdgeclsError(f"{path}: custom layer '{custom.group(1)}' is not built into Keras and its code is not "
                            "in the file; edgecls loads models without running code from them: rebuild that part "
                            "from Keras layers, or export a SavedModel (model.export(DIR)) and import the folder")
    if "Lambda" in text and ("unsafe" in text or "safe_mode" in text):
        return EdgeclsError(f"{path}: a Lambda layer holds Python code, which edgecls does not run from a file "
                            "(Keras safe mode): replace it with Keras layers, or import a SavedModel of the model")
    return EdgeclsError(f"{path}: not a Keras model edgecls can load ({type(e).__name__}: {text[:200]})")


def load(path: str | Path) -> Foreign:
    """Load a .keras / .h5 file or a SavedModel folder and read its input and output.

    Raises:
        EdgeclsError: no such file, not a model, a custom layer without code, several inputs or outputs,
            an input that is not an NHWC image.
    """
    from ..core import savedmodel
    from ..core._tf import keras

    path = Path(path)
    if not path.exists():
        raise EdgeclsError(f"{path}: no such model file or folder")
    k = keras()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise EdgeclsError(f"{path}: a folder, but not a SavedModel (no saved_model.pb); expected a .keras or "
                               ".h5 file or a SavedModel folder")
        _, fn = savedmodel.signature(path)
        specs = list(fn.structured_input_signature[1].values())
        if len(specs) != 1:
            raise EdgeclsError(f"{path}: the serving signature takes {len(specs)} inputs "
                               f"({', '.join(fn.structured_input_signature[1])}); edgecls classifies one image tensor")
        shape = tuple(specs[0].shape)
        _check_input(path, shape)
        if len(fn.structured_outputs) != 1:
            raise EdgeclsError(f"{path}: the serving signature has {len(fn.structured_outputs)} outputs "
                               f"({', '.join(fn.structured_outputs)}); edgecls needs one: the class scores")
        out_shape = tuple(next(iter(fn.structured_outputs.values())).shape)
        return Foreign(None, path, "savedmodel", shape[1:], _check_output(path, out_shape))
    kind = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}.get(path.suffix.lower())
    if kind is None:
        raise EdgeclsError(f"{path}: expected a .keras or .h5 file or a SavedModel folder")
    try:
        model = k.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad archive
        raise _load_error(path, e) from e
    if len(model.inputs) != 1:
        raise EdgeclsError(f"{path}: the model has {len(model.inputs)} inputs "
                           f"({', '.join(t.name for t in model.inputs)}); edgecls classifies one image tensor")
    shape = tuple(model.inputs[0].shape)
    _check_input(path, shape)
    if len(model.outputs) != 1:
        raise EdgeclsError(f"{path}: the model has {len(model.outputs)} outputs; edgecls needs one: the class scores")
    n = _check_output(path, tuple(model.outputs[0].shape))
    return Foreign(model, path, kind, shape[1:], n, _normalising(model), _activation(model))


def _check_input(path: Path, shape: tuple) -> None:
    if len(shape) != 4:
        raise EdgeclsError(f"{path}: input shape {_shape(shape)} is not an image batch (rank {len(shape)}; "
                           "edgecls needs rank 4: N, height, width, channels)")
    if shape[3] not in (1, 3):
        first = " (channels first? edgecls feeds NHWC)" if shape[1] in (1, 3) else ""
        raise EdgeclsError(f"{path}: input shape {_shape(shape)}: {shape[3]} channels{first}; edgecls feeds 1 (grey) "
                           "or 3 (RGB) channels last")


def _check_output(path: Path, shape: tuple) -> int:
    if len(shape) != 2 or not shape[1] or shape[1] < 2:
        raise EdgeclsError(f"{path}: output shape {_shape(shape)}: edgecls needs one score per class (N, classes), "
                           "at least 2 classes")
    return int(shape[1])


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("N" if i == 0 else "?" if d is None else str(d) for i, d in enumerate(shape)) + ")"


def _layers(model):
    """The layers of `model` in order, nested models opened."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def _normalising(model) -> list[str]:
    """The Rescaling / Normalization layers before the first layer with weights (the model's own preprocessing)."""
    found = []
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind in NORMALISING:
            found.append(f"{layer.name} ({kind})")
        elif layer.weights:
            break
    return found


def _activation(model) -> str | None:
    """The activation of the layer that makes the model's output, where it can be read."""
    layer = None
    history = getattr(model.outputs[0], "_keras_history", None)
    if history is not None:
        layer = history[0]
    while layer is not None and hasattr(layer, "layers") and layer.layers:  # a nested model: its last layer
        inner = getattr(layer.outputs[0], "_keras_history", None) if getattr(layer, "outputs", None) else None
        layer = inner[0] if inner is not None else layer.layers[-1]
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    return None if act is None else getattr(act, "__name__", str(act))


@dataclass
class Preprocessing:
    """Declared pixel preprocessing: y[c] = ((x[src c] * scale + offset) - mean[c]) / std[c]."""

    scale: float = 1.0
    offset: float = 0.0
    mean: list[float] | None = None
    std: list[float] | None = None
    channels_order: str = "rgb"  # bgr: the model's channel c reads the image's channel C-1-c

    @property
    def declared(self) -> bool:
        return (self.scale != 1.0 or self.offset != 0.0 or self.mean is not None or self.std is not None
                or self.channels_order != "rgb")

    def affine(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Per model channel, (a, b) with y = x * a + b."""
        mean, std = self._per_channel(self.mean, 0.0, channels, "--mean"), self._per_channel(self.std, 1.0, channels,
                                                                                               "--std")
        return (self.scale / std).astype(np.float32), ((self.offset - mean) / std).astype(np.float32)

    @staticmethod
    def _per_channel(values, default: float, channels: int, option: str) -> np.ndarray:
        if values is None:
            return np.full(channels, default, np.float64)
        if len(values) not in (1, channels):
            raise EdgeclsError(f"{option} {','.join(f'{v:g}' for v in values)}: {len(values)} values for a model "
                               f"with {channels} input channel{'s' * (channels != 1)} (give 1 or {channels})")
        return np.resize(np.asarray(values, np.float64), channels)

    def order(self, channels: int) -> list[int]:
        """For each model channel, the image channel it reads."""
        return list(range(channels))[::-1] if self.channels_order == "bgr" else list(range(channels))

    def describe(self, channels: int) -> str:
        a, b = self.affine(channels)
        swap = ", channels reversed (BGR)" if self.channels_order == "bgr" and channels > 1 else ""
        return (f"its first layer ({PREPROCESS_LAYER}, added by edgecls import) maps them to x * "
                f"[{', '.join(f'{v:.6g}' for v in a)}] + [{', '.join(f'{v:.6g}' for v in b)}] per channel{swap}")

    def to_dict(self, channels: int) -> dict:
        a, b = self.affine(channels)
        return {"scale": self.scale, "offset": self.offset, "mean": self.mean, "std": self.std,
                "channels_order": self.channels_order, "multiply": a.tolist(), "add": b.tolist(),
                "layer": PREPROCESS_LAYER}


def bundle_model(foreign: Foreign, shape: tuple[int, int, int], prep: Preprocessing | None, logits: bool):
    """The model the bundle holds: raw pixels of `shape` in, probabilities out.

    The declared preprocessing becomes a frozen 1x1 convolution at the input (one weight per output channel, so
    float results equal x * a + b exactly: every other product is zero), a logits model gets a Softmax at
    the end; a model that needs neither is kept as it is."""
    from ..core._tf import keras

    k = keras()
    model = foreign.model
    if model is not None and prep is None and not logits and tuple(model.inputs[0].shape[1:]) == tuple(shape):
        return model
    inputs = k.Input(shape, name="images")
    x = inputs
    if prep is not None:
        c = shape[2]
        conv = k.layers.Conv2D(c, 1, name=PREPROCESS_LAYER, trainable=False)
        x = conv(x)
        a, b = prep.affine(c)
        kernel = np.zeros((1, 1, c, c), np.float32)
        for out, src in enumerate(prep.order(c)):
            kernel[0, 0, src, out] = a[out]
        conv.set_weights([kernel, b])
    y = model(x) if model is not None else foreign_graph()(x)
    if logits:
        y = k.layers.Softmax(name=SOFTMAX_LAYER)(y)
    return k.Model(inputs, y, name=(model.name if model is not None else "savedmodel"))


def foreign_graph():
    from ..core import savedmodel

    return savedmodel.layer_class()(name="savedmodel_graph")


def copy_savedmodel(src: Path, stage: Path) -> list[Path]:
    """Copy a SavedModel folder into the bundle's stage (its `savedmodel/`); the files copied."""
    from ..core.savedmodel import FOLDER

    dest = stage / FOLDER
    shutil.copytree(src, dest)
    return sorted(p for p in dest.rglob("*") if p.is_file())
