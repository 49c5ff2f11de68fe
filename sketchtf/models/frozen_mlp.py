"""A trained backbone + MLP head as one registry model (sketchtf.features, seed E).

Registered by name so that trainer.load_trained_model / sketchtf.export rebuild a
frozen-feature workdir like any other; the head's parts live in sketchtf.features.
"""
from sketchtf.models.registry import build_model, register


@register("frozen_mlp")
def frozen_mlp(*, num_classes, input_shape, weights=None, backbone="sketchnet", backbone_kwargs=None, hidden=256,
               head_dropout=0.0):
    """The assembled backbone + MLP head (weights come from the workdir's checkpoint)."""
    from sketchtf.features import assemble, build_head, feature_tensor  # features imports the zoo

    if weights:
        raise ValueError("frozen_mlp: weights come from the workdir's checkpoint; use weights=None")
    base = build_model(backbone, num_classes=num_classes, input_shape=input_shape, **dict(backbone_kwargs or {}))
    head = build_head(feature_tensor(base).shape[-1], num_classes, hidden, head_dropout)
    return assemble(base, head)
