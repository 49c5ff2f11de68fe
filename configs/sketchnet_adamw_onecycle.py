"""Seed E's recipe (AdamW + one-cycle LR) applied to SketchNet on quickdraw_10class_ndjson.

  python -m sketchtf.train --config=configs/sketchnet_adamw_onecycle.py --workdir=runs/sketchnet_onecycle
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    c = experiment("sketchnet", data=quickdraw10(image_size=128), epochs=15, batch_size=64,
                   optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="onecycle", warmup_frac=0.3)
    if arg == "smoke":
        smoke(c)
    return c
