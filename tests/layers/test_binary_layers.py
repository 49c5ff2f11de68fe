"""Binary quantizers and layers: forward values, exact backward formulas,
serialization round trip, and that a small binary model learns."""
import numpy as np
import pytest
import tensorflow as tf

from sketchtf.keras import keras
from sketchtf.layers import BinaryConv2D, BinaryDense, binarize_weights, sign, ste_sign


def np_sign(a):
    return np.where(a >= 0, 1.0, -1.0).astype(np.float32)


def np_alpha(w):
    return np.abs(w).reshape(-1, w.shape[-1]).mean(axis=0)


def test_sign_of_zero_is_plus_one_and_nan_is_minus_one():
    x = tf.constant([-2.0, -0.0, 0.0, 0.5, np.nan])
    np.testing.assert_array_equal(sign(x), [-1, 1, 1, 1, -1])
    np.testing.assert_array_equal(ste_sign(x), [-1, 1, 1, 1, -1])


def test_ste_sign_gradient_is_clipped_identity():
    x = tf.constant([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    up = tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(ste_sign(x) * up)
    np.testing.assert_array_equal(tape.gradient(y, x), [0, 2, 3, 4, 5, 6, 0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(ste_sign(x, clip_value=0.5) * up)
    np.testing.assert_array_equal(tape.gradient(y, x), [0, 0, 3, 4, 5, 0, 0])


def test_binarize_weights_forward_is_alpha_times_sign():
    w = np.random.default_rng(0).standard_normal((3, 3, 4, 5)).astype(np.float32)
    w[0, 0, 0, 0] = 0.0
    expected = np_alpha(w) * np_sign(w)
    np.testing.assert_allclose(binarize_weights(w), expected, rtol=1e-6)


# Tiny kernel [n=3, O=2] with a zero and entries beyond |W| = 1; expected
# gradients of sum(W~ * G) worked out by hand from
#   xnor:  G * (1/n + alpha * 1{|W|<=1})      paper: G * (1/n + alpha * W * 1{|W|<=1})
# column 0: W = (0.5, 0.0, -2.0), alpha = 2.5/3; column 1: (-1.5, 0.3, 0.6), alpha = 0.8.
W_TINY = [[0.5, -1.5], [0.0, 0.3], [-2.0, 0.6]]
G_TINY = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
EXPECTED_GRAD = {
    "xnor": [[1.0 * (1 / 3 + 2.5 / 3), 2.0 / 3],
             [3.0 * (1 / 3 + 2.5 / 3), 4.0 * (1 / 3 + 0.8)],
             [5.0 / 3, 6.0 * (1 / 3 + 0.8)]],
    "paper": [[1.0 * (1 / 3 + 2.5 / 3 * 0.5), 2.0 / 3],
              [3.0 * (1 / 3), 4.0 * (1 / 3 + 0.8 * 0.3)],
              [5.0 / 3, 6.0 * (1 / 3 + 0.8 * 0.6)]],
}


@pytest.mark.parametrize("ste", ["xnor", "paper"])
def test_binarize_weights_gradient_matches_hand_computed_formula(ste):
    w = tf.Variable(W_TINY)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(binarize_weights(w, ste=ste) * tf.constant(G_TINY))
    np.testing.assert_allclose(tape.gradient(loss, w), EXPECTED_GRAD[ste], rtol=1e-6)


def test_binarize_weights_rejects_unknown_ste():
    with pytest.raises(ValueError, match="ste must be one of"):
        binarize_weights(tf.ones([2, 2]), ste="larq")


def _conv_layer(kernel, **kwargs):
    layer = BinaryConv2D(kernel.shape[-1], kernel.shape[:2], **kwargs)
    layer.build((None, 5, 6, kernel.shape[2]))
    layer.kernel.assign(kernel)
    if layer.use_bias:
        layer.bias.assign(np.linspace(-1, 1, kernel.shape[-1]).astype(np.float32))
    return layer


@pytest.mark.parametrize("padding,strides", [("same", 1), ("valid", 2), ("same", 2)])
def test_binary_conv_forward_matches_sign_reference(padding, strides):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    layer = _conv_layer(w, padding=padding, strides=strides)
    ref = tf.nn.conv2d(x, np_alpha(w) * np_sign(w), strides, padding.upper()) + layer.bias
    np.testing.assert_allclose(layer(x), ref, rtol=1e-5, atol=1e-5)

    xnor = _conv_layer(w, padding=padding, strides=strides, binary_activations=True)
    # Padded positions are 0 after binarization: conv(sign x, sign w) with zero padding.
    dot = tf.nn.conv2d(np_sign(x), np_sign(w), strides, padding.upper())
    np.testing.assert_allclose(xnor(x), dot * np_alpha(w) + xnor.bias, rtol=1e-5, atol=1e-5)


def test_binary_conv_input_scaling_is_box_mean_of_abs_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 5, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    layer = _conv_layer(w, padding="same", binary_activations=True, input_scaling=True,
                        use_bias=False)
    a = np.pad(np.abs(x).mean(axis=-1)[0], 1)  # zero padding, as the layer documents
    k = np.array([[a[i:i + 3, j:j + 3].sum() / 9.0 for j in range(6)] for i in range(5)])
    dot = tf.nn.conv2d(np_sign(x), np_sign(w), 1, "SAME")[0].numpy()
    np.testing.assert_allclose(layer(x)[0], dot * np_alpha(w) * k[..., None], rtol=1e-5,
                               atol=1e-6)


def test_binary_conv_kernel_gradient_follows_xnor_formula():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((2, 4, 4, 2)).astype(np.float32))
    w = rng.uniform(-1.6, 1.6, (2, 2, 2, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 0.0
    assert (np.abs(w) > 1).any() and (np.abs(w) <= 1).any()
    layer = _conv_layer(w, padding="same", use_bias=False)
    up = tf.constant(rng.standard_normal((2, 4, 4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * up)
    got = tape.gradient(loss, layer.kernel)
    # dC/dW~ from a plain float conv evaluated at W~.
    w_tilde = tf.Variable(np_alpha(w) * np_sign(w))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.conv2d(x, w_tilde, 1, "SAME") * up)
    g = tape.gradient(loss, w_tilde).numpy()
    n = 2 * 2 * 2
    expected = g * (1.0 / n + np_alpha(w) * (np.abs(w) <= 1))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_binary_conv_activation_gradient_is_straight_through():
    x = tf.constant([[[[-2.0], [-0.5]], [[0.25], [3.0]]]])  # [1, 2, 2, 1]
    layer = _conv_layer(np.ones((1, 1, 1, 1), np.float32), binary_activations=True,
                        use_bias=False)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x))
    np.testing.assert_array_equal(tf.reshape(tape.gradient(y, x), [-1]), [0, 1, 1, 0])


def test_binary_dense_forward_and_input_scaling():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    w = rng.standard_normal((7, 4)).astype(np.float32)
    for binary, scaling in [(False, False), (True, False), (True, True)]:
        layer = BinaryDense(4, binary_activations=binary, input_scaling=scaling)
        layer.build((None, 7))
        layer.kernel.assign(w)
        layer.bias.assign([0.5, -0.5, 1.0, 0.0])
        xin = np_sign(x) if binary else x
        ref = xin @ (np_alpha(w) * np_sign(w))
        if scaling:
            ref = ref * np.abs(x).mean(axis=-1, keepdims=True)
        np.testing.assert_allclose(layer(x), ref + layer.bias, rtol=1e-5, atol=1e-5)
    seq = BinaryDense(4)
    assert seq(tf.zeros([2, 5, 7])).shape == (2, 5, 4)  # any rank, like keras Dense


def test_layers_reject_unsupported_options():
    with pytest.raises(ValueError, match="needs binary_activations"):
        BinaryConv2D(4, 3, input_scaling=True)
    with pytest.raises(ValueError, match="dilation_rate=1"):
        BinaryConv2D(4, 3, dilation_rate=2)
    with pytest.raises(ValueError, match="ste must be one of"):
        BinaryDense(4, ste="nope")


def _model():
    inp = keras.Input((8, 8, 2))
    h = BinaryConv2D(6, 3, padding="same", activation="relu", name="bconv")(inp)
    h = BinaryConv2D(4, 3, strides=2, padding="same", binary_activations=True,
                     input_scaling=True, ste="paper", name="xconv")(h)
    h = keras.layers.Flatten()(h)
    out = BinaryDense(2, name="bdense")(h)
    return keras.Model(inp, out)


def test_serialization_round_trip_without_custom_objects(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    x = np.random.default_rng(5).standard_normal((2, 8, 8, 2)).astype(np.float32)
    path = str(tmp_path / "binary.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("xconv"), BinaryConv2D)
    cfg = loaded.get_layer("xconv").get_config()
    assert (cfg["binary_activations"], cfg["input_scaling"], cfg["ste"]) == (True, True, "paper")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)
    clone = BinaryDense.from_config(model.get_layer("bdense").get_config())
    assert clone.units == 2 and clone.ste == "xnor"


def test_two_layer_binary_model_learns_a_toy_problem():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((128, 6, 6, 2)).astype(np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > x[..., 1].mean(axis=(1, 2))).astype(np.int32)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        BinaryConv2D(8, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        BinaryDense(2),
    ])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.8 * before, (before, after)
