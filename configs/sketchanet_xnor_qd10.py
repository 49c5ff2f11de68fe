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
import importlib.util
import os


def _float_recipe(arg):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sketchanet_qd10.py")
    spec = importlib.util.spec_from_file_location("_sketchanet_qd10", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg=None):
    c = _float_recipe(arg)
    c.model.name = "sketchanet_xnor"
    c.model.init_by_name = True
    c.export.model_name = "sketchanet_xnor"
    c.model.kwargs = dict(ste="xnor", input_scaling="input_scaling" in set((arg or "").split(",")))
    return c
