"""The main job on the offline default data: build the pipeline, preview it.

  python -m sketchtf.quickstart --workdir=runs/quickstart

Writes samples.png (rendered, augmented training sketches with labels) and
data.json (classes, sizes, throughput) into the workdir.
"""
import json
import os
import time

from absl import app, flags
from ml_collections import config_flags

import sketchtf  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from sketchtf.config import save_config
from sketchtf.data import pipeline
from sketchtf.report import image_grid, save_png

_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py", "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Where outputs go.")


def main(argv):
    del argv
    cfg, workdir = _CONFIG.value, _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    save_config(cfg, workdir)
    ds, info = pipeline.make_dataset(cfg.data, "train", batch_size=cfg.batch_size, training=True, seed=cfg.seed)
    t0 = time.perf_counter()
    images, labels, seen = [], [], 0
    for x, y in ds.take(max(1, -(-cfg.preview_count // cfg.batch_size))):
        images.append(x.numpy())
        labels.extend(info.class_names[i] for i in y.numpy())
        seen += len(y)
    rate = seen / (time.perf_counter() - t0)
    import numpy as np
    grid = image_grid(np.concatenate(images)[:cfg.preview_count, ..., :1], 8, labels=labels[:cfg.preview_count])
    png = save_png(os.path.join(workdir, "samples.png"), grid)
    summary = dict(classes=info.class_names, train_examples=info.num_examples, skipped=info.skipped,
                   image_size=cfg.data.image_size, sketches_per_s_first_batches=round(rate, 1))
    with open(os.path.join(workdir, "data.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{info.num_examples} training sketches, {len(info.class_names)} classes; {info.skipped}")
    print(f"samples grid: {png}")


if __name__ == "__main__":
    app.run(main)
