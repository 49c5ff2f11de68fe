import numpy as np
import pytest

from sketchtf.keras import keras
from sketchtf.models import build_model


def _is_flat(model):
    return not any(isinstance(layer, keras.Model) for layer in model.layers)


@pytest.fixture(scope="module")
def effnet_gray():
    return build_model("efficientnet_b4", num_classes=10, input_shape=(32, 32, 1))


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    """Keras ResNet-50 (random weights) and its no-top checkpoint file."""
    ref = keras.applications.ResNet50(input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg")
    path = tmp_path_factory.mktemp("resnet") / "resnet50_random_notop.h5"
    ref.save_weights(str(path))
    return ref, str(path)


def test_efficientnet_b4_gray_forward(effnet_gray):
    m = effnet_gray
    assert m.name == "efficientnet_b4" and _is_flat(m)
    assert m.get_layer("stem_conv").get_weights()[0].shape[2] == 1  # built for 1 channel
    y = m(np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32), training=False)
    assert y.shape == (2, 10) and np.isfinite(y.numpy()).all()
    # The head sits on B4's 1792-channel top conv, pooled.
    assert m.get_layer("logits").input.shape[-1] == m.get_layer("top_conv").output.shape[-1] == 1792


def test_resnet50_gray_forward():
    m = build_model("resnet50", num_classes=10, input_shape=(32, 32, 1))
    assert m.name == "resnet50" and _is_flat(m)
    y = m(np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32), training=False)
    assert y.shape == (2, 10)
    # Caffe mapping for gray: x * 255 - mean of the three channel means.
    np.testing.assert_allclose(m.get_layer("caffe_norm")(np.ones((1, 1, 1, 1), np.float32)),
                               [[[[255.0 - (123.68 + 116.779 + 103.939) / 3]]]], rtol=1e-6)


def _features(model):
    return keras.Model(model.input, model.get_layer("avg_pool").output)


def test_resnet50_caffe_mapping_matches_keras_preprocessing(resnet_ckpt):
    ref, path = resnet_ckpt
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    ours = build_model("resnet50", num_classes=4, input_shape=(32, 32, 3), weights=path)
    want = ref(keras.applications.resnet50.preprocess_input(x * 255.0), training=False).numpy()
    np.testing.assert_allclose(_features(ours)(x, training=False), want, rtol=1e-4, atol=1e-3)


def test_resnet50_gray_with_weights_tiles(resnet_ckpt):
    ref, path = resnet_ckpt
    g = np.random.default_rng(2).random((2, 32, 32, 1), dtype=np.float32)
    ours = build_model("resnet50", num_classes=4, input_shape=(32, 32, 1), weights=path)
    assert "gray_to_rgb" in {layer.name for layer in ours.layers}
    want = ref(keras.applications.resnet50.preprocess_input(np.repeat(g, 3, -1) * 255.0), training=False)
    np.testing.assert_allclose(_features(ours)(g, training=False), want.numpy(), rtol=1e-4, atol=1e-3)


def test_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        build_model("efficientnet_b4", num_classes=3, input_shape=(32, 32, 1), weights=str(tmp_path / "absent.h5"))
    with pytest.raises(ValueError, match="1 or 3 input channels"):
        build_model("resnet50", num_classes=3, input_shape=(32, 32, 6), weights="imagenet")

    from tf_keras.src.utils import data_utils  # what the applications call to download

    def offline(fname, origin=None, **kw):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="resnet50: could not get ImageNet weights"):
        build_model("resnet50", num_classes=3, input_shape=(32, 32, 1), weights="imagenet")
