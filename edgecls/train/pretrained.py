"""What training knows about an ImageNet-pretrained architecture without building it: the facts of its
`ARCHITECTURES` entry (a `Pretrained`, as timm keeps a model's facts in its ``default_cfgs``), and the
convention every pretrained family's model follows so that one generic path fine-tunes it.

A pretrained family is a builder ``(input_shape, num_classes, pretrained=True, backbone_size=None, **_) ->
keras.Model`` registered with its facts::

    ARCHITECTURES.register("mynet-s", "mypkg.mynet:build_s", pretrained=Pretrained(weights={...}, blocks=12))

Its model takes raw 0-255 pixels (its first layer maps them to the weights' range, then resizes to
``backbone_size`` when given), names its blocks ``block<i>_...`` (in order, input first), its last
convolution ``head_conv`` and its new classifier ``logits``, and builds its batch-norm frozen when
`pretrained`. Training then plans the phases from `blocks`, unfreezes with `set_trainable`, and records
`weights` in the manifest; nothing else names the family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


def _nothing_to_check() -> None:
    return None


@dataclass(frozen=True)
class Pretrained:
    """The facts of a pretrained architecture (its registry entry's ``pretrained``)."""

    weights: dict  # what the manifest records of the weights: source, package, version, file, sha256
    blocks: int  # blocks fine-tuning can unfreeze (the model's block<i>_ layers)
    min_size: int = 32  # pixels a side the network takes (inside the model, after its resize)
    max_size: int = 512
    default_size: int = 128  # what it works at when --backbone-size is not given (docs/measurements.md)
    #: raises MissingDependency (naming what to install) or EdgeclsError when the weights are not usable here
    require: Callable[[], object] = field(default=_nothing_to_check, compare=False)

    def size_for(self, image_size: int) -> int:
        """The backbone size for images of `image_size` pixels: `default_size`, never smaller than the images
        (larger images are not shrunk inside the model), at most `max_size`."""
        return min(self.max_size, max(self.default_size, image_size))

    def installed(self) -> bool:
        from ..core.errors import EdgeclsError

        try:
            self.require()
        except EdgeclsError:
            return False
        return True


def set_trainable(model, blocks: int) -> None:
    """Make the new head (``logits``) trainable and, with `blocks` > 0, also the head convolution and the top
    `blocks` blocks; everything else is frozen. Batch-norm layers keep the trainability they were built
    with (frozen, in inference mode, in a pretrained backbone)."""
    first = block_count(model) - blocks
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            continue
        name = layer.name
        if name.startswith("block"):
            layer.trainable = blocks > 0 and int(name[5:].split("_")[0]) >= first
        else:
            layer.trainable = name == "logits" or (name == "head_conv" and blocks > 0)


def block_count(model) -> int:
    """How many blocks a pretrained family's model has (its layers named ``block<i>_...``)."""
    return len({layer.name.split("_")[0] for layer in model.layers if layer.name.startswith("block")})
