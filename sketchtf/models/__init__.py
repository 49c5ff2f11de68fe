"""Model zoo: functional tf_keras models built by registry name.

    model = build_model("sketchnet", num_classes=10, input_shape=(128, 128, 1))

Every model takes float32 [B, H, W, C] images in [0, 1] (ink = 1) and returns
logits [B, num_classes]; see `registry` for the contract and each family module
for its architecture and weight options.
"""
from sketchtf.models.registry import available_models, build_model, register

# Importing the families runs their @register decorators (registry imports none of them).
from sketchtf.models import applications, mobilenetv2, sketchanet, sketchnet  # noqa: E402,F401
from sketchtf.models import binary_sketchanet, frozen_mlp  # noqa: E402,F401

__all__ = ["available_models", "build_model", "register"]
