"""SketchtfInkConv2D (xnor.ink_conv2d) against tf.nn.conv2d + bias [-> ReLU].

The op skips zero inputs, so it must equal the dense conv up to float
summation order on every kernel path, for sparse, empty and fully dense
inputs, and for window geometries from 1x1 to a full 64-bit window row."""
import numpy as np
import pytest
import tensorflow as tf

from kernel_paths import path  # noqa: F401  (pytest fixture)
from sketchtf.ops import xnor



def reference(x, f, b, strides, padding, relu):
    y = tf.nn.conv2d(x, f, strides, padding) + b
    return (tf.nn.relu(y) if relu else y).numpy()


def sparse_input(rng, shape, ink):
    x = rng.random(shape).astype(np.float32)
    x[rng.random(shape) >= ink] = 0.0
    return x


# (batch, height, width, in_c, out_c, (kh, kw), (sh, sw), padding)
CASES = [
    (1, 40, 40, 1, 64, (15, 15), (3, 3), "VALID"),   # Sketch-A-Net L1's shape, smaller image
    (2, 31, 29, 1, 64, (15, 15), (3, 3), "SAME"),    # padding on every side
    (2, 17, 19, 3, 20, (5, 4), (2, 1), "SAME"),      # channels, non-square, out_c < 64
    (1, 12, 13, 2, 70, (3, 3), (1, 1), "SAME"),      # out_c > 64: two channel blocks
    (1, 30, 30, 1, 16, (17, 3), (2, 2), "VALID"),    # 21 window rows per word
    (1, 40, 40, 2, 8, (17, 9), (2, 2), "VALID"),     # 18 taps a row: 3 rows per word
    (1, 9, 70, 4, 8, (3, 16), (1, 3), "VALID"),      # k_w * in_c = 64: one row per word
    (3, 8, 8, 1, 5, (1, 1), (1, 1), "SAME"),         # 1x1
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_{}x{}_c{}_o{}_k{}x{}_s{}_{}".format(
    *c[:5], *c[5], c[6][0], c[7]))
@pytest.mark.parametrize("ink", [0.1, 1.0])
def test_matches_dense_conv(path, case, ink):
    b, h, w, c, o, k, s, pad = case
    rng = np.random.default_rng(sum(map(hash, (h, w, c, o))) % 2**32)
    x = sparse_input(rng, (b, h, w, c), ink)
    f = rng.standard_normal((*k, c, o)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    for relu in (False, True):
        want = reference(x, f, bias, s, pad, relu)
        got = xnor.ink_conv2d(x, f, bias, s, pad, fused_relu=relu, path=path).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_empty_input_gives_bias(path):
    bias = np.linspace(-1, 1, 64).astype(np.float32)
    f = np.ones((15, 15, 1, 64), np.float32)
    y = xnor.ink_conv2d(np.zeros((2, 45, 45, 1), np.float32), f, bias, 3, "VALID", fused_relu=True,
                        path=path).numpy()
    np.testing.assert_array_equal(y, np.broadcast_to(np.maximum(bias, 0), y.shape))


def test_rendered_sketch_and_nan(path):
    """Anti-aliased strokes (the input it is for) and NaN propagation."""
    from sketchtf.data import render
    pts = np.array([[0, 0], [50, 80], [100, 10], [20, 60], [90, 90]], np.float32)
    img = render.render_one(pts, np.array([0, 0, 0, 1, 1]), size=64).numpy()[None]
    assert 0.02 < (img > 0).mean() < 0.5
    rng = np.random.default_rng(3)
    f = rng.standard_normal((15, 15, 1, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    want = reference(img, f, bias, 3, "SAME", True)
    got = xnor.ink_conv2d(img, f, bias, 3, "SAME", fused_relu=True, path=path).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    img[0, 30, 30, 0] = np.nan
    got = xnor.ink_conv2d(img, f, bias, 3, "SAME", path=path).numpy()
    want = reference(img, f, bias, 3, "SAME", False)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()


def test_threads_split_rows_exactly(monkeypatch):
    """Row shards on several threads give the one-thread result bit for bit."""
    rng = np.random.default_rng(5)
    x = sparse_input(rng, (3, 60, 60, 1), 0.15)
    f = rng.standard_normal((15, 15, 1, 64)).astype(np.float32)
    bias = np.zeros(64, np.float32)
    monkeypatch.setenv("SKETCHTF_XNOR_SPLIT", "serial")
    one = xnor.ink_conv2d(x, f, bias, 3, "VALID").numpy()
    monkeypatch.setenv("SKETCHTF_XNOR_SPLIT", "auto")
    monkeypatch.setenv("SKETCHTF_MIN_SHARD_WORK", "0")
    np.testing.assert_array_equal(xnor.ink_conv2d(x, f, bias, 3, "VALID").numpy(), one)


@pytest.mark.parametrize("kw,msg", [
    (dict(f_shape=(3, 3, 2, 4)), "input channels"),
    (dict(bias_len=5), "bias must be"),
    (dict(f_shape=(3, 65, 1, 4)), "width \\* in_channels <= 64"),
])
def test_bad_arguments_are_named(kw, msg):
    x = np.zeros((1, 70, 70, 1), np.float32)
    f = np.zeros(kw.get("f_shape", (3, 3, 1, 4)), np.float32)
    b = np.zeros(kw.get("bias_len", f.shape[-1]), np.float32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=msg):
        xnor.ink_conv2d(x, f, b, 1, "VALID")
