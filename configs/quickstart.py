"""The main offline job: SketchNet on the synthetic sketch set (no files, no network).

  python -m sketchtf.quickstart --workdir=runs/quickstart
  python -m sketchtf.quickstart --config=configs/quickstart.py:smoke --workdir=/tmp/qs
"""
from sketchtf.config import data_config, experiment, smoke


def get_config(arg=None):
    c = experiment("sketchnet", data=data_config(source="synthetic", image_size=64, synthetic_per_class=150,
                                                 synthetic_test_per_class=40, valid_fraction=0.1),
                   epochs=6, batch_size=32, optimizer="adamw", lr=3e-3, schedule="onecycle", warmup_frac=0.3,
                   verbose=2, keep_best=True)
    c.eval_split = "valid"  # epochs are watched on valid; test is scored once, at the end
    c.preview_count = 48
    c.export.model_name = "sketchnet_synthetic"
    if arg == "smoke":
        smoke(c)
        c.preview_count = 16
    return c
