"""The training loop under a tf.distribute strategy (``mirrored``, ``multiworker``).

``model.fit`` under MultiWorkerMirroredStrategy fails with Keras 3.15 / TensorFlow 2.21 ("Attempt
to convert a value (PerReplica…)", keras-team/keras#20585), so distributed training runs its own
step, the way the tf.distribute guides do: the strategy distributes the dataset, ``strategy.run``
runs a ``tf.GradientTape`` step on every replica, the loss is averaged over the global batch
(``tf.nn.compute_average_loss``), and loss and accuracy are summed over every replica of every
worker (``strategy.reduce``), so every worker sees the same epoch metrics and takes the same
early-stopping decision. The loop drives the same Keras callbacks as ``model.fit`` (the epoch
trace, early stopping), so plan, trace and Ctrl-C behave as on one device.
"""

from __future__ import annotations

import numpy as np


def fit(tf, k, strategy, model, optimizer, *, epochs: int, steps: int, global_batch: int, train_dist,
        val_dist, callbacks: list) -> None:
    """Run up to `epochs` epochs of `steps` optimiser steps; `train_dist` repeats (every worker takes
    exactly `steps` global batches an epoch), `val_dist` is one pass over the validation images.

    Raises KeyboardInterrupt (Ctrl-C) and TensorFlow's errors (a lost worker) as they come.
    """
    loss_fn = k.losses.SparseCategoricalCrossentropy(reduction=None)
    total = tf.distribute.ReduceOp.SUM

    def sums(y, probs, per_example):
        right = tf.equal(tf.argmax(probs, axis=1, output_type=tf.int64), tf.cast(y, tf.int64))
        return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(right, tf.float32)),
                         tf.cast(tf.size(y), tf.float32)])

    def train_step(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example = loss_fn(y, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums(y, probs, per_example)

    def val_step(x, y):
        probs = model(x, training=False)
        return sums(y, probs, loss_fn(y, probs))

    @tf.function
    def train_once(iterator):
        return strategy.reduce(total, strategy.run(train_step, args=next(iterator)), axis=None)

    @tf.function(reduce_retracing=True)
    def val_once(batch):
        return strategy.reduce(total, strategy.run(val_step, args=batch), axis=None)

    hooks = k.callbacks.CallbackList(callbacks, model=model)
    model.stop_training = False
    hooks.on_train_begin()
    iterator = iter(train_dist)
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        t = np.zeros(3)
        for step in range(steps):
            t += train_once(iterator).numpy()
            hooks.on_train_batch_end(step)
        hooks.on_test_begin()
        v = np.zeros(3)
        for batch in val_dist:
            v += val_once(batch).numpy()
        hooks.on_test_end()
        logs = {"loss": t[0] / max(t[2], 1), "accuracy": t[1] / max(t[2], 1),
                "val_loss": v[0] / max(v[2], 1), "val_accuracy": v[1] / max(v[2], 1)}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
