"""MobileNetV2 and the two pruned students of seed A, from one block list.

Numbering follows torchvision's `features`: layer 0 = stem conv 3x3/32 s2,
layers 1..17 = inverted residual blocks from the (t, c, n, s) table, layer 18 =
final 1x1 conv to 1280 + BN + ReLU6. The classifier is global average pool,
dropout, Dense(num_classes) -> logits.

Students are the same description with layers removed:
- strategy 1 (`mobilenetv2_s1`): blocks 6, 10, 13, 16 (one of each run of
  identical blocks 5-6, 8-9-10, 12-13, 15-16; all residual, so shapes chain);
- strategy 2 (`mobilenetv2_s2`): layers 15-18; the head sits on block 14's
  160-channel output.
Any other set of layers 1..18 can be removed with `remove_layers=`; a kept block
whose input width changed gets new channel counts (and no residual if the widths
no longer match).

Layer names keep the original index (block_12_expand, block_12_project_bn,
block_12_add...; stem_* for layer 0, head_* for layer 18), so a student's kept
blocks and the teacher's share names: `transfer_weights` copies by name, and
feature distillation can address layer i via `feature_layer_names(model)[i]`.

Input [0, 1] is mapped to [-1, 1] inside the model (what the ImageNet stem saw).

weights="imagenet" (or a path to Keras' `mobilenet_v2_..._no_top.h5`): the Keras
MobileNetV2 checkpoint is loaded by layer-name mapping into every kept layer
(students get the kept blocks). 1-channel input: the stem kernel is summed over
its RGB axis, which gives exactly the response to the gray image tiled to RGB.
Keras has checkpoints for 96/128/160/192/224 px; the one closest to the input
height is used (weights do not depend on input size, only their training did).
"""
from __future__ import annotations

import os

import numpy as np

from sketchtf.keras import keras
from sketchtf.models.applications import check_weights_arg, fetch_failed
from sketchtf.models.registry import BN_MOMENTUM, register

# (expansion t, output channels c, repeats n, first stride s): MobileNetV2 Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_LAYERS = 19  # 0 = stem, 1..17 = blocks, 18 = head conv

STRATEGY_1_REMOVED = (6, 10, 13, 16)
STRATEGY_2_REMOVED = (15, 16, 17, 18)

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
KERAS_WEIGHT_ROWS = (96, 128, 160, 192, 224)


def block_specs():
    """[(layer index 1..17, expansion, out channels, stride)] from the table."""
    specs, index = [], 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for k in range(n):
            specs.append((index, t, c, s if k == 0 else 1))
            index += 1
    return specs


def kept_layers(remove_layers=()) -> list:
    """Indices 0..18 that remain after removing `remove_layers`."""
    removed = set(int(i) for i in remove_layers)
    bad = sorted(i for i in removed if not 1 <= i < NUM_LAYERS)
    if bad:
        raise ValueError(f"remove_layers: indices must be in 1..{NUM_LAYERS - 1} (0 is the stem), got {bad}")
    return [i for i in range(NUM_LAYERS) if i not in removed]


def make_divisible(v, divisor=8, min_value=None):
    """Channel rounding of the reference implementations (never down by >10%)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _bn(name):
    # Keras' epsilon, so ImageNet statistics mean the same thing; momentum 0.9,
    # not Keras' 0.999, because see registry.BN_MOMENTUM.
    return keras.layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=name)


def _inverted_residual(x, index, expansion, out_channels, stride):
    in_channels = x.shape[-1]
    p = f"block_{index}_"
    y = x
    if expansion != 1:
        y = keras.layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=p + "expand")(y)
        y = _bn(p + "expand_bn")(y)
        y = keras.layers.ReLU(6.0, name=p + "expand_relu")(y)
    # SAME padding equals Keras' explicit correct_pad for stride 2 at any size.
    y = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                     name=p + "depthwise")(y)
    y = _bn(p + "depthwise_bn")(y)
    y = keras.layers.ReLU(6.0, name=p + "depthwise_relu")(y)
    y = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=p + "project")(y)
    y = _bn(p + "project_bn")(y)
    if stride == 1 and in_channels == out_channels:
        y = keras.layers.Add(name=p + "add")([x, y])
    return y


def build_mobilenetv2(*, num_classes, input_shape, weights=None, alpha=1.0,
                      remove_layers=(), dropout=0.2, name="mobilenetv2"):
    """MobileNetV2 with `remove_layers` (torchvision indices) left out."""
    check_weights_arg(weights, name)
    if not alpha > 0:
        raise ValueError(f"{name}: alpha must be > 0, got {alpha}")
    keep = set(kept_layers(remove_layers))
    if weights is not None and input_shape[-1] not in (1, 3):
        raise ValueError(f"{name}: ImageNet weights need 1 or 3 input channels, got {input_shape[-1]}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(inputs)
    x = keras.layers.Conv2D(make_divisible(STEM_CHANNELS * alpha), 3, strides=2, padding="same",
                            use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for index, t, c, s in block_specs():
        if index in keep:
            x = _inverted_residual(x, index, t, make_divisible(c * alpha), s)
    if 18 in keep:
        # As Keras / the paper: alpha widens the last conv but never narrows it.
        head = make_divisible(HEAD_CHANNELS * alpha) if alpha > 1.0 else HEAD_CHANNELS
        x = keras.layers.Conv2D(head, 1, use_bias=False, name="head_conv")(x)
        x = _bn("head_bn")(x)
        x = keras.layers.ReLU(6.0, name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_keras_imagenet(model, weights, alpha=alpha, input_shape=input_shape)
    return model


@register("mobilenetv2")
def mobilenetv2(*, num_classes, input_shape, weights=None, **kwargs):
    """Full MobileNetV2 (19 layers)."""
    return build_mobilenetv2(num_classes=num_classes, input_shape=input_shape, weights=weights,
                             name="mobilenetv2", **kwargs)


@register("mobilenetv2_s1")
def mobilenetv2_s1(*, num_classes, input_shape, weights=None, **kwargs):
    """Strategy 1 student: blocks 6, 10, 13, 16 removed."""
    return build_mobilenetv2(num_classes=num_classes, input_shape=input_shape, weights=weights,
                             remove_layers=STRATEGY_1_REMOVED, name="mobilenetv2_s1", **kwargs)


@register("mobilenetv2_s2")
def mobilenetv2_s2(*, num_classes, input_shape, weights=None, **kwargs):
    """Strategy 2 student: layers 15-18 removed (head on block 14, 160 channels)."""
    return build_mobilenetv2(num_classes=num_classes, input_shape=input_shape, weights=weights,
                             remove_layers=STRATEGY_2_REMOVED, name="mobilenetv2_s2", **kwargs)


def feature_layer_names(model) -> dict:
    """{layer index: name of the layer whose output is that layer's output}."""
    names = [layer.name for layer in model.layers]
    out = {}
    if "stem_relu" in names:
        out[0] = "stem_relu"
    for index in range(1, 18):
        mine = [n for n in names if n.startswith(f"block_{index}_")]
        if mine:
            out[index] = mine[-1]  # layers are in topological order: add or project_bn
    if "head_relu" in names:
        out[18] = "head_relu"
    return out


def transfer_weights(source, target) -> list:
    """Copies weights between layers of the same name and shapes (teacher -> student).

    Returns the names copied. Layers whose shapes differ (e.g. the logits of a
    different class count) are left as they are.
    """
    copied = []
    src = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        w = layer.get_weights()
        if not w or layer.name not in src:
            continue
        sw = src[layer.name].get_weights()
        if len(sw) == len(w) and all(a.shape == b.shape for a, b in zip(sw, w)):
            layer.set_weights(sw)
            copied.append(layer.name)
    return copied


def _keras_to_ours(keras_name: str):
    """Maps a Keras MobileNetV2 layer name to ours (None if it has no twin)."""
    if keras_name == "Conv1":
        return "stem_conv"
    if keras_name == "bn_Conv1":
        return "stem_bn"
    if keras_name == "Conv_1":
        return "head_conv"
    if keras_name == "Conv_1_bn":
        return "head_bn"
    if keras_name.startswith("expanded_conv_"):  # Keras block 0 = layer 1
        index, part = 1, keras_name[len("expanded_conv_"):]
    elif keras_name.startswith("block_"):
        k, part = keras_name[len("block_"):].split("_", 1)
        index = int(k) + 1
    else:
        return None
    return f"block_{index}_{part.replace('_BN', '_bn')}"


def _resolve_weights_file(weights, alpha, input_shape, name):
    if weights != "imagenet":
        return os.fspath(weights)
    h, w = input_shape[:2]
    rows = min(KERAS_WEIGHT_ROWS, key=lambda r: abs(r - h)) if h == w else 224
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    try:
        return keras.utils.get_file(fname, KERAS_WEIGHTS_URL + fname, cache_subdir="models")
    except Exception as err:  # get_file raises a bare Exception on URL failure
        raise fetch_failed(name, err) from err


def load_keras_imagenet(model, weights, *, alpha, input_shape):
    """Loads Keras' MobileNetV2 checkpoint into `model` by layer-name mapping.

    Returns the names of our layers that received weights.
    """
    channels = input_shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"{model.name}: ImageNet weights need 1 or 3 input channels, got {channels}")
    path = _resolve_weights_file(weights, alpha, input_shape, model.name)
    # Weight shapes do not depend on the input size: a small reference suffices.
    ref = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=alpha, include_top=False,
                                         weights=None)
    try:
        ref.load_weights(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{model.name}: {path} is not a Keras MobileNetV2 no-top checkpoint "
                         f"for alpha={alpha}: {err}") from err
    ours = {layer.name for layer in model.layers}
    loaded = []
    for layer in ref.layers:
        target = _keras_to_ours(layer.name)
        if target is None or target not in ours or not layer.get_weights():
            continue
        w = layer.get_weights()
        if target == "stem_conv" and channels == 1:
            w = [np.sum(w[0], axis=2, keepdims=True)]
        dst = model.get_layer(target)
        # A block after a removed non-residual block has other widths: keep its init.
        if [a.shape for a in w] == [a.shape for a in dst.get_weights()]:
            dst.set_weights(w)
            loaded.append(target)
    return loaded
