"""Binary-weight and XNOR Sketch-A-Net: structure, and initialisation from a float run."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from sketchtf.config import save_config
from sketchtf.keras import keras
from sketchtf.layers import BinaryConv2D
from sketchtf.models import available_models, build_model
from sketchtf.training.trainer import copy_weights_by_name, init_from_workdir

BINARY = ["L2", "L3", "L4", "L5", "L6", "L7"]
SHAPE = (88, 88, 1)  # smallest convenient size (Sketch-A-Net needs >= 81)


def test_registered():
    assert {"sketchanet_binary", "sketchanet_xnor"} <= set(available_models())


def test_binary_weight_net_layers_and_params():
    m = build_model("sketchanet_binary", num_classes=7, input_shape=SHAPE)
    f = build_model("sketchanet", num_classes=7, input_shape=SHAPE)
    assert m.name == "sketchanet_binary"
    assert [layer.name for layer in m.layers] == [layer.name for layer in f.layers]
    for name in BINARY:
        layer = m.get_layer(name)
        assert type(layer) is BinaryConv2D and not layer.binary_activations, name
        assert layer.activation is keras.activations.relu and layer.ste == "xnor"
    assert type(m.get_layer("L1")) is keras.layers.Conv2D
    assert type(m.get_layer("L8")) is keras.layers.Conv2D
    assert m.count_params() == f.count_params()
    assert m(np.zeros((2, *SHAPE), np.float32)).shape == (2, 7)


@pytest.mark.parametrize("input_scaling", [False, True])
def test_xnor_net_block_order_and_options(input_scaling):
    m = build_model("sketchanet_xnor", num_classes=5, input_shape=SHAPE, input_scaling=input_scaling)
    names = [layer.name for layer in m.layers]
    for name in BINARY:
        layer = m.get_layer(name)
        assert type(layer) is BinaryConv2D and layer.binary_activations, name
        assert layer.input_scaling is input_scaling
        bn = "bn" + name[1:]
        assert isinstance(m.get_layer(bn), keras.layers.BatchNormalization)
        assert names.index(bn) == names.index(name) - 1, "BN must feed the binary conv directly"
        assert m.get_layer(name).input is m.get_layer(bn).output
    # sign is the nonlinearity between binary layers; L7 feeds the float L8 through ReLU.
    assert all(m.get_layer(n).activation is keras.activations.linear for n in BINARY[:-1])
    assert m.get_layer("L7").activation is keras.activations.relu
    assert type(m.get_layer("L1")) is keras.layers.Conv2D and type(m.get_layer("L8")) is keras.layers.Conv2D
    y = m(np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32), training=False)
    assert y.shape == (2, 5) and np.all(np.isfinite(y))


def test_xnor_hidden_relu_option():
    m = build_model("sketchanet_xnor", num_classes=5, input_shape=SHAPE, hidden_relu=True)
    assert all(m.get_layer(n).activation is keras.activations.relu for n in BINARY)


def _float_workdir(path, num_classes=4):
    """A workdir as the trainer leaves it, with a float Sketch-A-Net checkpoint."""
    f = build_model("sketchanet", num_classes=num_classes, input_shape=SHAPE)
    rng = np.random.default_rng(1)
    f.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in f.get_weights()])
    from sketchtf.config import experiment
    c = experiment("sketchanet")
    c.data.image_size = SHAPE[0]
    save_config(c, str(path))
    with open(os.path.join(path, "classes.json"), "w") as fh:
        json.dump([f"c{i}" for i in range(num_classes)], fh)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=f), os.path.join(path, "checkpoints"),
                               max_to_keep=1).save(checkpoint_number=1)
    return f


def test_float_checkpoint_initialises_binary_weight_net_through_trainer(tmp_path):
    f = _float_workdir(tmp_path)
    m = build_model("sketchanet_binary", num_classes=4, input_shape=SHAPE)
    init_from_workdir(m, str(tmp_path))  # what config.model.init_from runs
    for a, b in zip(m.get_weights(), f.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_xnor_net_needs_name_matching_and_gets_it(tmp_path):
    f = _float_workdir(tmp_path)
    m = build_model("sketchanet_xnor", num_classes=4, input_shape=SHAPE)
    with pytest.raises(ValueError, match="cannot start sketchanet_xnor.*init_by_name"):
        init_from_workdir(m, str(tmp_path))  # the BN layers change the checkpoint structure
    bn_before = m.get_layer("bn3").get_weights()
    init_from_workdir(m, str(tmp_path), by_name=True)  # what model.init_by_name=True runs
    for name in ["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"]:
        for a, b in zip(m.get_layer(name).get_weights(), f.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(m.get_layer("bn3").get_weights(), bn_before):
        np.testing.assert_array_equal(a, b)


def test_name_matching_rejects_other_shapes_and_missing_layers():
    src = build_model("sketchanet", num_classes=4, input_shape=SHAPE)
    with pytest.raises(ValueError, match="'L8' weight shapes differ"):
        copy_weights_by_name(src, build_model("sketchanet_xnor", num_classes=6, input_shape=SHAPE))
    x = inp = keras.Input(SHAPE)
    x = keras.layers.Conv2D(64, 15, strides=3, name="L1")(x)
    small = keras.Model(inp, x)
    with pytest.raises(ValueError, match="has a namesake"):
        copy_weights_by_name(small, build_model("sketchnet", num_classes=4, input_shape=SHAPE))
