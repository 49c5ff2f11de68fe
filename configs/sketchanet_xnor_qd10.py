"""XNOR Sketch-A-Net (L2..L7 binary weights and binary inputs) on quickdraw_10class_ndjson.

Same data and optimiser recipe as configs/sketchanet_qd10.py; args as there
(smoke, 128, stroke_order) plus "input_scaling" (XNOR-Net's K in every binary
layer). Block order BN -> sign -> binary conv (see
sketchtf/models/binary_sketchanet.py for why). The BN layers make its
checkpoint structure differ from the float net, so it starts from a float run
by layer name (model.init_by_name=True is set here; BN layers keep their init):

  python -m sketchtf.train --config=configs/sketchanet_xnor_qd10.py:128 --workdir=runs/sketchanet_xnor_128 \
      --config.model.init_from=runs/sketchanet_128
  python -m sketchtf.binarize --workdir=runs/sketchanet_xnor_128 --out=runs/sketchanet_xnor_128.sktb
"""
from sketchtf.config import sibling_config


def get_config(arg=None):
    c = sibling_config(__file__, "sketchanet_qd10.py", arg)
    c.model.name = "sketchanet_xnor"
    c.model.init_by_name = True
    c.export.model_name = "sketchanet_xnor"
    c.model.kwargs = dict(ste="xnor", input_scaling="input_scaling" in set((arg or "").split(",")))
    return c
