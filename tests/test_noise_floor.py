"""The float model's own noise floor (edgecls/verify/noise_floor.py) and its line in `verify --explain`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.verify import noise_floor
from edgecls.verify.noise_floor import NoiseFloor, floor_or_why, measure

runner = CliRunner()


def pixel_model(threshold: float = 100.0):
    """A Keras model whose answer is 1 when pixel (0, 0, 0) is above `threshold`, else 0 (a tie at it: 0)."""
    import keras

    inp = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(2)
    out = keras.layers.Softmax()(dense(keras.layers.Flatten()(inp)))
    model = keras.Model(inp, out)
    kernel = np.zeros((48, 2), np.float32)
    kernel[0, 1] = 1.0
    dense.set_weights([kernel, np.array([0.0, -threshold], np.float32)])
    return model


def images(borderline: int, far: int) -> np.ndarray:
    """`borderline` images with pixel (0, 0, 0) at the threshold (any noise can flip them), `far` images with it
    80 gray levels away (no noise below a gray level can)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (borderline + far, 4, 4, 3)).astype(np.uint8)
    x[:borderline, 0, 0, 0] = 100
    x[borderline:, 0, 0, 0] = np.where(np.arange(far) % 2, 20, 180)
    return x


def test_floor_counts_only_the_images_noise_can_flip():
    model = pixel_model()
    steady = measure(model, images(0, 40))
    assert steady.changed == [0, 0] and steady.unsteady == 0 and steady.share == 0.0
    floor = measure(model, images(12, 40), draws=3)
    assert len(floor.changed) == 3 and all(0 < c <= 12 for c in floor.changed)  # about half flip each draw
    assert max(floor.changed) <= floor.unsteady <= 12 and floor.images == 52
    assert floor.share == pytest.approx(floor.unsteady / 52)
    assert measure(model, images(12, 40), draws=3).to_dict() == floor.to_dict()  # seeded


def test_floor_noise_is_below_half_a_gray_level():
    """The pixel at 100, 0.6 above the threshold: more than ±0.5 of noise can take away, never flipped; ±1 can."""
    model = pixel_model(threshold=99.4)
    x = images(0, 10)
    x[:, 0, 0, 0] = 100
    assert measure(model, x, draws=4).unsteady == 0
    assert measure(model, x, draws=4, amplitude=1.0).unsteady > 0


@pytest.mark.parametrize(("changed", "unsteady", "images", "starts"), [
    ([30, 32], 40, 1000, "at or above the 1% changed-answers limit: expect no int8 file"),
    ([3, 30], 31, 1000, "near the 1% changed-answers limit"),  # "at or above" only from the draw that changed fewest
    ([6, 5], 8, 280, "above the 1% changed-answers limit on these images, though not shown"),
    ([7, 6], 7, 1000, "near the 1% changed-answers limit"),
    ([0, 1], 1, 1000, "below the 1% changed-answers limit"),
    ([0, 0], 0, 100, "too few images to place it"),
])
def test_verdict_against_the_limit(changed, unsteady, images, starts):
    floor = NoiseFloor(images, 0.5, changed, unsteady, {"held-out": images}, 0)
    assert floor.verdict(1.0).startswith(starts)


def test_floor_says_why_without_tensorflow(exported_bundle, monkeypatch):
    from edgecls import runtimes

    keras = runtimes.runner_class("keras")
    monkeypatch.setattr(keras, "installed", classmethod(lambda cls: False))
    assert floor_or_why(exported_bundle, None, 1.0) == {
        "note": "not measured: TensorFlow is not installed (the float model runs in Keras)"}


def test_verify_explain_starts_with_the_floor(exported_copy):
    r = runner.invoke(app, ["verify", str(exported_copy), "--explain", "--json", "--max-drop", "2"])
    assert r.exit_code == 0, r.output
    floor = json.loads(r.stdout)["noise_floor"]
    assert floor["images"] == sum(floor["kinds"].values()) > 0 and set(floor["kinds"]) <= {"held-out", "validation"}
    assert floor["limit_percent"] == 2.0 and floor["amplitude"] == noise_floor.AMPLITUDE
    assert len(floor["changed"]) == noise_floor.DRAWS and floor["verdict"]
    r = runner.invoke(app, ["verify", str(exported_copy), "--explain", "--max-drop", "2"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if x.startswith("float model's noise floor:"))
    assert f"of {floor['images']:,} answers" in line and "gray-level noise" in line and floor["verdict"] in line
    assert r.stdout.index("noise floor") < r.stdout.index("per-layer SQNR")
