"""EfficientNet-B4 and ResNet-50 from tf_keras.applications, on sketch input.

Both are built with include_top=False, pooling="avg", then Dropout + Dense(logits).
The application layers are built directly on our input tensor (`input_tensor=`),
so the returned Model is flat (no nested sub-model), which TFMOT and feature
taps need.

Input mapping (our input: [0, 1], ink = 1 on background 0):
- EfficientNet-B4 rescales 0..255 -> ImageNet-normalized inside itself, so we only
  multiply by 255.
- ResNet-50 expects "caffe" preprocessing: BGR, 0..255, minus the ImageNet channel
  means. We subtract the means in RGB order and, after loading ImageNet-format
  weights, reverse conv1's kernel along its input-channel axis; that is exactly
  the caffe mapping without a channel-reversal op in the graph. With other than 3
  channels (1 or 6, weights=None) the mean of the three channel means is used.
- 1-channel input: with weights=None the network is built for 1 channel; with
  ImageNet weights the gray image is tiled to 3 channels in-graph (Concatenate).
- Polarity is not inverted: white-on-black sketches go in as such (fine-tuning
  adapts the first layers; inverting would break the shared input convention).

weights: None, "imagenet" (downloads Keras' no-top file; offline it fails with a
RuntimeError naming the way out) or a path to that same no-top .h5 file.
"""
from __future__ import annotations

import os

from sketchtf.keras import keras
from sketchtf.models.registry import register

# ImageNet channel means (RGB) of the caffe-style preprocessing ResNet-50 expects.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def check_weights_arg(weights, model_name: str):
    """Validates `weights`; a path must exist (fail fast, before any building)."""
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"{model_name}: weights must be None, 'imagenet' or a file path, got {weights!r}")
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{model_name}: weights file not found: {os.fspath(weights)}")


def fetch_failed(model_name: str, err: Exception) -> RuntimeError:
    """A clear error for a failed ImageNet download (offline machine)."""
    return RuntimeError(
        f"{model_name}: could not get ImageNet weights ({type(err).__name__}: {err}). "
        "This needs network access once (files are cached under ~/.keras/models); "
        "offline, download the Keras no-top .h5 elsewhere and pass weights=<path>, "
        "or use weights=None.")


def gray_to_rgb(x, channels: int, weights, model_name: str):
    """Tiles a 1-channel input to RGB when ImageNet weights need 3 channels."""
    if weights is None:
        return x
    if channels == 1:
        return keras.layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])
    if channels != 3:
        raise ValueError(f"{model_name}: ImageNet weights need 1 or 3 input channels, got {channels}")
    return x


def _build_app(app_fn, model_name, x, inputs, weights, num_classes, dropout):
    try:
        base = app_fn(include_top=False, weights=weights, input_tensor=x,
                      input_shape=tuple(x.shape[1:]), pooling="avg")
    except Exception as err:  # get_file raises a bare Exception on URL failure
        if weights == "imagenet" and "fetch failure" in str(err):
            raise fetch_failed(model_name, err) from err
        raise
    y = keras.layers.Dropout(dropout, name="dropout")(base.output)
    y = keras.layers.Dense(num_classes, name="logits")(y)
    return keras.Model(inputs, y, name=model_name), base


@register("efficientnet_b4")
def efficientnet_b4(*, num_classes, input_shape, weights=None, dropout=0.4):
    """EfficientNet-B4 backbone (19.3M params without the 1000-class top)."""
    check_weights_arg(weights, "efficientnet_b4")
    inputs = keras.Input(shape=input_shape, name="image")
    x = gray_to_rgb(inputs, input_shape[-1], weights, "efficientnet_b4")
    x = keras.layers.Rescaling(255.0, name="to_0_255")(x)
    model, _ = _build_app(keras.applications.EfficientNetB4, "efficientnet_b4", x, inputs,
                          weights, num_classes, dropout)
    return model


@register("resnet50")
def resnet50(*, num_classes, input_shape, weights=None, dropout=0.2):
    """ResNet-50 backbone with caffe-style input mapping done in the model."""
    check_weights_arg(weights, "resnet50")
    inputs = keras.Input(shape=input_shape, name="image")
    x = gray_to_rgb(inputs, input_shape[-1], weights, "resnet50")
    channels = x.shape[-1]
    if channels == 3:
        offset = [-m for m in CAFFE_MEAN_RGB]
    else:
        offset = -sum(CAFFE_MEAN_RGB) / 3.0
    x = keras.layers.Rescaling(255.0, offset=offset, name="caffe_norm")(x)
    model, _ = _build_app(keras.applications.ResNet50, "resnet50", x, inputs,
                          weights, num_classes, dropout)
    if weights is not None:
        # The checkpoint's conv1 reads BGR; our graph feeds RGB.
        conv1 = model.get_layer("conv1_conv")
        kernel, *rest = conv1.get_weights()
        conv1.set_weights([kernel[:, :, ::-1, :]] + rest)
    return model
