"""Train: set the run up (data, split, architecture, plan, placement), fit it (edgecls.train.fitting), evaluate
on the held-out split, and write the bundle (edgecls.train.output)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.files import ensure_writable
from ..core.hooks import Hooks
from ..core.names import MAX_BATCH
from . import dataset, distribute, output, sources, splits
from .baseline import pixel_baseline
from .fitting import EpochLog, Fitted, fit_distributed, fit_one_device  # noqa: F401  (EpochLog: imported from here)
from .plan import make_plan, make_transfer_plan

MAX_EPOCHS_GIVEN = 10000


@dataclass
class TrainConfig:
    """Options of `edgecls train` (defaults: the bundled digits, the default architecture for the data)."""

    data: str = "digits"
    arch: str | None = None  # None: the default for the data (edgecls.train.models.choose_arch), and why is recorded
    epochs: int | None = None  # None: enough for edgecls.train.plan.MIN_STEPS optimiser steps
    batch_size: int | None = None  # None: from the training set's size (edgecls.train.plan.auto_batch)
    lr: float = 3e-3
    image_size: int | None = None  # None: the source's default (digits 32, fashion 28, folder 64)
    val_split: float = 0.1  # of the training part, for early stopping
    test_split: float = 0.2  # held out; ignored where the source has an official test split
    seed: int = 0
    augment: bool = True
    patience: int = 5  # early stopping on validation loss (epochs; at least plan.PATIENCE_STEPS steps)
    width: float = 1.0  # width multiplier (`mobile`)
    limit: int | None = None  # stratified subset of this many images
    data_dir: str | None = None  # Fashion-MNIST IDX folder
    skip_bad: bool = False  # skip unreadable files in an image folder instead of refusing
    out: Path | None = None  # default models/<dataset>-<arch>
    cache: Path | None = None  # a folder for tf.data's on-disk cache of decoded images (large folders)
    strategy: str = "default"  # default, mirrored or multiworker (edgecls.train.distribute)
    worker_timeout: float = 120.0  # multiworker: seconds to wait for every worker at start-up
    heartbeat_timeout: float = 10.0  # multiworker: seconds of silence before a worker is declared lost
    pretrained: bool = True  # a pretrained backbone's ImageNet weights (False: the same network from scratch)
    backbone_size: int | None = None  # pretrained backbones: pixels a side inside the model (None: default_size)
    fine_tune_blocks: int | None = None  # transfer learning: top blocks fine-tuned (None: the plan's; 0: head only)

    def validate(self) -> None:
        for name, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                        ("--patience", self.patience)):
            if v is not None and v < 1:
                raise EdgeclsError(f"{name} {v}: must be at least 1")
        if not 0 < self.lr < 1:
            raise EdgeclsError(f"--lr {self.lr}: must be between 0 and 1")
        if self.batch_size is not None and self.batch_size > MAX_BATCH:
            raise EdgeclsError(f"--batch-size {self.batch_size}: at most {MAX_BATCH}")
        if self.epochs is not None and self.epochs > MAX_EPOCHS_GIVEN:
            raise EdgeclsError(f"--epochs {self.epochs}: at most {MAX_EPOCHS_GIVEN}")
        if not 0 <= self.seed < 2**32:
            raise EdgeclsError(f"--seed {self.seed}: must be between 0 and 4294967295")
        if self.strategy not in {s.value for s in distribute.Strategy}:
            raise EdgeclsError(f"--strategy {self.strategy!r}: expected one of "
                               f"{', '.join(s.value for s in distribute.Strategy)}")
        if not 0 < self.worker_timeout <= 86400:
            raise EdgeclsError(f"--worker-timeout {self.worker_timeout:g}: must be between 0 and 86400 seconds")
        self._validate_backbone()

    def _validate_backbone(self) -> None:
        """The options of pretrained backbones, and their weights package, checked before any work."""
        from .models import ARCHITECTURES, pretrained, pretrained_names

        if self.arch is not None and self.arch not in ARCHITECTURES:
            raise EdgeclsError(f"--arch {self.arch!r}: unknown architecture (choose from {', '.join(ARCHITECTURES)})")
        facts = pretrained(self.arch)
        backbone = facts is not None
        names = ", ".join(sorted(pretrained_names()))
        for given, option in ((not self.pretrained, "--no-pretrained"), (self.backbone_size is not None,
                              f"--backbone-size {self.backbone_size}"),
                              (self.fine_tune_blocks is not None, f"--fine-tune-blocks {self.fine_tune_blocks}")):
            if given and not backbone:
                raise EdgeclsError(f"{option}: applies only to a pretrained backbone (--arch {names}); "
                                   + (f"--arch {self.arch} is not one" if self.arch else
                                      "name it with --arch (the default depends on the images)"))
        if self.backbone_size is not None and not facts.min_size <= self.backbone_size <= facts.max_size:
            raise EdgeclsError(f"--backbone-size {self.backbone_size}: must be between {facts.min_size} and "
                               f"{facts.max_size} pixels")
        if self.fine_tune_blocks is not None and self.fine_tune_blocks < 0:
            raise EdgeclsError(f"--fine-tune-blocks {self.fine_tune_blocks}: must be 0 (head only) or more")
        if backbone and self.pretrained:
            if self.strategy != distribute.Strategy.default.value:
                raise EdgeclsError(f"--strategy {self.strategy}: transfer learning runs on one device for now; "
                                   "use --strategy default (or --no-pretrained)")
            facts.require()  # not installed: says what to install

    def bundle_dir(self, data: sources.Data) -> Path:
        if self.out is not None:
            return Path(self.out)
        name = Path(self.data).resolve().name if data.name == "folder" else data.name
        return Path("models") / f"{name}-{self.arch}"


@dataclass
class TrainResult:
    bundle: Path | None  # None on a worker that is not the chief (it writes nothing)
    manifest: dict
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    written: bool = True


def evaluate(model, data: sources.Data, idx: np.ndarray, batch_size: int = 256) -> dict:
    """Accuracy, loss, per-class precision/recall and the confusion matrix on `idx`."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    ds = dataset.tf_dataset(data, idx, batch_size=batch_size)
    probs = model.predict(ds, verbose=0)
    y = data.labels[idx]
    pred = probs.argmax(1)
    k = list(range(len(data.classes)))
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=k, zero_division=0)
    return {
        "images": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "loss": float(log_loss(y, np.clip(probs, 1e-7, 1), labels=k)),
        "per_class": [{"label": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i, c in enumerate(data.classes)],
        "confusion": confusion_matrix(y, pred, labels=k).tolist(),
    }


def _recalibrate_bn(model, data: sources.Data, idx: np.ndarray, batch_size: int = 128,
                    max_images: int = 8192, seed: int = 0) -> int:
    """Re-estimate every batch-norm layer's moving statistics on un-augmented training images.

    The moving averages accumulated during fitting lag behind the weights (few steps) and saw
    augmented images; a cumulative average of batch statistics over the final weights is right
    (as ``torch.optim.swa_utils.update_bn`` does). Returns the number of images used.
    """
    bns = [layer for layer in model.layers  # frozen ones (a pretrained backbone's) keep their statistics
           if layer.__class__.__name__ == "BatchNormalization" and layer.trainable]
    if not bns:
        return 0
    pick = idx[splits.subset(data.labels[idx], max_images, seed)]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    saved = [layer.momentum for layer in bns]
    try:
        for i, (x, _) in enumerate(dataset.tf_dataset(data, pick, batch_size=batch_size)):
            for layer in bns:
                layer.momentum = i / (i + 1)  # batch i+1 weighs 1/(i+1): a cumulative mean
            model(x, training=True)
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m
    return len(pick)


def train(cfg: TrainConfig, *, hooks: Hooks | None = None) -> TrainResult:
    """Train `cfg.arch` on `cfg.data`, evaluate on the held-out split, write the bundle.

    Batch size and epochs not given are derived from the data (`edgecls.train.plan`); batch-norm
    statistics are re-estimated after fitting; a pixel baseline (`edgecls.train.baseline`) is fitted on
    the same split and the result says when the CNN does not beat it.

    With ``cfg.strategy`` ``mirrored`` or ``multiworker`` the replicas train one model together
    (`edgecls.train.distribute`, `edgecls.train.loop`); the batch size is the global one. Only the chief writes
    the bundle; another worker returns a result with ``written`` False.

    Ctrl-C after at least one epoch keeps the weights so far and still writes a complete
    bundle (marked ``interrupted``); before that, nothing is written and any previous bundle
    is left intact.

    `hooks` (`edgecls.core.hooks.Hooks`) hears `start`, each `epoch_start`/`batch`/`epoch_end`, then
    `evaluating`; raising `KeyboardInterrupt` from one is Ctrl-C.

    Raises:
        EdgeclsError: bad options or bad data (nothing is written).
        errors.RunFailed: training failed at run time under a strategy (out of memory, another TensorFlow
            error), or, as distribute.WorkerLost, a worker of a multi-worker run never came up or stopped
            answering (exit code 3; nothing is written; a previous bundle is left intact).
    """
    from .models import choose_arch, pretrained

    hooks = hooks or Hooks()
    cfg.validate()
    chief = distribute.is_chief(cfg.strategy)  # a bad TF_CONFIG fails here, before any work
    data = sources.load(cfg.data, image_size=cfg.image_size, data_dir=cfg.data_dir, skip_bad=cfg.skip_bad)
    arch, why = (cfg.arch, "given with --arch") if cfg.arch else choose_arch(
        data, one_device=cfg.strategy == distribute.Strategy.default.value)
    cfg = replace(cfg, arch=arch)
    facts = pretrained(arch)
    transfer = facts is not None and cfg.pretrained
    split = splits.split(data, test_fraction=cfg.test_split, val_fraction=cfg.val_split,
                           seed=cfg.seed, limit=cfg.limit)
    out = cfg.bundle_dir(data)
    if chief:
        ensure_writable(out)
    strategy, placement = distribute.create(cfg.strategy, worker_timeout=cfg.worker_timeout,
                                            heartbeat_timeout=cfg.heartbeat_timeout)
    backbone_size = None
    if facts is not None:
        backbone_size = cfg.backbone_size or facts.size_for(data.input_shape[0])
    if transfer:
        plan = make_transfer_plan(len(split.train), len(split.val), lr=cfg.lr, epochs=cfg.epochs,
                                  batch_size=cfg.batch_size, patience=cfg.patience, augment=cfg.augment,
                                  blocks=facts.blocks, fine_tune_blocks=cfg.fine_tune_blocks)
    else:
        plan = make_plan(len(split.train), len(split.val), epochs=cfg.epochs, batch_size=cfg.batch_size,
                         patience=cfg.patience, augment=cfg.augment, replicas=placement.replicas)
    if plan.batch_size % placement.replicas:
        raise EdgeclsError(f"--batch-size {plan.batch_size}: the global batch must be a multiple of the "
                           f"{placement.replicas} replicas training together")

    from ..core._tf import keras, tensorflow
    from .models import build

    tf, k = tensorflow(), keras()
    k.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    def build_model():
        return build(arch, data.input_shape, len(data.classes), width=cfg.width, pretrained=cfg.pretrained,
                     backbone_size=backbone_size)

    run = output.TrainingRun(cfg, data, split, out, plan, placement, why, backbone_size,
                             output.notes(cfg, data, backbone_size))

    def announce(model) -> None:
        """Say what is about to be trained (the CLI prints it), once the model is built."""
        hooks.start({"bundle": str(out), "dataset": data.name, "classes": len(data.classes),
                     "input_shape": list(data.input_shape), "train": len(split.train), "val": len(split.val),
                     "test": len(split.test), "skipped": len(data.skipped), "params": model.count_params(),
                     "steps": plan.steps_per_epoch, "plan": plan.to_dict(),
                     "distribute": output.scale_section(placement, plan, cfg), "writes": chief,
                     "architecture": output.architecture(run, model), "notes": run.notes})

    if strategy is None:
        model, fitted = fit_one_device(k, run, build_model, transfer, hooks, announce)
    else:
        model, fitted = fit_distributed(tf, k, strategy, run, build_model, hooks, announce)
    if not chief:
        return TrainResult(None, {}, fitted.history, fitted.interrupted, written=False)
    hooks.evaluating()
    evaluation = output.Evaluation(_recalibrate_bn(model, data, split.train, seed=cfg.seed),
                                   evaluate(model, data, split.test),
                                   pixel_baseline(data, split.train, split.test, seed=cfg.seed))
    manifest, split_ids = output.manifest(run, model, fitted, evaluation)
    output.write_bundle(out, model, manifest, fitted.history, split_ids)
    return TrainResult(out, manifest, fitted.history, fitted.interrupted)
