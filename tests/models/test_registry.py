import numpy as np
import pytest

from sketchtf.keras import keras
from sketchtf.models import available_models, build_model, register
from sketchtf.models import registry

ZOO = {"sketchanet", "mobilenetv2", "mobilenetv2_s1", "mobilenetv2_s2", "sketchnet",
       "efficientnet_b4", "resnet50"}


def test_available_models_lists_the_zoo():
    assert ZOO <= set(available_models())


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*mobilenetv2_s1.*sketchnet"):
        build_model("vgg", num_classes=3, input_shape=(32, 32, 1))


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("sketchnet", num_classes=num_classes, input_shape=(32, 32, 1))


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 0), "abc", None])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        build_model("sketchnet", num_classes=3, input_shape=shape)


def test_register_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    @register("tiny_test_model")
    def tiny(*, num_classes, input_shape, weights=None, width=4):
        x = inp = keras.Input(input_shape)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(width)(x)
        return keras.Model(inp, keras.layers.Dense(num_classes)(x), name="tiny_test_model")

    m = build_model("tiny_test_model", num_classes=3, input_shape=[4, 4, 1], width=5)
    assert m.output_shape == (None, 3) and m.layers[-2].units == 5
    with pytest.raises(ValueError, match="already registered"):
        register("tiny_test_model")(tiny)


@pytest.mark.parametrize("name,size", [("sketchanet", 96), ("sketchnet", 32), ("mobilenetv2", 32),
                                       ("mobilenetv2_s1", 32), ("mobilenetv2_s2", 32)])
def test_named_functional_and_logits(name, size):
    m = build_model(name, num_classes=7, input_shape=(size, size, 1))
    assert m.name == name
    assert isinstance(m, keras.Model) and m._is_graph_network  # functional: TFMOT can clone it
    x = np.random.default_rng(0).random((3, size, size, 1), dtype=np.float32)
    y = m(x, training=False).numpy()
    assert y.shape == (3, 7)
    # Logits, not probabilities: a softmax output would be positive and sum to 1.
    assert (y < 0).any() or not np.allclose(y.sum(axis=1), 1.0)
    # Plain config round trip (what clone_model / TFMOT / loading rely on).
    again = keras.Model.from_config(m.get_config())
    assert again.count_params() == m.count_params()
