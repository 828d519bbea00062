"""How long and how to train, derived from the size of the data (what `edgecls train` adapts).

A few hundred images at batch 64 give 3 optimiser steps an epoch: batch-norm statistics never
settle, a cosine schedule has nothing to decay over, and early stopping reacts to the noise of
a 16-image validation set. So everything is counted in optimiser steps:

- batch size scales with the training set (16 below 512 images, 32 below 1,024, else 64);
- epochs: enough for at least `MIN_STEPS` optimiser steps (never fewer than `MIN_EPOCHS`);
- learning rate: linear warm-up over the first 5% of steps, then cosine decay to 1% of the peak;
- early stopping only where the validation set is large enough to be evidence (`MIN_VAL`
  images), never in the first half of the schedule, with patience of at least `PATIENCE_STEPS`;
  otherwise the whole schedule runs and its last weights are kept;
- stronger augmentation (small shifts and zoom as well as flip and rotation) below
  `SMALL_DATA` training images;
- after fitting, batch-norm statistics are re-estimated on the (un-augmented) training images.

Options the user sets (``--epochs``, ``--batch-size``) are taken as given, never rewritten.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MIN_STEPS = 1000
MIN_EPOCHS = 8
MAX_EPOCHS = 300
MIN_VAL = 200
PATIENCE_STEPS = 400
SMALL_DATA = 2000
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class TrainPlan:
    batch_size: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int
    early_stopping: bool
    patience: int  # epochs without improvement of validation loss (when early stopping)
    start_from_epoch: int  # early stopping is not considered before this epoch
    augment: str  # "none", "standard" (flip, rotation) or "strong" (+ shift, zoom)
    auto: tuple[str, ...]  # which of batch_size/epochs were derived rather than given

    def to_dict(self) -> dict:
        return {**asdict(self), "auto": list(self.auto)}


def auto_batch(n_train: int) -> int:
    return 16 if n_train < 512 else 32 if n_train < 1024 else 64


def make_plan(n_train: int, n_val: int, *, epochs: int | None = None, batch_size: int | None = None,
              patience: int = 5, augment: bool = True, replicas: int = 1) -> TrainPlan:
    """The plan for `n_train` training and `n_val` validation images; given options win.

    `batch_size` is the global batch (all `replicas` together); one derived from the data is
    rounded up to a multiple of `replicas`, so that every replica takes the same share.

    >>> p = make_plan(144, 16)
    >>> (p.batch_size, p.steps_per_epoch, p.epochs, p.early_stopping)
    (16, 9, 112, False)
    """
    auto = tuple(name for name, v in (("batch_size", batch_size), ("epochs", epochs)) if v is None)
    batch = batch_size or math.ceil(auto_batch(n_train) / replicas) * replicas
    steps = max(1, math.ceil(n_train / batch))
    if epochs is None:
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps)))
    total = epochs * steps
    early = n_val >= MIN_VAL
    return TrainPlan(
        batch_size=batch, steps_per_epoch=steps, epochs=epochs, total_steps=total,
        warmup_steps=max(1, round(WARMUP_FRACTION * total)), early_stopping=early,
        patience=max(patience, math.ceil(PATIENCE_STEPS / steps)),
        start_from_epoch=epochs // 2 if early else epochs,
        augment="none" if not augment else "strong" if n_train < SMALL_DATA else "standard", auto=auto)
