"""Fitting under a plan: on one device with `model.fit` (transfer learning phase by phase), or under a
tf.distribute strategy with edgecls.train.loop; progress reported through `core.hooks.Hooks` and the weights to
end with kept (`Fitted`). `edgecls.train.fit.train` sets the run up and calls one of the two paths."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..core.hooks import Hooks
from . import dataset, distribute
from .plan import TrainPlan

if TYPE_CHECKING:
    from .fit import TrainConfig
    from .output import TrainingRun


@dataclass
class EpochLog:
    epoch: int  # 1-based
    epochs: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


def _callback(keras, hooks: Hooks, epochs: int, steps: int, history: list[dict], keep_best: bool,
              offset: int = 0, phase: str | None = None):
    """Reports progress, records the history, and keeps the weights to end with: the best by validation
    loss (`keep_best`, with early stopping) or the last completed epoch's (so Ctrl-C can still save them).
    A phase of transfer learning counts its epochs from `offset` and names itself in the history."""

    class Tracker(keras.callbacks.Callback):
        best_loss = np.inf
        kept_weights = None
        kept_epoch = 0
        train_seconds = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            hooks.epoch_start(offset + epoch + 1, steps)

        def on_train_batch_end(self, batch, logs=None):
            hooks.batch(batch + 1)

        def on_test_begin(self, logs=None):
            self.train_seconds += time.perf_counter() - self.t0

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log = EpochLog(offset + epoch + 1, epochs, float(logs["loss"]), float(logs["accuracy"]),
                           float(logs["val_loss"]), float(logs["val_accuracy"]),
                           time.perf_counter() - self.t0)
            history.append(asdict(log) | ({"phase": phase} if phase else {}))
            if not keep_best or log.val_loss < self.best_loss:
                self.best_loss, self.kept_epoch = min(self.best_loss, log.val_loss), offset + epoch + 1
                self.kept_weights = self.model.get_weights()
            hooks.epoch_end(log)

    return Tracker()


def _schedule(k, cfg: TrainConfig, plan: TrainPlan):
    """Linear warm-up to `cfg.lr`, then cosine decay to 1% of it, counted in optimiser steps."""
    return k.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr / 100, decay_steps=max(1, plan.total_steps - plan.warmup_steps), alpha=0.01,
        warmup_target=cfg.lr, warmup_steps=plan.warmup_steps)


@dataclass
class Fitted:
    """What fitting (every phase together) produced: the epoch history, the weights kept (the best by validation
    loss with early stopping, else the last completed epoch's) and when, and the time it took."""

    history: list[dict] = field(default_factory=list)
    kept_weights: list | None = None
    kept_epoch: int = 0  # 1-based; 0: none
    train_seconds: float = 0.0  # in training steps (validation excluded)
    seconds: float = 0.0  # wall time of fitting
    interrupted: bool = False


def _fit(k, model, cfg: TrainConfig, plan: TrainPlan, train_ds, val_ds, hooks: Hooks, run=None,
         offset: int = 0, total: int | None = None, phase: str | None = None) -> Fitted:
    """Fit under the plan: `model.fit` on one device, else `run(callbacks)` (the distributed loop).
    A phase of transfer learning: its epochs are numbered from `offset` out of `total`."""
    fitted = Fitted()
    tracker = _callback(k, hooks, total or plan.epochs, plan.steps_per_epoch, fitted.history,
                        keep_best=plan.early_stopping, offset=offset, phase=phase)
    callbacks = [tracker]
    if plan.early_stopping:
        callbacks.append(k.callbacks.EarlyStopping(monitor="val_loss", patience=plan.patience,
                                                   start_from_epoch=plan.start_from_epoch))
    t0 = time.perf_counter()
    try:
        if run is None:
            model.fit(train_ds, validation_data=val_ds, epochs=plan.epochs, callbacks=callbacks, verbose=0,
                      shuffle=False)  # the tf.data pipeline shuffles, seeded
        else:
            run(callbacks)
    except KeyboardInterrupt:
        if tracker.kept_weights is None:
            raise
        fitted.interrupted = True
    fitted.seconds = time.perf_counter() - t0
    fitted.kept_weights, fitted.kept_epoch = tracker.kept_weights, tracker.kept_epoch
    fitted.train_seconds = tracker.train_seconds
    if fitted.kept_weights is not None:
        model.set_weights(fitted.kept_weights)
    return fitted


def _transfer_fit(k, model, cfg: TrainConfig, plan: TrainPlan, train_ds, val_ds, hooks: Hooks) -> Fitted:
    """Transfer learning: each of the plan's phases unfreezes its blocks, gets a fresh Adam on its own
    schedule, and starts from the weights the previous phase kept. Ctrl-C in a later phase before its first
    epoch ends keeps the previous phase's weights."""
    from .pretrained import set_trainable

    total = Fitted()
    for phase in plan.phases:
        set_trainable(model, phase.blocks)
        sub = plan.phase_plan(phase)
        model.compile(optimizer=k.optimizers.Adam(_schedule(k, replace(cfg, lr=phase.lr), sub)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        before = model.get_weights()
        try:
            one = _fit(k, model, cfg, sub, train_ds, val_ds, hooks, offset=len(total.history), total=plan.epochs,
                       phase=phase.name)
        except KeyboardInterrupt:
            if not total.history:
                raise
            model.set_weights(before)
            total.interrupted = True
            break
        total.history += one.history
        total.seconds += one.seconds
        total.train_seconds += one.train_seconds
        total.kept_epoch, total.kept_weights, total.interrupted = one.kept_epoch, one.kept_weights, one.interrupted
        if one.interrupted:
            break
    return total


def _distributed(tf, k, strategy, placement, cfg: TrainConfig, plan: TrainPlan, data, split, build_model):
    """(model, run) for the loop under `strategy`: the model and optimiser made in its scope, each worker
    reading its own shard of the training images (split before decoding)."""
    from . import loop

    with strategy.scope():
        model = build_model()
        optimizer = k.optimizers.Adam(_schedule(k, cfg, plan))

    def shard(ctx):
        return dataset.tf_dataset(
            data, split.train, batch_size=ctx.get_per_replica_batch_size(plan.batch_size), shuffle=True,
            augment=plan.augment if plan.augment != "none" else False, seed=cfg.seed,
            shard=(ctx.num_input_pipelines, ctx.input_pipeline_id), repeat=True, cache_dir=cfg.cache)

    val = dataset.tf_dataset(data, split.val, batch_size=max(plan.batch_size, 256), cache_dir=cfg.cache,
                              cache_key=placement.task)  # every worker decodes it whole: its own file
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_dist = strategy.distribute_datasets_from_function(shard)
    val_dist = strategy.experimental_distribute_dataset(val.with_options(options))

    def run(callbacks):
        try:
            loop.fit(tf, k, strategy, model, optimizer, epochs=plan.epochs, steps=plan.steps_per_epoch,
                     global_batch=plan.batch_size, train_dist=train_dist, val_dist=val_dist, callbacks=callbacks)
        except tf.errors.OpError as e:
            raise distribute.failure(e, placement) from None

    return model, run


def fit_one_device(k, run: TrainingRun, build_model, transfer: bool, hooks: Hooks, announce):
    """Build, compile and fit on one device (`model.fit`; transfer learning phase by phase)."""
    cfg, plan, data, split = run.cfg, run.plan, run.data, run.split
    model = build_model()
    if not transfer:  # transfer learning compiles once per phase
        model.compile(optimizer=k.optimizers.Adam(_schedule(k, cfg, plan)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = dataset.tf_dataset(data, split.train, batch_size=plan.batch_size, shuffle=True,
                                  augment=plan.augment if plan.augment != "none" else False, seed=cfg.seed,
                                  cache_dir=cfg.cache)
    val_ds = dataset.tf_dataset(data, split.val, batch_size=max(plan.batch_size, 256), cache_dir=cfg.cache)
    announce(model)
    fitted = (_transfer_fit(k, model, cfg, plan, train_ds, val_ds, hooks) if transfer
              else _fit(k, model, cfg, plan, train_ds, val_ds, hooks))
    return model, fitted


def fit_distributed(tf, k, strategy, run: TrainingRun, build_model, hooks: Hooks, announce):
    """Fit under `strategy` (edgecls.train.loop), then carry the kept weights to a model on one device, outside
    the strategy, where the rest (evaluation, saving) runs."""
    model, loop_run = _distributed(tf, k, strategy, run.placement, run.cfg, run.plan, run.data, run.split,
                                   build_model)
    announce(model)
    fitted = _fit(k, model, run.cfg, run.plan, None, None, hooks, loop_run)
    weights = fitted.kept_weights if fitted.kept_weights is not None else model.get_weights()
    model = build_model()
    model.set_weights(weights)
    return model, fitted
