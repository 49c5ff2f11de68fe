"""MobileNetV2 (seed A's un-pruned student) on quickdraw_10class_ndjson, trained directly.

  python -m sketchtf.train --config=configs/mobilenetv2_qd10.py --workdir=runs/mobilenetv2
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("mobilenetv2", data=quickdraw10(image_size=128), epochs=15, batch_size=64, lr=1e-3)
    if arg == "smoke":
        smoke(c)
    return c
