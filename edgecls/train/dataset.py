"""The tf.data training pipeline: decoded images in memory or in an on-disk cache, sharded per worker,
shuffled, augmented (flip, rotate) and batched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError
from ..core.images import load_image
from .sources import Data

CACHE_BYTES = 256 << 20  # decoded training images up to this size are kept in memory after the first epoch
SHUFFLE_BYTES = 64 << 20  # decoded images read back from a file cache are shuffled in a buffer of this size


def cache_in_memory(n: int, shape: tuple[int, int, int]) -> bool:
    """Are `n` decoded images of `shape` (uint8) small enough to keep in memory for training?"""
    return n * int(np.prod(shape)) <= CACHE_BYTES


_CACHE_LOCKS: dict[str, object] = {}  # cache path -> the open lock file this process holds until it exits


def _claim(path: Path) -> bool:
    """Take ``path.edgecls-lock`` (an exclusive OS file lock through `filelock`, held until this process
    exits); False when another live process holds it."""
    from filelock import FileLock, Timeout

    if str(path) in _CACHE_LOCKS:
        return True
    lock = FileLock(f"{path}.edgecls-lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    except OSError:  # a read-only cache folder: nothing to claim (tf.data will say what is wrong)
        return True
    _CACHE_LOCKS[str(path)] = lock
    return True


def cache_file(cache_dir: str | Path, data: Data, idx: np.ndarray, shard: tuple[int, int] | None,
               order: tuple = ()) -> Path:
    """The tf.data cache file of these images: named by a hash of the source, image size, ids, shard and
    `order` (the first epoch's shuffle, which the cache keeps, and who reads it), so another dataset,
    split, shard or seed never reads a stale cache.

    A run claims the file with a lock of its own (``.edgecls-lock``, held until it exits). TensorFlow's
    ``.lockfile`` without a finished index is removed only when no live run holds that claim (a killed
    run's); while another run is still writing the file, this one gets a file of its own instead."""
    import hashlib

    h = hashlib.sha256(repr((data.source, data.input_shape, shard, order)).encode())
    for i in idx:
        h.update(str(data.ids[i]).encode() + b"\0")
    path = Path(cache_dir) / f"edgecls-{data.name}-{h.hexdigest()[:16]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeclsError(f"--cache {cache_dir}: cannot create the folder ({e.strerror or e})") from e
    finished = Path(f"{path}.index").exists()
    if not _claim(path):  # another live run has it
        if finished:
            return path  # complete: reading it is safe
        path = Path(f"{path}-{os.getpid()}")  # it is still writing it: never touch its files
        _claim(path)
    lock = Path(f"{path}.lockfile")
    if lock.exists() and not Path(f"{path}.index").exists():  # its writer is gone (we hold the claim)
        lock.unlink(missing_ok=True)
    return path


def tf_dataset(data: Data, idx: np.ndarray, *, batch_size: int, shuffle: bool = False,
               augment: bool | str = False, seed: int = 0, shard: tuple[int, int] | None = None,
               repeat: bool = False, cache_dir: str | Path | None = None, cache_key: str = ""):
    """A batched tf.data pipeline of (float32 raw 0-255 NHWC images, int labels).

    Folder images are decoded in parallel (Pillow, via `load_image`) as the pipeline streams; for
    training, a folder whose decoded images fit in `CACHE_BYTES` is cached in memory after the
    first epoch; a larger one is cached on disk in `cache_dir` where one is given (decoded once,
    read back every later epoch), else streams from disk every epoch (memory stays bounded).
    `shard` = (count, index) keeps every count-th image (one worker's share, chosen before decoding);
    `repeat` repeats it without end (a distributed loop takes a fixed number of steps an epoch).
    `cache_key` (e.g. the worker's task) goes into the cache file's name: workers sharing a --cache
    folder never write one file.
    Augmentation (random flip where the source allows it, random rotation up to +-18 degrees;
    +-7 for Fashion-MNIST, whose items are all upright and centred) runs here, never inside the model.
    ``augment="strong"`` adds shifts and zoom of up to 10% (for small training sets).
    """
    from ..core._tf import keras, tensorflow

    tf = tensorflow()
    h, w, c = data.input_shape
    labels = data.labels[idx]
    if data.array is not None:
        ds = tf.data.Dataset.from_tensor_slices((data.array[idx], labels))
    else:
        paths = [str(data.paths[i]) for i in idx]
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    n = len(idx)
    if shard is not None and shard[0] > 1:
        ds = ds.shard(*shard)
        n = len(range(shard[1], n, shard[0]))
    on_disk = data.paths is not None and data.array is None
    in_memory = on_disk and cache_in_memory(n, data.input_shape) and bool(shuffle or augment)
    to_file = on_disk and not in_memory and cache_dir is not None
    cache = in_memory or to_file
    if shuffle and not in_memory:  # shuffle file names before decoding: the buffer holds paths, not pixels
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if on_disk:
        def decode(p):
            return load_image(p.decode(), (h, w), c)

        def tf_decode(p, y):
            x = tf.numpy_function(decode, [p], tf.uint8, stateful=False)
            x.set_shape((h, w, c))
            return x, y

        ds = ds.map(tf_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:  # decoded once, not once per epoch: a small folder in memory, a large one to a file
        order = (bool(shuffle), seed) + ((cache_key,) if cache_key else ())
        ds = ds.cache(str(cache_file(cache_dir, data, idx, shard, order)) if to_file else "")
        if shuffle:  # a file cache replays its first (shuffled) order: mix it again in a bounded buffer
            buffer = max(64, min(n, SHUFFLE_BYTES // int(np.prod(data.input_shape)))) if to_file else n
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment:
        k = keras()
        layers = ([k.layers.RandomFlip("horizontal", seed=seed)] if data.flip else []) + [
            k.layers.RandomRotation(data.rotation, fill_mode="constant", seed=seed + 1)]
        if augment == "strong":  # small data: shifts and zoom as well
            layers += [k.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 2),
                       k.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 3)]
        aug = k.Sequential(layers)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
