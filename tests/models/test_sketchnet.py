import numpy as np
import pytest

from sketchtf.models import build_model


@pytest.fixture(scope="module")
def net25():
    return build_model("sketchnet", num_classes=25, input_shape=(128, 128, 1))


def test_param_count_near_seed_d(net25):
    # Exact count (Keras, BN moving stats included); arithmetic in sketchnet.py.
    assert net25.count_params() == 933_561
    trainable = sum(int(w.shape.num_elements()) for w in net25.trainable_weights)
    assert trainable == 932_473
    assert abs(net25.count_params() - 933_000) / 933_000 < 0.01


def test_shapes(net25):
    assert net25.get_layer("block4_pool").output.shape[1:] == (8, 8, 256)
    assert net25.get_layer("bottleneck_relu").output.shape[1:] == (8, 8, 64)
    assert net25.get_layer("flatten").output.shape[1:] == (4096,)
    assert net25.get_layer("dropout").rate == pytest.approx(0.3)
    y = net25(np.zeros((2, 128, 128, 1), np.float32), training=False)
    assert y.shape == (2, 25)


def test_other_sizes_and_errors():
    m = build_model("sketchnet", num_classes=10, input_shape=(64, 64, 1))
    assert m.get_layer("flatten").output.shape[1:] == (1024,)
    with pytest.raises(ValueError, match="too small.*16x16"):
        build_model("sketchnet", num_classes=10, input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("sketchnet", num_classes=10, input_shape=(64, 64, 1), weights="imagenet")


def test_weights_path_roundtrip(tmp_path):
    m = build_model("sketchnet", num_classes=4, input_shape=(32, 32, 1))
    p = tmp_path / "w.h5"
    m.save_weights(p)
    m2 = build_model("sketchnet", num_classes=4, input_shape=(32, 32, 1), weights=str(p))
    x = np.random.default_rng(1).random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(m(x, training=False), m2(x, training=False), rtol=1e-6, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_model("sketchnet", num_classes=4, input_shape=(32, 32, 1), weights=str(tmp_path / "missing.h5"))
