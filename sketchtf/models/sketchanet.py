"""Sketch-A-Net (single channel-stack version), seed C's table.

    layer        filter  number  stride  pad    output at 225 px
    L1 conv+ReLU 15x15   64      3       VALID  71
    pool1        3x3             2       VALID  35
    L2 conv+ReLU 5x5     128     1       VALID  31
    pool2        3x3             2       VALID  15
    L3-L5        3x3     256     1       SAME   15
    pool5        3x3             2       VALID  7
    L6 conv(=FC) 7x7     512     1       VALID  1   + ReLU + dropout 0.5
    L7 conv(=FC) 1x1     512     1       VALID  1   + ReLU + dropout 0.5
    L8 conv(=FC) 1x1     classes 1       VALID  1   -> flatten = logits

Other input sizes: L6's kernel is the spatial size left after pool5, so L6 stays
a fully connected layer over the whole map (7x7 at 225 px, exactly the paper;
2x2 at 128 px, 9x9 at 256 px). Inputs below 81 px leave nothing after pool5 and
are rejected. Input channels: 1 (image) or 6 (stroke-order stack) or any.
The [0, 1] input is used as is (the net is trained from scratch).

Binary-weight variant: L2..L7 are built by `conv_factory` (keyword arguments
filters, kernel_size, strides, padding, activation, name) so that
`conv_factory=BinaryConv2D` swaps them; `factory_layers` picks which layers.
"""
from __future__ import annotations

from sketchtf.keras import keras
from sketchtf.models.applications import check_weights_arg
from sketchtf.models.registry import register

# (name, kernel, filters, stride, padding); L6's kernel is resolved per input size.
CONV_LAYERS = (
    ("L1", 15, 64, 3, "valid"),
    ("L2", 5, 128, 1, "valid"),
    ("L3", 3, 256, 1, "same"),
    ("L4", 3, 256, 1, "same"),
    ("L5", 3, 256, 1, "same"),
    ("L6", None, 512, 1, "valid"),
    ("L7", 1, 512, 1, "valid"),
)
POOL_AFTER = {"L1": "pool1", "L2": "pool2", "L5": "pool5"}
DROPOUT_AFTER = {"L6": "drop6", "L7": "drop7"}
BINARIZED_IN_PAPER = ("L2", "L3", "L4", "L5", "L6", "L7")  # L1 and L8 stay float


def _out(size, kernel, stride, padding):
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def spatial_sizes(size: int) -> dict:
    """Output side length of each layer up to pool5 for an input side `size`."""
    sizes = {}
    for name, k, _, s, pad in CONV_LAYERS[:5]:
        size = _out(size, k, s, pad)
        sizes[name] = size
        if name in POOL_AFTER:
            size = _out(size, 3, 2, "valid")
            sizes[POOL_AFTER[name]] = size
    return sizes


def _default_conv(**kwargs):
    return keras.layers.Conv2D(**kwargs)


@register("sketchanet")
def sketchanet(*, num_classes, input_shape, weights=None, conv_factory=None,
               factory_layers=BINARIZED_IN_PAPER, dropout=0.5, name="sketchanet"):
    """Builds Sketch-A-Net; weights: None or a path saved by `model.save_weights`."""
    if weights == "imagenet":
        raise ValueError(f"{name}: there are no ImageNet weights for Sketch-A-Net; use weights=None")
    check_weights_arg(weights, name)
    unknown = set(factory_layers) - {n for n, *_ in CONV_LAYERS} - {"L8"}
    if unknown:
        raise ValueError(f"{name}: factory_layers has unknown layer names {sorted(unknown)}; use L1..L8")
    h, w, _ = input_shape
    pool5 = [spatial_sizes(h)["pool5"], spatial_sizes(w)["pool5"]]
    if min(pool5) < 1:
        raise ValueError(f"{name}: input {h}x{w} is too small; Sketch-A-Net needs at least 81x81 "
                         "(225x225 is the paper's size)")
    custom = conv_factory or _default_conv

    def conv(layer_name, **kw):
        make = custom if layer_name in factory_layers else _default_conv
        return make(name=layer_name, **kw)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for layer_name, k, filters, s, pad in CONV_LAYERS:
        kernel = tuple(pool5) if layer_name == "L6" else (k, k)
        x = conv(layer_name, filters=filters, kernel_size=kernel, strides=(s, s), padding=pad,
                 activation="relu")(x)
        if layer_name in POOL_AFTER:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=POOL_AFTER[layer_name])(x)
        if layer_name in DROPOUT_AFTER:
            x = keras.layers.Dropout(dropout, name=DROPOUT_AFTER[layer_name])(x)
    x = conv("L8", filters=num_classes, kernel_size=(1, 1), strides=(1, 1), padding="valid",
             activation=None)(x)
    outputs = keras.layers.Flatten(name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model
