"""ResNet-50 teacher on quickdraw_10class_ndjson (weights=None here: no download offline;
pass --config.model.weights=imagenet online).

  python -m sketchtf.train --config=configs/resnet50_qd10.py --workdir=runs/resnet50
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("resnet50", data=quickdraw10(image_size=128), epochs=15, batch_size=32, lr=1e-3)
    if arg == "smoke":
        smoke(c)
    return c
