"""Keras layers with binary weights and, optionally, binary activations.

`BinaryConv2D` / `BinaryDense` are keras Conv2D / Dense whose kernel is used as
W~ = alpha * sign(W) (alpha = mean |W| per output channel, see
quantizers.binarize_weights); the float W is what the optimizer updates.
Biases stay float.

With ``binary_activations=True`` (XNOR mode) the inputs go through
`ste_sign` first, and ``input_scaling=True`` adds XNOR-Net's K: the output at
each pixel is multiplied by the mean of |x| over the input channels, averaged
over the kernel window (a box filter with the layer's strides and padding).

Padding: with padding="same" the padded positions are zeros *after*
binarization, so they contribute nothing: the layer computes
``alpha * tf.nn.conv2d(sign(x), sign(W), padding="SAME") + bias`` with zero
padding, which is exactly what sketchtf.ops.xnor_conv2d computes on packed
bits (and binary_weight_conv2d for float inputs). Only channels_last,
dilation 1 and groups 1 are supported, since that is what the ops implement.
"""
import tensorflow as tf

from sketchtf.keras import keras
from sketchtf.layers.quantizers import WEIGHT_STES, binarize_weights, ste_sign, weight_scale


def _check_binary_options(layer, binary_activations, input_scaling, ste):
    if ste not in WEIGHT_STES:
        raise ValueError(f"{layer}: ste must be one of {WEIGHT_STES}, got {ste!r}")
    if input_scaling and not binary_activations:
        raise ValueError(f"{layer}: input_scaling (XNOR-Net's K) needs binary_activations=True")


@keras.saving.register_keras_serializable(package="sketchtf")
class BinaryConv2D(keras.layers.Conv2D):
    """Conv2D with weights alpha * sign(W); optional XNOR binary activations.

    Args beyond keras.layers.Conv2D:
      binary_activations: binarize the inputs with ste_sign (XNOR-Net).
      input_scaling: multiply by XNOR-Net's K (needs binary_activations).
      ste: weight gradient, "xnor" (default) or "paper" (quantizers module).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 binary_activations=False, input_scaling=False, ste="xnor", **kwargs):
        _check_binary_options("BinaryConv2D", binary_activations, input_scaling, ste)
        super().__init__(filters, kernel_size, strides=strides, padding=padding, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError("BinaryConv2D supports data_format='channels_last' only")
        if tuple(self.dilation_rate) != (1, 1) or self.groups != 1:
            raise ValueError("BinaryConv2D supports dilation_rate=1 and groups=1 only, got "
                             f"dilation_rate={self.dilation_rate}, groups={self.groups}")
        self.binary_activations = bool(binary_activations)
        self.input_scaling = bool(input_scaling)
        self.ste = ste

    def convolution_op(self, inputs, kernel):
        x = ste_sign(inputs) if self.binary_activations else inputs
        outputs = super().convolution_op(x, binarize_weights(kernel, self.ste))
        if self.input_scaling:
            outputs = outputs * self.input_scale(inputs)
        return outputs

    def input_scale(self, inputs):
        """XNOR-Net's K: [B, OH, OW, 1], mean |x| over channels, box-averaged."""
        a = tf.reduce_mean(tf.abs(inputs), axis=-1, keepdims=True)
        kh, kw = self.kernel_size
        box = tf.ones([kh, kw, 1, 1], a.dtype) / float(kh * kw)
        return tf.nn.conv2d(a, box, strides=list(self.strides), padding=self.padding.upper())

    def binary_kernel(self):
        """(sign(W) as +-1 floats [KH, KW, Cin, O], alpha [O]) for conversion."""
        return _binary_kernel(self.kernel)

    def get_config(self):
        config = super().get_config()
        config.update(binary_activations=self.binary_activations,
                      input_scaling=self.input_scaling, ste=self.ste)
        return config


@keras.saving.register_keras_serializable(package="sketchtf")
class BinaryDense(keras.layers.Dense):
    """Dense with weights alpha * sign(W); optional XNOR binary activations.

    Same extra args as BinaryConv2D; with input_scaling the output row is
    multiplied by mean |x| over the input features.
    """

    def __init__(self, units, binary_activations=False, input_scaling=False, ste="xnor",
                 **kwargs):
        _check_binary_options("BinaryDense", binary_activations, input_scaling, ste)
        super().__init__(units, **kwargs)
        self.binary_activations = bool(binary_activations)
        self.input_scaling = bool(input_scaling)
        self.ste = ste

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        x = ste_sign(inputs) if self.binary_activations else inputs
        kernel = binarize_weights(self.kernel, self.ste)
        if inputs.shape.rank == 2:
            outputs = tf.matmul(x, kernel)
        else:  # like keras Dense: contract the last axis of any-rank inputs
            outputs = tf.tensordot(x, kernel, [[-1], [0]])
            if inputs.shape.rank is not None:
                outputs.set_shape(inputs.shape[:-1].concatenate([self.units]))
        if self.input_scaling:
            outputs = outputs * tf.reduce_mean(tf.abs(inputs), axis=-1, keepdims=True)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def binary_kernel(self):
        """(sign(W) as +-1 floats [Cin, O], alpha [O]) for conversion."""
        return _binary_kernel(self.kernel)

    def get_config(self):
        config = super().get_config()
        config.update(binary_activations=self.binary_activations,
                      input_scaling=self.input_scaling, ste=self.ste)
        return config


def _binary_kernel(kernel):
    w = tf.convert_to_tensor(kernel)
    return tf.where(w >= 0, 1.0, -1.0), weight_scale(w)
