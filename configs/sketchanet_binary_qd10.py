"""Binary-weight Sketch-A-Net (L2..L7 weights alpha * sign(W)) on quickdraw_10class_ndjson.

Same data and optimiser recipe as configs/sketchanet_qd10.py (seed C); args as
there (smoke, 128, stroke_order). As the paper did, start from a trained float
Sketch-A-Net of the same input size:

  python -m sketchtf.train --config=configs/sketchanet_binary_qd10.py:128 \
      --workdir=runs/sketchanet_binary_128 --config.model.init_from=runs/sketchanet_128
  python -m sketchtf.binarize --workdir=runs/sketchanet_binary_128 --out=runs/sketchanet_binary_128.sktb
"""
from sketchtf.config import sibling_config


def get_config(arg=None):
    c = sibling_config(__file__, "sketchanet_qd10.py", arg)
    c.model.name = "sketchanet_binary"
    c.export.model_name = "sketchanet_binary"
    c.model.kwargs = dict(ste="xnor")
    return c
