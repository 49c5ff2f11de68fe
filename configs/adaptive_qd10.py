"""Adaptive canvas size on quickdraw_10class_ndjson: sketchnet_gp trained on a
random size per batch (32/64/96/128 px), then a REINFORCE selector and a
confidence cascade fitted on a 10% holdout of train.

  python -m sketchtf.adaptive train --config=configs/adaptive_qd10.py --workdir=runs/adaptive
  ...:smoke for a seconds-long run on synthetic data (sizes 32/64).
"""
from sketchtf.adaptive import MODEL_NAME, adaptive_config
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment(MODEL_NAME, data=quickdraw10(image_size=128), epochs=15, batch_size=64, lr=1e-3)
    c.adaptive = adaptive_config()
    c.export.model_name = "sketchnet_adaptive"
    if arg == "smoke":
        smoke(c)
        c.adaptive.sizes = (32, 64)
        c.adaptive.holdout_fraction = 0.25
        c.adaptive.selector.steps = 50
    return c
