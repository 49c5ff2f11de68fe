"""MobileNetV2 strategy 2 (layers 15-18 removed) on quickdraw_10class_ndjson, trained directly.

  python -m sketchtf.train --config=configs/mobilenetv2_s2_qd10.py --workdir=runs/mobilenetv2_s2
  python -m sketchtf.train --config=configs/mobilenetv2_s2_qd10.py:onecycle --workdir=runs/mobilenetv2_s2_128

arg: "onecycle" is the 128 px recipe of configs/sketchnet_qd10.py (valid carved from train and
watched, one-cycle AdamW, best valid epoch kept; test is scored once by
`python -m sketchtf.evaluate`), with 20 epochs and early stopping after 5 without gain:
MobileNetV2 learns more slowly than SketchNet, and its valid top-1 was still rising after 12
epochs (docs/results.md, "128 px"; valid dips by 2-30 points between early epochs).
"smoke": a tiny synthetic run for tests.
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    parts = [p for p in (arg or "").split(",") if p]
    if set(parts) - {"onecycle", "smoke"}:
        raise ValueError(f"mobilenetv2_s2 config: unknown arg {arg!r}; use onecycle, smoke")
    if "onecycle" in parts:
        c = experiment("mobilenetv2_s2", data=quickdraw10(image_size=128, valid_fraction=0.1), epochs=20,
                       batch_size=64, optimizer="adamw", lr=3e-3, schedule="onecycle", warmup_frac=0.3,
                       keep_best=True, early_stop_patience=5)
        c.eval_split = "valid"
    else:
        c = experiment("mobilenetv2_s2", data=quickdraw10(image_size=128), epochs=15, batch_size=64, lr=1e-3)
    if "smoke" in parts:
        smoke(c)
    return c
