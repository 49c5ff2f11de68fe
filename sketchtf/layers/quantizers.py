"""Binary quantizers: small functions with straight-through gradients.

In the style of larq's quantizers: each is a plain function of a tensor whose
forward pass binarizes and whose backward pass is written out explicitly with
tf.custom_gradient. Conventions shared with the C++ ops (sketchtf.ops.xnor):
sign(0) = +1 (and NaN -> -1, i.e. "not >= 0").

* `sign(x)`: +-1, no straight-through gradient (its gradient is 0).
* `ste_sign(x, clip_value=1)`: forward sign, backward dy * 1{|x| <= clip_value}
  (the BinaryNet / XNOR-Net estimator) - for activations.
* `binarize_weights(w, ste="xnor")`: W~ = alpha * sign(W) with one alpha per
  output channel (the last axis), alpha = mean |W| over all other axes
  (n = kh*kw*cin for a conv kernel, cin for a dense one). Backward, per
  element (SEEDS.md section C, XNOR-Net):
      ste="xnor":  dC/dW = dC/dW~ * (1/n + alpha * 1{|W| <= 1})
      ste="paper": dC/dW = dC/dW~ * (1/n + alpha * W * 1{|W| <= 1})
  "paper" is the estimator r * 1{|r| <= 1} as Sketch-A-XNORNet's text writes it.
"""
import tensorflow as tf

from sketchtf.keras import keras

WEIGHT_STES = ("xnor", "paper")


@keras.saving.register_keras_serializable(package="sketchtf")
def sign(x):
    """+1 where x >= 0 (so sign(0) = +1), -1 elsewhere; gradient 0."""
    x = tf.convert_to_tensor(x)
    return tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))


@keras.saving.register_keras_serializable(package="sketchtf")
def ste_sign(x, clip_value=1.0):
    """sign(x) forward; backward passes dy where |x| <= clip_value, else 0."""

    @tf.custom_gradient
    def _ste_sign(x):
        def grad(dy):
            return dy * tf.cast(tf.abs(x) <= clip_value, dy.dtype)

        return sign(x), grad

    return _ste_sign(tf.convert_to_tensor(x))


def weight_scale(w):
    """alpha: mean |w| over every axis but the last (one per output channel)."""
    w = tf.convert_to_tensor(w)
    return tf.reduce_mean(tf.abs(w), axis=list(range(w.shape.rank - 1)))


def binarize_weights(w, ste="xnor"):
    """alpha * sign(w) per output channel, with the XNOR-Net backward pass."""
    if ste not in WEIGHT_STES:
        raise ValueError(f"ste must be one of {WEIGHT_STES}, got {ste!r}")
    w = tf.convert_to_tensor(w)
    if w.shape.rank is None or w.shape.rank < 2:
        raise ValueError(f"binarize_weights needs a kernel of rank >= 2, got shape {w.shape}")

    @tf.custom_gradient
    def _binarize(w):
        alpha = weight_scale(w)
        n = tf.cast(tf.reduce_prod(tf.shape(w)[:-1]), w.dtype)

        def grad(dy):
            inside = tf.cast(tf.abs(w) <= 1.0, w.dtype)
            ste_term = inside if ste == "xnor" else w * inside
            return dy * (1.0 / n + alpha * ste_term)

        return alpha * sign(w), grad

    return _binarize(w)
