"""The main offline job: the synthetic sketch set (no files, no network).

  python -m sketchtf.quickstart --workdir=runs/quickstart
  python -m sketchtf.quickstart --config=configs/quickstart.py:smoke ...
"""
import ml_collections

from sketchtf.config import data_config


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.data = data_config(source="synthetic", image_size=64, synthetic_per_class=150,
                         synthetic_test_per_class=40)
    c.batch_size = 32
    c.seed = 0
    c.preview_count = 48
    if arg == "smoke":
        c.data.synthetic_per_class = 8
        c.data.synthetic_test_per_class = 4
        c.preview_count = 16
    return c
