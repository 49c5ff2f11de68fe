"""SketchNet (seed D: 4 conv blocks + 1x1 bottleneck head) on quickdraw_10class_ndjson.

  python -m sketchtf.train --config=configs/sketchnet_qd10.py --workdir=runs/sketchnet
  python -m sketchtf.evaluate --workdir=runs/sketchnet          # test, once
  ...:smoke for a seconds-long run on synthetic data.
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    # 128 px, one-cycle AdamW (seed E's schedule), 8 epochs: what fits one CPU session here
    # (~8.5 min an epoch on 2 cores; docs/results.md "128 px"); the best valid epoch is kept.
    c = experiment("sketchnet", data=quickdraw10(image_size=128, valid_fraction=0.1), epochs=8, batch_size=64,
                   optimizer="adamw", lr=3e-3, schedule="onecycle", warmup_frac=0.3, keep_best=True,
                   early_stop_patience=3)
    c.eval_split = "valid"  # the model is chosen on valid; test is scored once: python -m sketchtf.evaluate
    if arg == "smoke":
        smoke(c)
    return c
