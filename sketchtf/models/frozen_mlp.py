"""A trained backbone + MLP head as one registry model (seed E), and the cut
that gives a backbone's features.

Registered by name so that sketchtf.workdir.load_trained_model and export
rebuild a frozen-feature workdir like any other; training/features.py caches
the features and trains the head.
"""
from sketchtf.keras import keras
from sketchtf.models.registry import build_model, register

FEATURES_LAYER = "frozen_features"


def classifier_layer(model):
    """The layer that maps pooled features to logits: the Dense named "logits",
    or the 1x1 conv feeding a Flatten named "logits" (Sketch-A-Net's L8)."""
    try:
        logits = model.get_layer("logits")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no layer named 'logits' (the zoo's contract)") from None
    if isinstance(logits, keras.layers.Dense):
        return logits
    prev = logits._inbound_nodes[0].inbound_layers
    if isinstance(prev, keras.layers.Conv2D) and tuple(prev.kernel_size) == (1, 1) \
            and tuple(prev.output_shape[1:3]) == (1, 1):
        return prev
    raise ValueError(f"model {model.name!r}: cannot find a Dense or 1x1-conv classifier before 'logits' "
                     f"(found {type(logits).__name__} after {type(prev).__name__})")


def feature_tensor(model):
    """The flattened input of the classifier layer, named FEATURES_LAYER."""
    return keras.layers.Flatten(name=FEATURES_LAYER)(classifier_layer(model).input)


def feature_model(model):
    return keras.Model(model.input, feature_tensor(model), name=f"{model.name}_features")


def build_head(feature_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
    """Linear (hidden=0) or one-hidden-layer ReLU MLP on the features; outputs logits."""
    x = inputs = keras.Input((int(feature_dim),), name="features")
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="head_dropout_in")(x)
    if hidden:
        x = keras.layers.Dense(int(hidden), activation="relu", name="head_hidden")(x)
        if dropout:
            x = keras.layers.Dropout(float(dropout), name="head_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(int(num_classes), name="logits")(x), name="head")


def _head_dense(head):
    return [l for l in head.layers if isinstance(l, keras.layers.Dense)]


def assemble(backbone, head):
    """One model: backbone up to its features, then the head.

    A linear head's kernel/bias are copied into the backbone's own classifier
    layer (so the result IS `backbone`, modified in place, same architecture as
    the registry model). An MLP head is attached to the feature tensor."""
    dense = _head_dense(head)
    if len(dense) == 1:
        clf = classifier_layer(backbone)
        kernel, bias = dense[0].get_weights()
        if clf.kernel.shape.num_elements() != kernel.size or not clf.use_bias:
            raise ValueError(f"head kernel {kernel.shape} does not fit classifier {clf.name} {clf.kernel.shape}")
        clf.set_weights([kernel.reshape(clf.kernel.shape), bias])
        return backbone
    return keras.Model(backbone.input, head(feature_tensor(backbone)), name="frozen_mlp")


@register("frozen_mlp")
def frozen_mlp(*, num_classes, input_shape, weights=None, backbone="sketchnet", backbone_kwargs=None, hidden=256,
               head_dropout=0.0):
    """The assembled backbone + MLP head (weights come from the workdir's checkpoint)."""
    if weights:
        raise ValueError("frozen_mlp: weights come from the workdir's checkpoint; use weights=None")
    base = build_model(backbone, num_classes=num_classes, input_shape=input_shape, **dict(backbone_kwargs or {}))
    head = build_head(feature_tensor(base).shape[-1], num_classes, hidden, head_dropout)
    return assemble(base, head)
