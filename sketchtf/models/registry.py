"""Model registry: every model of the zoo is built by name from a config.

Contract shared by all builders (so training, distillation and export can treat
models alike):
- input: float32 images [B, H, W, C] in [0, 1], ink = 1 on background 0 (the
  renderer's convention); each model maps that range to what its stem expects
  inside the graph, so every model takes the same input;
- output: LOGITS [B, num_classes] (no softmax), so temperature / distillation can
  use them; losses use `from_logits=True`;
- functional tf_keras `Model` named after the registry name (TFMOT needs
  functional models);
- `weights=None` (default, random init) or "imagenet" for the families that have
  ImageNet checkpoints; a path is accepted as documented by each builder.
"""
from __future__ import annotations

from typing import Callable, Dict

from sketchtf.keras import keras

# BatchNorm moving-average momentum of the zoo's own blocks. Keras' 0.99/0.999
# suit runs of tens of thousands of steps; our CPU runs are hundreds to a few
# thousand, and sparse sketch inputs give first-layer variances near 0.004, so
# the initial moving variance of 1.0 still dominated at inference
# (measured: SketchNet 94% train-mode vs 23% inference accuracy after 342 steps).
BN_MOMENTUM = 0.9

_BUILDERS: Dict[str, Callable[..., keras.Model]] = {}


def register(name: str):
    """Decorator: registers `fn(*, num_classes, input_shape, weights, **kw)`."""

    def deco(fn):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered (by {_BUILDERS[name].__module__})")
        _BUILDERS[name] = fn
        return fn

    return deco


def available_models() -> list:
    """Sorted names accepted by `build_model` (the package imports every family)."""
    return sorted(_BUILDERS)


def _check_input_shape(input_shape) -> tuple:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (height, width, channels) integers, got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels) with positive sizes, got {input_shape!r}")
    return shape


def build_model(name: str, *, num_classes: int, input_shape, weights=None, **kwargs) -> keras.Model:
    """Builds the registered model `name`; extra kwargs go to its builder."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = _check_input_shape(input_shape)
    return _BUILDERS[name](num_classes=num_classes, input_shape=shape, weights=weights, **kwargs)
