"""SketchNet on all of Quick Draw (345 classes, ~50M drawings), streamed from shards.

  # 1. download the 345 simplified class files (~22 GB) into ~/.cache/sketchtf/quickdraw/simplified
  python -m sketchtf.data.download --dataset=quickdraw --classes=all
  # 2. prepare once (the :prepare variant describes the ndjson source; add --engine=beam for a cluster)
  python -m sketchtf.prepare --config=configs/sketchnet_qd345.py:prepare --out=data/qd345
  # 3. train from the shards (one machine; N workers: python -m sketchtf.launch --workers=N -- ...)
  python -m sketchtf.train --config=configs/sketchnet_qd345.py --workdir=runs/qd345 \
      --config.data.path=data/qd345

`:smoke` is the same recipe on a few synthetic sketches: prepare it into a
folder, then train from it with --config.data.source=shards --config.data.path=DIR.
See README "Train on all of Quick Draw" and docs/scale.md.
"""
import os

from sketchtf.config import data_config, experiment, smoke


def _source_data(**overrides):
    # What sketchtf.prepare reads: the download folder of step 1. The split is a hash
    # of key_id: 1% test and 1% valid are still ~500K drawings each.
    return data_config(**dict(dict(
        source="quickdraw_ndjson", path=os.path.expanduser("~/.cache/sketchtf/quickdraw/simplified"),
        test_fraction=0.01, valid_fraction=0.01, image_size=128), **overrides))


def get_config(arg=None):
    data = _source_data(source="shards", path="data/qd345", shuffle_buffer=100_000, interleave=32)
    c = experiment("sketchnet", data=data, epochs=2, batch_size=256, lr=2e-3, schedule="cosine",
                   warmup_frac=0.02, backup_every="2000")
    c.eval_split = "valid"   # test is scored once, at the end (python -m sketchtf.evaluate)
    c.eval.batch_size = 512
    c.eval.every = 1
    if arg == "prepare":
        c.data = _source_data()
    elif arg == "smoke":
        smoke(c)
        c.data.valid_fraction = 0.25
        c.train.backup_every = "epoch"
    elif arg:
        raise ValueError(f"unknown variant {arg!r}: use '', 'prepare' or 'smoke'")
    return c
