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

A pretrained backbone is trained by transfer learning (`make_transfer_plan`), in phases of the same
batch and augmentation, each with its own warm-up and cosine schedule and early-stopping rule:

1. ``head``: the backbone frozen, only the new classification head learns, at ``--lr``, for at least
   `HEAD_STEPS` optimiser steps;
2. ``fine-tune``: the top `FINE_TUNE_BLOCKS` blocks and the head convolution unfrozen as well, at
   ``--lr`` x `FINE_TUNE_LR`, for at least `FINE_TUNE_STEPS` steps (``fine_tune_blocks=0``: no such phase).

Batch-norm stays in inference mode with its ImageNet statistics throughout (and is not re-estimated):
a few hundred images would move the statistics of a network trained on a million. ``--epochs``, when
given, is the epoch count of each phase.
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
# transfer learning (pretrained backbones); first choices, to be tuned by benchmarks/small_data.py
HEAD_STEPS = 200
FINE_TUNE_STEPS = 400
TRANSFER_MIN_EPOCHS = 3
FINE_TUNE_LR = 0.1  # fine-tuning's peak learning rate, as a fraction of --lr
FINE_TUNE_BLOCKS = 5  # EfficientNet-Lite0's last two stages (blocks 11-15 of 16)


@dataclass(frozen=True)
class Phase:
    """One phase of transfer learning: what learns, for how long, how fast."""

    name: str  # "head" or "fine-tune"
    trains: str  # in words
    blocks: int  # top backbone blocks unfrozen (0: the backbone is frozen)
    epochs: int
    total_steps: int
    warmup_steps: int
    lr: float  # peak learning rate
    start_from_epoch: int  # early stopping not before this epoch of the phase


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
    kind: str = "scratch"  # "scratch" or "transfer" (phases below)
    phases: tuple[Phase, ...] = ()

    def to_dict(self) -> dict:
        d = {**asdict(self), "auto": list(self.auto), "phases": [asdict(p) for p in self.phases]}
        if not self.phases:
            del d["phases"]
        return d

    def phase_plan(self, phase: Phase) -> "TrainPlan":
        """This plan narrowed to one phase (what the fitting loop and the schedule read)."""
        from dataclasses import replace

        return replace(self, epochs=phase.epochs, total_steps=phase.total_steps, warmup_steps=phase.warmup_steps,
                       start_from_epoch=phase.start_from_epoch, phases=())


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


def make_transfer_plan(n_train: int, n_val: int, *, lr: float, blocks: int, epochs: int | None = None,
                       batch_size: int | None = None, patience: int = 5, augment: bool = True,
                       fine_tune_blocks: int | None = None) -> TrainPlan:
    """The transfer-learning plan for a backbone of `blocks` blocks: a head phase, then (unless
    `fine_tune_blocks` is 0) a fine-tuning phase; batch, augmentation and early-stopping rules as `make_plan`.

    >>> p = make_transfer_plan(720, 80, lr=3e-3, blocks=16)
    >>> [(ph.name, ph.epochs, ph.blocks, ph.lr) for ph in p.phases]
    [('head', 9, 0, 0.003), ('fine-tune', 18, 5, 0.0003)]
    """
    base = make_plan(n_train, n_val, epochs=epochs or 1, batch_size=batch_size, patience=patience, augment=augment)
    steps = base.steps_per_epoch
    tune = min(FINE_TUNE_BLOCKS if fine_tune_blocks is None else fine_tune_blocks, blocks)

    def phase(name: str, trains: str, unfrozen: int, min_steps: int, peak: float) -> Phase:
        n = epochs or min(MAX_EPOCHS, max(TRANSFER_MIN_EPOCHS, math.ceil(min_steps / steps)))
        return Phase(name, trains, unfrozen, n, n * steps, max(1, round(WARMUP_FRACTION * n * steps)), peak,
                     n // 2 if base.early_stopping else n)

    phases = [phase("head", "the new classification head (backbone frozen)", 0, HEAD_STEPS, lr)]
    if tune:
        slower = float(f"{lr * FINE_TUNE_LR:.6g}")
        phases.append(phase("fine-tune", f"the head, the head convolution and the top {tune} of {blocks} blocks "
                                         "(batch-norm frozen)", tune, FINE_TUNE_STEPS, slower))
    auto = tuple(name for name, v in (("batch_size", batch_size), ("epochs", epochs)) if v is None)
    return TrainPlan(
        batch_size=base.batch_size, steps_per_epoch=steps, epochs=sum(p.epochs for p in phases),
        total_steps=sum(p.total_steps for p in phases), warmup_steps=phases[0].warmup_steps,
        early_stopping=base.early_stopping, patience=base.patience, start_from_epoch=phases[0].start_from_epoch,
        augment=base.augment, auto=auto, kind="transfer", phases=tuple(phases))
