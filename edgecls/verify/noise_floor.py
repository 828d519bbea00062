"""The float model's own noise floor: how many of its answers change when every pixel moves by at most half a
gray level (`verify --explain`).

Such noise is below what an 8-bit image can hold, and of the size of the rounding an int8 file applies to each of
its tensors (to 1/255 of the tensor's range; a model that resizes its input rounds the resized image to whole
gray levels). So where the float model changes, say, 1.2% of its answers under it, an int8 file cannot be expected
to change fewer, however it is made: those answers are decided by noise the float model is not steady against,
not by the conversion, and a changed-answers limit at or below that share is not expected to be shown by any int8
file on these images. The float model is then what must change, or the limit (`--max-drop`). The floor is a lower
bound, not a forecast: an int8 file's error is not random noise, and it may change other answers as well.

Measured on the images int8 files are judged on (held-out and validation, at most `MAX_IMAGES`), `DRAWS` seeded
draws of uniform noise in ±`AMPLITUDE` gray levels, clipped to 0-255, with the Keras model run here: the changed
answers of each draw (one fixed perturbation, as an int8 file is one), and the images changed in any draw (each
counted once), each share with its 95% interval over the images. The verdict claims a floor at or above the limit
only from the draw that changed fewest, and calls the answers an int8 file changes its own only when even the
images changed in any draw are shown below the limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..core.bundle import Bundle
from ..core.stats import rate_interval

AMPLITUDE = 0.5  # gray levels: below an 8-bit pixel's resolution
DRAWS = 2
MAX_IMAGES = 2000  # a 1% share is told apart from 2% on this many; Keras stays within seconds on a backbone
CHUNK = 256  # images made noisy at once


@dataclass
class NoiseFloor:
    images: int
    amplitude: float
    changed: list[int]  # changed answers per draw
    unsteady: int  # images whose answer changed in at least one draw
    kinds: dict[str, int]  # which images: held-out, validation
    seed: int

    @classmethod
    def of(cls, moved: np.ndarray, amplitude: float, kinds: dict[str, int], seed: int) -> NoiseFloor:
        """The floor from `moved_answers`' (draws, images) mask."""
        return cls(moved.shape[1], amplitude, [int(m.sum()) for m in moved], int(moved.any(axis=0).sum()), kinds,
                   seed)

    @property
    def share(self) -> float:
        """The unsteady images' share (a fraction): each image counted once, however many draws changed it."""
        return self.unsteady / self.images if self.images else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of the unsteady share over the images (one trial per image: the draws are not independent)."""
        return rate_interval(self.unsteady, self.images)

    @property
    def least_interval(self) -> tuple[float, float]:
        """95% interval of the share the draw that changed fewest answers changed (one fixed perturbation)."""
        return rate_interval(min(self.changed, default=0), self.images)

    def verdict(self, limit_percent: float) -> str:
        """What the floor means for an int8 changed-answers limit of `limit_percent`."""
        if 100 * self.least_interval[0] >= limit_percent:
            return (f"at or above the {limit_percent:g}% changed-answers limit: expect no int8 file to be shown within "
                    "it on these images, however it is made: that many of the float model's answers are decided by "
                    "noise below a gray level (the float model is what must change, or a looser --max-drop)")
        if 100 * min(self.changed, default=0) / max(self.images, 1) >= limit_percent:
            return (f"above the {limit_percent:g}% changed-answers limit on these images, though not shown at 95%: "
                    "expect int8 files to fail it or stay inconclusive, however they are made")
        if 100 * self.share >= limit_percent / 2:
            return (f"near the {limit_percent:g}% changed-answers limit: expect int8 files to fail it or stay "
                    "inconclusive on these images, however they are made")
        if 100 * self.interval[1] < limit_percent:
            return f"below the {limit_percent:g}% changed-answers limit: answers an int8 file changes are its own doing"
        return f"too few images to place it against the {limit_percent:g}% changed-answers limit"

    def to_dict(self) -> dict:
        low, high = self.interval
        return asdict(self) | {"share": self.share, "interval": [low, high],
                               "least_draw_interval": list(self.least_interval)}


def measure(model, images: np.ndarray, kinds: dict[str, int] | None = None, *, amplitude: float = AMPLITUDE,
            draws: int = DRAWS, seed: int = 0) -> NoiseFloor:
    """The changed answers of the loaded Keras `model` on uint8 `images` under `draws` seeded draws of uniform
    noise in ±`amplitude` gray levels (clipped to 0-255)."""
    moved = moved_answers(model, images, amplitude=amplitude, draws=draws, seed=seed)
    return NoiseFloor.of(moved, amplitude, kinds or {"images": len(images)}, seed)


def moved_answers(model, images: np.ndarray, *, amplitude: float = AMPLITUDE, draws: int = DRAWS,
                  seed: int = 0) -> np.ndarray:
    """(draws, images) bool: which answers of the Keras `model` each seeded draw of noise changed."""
    from ..runtimes.keras import probabilities

    clean = probabilities(model, images).argmax(1)
    rng = np.random.default_rng(seed)
    moved = np.zeros((draws, len(images)), bool)
    for d in range(draws):
        for first in range(0, len(images), CHUNK):  # a float copy of a chunk at a time, not of every image
            x = images[first:first + CHUNK].astype(np.float32)
            x = np.clip(x + rng.uniform(-amplitude, amplitude, x.shape), 0, 255).astype(np.float32)
            moved[d, first:first + CHUNK] = probabilities(model, x).argmax(1) != clean[first:first + CHUNK]
    return moved


def of_bundle(bundle_path, data_dir: str | None = None) -> NoiseFloor:
    """The bundle's float model's floor on its held-out and validation images (at most `MAX_IMAGES`, held-out
    first).

    Raises:
        EdgeclsError: the bundle's data or TensorFlow is not here.
    """
    from ..runtimes.keras import load_bundle_model
    from .evidence import split_sample

    bundle = Bundle.open(bundle_path)
    _, x_t, _ = split_sample(bundle, "test", MAX_IMAGES, data_dir)
    _, x_v, _ = split_sample(bundle, "val", MAX_IMAGES - len(x_t), data_dir)
    kinds = {k: len(x) for k, x in (("held-out", x_t), ("validation", x_v)) if len(x)}
    seed = bundle.manifest["dataset"]["split"]["seed"]
    return measure(load_bundle_model(bundle), np.concatenate([x_t, x_v]), kinds, seed=seed)


def floor_or_why(bundle_path, data_dir: str | None, max_drop: float) -> dict:
    """`verify --explain`'s record: the floor with its verdict against the int8 changed-answers limit that
    `max_drop` sets, or a note saying why it could not be measured here (no TensorFlow, no data)."""
    from .. import runtimes
    from ..core.errors import EdgeclsError
    from ..core.gates import gates
    from ..core.names import Precision, Runtime

    if not runtimes.runner_class(Runtime.keras).installed():
        return {"note": "not measured: TensorFlow is not installed (the float model runs in Keras)"}
    limit = gates(max_drop)[Precision.int8].max_changed
    try:
        floor = of_bundle(bundle_path, data_dir)
    except EdgeclsError as e:
        return {"note": f"not measured: {e}"}
    if not floor.images:
        return {"note": "not measured: the bundle has no held-out or validation images"}
    return floor.to_dict() | {"limit_percent": limit, "verdict": floor.verdict(limit)}
