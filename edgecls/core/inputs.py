"""Inputs that need no labels: label-free variants of images, edge-case tensors, and a hash of which images.

A float export is a conversion of a fixed function: nothing in it was fitted to any image, so any
input can show a conversion fault — the images a bundle can reach, and variants of them that no
dataset holds (mirrored, cropped, brighter, lower contrast). Edge-case tensors (all 0, all 255,
uniform noise) are checked apart, for gross faults only: on noise two classes can sit within a
rounding error of each other, and a flip there is no conversion fault.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

#: the variants, each a function of (image, rng) -> image of the same shape (uint8)
VARIANT_KINDS = ("flip", "crop", "brightness", "contrast")


def _crop(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 70-90% of each side, resized back (bilinear, as images are decoded)."""
    from PIL import Image

    from .images import RESAMPLE

    h, w, c = im.shape
    ch, cw = (max(1, int(round(s * rng.uniform(0.7, 0.9)))) for s in (h, w))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    part = im[y:y + ch, x:x + cw]
    pil = Image.fromarray(part[..., 0] if c == 1 else part)
    return np.asarray(pil.resize((w, h), RESAMPLE), np.uint8).reshape(h, w, c)


def _brightness(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = rng.choice([-1, 1]) * rng.uniform(30, 80)
    return np.clip(im.astype(np.float32) + shift, 0, 255).astype(np.uint8)


def _contrast(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    factor = rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.3, 1.8)])
    mean = im.mean()
    return np.clip((im.astype(np.float32) - mean) * factor + mean, 0, 255).astype(np.uint8)


_VARIANTS = {"flip": lambda im, rng: im[:, ::-1], "crop": _crop, "brightness": _brightness, "contrast": _contrast}


def variants(images: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """`n` label-free variants of `images` (uint8 NHWC), seeded: each a random image of the set under one
    of `VARIANT_KINDS` in turn. Returns the variants and a key per variant ("crop:17": a crop of image 17)."""
    if n <= 0 or not len(images):
        return np.zeros((0, *images.shape[1:]), np.uint8), []
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(images), n)
    out = np.empty((n, *images.shape[1:]), np.uint8)
    keys = []
    for j, i in enumerate(src):
        kind = VARIANT_KINDS[j % len(VARIANT_KINDS)]
        out[j] = _VARIANTS[kind](images[i], rng)
        keys.append(f"{kind}:{int(i)}")
    return out, keys


def perturbed(images: np.ndarray, seed: int = 0, keep: float = 0.2) -> np.ndarray:
    """Each of `images` (uint8 NHWC) under one label-free variant picked at random, or as it is (a `keep`
    share): a fresh view of the same images, e.g. one per epoch of a distillation."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    for j in range(len(images)):
        if rng.random() >= keep:
            out[j] = _VARIANTS[VARIANT_KINDS[rng.integers(len(VARIANT_KINDS))]](images[j], rng)
    return out


def edge_cases(shape: tuple[int, int, int], noise: int = 4, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Edge-case tensors of `shape` (uint8 HWC): all 0, all 255, mid-grey, and `noise` uniform-noise images."""
    rng = np.random.default_rng(seed)
    fixed = [("all-0", np.zeros(shape, np.uint8)), ("all-255", np.full(shape, 255, np.uint8)),
             ("all-128", np.full(shape, 128, np.uint8))]
    fixed += [(f"noise-{i}", rng.integers(0, 256, shape, dtype=np.uint8)) for i in range(noise)]
    return np.stack([a for _, a in fixed]), [name for name, _ in fixed]


def pixel_digests(images: np.ndarray) -> list[str]:
    """A sha256 of each image's pixels (uint8): the same picture, decoded the same way, has the same digest."""
    return [hashlib.sha256(np.ascontiguousarray(im, dtype=np.uint8).tobytes()).hexdigest() for im in images]


def ids_hash(ids) -> str:
    """A hash of which images a set holds (ids, file names or digests; order does not matter)."""
    return hashlib.sha256(json.dumps(sorted(map(str, ids))).encode()).hexdigest()


__all__ = ["VARIANT_KINDS", "edge_cases", "ids_hash", "pixel_digests", "variants"]
