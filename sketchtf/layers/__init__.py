"""Binary quantizers and Keras-serializable binary layers."""
from sketchtf.layers.binary import BinaryConv2D, BinaryDense
from sketchtf.layers.quantizers import binarize_weights, sign, ste_sign, weight_scale

__all__ = ["BinaryConv2D", "BinaryDense", "binarize_weights", "sign", "ste_sign", "weight_scale"]
