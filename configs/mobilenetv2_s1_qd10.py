"""MobileNetV2 strategy 1 (blocks 6, 10, 13, 16 removed) on quickdraw_10class_ndjson, trained directly.

  python -m sketchtf.train --config=configs/mobilenetv2_s1_qd10.py --workdir=runs/mobilenetv2_s1
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("mobilenetv2_s1", data=quickdraw10(image_size=128), epochs=15, batch_size=64, lr=1e-3)
    if arg == "smoke":
        smoke(c)
    return c
