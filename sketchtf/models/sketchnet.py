"""SketchNet4PoolBottleneck (seed D): a small CNN with a 1x1 bottleneck head.

    block k (k = 1..4, filters 32, 64, 128, 256): conv 3x3 SAME (no bias) + BN + ReLU,
                                                  maxpool 2x2          128 -> 8 px
    bottleneck: conv 1x1 256 -> 64 (no bias) + BN + ReLU, keeps the 8x8 grid
    flatten (8*8*64 = 4096), Dense 128 + ReLU, dropout 0.3, Dense classes (logits)

Parameter arithmetic at 128 px, 25 classes (Keras counts BN's moving mean and
variance too; PyTorch-style "trainable" leaves them out):
    convs     9*(1*32 + 32*64 + 64*128 + 128*256)     =   387,360
    BN        4*(32 + 64 + 128 + 256)                 =     1,920
    bottleneck 256*64 + 4*64                          =    16,640
    Dense 128 4096*128 + 128                          =   524,416
    Dense 25  128*25 + 25                             =     3,225
    total                                               933,561 (trainable 932,473)
which is seed D's "933K". Two convs per block would give ~1.7M, so the block is
a single conv. BN after every conv is what lets seed D fuse conv-BN-ReLU for
INT8. Other input sizes work (side divisible by 16 keeps every pool exact); the
flatten size, and the first Dense, scale with (side/16)^2.
The [0, 1] input is used as is (trained from scratch).
"""
from __future__ import annotations

from sketchtf.keras import keras
from sketchtf.models.applications import check_weights_arg
from sketchtf.models.registry import BN_MOMENTUM, register


@register("sketchnet")
def sketchnet(*, num_classes, input_shape, weights=None, filters=(32, 64, 128, 256),
              bottleneck=64, dense=128, dropout=0.3, pool="flatten", any_size=False, name="sketchnet"):
    """Builds SketchNet; weights: None or a path saved by `model.save_weights`.

    pool: "flatten" (seed D's head, tied to one input size) or a global pooling
    "avg" | "max" | "avgmax" (mean and max concatenated: max keeps "is there ink
    like this anywhere", which mean alone dilutes on sparse sketches).
    any_size: build the input as [None, None, C] (global pooling only), so one
    model runs at every canvas size whose side is a multiple of 2**len(filters)."""
    if weights == "imagenet":
        raise ValueError(f"{name}: there are no ImageNet weights for SketchNet; use weights=None")
    check_weights_arg(weights, name)
    if pool not in ("flatten", "avg", "max", "avgmax"):
        raise ValueError(f"{name}: pool must be 'flatten', 'avg', 'max' or 'avgmax', got {pool!r}")
    if any_size and pool == "flatten":
        raise ValueError(f"{name}: any_size needs a global pooling head (pool='avg', 'max' or 'avgmax')")
    h, w, c = input_shape
    scale = 2 ** len(filters)
    if h < scale or w < scale:
        raise ValueError(f"{name}: input {h}x{w} is too small for {len(filters)} 2x2 pools "
                         f"(needs at least {scale}x{scale}; 128x128 is the reference size)")
    inputs = keras.Input(shape=(None, None, c) if any_size else input_shape, name="image")
    x = inputs
    for k, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{k}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{k}_bn")(x)
        x = keras.layers.ReLU(name=f"block{k}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{k}_pool")(x)
    x = keras.layers.Conv2D(bottleneck, 1, use_bias=False, name="bottleneck_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bottleneck_bn")(x)
    x = keras.layers.ReLU(name="bottleneck_relu")(x)
    if pool == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        pooled = []
        if pool in ("avg", "avgmax"):
            pooled.append(keras.layers.GlobalAveragePooling2D(name="gap")(x))
        if pool in ("max", "avgmax"):
            pooled.append(keras.layers.GlobalMaxPooling2D(name="gmp")(x))
        x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled")(pooled)
    x = keras.layers.Dense(dense, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


@register("sketchnet_gp")
def sketchnet_gp(*, num_classes, input_shape, weights=None, pool="avgmax", any_size=True, name="sketchnet_gp",
                 **kwargs):
    """SketchNet with a global pooling head that takes any canvas size (the
    adaptive recognizer's model, sketchtf.adaptive)."""
    return sketchnet(num_classes=num_classes, input_shape=input_shape, weights=weights, pool=pool,
                     any_size=any_size, name=name, **kwargs)
