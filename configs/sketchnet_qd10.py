"""SketchNet (seed D: 4 conv blocks + 1x1 bottleneck head) on quickdraw_10class_ndjson.

  python -m sketchtf.train --config=configs/sketchnet_qd10.py --workdir=runs/sketchnet
  ...:smoke for a seconds-long run on synthetic data.
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("sketchnet", data=quickdraw10(image_size=128), epochs=15, batch_size=64, lr=1e-3)
    if arg == "smoke":
        smoke(c)
    return c
