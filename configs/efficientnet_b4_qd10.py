"""EfficientNet-B4 teacher (seed A's chosen teacher) on quickdraw_10class_ndjson (weights=None here: no download offline;
pass --config.model.weights=imagenet online).

  python -m sketchtf.train --config=configs/efficientnet_b4_qd10.py --workdir=runs/efficientnet_b4
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("efficientnet_b4", data=quickdraw10(image_size=128), epochs=15, batch_size=32, lr=1e-3)
    if arg == "smoke":
        smoke(c)
    return c
