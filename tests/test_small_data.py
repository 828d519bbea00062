"""Training that adapts to the data's size, batch-norm re-estimation, the pixel baseline and its verdict."""

import numpy as np
import pytest

from edgecls.core.bundle import Bundle
from edgecls.train import dataset, sources
from edgecls.train.baseline import Baseline, pixel_baseline, verdict
from edgecls.train.fit import TrainConfig, _recalibrate_bn, train
from edgecls.train.plan import MIN_EPOCHS, MIN_STEPS, MIN_VAL, PATIENCE_STEPS, SMALL_DATA, make_plan

from .conftest import make_folder


@pytest.mark.parametrize("n_train,batch", [(144, 16), (511, 16), (512, 32), (1023, 32), (1024, 64),
                                           (54000, 64)])
def test_batch_scales_with_the_training_set(n_train, batch):
    assert make_plan(n_train, 10).batch_size == batch


def test_small_sets_get_enough_optimiser_steps_and_no_early_stopping():
    p = make_plan(144, 16)
    assert p.steps_per_epoch == 9 and p.total_steps >= MIN_STEPS and p.epochs == int(np.ceil(MIN_STEPS / 9))
    assert not p.early_stopping and p.start_from_epoch == p.epochs  # 16 validation images are not evidence
    assert p.augment == "strong" and p.warmup_steps == round(0.05 * p.total_steps)


def test_large_sets_keep_early_stopping_counted_in_steps():
    p = make_plan(54000, 6000)
    assert p.epochs == MIN_EPOCHS and p.early_stopping and p.augment == "standard"
    assert p.start_from_epoch == MIN_EPOCHS // 2
    mid = make_plan(1293, MIN_VAL)  # digits-sized: 21 steps an epoch
    assert mid.early_stopping and mid.patience * mid.steps_per_epoch >= PATIENCE_STEPS
    assert make_plan(SMALL_DATA, 500).augment == "standard" and make_plan(100, 10, augment=False).augment == "none"


def test_given_options_are_never_rewritten():
    p = make_plan(144, 16, epochs=3, batch_size=50)
    assert (p.batch_size, p.epochs, p.steps_per_epoch, p.total_steps, p.auto) == (50, 3, 3, 9, ())
    assert make_plan(144, 16, epochs=3).auto == ("batch_size",)


def test_recalibrated_batchnorm_matches_the_training_images(tmp_path):
    """After re-estimation, the first BN layer's moving mean is the mean of its inputs on the training images."""
    from edgecls.core._tf import keras
    from edgecls.train.models import build

    k = keras()
    data = sources.synthetic(n=96)
    idx = np.arange(96)
    model = build("small", data.input_shape, 4)
    used = _recalibrate_bn(model, data, idx, batch_size=32)
    assert used == 96
    bn = model.get_layer("block1_conv_bn")
    conv_out = k.Model(model.input, model.get_layer("block1_conv").output)(data.array.astype("float32"))
    expect_mean = np.asarray(conv_out).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(bn.moving_mean), expect_mean, rtol=1e-4, atol=1e-5)
    assert bn.momentum == pytest.approx(0.9)  # restored


def test_baseline_uses_the_same_split_and_is_stored(trained_bundle):
    m = Bundle.open(trained_bundle).manifest
    b, split = m["baseline"], m["dataset"]["split"]
    assert b["train_images"] == len(split["train"]) and b["test_images"] == len(split["test"])
    data = sources.synthetic()
    again = pixel_baseline(data, np.array(split["train"]), np.array(split["test"]))
    assert again.accuracy == b["accuracy"] and b["accuracy"] > 0.5  # stripes/blobs/rings are linear-ish
    assert b["chance"] == pytest.approx(0.25)


def test_verdict_wording():
    base = Baseline("lr", accuracy=0.80, chance=0.10, train_images=800, test_images=200, seconds=1.0)
    assert verdict(0.85, base, 80) == []
    below = verdict(0.78, base, 80)
    assert len(below) == 1 and "does not beat a linear model" in below[0] and "80 training images" in below[0]
    at_chance = verdict(0.12, base, 80)  # 0.12 is within the noise of 0.10 on 200 images
    assert "at chance level" in at_chance[0] and "labels" in at_chance[0]
    assert "the small model" in below[0] and "--arch tiny" in below[0]
    backbone = verdict(0.78, base, 80, "efficientnet-lite0", pretrained=True)[0]
    assert backbone.startswith("the efficientnet-lite0 model (ImageNet-pretrained) (78.0%)")
    assert "--arch small" in backbone and "--arch tiny" not in backbone


def test_random_labels_warn(tmp_path):
    """Images that carry no information about their (random) class: training says it has not learned."""
    root = make_folder(tmp_path / "noise", classes=("a", "b"), per_class=40, size=(24, 24))
    rng = np.random.default_rng(1)
    for f in sorted(root.rglob("*.png")):  # same content distribution in both classes
        from PIL import Image

        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(f)
    r = train(TrainConfig(data=str(root), arch="tiny", epochs=3, image_size=24, out=tmp_path / "b"))
    warnings = r.manifest["training"]["warnings"]
    assert warnings and ("at chance level" in warnings[0] or "does not beat" in warnings[0])
    assert Bundle.open(tmp_path / "b").manifest["training"]["warnings"] == warnings  # stored; not an error


def test_small_folder_training_plan_is_recorded(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=20, size=(16, 16))
    r = train(TrainConfig(data=str(root), arch="tiny", epochs=25, image_size=16, out=tmp_path / "b"))
    plan = r.manifest["training"]["plan"]
    assert plan["batch_size"] == 16 and plan["auto"] == ["batch_size"] and plan["epochs"] == 25
    assert not plan["early_stopping"] and len(r.history) == 25
    assert r.manifest["training"]["batchnorm_recalibrated_on"] == 0  # tiny has no batch-norm
    assert r.manifest["metrics"]["test"]["accuracy"] >= 0.75  # bright vs dark


def test_small_folder_is_cached_large_one_streams():
    assert dataset.cache_in_memory(1000, (64, 64, 3)) and not dataset.cache_in_memory(50000, (64, 64, 3))


def test_downsample_stem_only_for_large_inputs():
    from edgecls.train.models import build

    assert "downsample" in [layer.name for layer in build("small", (64, 64, 3), 2).layers]
    assert "downsample" not in [layer.name for layer in build("small", (32, 32, 1), 2).layers]


def test_schedule_warms_up_then_decays_in_optimiser_steps():
    from edgecls.core._tf import keras
    from edgecls.train.fitting import _schedule

    plan = make_plan(144, 16)  # 9 steps an epoch, 1,008 steps, 50 of warm-up
    lr = _schedule(keras(), TrainConfig(lr=3e-3), plan)
    at = {s: float(lr(s)) for s in (0, plan.warmup_steps // 2, plan.warmup_steps, plan.total_steps // 2,
                                     plan.total_steps)}
    assert at[0] == pytest.approx(3e-5, rel=0.05) and at[plan.warmup_steps] == pytest.approx(3e-3, rel=1e-3)
    assert at[0] < at[plan.warmup_steps // 2] < at[plan.warmup_steps]  # linear warm-up
    assert at[plan.warmup_steps] > at[plan.total_steps // 2] > at[plan.total_steps]
    assert at[plan.total_steps] == pytest.approx(3e-5, rel=0.05)  # cosine to 1% of the peak


def test_baseline_never_spills_a_library_warning(monkeypatch):
    """scikit-learn's ConvergenceWarning (12 lines) is recorded as `converged`, never printed."""
    import warnings

    from edgecls.train import baseline

    data = sources.synthetic(n=96)
    idx = np.arange(96)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        ok = pixel_baseline(data, idx[:64], idx[64:])
        monkeypatch.setattr(baseline, "MAX_ITER", 2)
        short = pixel_baseline(data, idx[:64], idx[64:])
    assert ok.converged and 0 < ok.iterations < 1000
    assert not short.converged and short.iterations == 2 and short.to_dict()["converged"] is False
