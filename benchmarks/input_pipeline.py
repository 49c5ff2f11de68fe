"""Input pipeline throughput vs. MobileNetV2 training throughput, side by side.

  python benchmarks/input_pipeline.py            # from the repo root, ~3 min on 2 cores

Measures, in one process on the real quickdraw_10class_ndjson/train (10,000
sketches, parsed once up front):
  1. sketches/s of pipeline.make_dataset(training=True) at 128 px, batch 64,
     with augment False/True and data.num_parallel_calls 1 and 2;
  2. each stage alone, to show where the time goes: the raw renderer (one
     render.render call on a padded batch of 64, a random one and the 64
     sketches with the most points, at the eval width and at 3-8 px),
     augment.augment_strokes per sketch, augment.augment_images per batch;
  3. MobileNetV2 training images/s at 128 px (train_on_batch, batch 32).
Ends with one JSON line of headline figures; the target (issue 2) is that the
augmented pipeline outruns training by 3x.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

import sketchtf  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)

_BATCHES = flags.DEFINE_integer("batches", 20, "Timed batches per pipeline variant (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed batches first (tracing, thread start-up, shuffle fill).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Pipeline batch size.")
_SIZE = flags.DEFINE_integer("image_size", 128, "Rendered image size (px).")
_RENDER_CALLS = flags.DEFINE_integer("render_calls", 4, "Timed calls of the raw renderer per variant.")
_TRAIN_BATCHES = flags.DEFINE_integer("train_batches", 10, "Timed MobileNetV2 train_on_batch steps.")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch_size", 32, "MobileNetV2 batch size.")
_TRAIN_WARMUP = flags.DEFINE_integer("train_warmup", 3, "Untimed MobileNetV2 steps first (graph build).")
_SKIP_TRAIN = flags.DEFINE_bool("skip_train", False, "Leave out the MobileNetV2 measurement.")

TARGET_RATIO = 3.0  # issue 2: the pipeline must outrun MobileNetV2 training by 3x


def _load():
    from sketchtf import config
    from sketchtf.data import pipeline
    path = config.data_path("quickdraw_10class_ndjson")
    if not path or not os.path.isdir(os.path.join(path, "train")):
        sys.exit(f"benchmarks/input_pipeline.py: quickdraw_10class_ndjson/train not found "
                 f"(looked for {path or '../shared/data/quickdraw_10class_ndjson'}); "
                 "set SKETCHTF_DATA to the shared data folder that holds it.")
    cfg = config.quickdraw10(image_size=_SIZE.value)
    t0 = time.perf_counter()
    records = pipeline.load_records(cfg, "train")
    parse_s = time.perf_counter() - t0
    return cfg, records, pipeline.vocabulary(cfg, records), parse_s


def pipeline_rate(cfg, records, class_names, *, augment: bool, parallel: int) -> float:
    """Sketches/s of the training pipeline, timed after a warm-up."""
    from sketchtf.data import pipeline
    c = cfg.copy_and_resolve_references()
    c.augment, c.num_parallel_calls = augment, parallel
    ds, _ = pipeline.make_dataset(c, "train", batch_size=_BATCH.value, training=True, seed=0,
                                  records=records, class_names=class_names)
    it = iter(ds)
    for _ in range(_WARMUP.value):
        next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(_BATCHES.value):
        x, _ = next(it)
        n += int(x.shape[0])
    rate = n / (time.perf_counter() - t0)
    del it, ds  # stop its background threads before the next variant runs
    return rate


def stage_rates(cfg, records) -> dict:
    """Each stage alone, to show where the pipeline's time goes: the renderer
    (one call on a padded batch, in a tf.function as tf.data runs it) on a
    random batch and on the 64 sketches with the most points, at the eval
    width and at augmentation widths; augment_strokes per sketch (in a
    tf.data map, 2 parallel calls); augment_images on a rendered batch."""
    import numpy as np
    import tensorflow as tf
    from sketchtf.data import augment as aug
    from sketchtf.data import render

    bs, size = _BATCH.value, _SIZE.value
    rng = np.random.default_rng(0)
    random_batch = [records[i] for i in rng.choice(len(records), bs, replace=False)]
    dense_batch = sorted(records, key=lambda r: -r.num_points)[:bs]
    eval_width = tf.constant(cfg.line_width_px * size / 128.0)
    lo, hi = cfg.stroke_aug.width_px
    aug_widths = tf.constant(rng.uniform(lo, hi, bs).astype(np.float32) * size / 128.0)
    draw = tf.function(lambda u, i, n, w: render.render(u, i, n, size=size, line_width=w))

    def timed(fn, *args, items=bs):
        fn(*args)  # trace
        t0 = time.perf_counter()
        for _ in range(_RENDER_CALLS.value):
            out = fn(*args)
        _ = out.numpy()
        return _RENDER_CALLS.value * items / (time.perf_counter() - t0)

    out = {}
    for name, batch in (("random", random_batch), ("dense", dense_batch)):
        points, ids, lengths = render.padded_batch([r.strokes for r in batch])
        unit = render.normalize(points, lengths, cfg.margin)
        out[f"render_{name}_eval_width"] = timed(draw, unit, ids, lengths, eval_width)
        out[f"render_{name}_aug_widths"] = timed(draw, unit, ids, lengths, aug_widths)
        out[f"points_{name}"] = (int(lengths.max()), float(lengths.mean()))
        if name == "random":
            images = draw(unit, ids, lengths, eval_width)

    seeds = tf.constant(np.stack([np.arange(bs), np.zeros(bs)], 1), tf.int64)
    image_aug = tf.function(lambda x: aug.augment_images(x, seeds, dict(cfg.image_aug)))
    out["augment_images"] = timed(image_aug, images)

    # augment_strokes per sketch, as the pipeline's prep map runs it.
    n = 4 * bs
    flat = [render.strokes_to_arrays(r.strokes) for r in records[:n]]
    pts = tf.ragged.constant([p for p, _ in flat], dtype=tf.float32, ragged_rank=1)
    sid = tf.ragged.constant([s for _, s in flat], dtype=tf.int32)
    stroke_cfg = dict(cfg.stroke_aug)
    ds = tf.data.Dataset.from_tensor_slices((pts, sid)).enumerate().map(
        lambda k, el: aug.augment_strokes(el[0], el[1], tf.stack([k, tf.constant(0, tf.int64)]), size,
                                          stroke_cfg)[2],
        num_parallel_calls=2).batch(bs)
    for _ in ds.take(1):
        pass
    t0 = time.perf_counter()
    for _ in ds:
        pass
    out["augment_strokes"] = n / (time.perf_counter() - t0)
    return out


def train_rate(num_classes: int) -> float:
    """MobileNetV2 training images/s at image_size (Adam, sparse CE from logits)."""
    import numpy as np
    from sketchtf.keras import keras
    from sketchtf.models import build_model

    size = _SIZE.value
    model = build_model("mobilenetv2", num_classes=num_classes, input_shape=(size, size, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    bs = _TRAIN_BATCH.value
    x = rng.uniform(0.0, 1.0, (bs, size, size, 1)).astype(np.float32)
    y = (np.arange(bs) % num_classes).astype(np.int32)
    for _ in range(_TRAIN_WARMUP.value):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(_TRAIN_BATCHES.value):
        model.train_on_batch(x, y)
    return _TRAIN_BATCHES.value * bs / (time.perf_counter() - t0)


def main(argv):
    del argv
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    cfg, records, class_names, parse_s = _load()
    print(f"parsed {len(records)} sketches, {len(class_names)} classes in {parse_s:.1f} s; "
          f"{os.cpu_count()} cores, 1-min load average {load_before:.2f} at start", flush=True)

    rates = {}
    for augment in (False, True):
        for parallel in (1, 2):
            key = f"{'aug' if augment else 'noaug'}_sketches_per_s_par{parallel}"
            rates[key] = pipeline_rate(cfg, records, class_names, augment=augment, parallel=parallel)
            print(f"pipeline  augment={str(augment):5s} num_parallel_calls={parallel}: "
                  f"{rates[key]:7.1f} sketches/s", flush=True)

    r = stage_rates(cfg, records)
    for name in ("random", "dense"):
        pmax, pmean = r[f"points_{name}"]
        print(f"render.render alone, one call on a {name} batch of {_BATCH.value} (points per sketch max {pmax}, "
              f"mean {pmean:.0f}): {r[f'render_{name}_eval_width']:7.1f} sketches/s at {cfg.line_width_px:g} px, "
              f"{r[f'render_{name}_aug_widths']:7.1f} at 3-8 px", flush=True)
    print(f"augment_strokes alone (tf.data map, 2 calls): {r['augment_strokes']:.0f} sketches/s; "
          f"augment_images alone (batch {_BATCH.value}): {r['augment_images']:.0f} images/s", flush=True)

    train = None
    if not _SKIP_TRAIN.value:
        train = train_rate(len(class_names))
        print(f"MobileNetV2 {_SIZE.value} px training (train_on_batch, batch {_TRAIN_BATCH.value}): "
              f"{train:.1f} images/s", flush=True)

    def ratio(key):
        return round(rates[key] / train, 2) if train else None

    summary = dict(
        **{k: round(v, 1) for k, v in rates.items()},
        render_only_sketches_per_s_eval_width=round(r["render_random_eval_width"], 1),
        render_only_sketches_per_s_aug_widths=round(r["render_random_aug_widths"], 1),
        render_only_dense_batch_sketches_per_s=round(r["render_dense_eval_width"], 1),
        augment_strokes_per_s=round(r["augment_strokes"], 1),
        augment_images_per_s=round(r["augment_images"], 1),
        mobilenetv2_train_images_per_s=round(train, 1) if train else None,
        ratio_aug_par2_vs_train=ratio("aug_sketches_per_s_par2"),
        ratio_noaug_par2_vs_train=ratio("noaug_sketches_per_s_par2"),
        target_ratio=TARGET_RATIO,
        meets_target=(ratio("aug_sketches_per_s_par2") or 0) >= TARGET_RATIO if train else None,
        image_size=_SIZE.value, batch_size=_BATCH.value, timed_batches=_BATCHES.value,
        cores=os.cpu_count(), load_avg_1min_start=round(load_before, 2),
        load_avg_1min_end=round(os.getloadavg()[0], 2),
        wall_s=round(time.perf_counter() - t_start, 1),
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
