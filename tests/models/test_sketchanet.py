import numpy as np
import pytest

from sketchtf.keras import keras
from sketchtf.models import build_model
from sketchtf.models.sketchanet import spatial_sizes

# Seed C's table at 225 px: output side of each layer.
PAPER_SIZES = {"L1": 71, "pool1": 35, "L2": 31, "pool2": 15, "L3": 15, "L4": 15, "L5": 15,
               "pool5": 7, "L6": 1, "L7": 1, "L8": 1}


@pytest.mark.parametrize("channels", [1, 6])
def test_paper_spatial_sizes_at_225(channels):
    m = build_model("sketchanet", num_classes=250, input_shape=(225, 225, channels))
    for name, size in PAPER_SIZES.items():
        assert m.get_layer(name).output.shape[1:3] == (size, size), name
    assert m.get_layer("L6").kernel_size == (7, 7)
    assert m.output_shape == (None, 250)
    # Parameters by hand: conv weights + biases of L1..L8.
    c = channels
    expected = (15 * 15 * c * 64 + 64) + (5 * 5 * 64 * 128 + 128) + (9 * 128 * 256 + 256) \
        + 2 * (9 * 256 * 256 + 256) + (49 * 256 * 512 + 512) + (512 * 512 + 512) + (512 * 250 + 250)
    assert m.count_params() == expected
    assert [m.get_layer(n).rate for n in ("drop6", "drop7")] == [0.5, 0.5]


def test_spatial_sizes_helper_matches_table():
    s = spatial_sizes(225)
    assert {k: s[k] for k in ("L1", "pool1", "L2", "pool2", "L5", "pool5")} == \
        {"L1": 71, "pool1": 35, "L2": 31, "pool2": 15, "L5": 15, "pool5": 7}


def test_128px_adaptation_forward():
    m = build_model("sketchanet", num_classes=10, input_shape=(128, 128, 1))
    assert m.get_layer("pool5").output.shape[1:3] == (2, 2)
    assert m.get_layer("L6").kernel_size == (2, 2)
    y = m(np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32), training=False)
    assert y.shape == (2, 10)


def test_min_size():
    build_model("sketchanet", num_classes=3, input_shape=(81, 81, 1))
    with pytest.raises(ValueError, match="80x80 is too small.*81x81"):
        build_model("sketchanet", num_classes=3, input_shape=(80, 80, 1))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("sketchanet", num_classes=3, input_shape=(128, 128, 1), weights="imagenet")


def test_conv_factory_swaps_l2_to_l7():
    calls = []

    class Tagged(keras.layers.Conv2D):
        pass

    def factory(**kw):
        calls.append(kw)
        return Tagged(**kw)

    m = build_model("sketchanet", num_classes=5, input_shape=(128, 128, 6), conv_factory=factory)
    swapped = sorted(layer.name for layer in m.layers if isinstance(layer, Tagged))
    assert swapped == ["L2", "L3", "L4", "L5", "L6", "L7"]
    assert set(calls[0]) == {"filters", "kernel_size", "strides", "padding", "activation", "name"}
    assert type(m.get_layer("L1")) is keras.layers.Conv2D and type(m.get_layer("L8")) is keras.layers.Conv2D
    m2 = build_model("sketchanet", num_classes=5, input_shape=(128, 128, 1), conv_factory=factory,
                     factory_layers=("L3",))
    assert [layer.name for layer in m2.layers if isinstance(layer, Tagged)] == ["L3"]
    with pytest.raises(ValueError, match="L9"):
        build_model("sketchanet", num_classes=5, input_shape=(128, 128, 1), factory_layers=("L9",))
