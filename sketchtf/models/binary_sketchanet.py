"""Binary-weight and XNOR Sketch-A-Net (seed C, Sketch-A-XNORNet), registry models.

`sketchanet_binary`: Sketch-A-Net with L2..L7 as `BinaryConv2D` (weights
alpha * sign(W), float activations); L1 and L8 stay float, as in the paper.
The layer structure (names, order, variables) is exactly that of the float
`sketchanet`, so a float checkpoint initialises it through the trainer's
`config.model.init_from` unchanged (the paper started its binary net from the
trained float one).

`sketchanet_xnor`: L2..L7 also binarize their inputs (XNOR-Net). What that
needs to train, and the choices made here:
- In the float net every conv ends in ReLU, so the next layer's input is >= 0
  and sign() of it is +1 everywhere: no information would pass. XNOR-Net's
  block order fixes this: BatchNorm -> sign -> binary conv -> pool. Each of
  L2..L7 gets a BatchNormalization `bn2`..`bn7` in front of it, which centres
  the activations so that sign() splits them at a learned threshold, and keeps
  them near the straight-through estimator's |x| <= 1 window.
- L2..L6 have no ReLU (`hidden_relu=False`, XNOR-Net's order): after BN the
  sign is the nonlinearity, and a ReLU before BN could only remove thresholds
  (every channel whose BN threshold is below 0 would become constant +1).
  L7 keeps its ReLU because its output feeds the float L8, like fc7.
- `input_scaling` (XNOR-Net's K, off by default): K multiplies each output
  pixel by the mean |BN output| over the receptive field. Off by default
  because BN already normalises the scale that K restores, and K costs a float
  box filter per layer at inference; the option is there to compare.
- Weight STE `ste="xnor"` (SEEDS.md C) for both models.
Because of the BN layers its checkpoint structure differs from the float net;
`config.model.init_by_name=True` copies L1..L8 by layer name from a float run
(BN starts at identity).
"""
from __future__ import annotations

import functools

from sketchtf.keras import keras
from sketchtf.layers import BinaryConv2D
from sketchtf.models.registry import BN_MOMENTUM, register
from sketchtf.models.sketchanet import BINARIZED_IN_PAPER, sketchanet


@register("sketchanet_binary")
def sketchanet_binary(*, num_classes, input_shape, weights=None, ste="xnor", dropout=0.5,
                      name="sketchanet_binary"):
    """Sketch-A-Net with binary weights in L2..L7 (float activations)."""
    factory = functools.partial(BinaryConv2D, ste=ste)
    return sketchanet(num_classes=num_classes, input_shape=input_shape, weights=weights,
                      conv_factory=factory, factory_layers=BINARIZED_IN_PAPER, dropout=dropout,
                      name=name)


@register("sketchanet_xnor")
def sketchanet_xnor(*, num_classes, input_shape, weights=None, input_scaling=False, ste="xnor",
                    hidden_relu=False, dropout=0.5, name="sketchanet_xnor"):
    """XNOR Sketch-A-Net: L2..L7 binary weights and binary inputs, BN before each sign."""

    def xnor_conv(name, activation, **kw):
        if name != "L7" and not hidden_relu:
            activation = None
        return _PreNormalized(name, BinaryConv2D(
            name=name, activation=activation, binary_activations=True,
            input_scaling=input_scaling, ste=ste, **kw))

    return sketchanet(num_classes=num_classes, input_shape=input_shape, weights=weights,
                      conv_factory=xnor_conv, factory_layers=BINARIZED_IN_PAPER, dropout=dropout,
                      name=name)


class _PreNormalized:
    """Callable standing in for a layer in sketchanet's graph: BN `bn<k>`, then the conv."""

    def __init__(self, name, conv):
        self.bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn" + name[1:])
        self.conv = conv

    def __call__(self, x):
        return self.conv(self.bn(x))
