"""Transfer learning of a pretrained backbone (efficientnet-lite0): the plan, the phases, the bad input."""

import importlib.util

import numpy as np
import pytest

from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError, MissingDependency
from edgecls.runtimes.keras import load_bundle_model
from edgecls.train import backbones
from edgecls.train.fit import TrainConfig, train
from edgecls.train.plan import FINE_TUNE_BLOCKS, FINE_TUNE_LR, HEAD_STEPS, make_transfer_plan

from .conftest import make_folder

LITE0 = backbones.VARIANTS["efficientnet-lite0"]
needs_lite0 = pytest.mark.skipif(importlib.util.find_spec(LITE0.module) is None,
                                 reason="pip install 'edgecls[pretrained]'")


def test_transfer_plan_has_a_head_phase_then_fine_tuning_at_a_lower_rate():
    p = make_transfer_plan(720, 80, lr=3e-3, blocks=16)
    head, tune = p.phases
    assert p.kind == "transfer" and p.batch_size == 32 and p.steps_per_epoch == 23
    assert head.blocks == 0 and head.lr == 3e-3 and head.total_steps >= HEAD_STEPS
    assert tune.blocks == FINE_TUNE_BLOCKS and tune.lr == pytest.approx(3e-3 * FINE_TUNE_LR)
    assert p.epochs == head.epochs + tune.epochs and p.total_steps == head.total_steps + tune.total_steps
    assert not p.early_stopping and p.augment == "strong"
    d = p.to_dict()
    assert [ph["name"] for ph in d["phases"]] == ["head", "fine-tune"] and d["kind"] == "transfer"
    assert "phases" not in make_transfer_plan(720, 80, lr=1e-3, blocks=16).phase_plan(head).to_dict()


def test_given_epochs_are_each_phases_and_zero_blocks_is_head_only():
    p = make_transfer_plan(100, 10, lr=1e-3, blocks=16, epochs=2, fine_tune_blocks=0)
    assert [(ph.name, ph.epochs) for ph in p.phases] == [("head", 2)] and p.auto == ("batch_size",)
    assert [ph.epochs for ph in make_transfer_plan(100, 10, lr=1e-3, blocks=16, epochs=2).phases] == [2, 2]
    assert make_transfer_plan(100, 10, lr=1e-3, blocks=3, fine_tune_blocks=9).phases[1].blocks == 3


@pytest.fixture(scope="module")
def transferred(tmp_path_factory):
    """efficientnet-lite0 on a tiny generated folder: 24x24 images resized to 32 inside, 1 epoch a phase (~20 s)."""
    if importlib.util.find_spec(LITE0.module) is None:
        pytest.skip("pip install 'edgecls[pretrained]'")
    work = tmp_path_factory.mktemp("transfer")
    root = make_folder(work / "imgs", per_class=12, size=(24, 24))
    r = train(TrainConfig(data=str(root), arch="efficientnet-lite0", epochs=1, image_size=24, backbone_size=32,
                          out=work / "b"))
    return r


@pytest.mark.slow
def test_transfer_runs_head_then_fine_tune_and_records_them(transferred):
    m = Bundle.open(transferred.bundle).manifest
    plan = m["training"]["plan"]
    assert plan["kind"] == "transfer" and [p["name"] for p in plan["phases"]] == ["head", "fine-tune"]
    assert [h["phase"] for h in transferred.history] == ["head", "fine-tune"]
    assert [h["epoch"] for h in transferred.history] == [1, 2] and m["training"]["best_epoch"] == 2
    a = m["architecture"]
    assert a["pretrained"] and a["backbone_size"] == 32 and a["weights"]["sha256"] == LITE0.sha256
    assert a["why"] == "given with --arch"
    assert m["training"]["batchnorm_recalibrated_on"] == 0  # ImageNet statistics kept
    assert any("resizes them to 32x32" in n for n in m["training"]["notes"])
    assert "(x - 127) / 128" in m["input"]["preprocessing"] and m["input"]["shape"] == [None, 24, 24, 3]
    assert m["baseline"]["test_images"] == m["metrics"]["test"]["images"] == 5


@pytest.mark.slow
def test_frozen_layers_keep_their_imagenet_weights(transferred):
    model = load_bundle_model(Bundle.open(transferred.bundle))
    sd = backbones.load_weights(LITE0)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  sd["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("block10_project").get_weights()[0],
                                  sd["_blocks.10._project_conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("head_bn").get_weights()[2], sd["_bn1.running_mean"])
    assert not np.array_equal(model.get_layer("block15_project").get_weights()[0],  # fine-tuned
                              sd["_blocks.15._project_conv.weight"].transpose(2, 3, 1, 0))
    assert not any(la.trainable for la in model.layers if type(la).__name__ == "BatchNormalization")


@pytest.mark.parametrize("kw,msg", [
    ({"arch": "small", "pretrained": False}, "--no-pretrained: applies only to a pretrained backbone"),
    ({"pretrained": False}, "--no-pretrained: applies only .* name it with --arch"),
    ({"arch": "tiny", "backbone_size": 64}, "--backbone-size 64: applies only to a pretrained backbone"),
    ({"arch": "efficientnet-lite0", "backbone_size": 16}, "--backbone-size 16: must be between 32 and 512"),
    ({"arch": "efficientnet-lite0", "fine_tune_blocks": -1}, "--fine-tune-blocks -1: must be 0"),
    ({"arch": "efficientnet-lite0", "strategy": "mirrored"}, "--strategy mirrored: transfer learning runs on one"),
])
def test_bad_backbone_options_write_nothing(tmp_path, kw, msg):
    with pytest.raises(EdgeclsError, match=msg):
        train(TrainConfig(data="synthetic", epochs=1, out=tmp_path / "b", **kw))
    assert not (tmp_path / "b").exists()


def test_missing_weights_package_exits_2_naming_the_extra(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgecls.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == LITE0.module else real(name, *a))
    with pytest.raises(MissingDependency):
        TrainConfig(arch="efficientnet-lite0").validate()
    r = CliRunner().invoke(app, ["train", "--data", "synthetic", "--arch", "efficientnet-lite0", "--out",
                                 str(tmp_path / "b")])
    assert r.exit_code == 2 and "pip install 'edgecls[pretrained]'" in r.output
    assert r.output.count("error:") == 1 and not (tmp_path / "b").exists()
    ok = CliRunner().invoke(app, ["train", "--help"])
    assert "--backbone-size" in ok.output and "--no-pretrained" in ok.output


@pytest.mark.slow
@needs_lite0
def test_grayscale_data_feeds_the_rgb_backbone_and_says_so(tmp_path):
    r = train(TrainConfig(data="digits", arch="efficientnet-lite0", limit=150, epochs=1, backbone_size=32,
                          fine_tune_blocks=0, out=tmp_path / "b"))
    m = r.manifest
    assert m["input"]["shape"] == [None, 32, 32, 1] and any("grayscale" in n for n in m["training"]["notes"])
    assert [p["name"] for p in m["training"]["plan"]["phases"]] == ["head"]


@pytest.mark.slow
def test_no_pretrained_trains_the_same_network_from_scratch(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=12, size=(24, 24))
    r = train(TrainConfig(data=str(root), arch="efficientnet-lite0", pretrained=False, epochs=1, image_size=24,
                          backbone_size=32, out=tmp_path / "b"))
    m = r.manifest
    assert m["training"]["plan"]["kind"] == "scratch" and m["architecture"]["weights"] is None
    assert m["architecture"]["pretrained"] is False and m["training"]["batchnorm_recalibrated_on"] > 0


def _grey_folder(root, per_class=8, size=24):
    """Two classes of grayscale images saved as RGB PNGs (R = G = B), as scans or Fashion-MNIST exports are."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("light", "dark")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey = rng.integers(0, 100, (size, size), dtype=np.uint8) + np.uint8(120 * k)
            Image.fromarray(np.stack([grey] * 3, -1)).save(root / name / f"{i}.png")
    return root


def test_default_arch_follows_the_data(tmp_path, monkeypatch):
    """Without --arch: colour photos get the pretrained backbone when its weights are installed; grayscale
    folders, the bundled datasets, a missing weights package and a strategy get the scratch CNN; each says why."""
    from edgecls.train import models, sources
    from edgecls.train.pretrained import Pretrained

    colour = sources.load(str(make_folder(tmp_path / "colour", per_class=8, size=(24, 24))), image_size=24)
    grey = sources.load(str(_grey_folder(tmp_path / "grey")), image_size=24)
    assert models.colour_share(colour) == 1.0 and models.colour_share(grey) == 0.0
    monkeypatch.setattr(Pretrained, "installed", lambda self: True)  # the entry's facts say so
    arch, why = models.choose_arch(colour)
    assert arch == "efficientnet-lite0" and "colour photos" in why and "--arch small" in why
    assert models.choose_arch(colour, one_device=False)[0] == "small"
    arch, why = models.choose_arch(grey)
    assert arch == "small" and "grayscale" in why
    arch, why = models.choose_arch(sources.load("synthetic", image_size=24))
    assert arch == "small" and "bundled" in why
    monkeypatch.setattr(Pretrained, "installed", lambda self: False)
    arch, why = models.choose_arch(colour)
    assert arch == "small" and "pip install 'edgecls[pretrained]'" in why


def test_grey_folder_trains_the_scratch_cnn_and_the_summary_says_why(tmp_path):
    from typer.testing import CliRunner

    from edgecls.cli import app

    root = _grey_folder(tmp_path / "grey")
    r = CliRunner().invoke(app, ["train", "--data", str(root), "--image-size", "24", "--epochs", "1",
                                 "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    a = Bundle.open(tmp_path / "b").manifest["architecture"]
    assert a["name"] == "small" and "grayscale" in a["why"]
    assert "grayscale" in " ".join(r.output.split())


@pytest.mark.slow
@needs_lite0
def test_colour_folder_trains_the_backbone_by_default(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=8, size=(24, 24))
    r = train(TrainConfig(data=str(root), epochs=1, image_size=24, out=tmp_path / "b"))
    a = r.manifest["architecture"]
    assert a["name"] == "efficientnet-lite0" and a["pretrained"] and "colour photos" in a["why"]
    assert a["backbone_size"] == backbones.DEFAULT_SIZE
