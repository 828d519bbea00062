import numpy as np
import pytest

from edgecls.core.errors import EdgeclsError
from edgecls.train.models import ARCHITECTURES, build, pretrained

# the backbones are built from scratch here (no weights package needed) at their smallest size; lite1/2
# take a few seconds each to build, so only lite0 is in the quick run
NAMES = [pytest.param(n, marks=pytest.mark.slow) if pretrained(n) and n != "efficientnet-lite0" else n
         for n in sorted(ARCHITECTURES)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(32, 32, 1), (24, 24, 3)])
def test_shapes_and_softmax(name, shape):
    model = build(name, shape, 7, pretrained=False, backbone_size=32)
    x = np.random.default_rng(0).integers(0, 256, (3, *shape)).astype("float32")
    p = np.asarray(model(x, training=False))
    assert p.shape == (3, 7)
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
    assert type(model.layers[1]).__name__ == "Rescaling"  # normalisation travels in the model
    assert model.layers[-1].name == "probabilities"


def test_tiny_is_the_seeds_five_layers():
    model = build("tiny", (16, 16, 3), 4)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense", "Softmax"]


def test_mobile_width_multiplier():
    assert build("mobile", (32, 32, 3), 5, width=0.5).count_params() < build("mobile", (32, 32, 3), 5).count_params()


def test_unknown_arch():
    with pytest.raises(EdgeclsError, match="unknown architecture .* tiny, small, mobile"):
        build("resnet", (8, 8, 1), 2)
