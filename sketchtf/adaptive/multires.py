"""One recognizer for every canvas size: a global-pooling SketchNet trained on
batches rendered at a random size per batch.

SketchNet's flatten head ties it to one input size. `sketchnet_gp` (in the zoo,
sketchtf/models/sketchnet.py) keeps its four conv blocks and 1x1 bottleneck but pools globally (mean and max over the
grid, concatenated: max keeps "is there ink like this anywhere", which mean
alone dilutes on sparse sketches), so the same weights run at 32, 64, 96 or
128 px. Each training batch is drawn natively at its size by the project's
renderer (pipeline.make_dataset per size), never resized, so every size sees
the line widths it will be served with.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from sketchtf.data import pipeline
from sketchtf.data.image_folder import split_files

MODEL_NAME = "sketchnet_gp"  # sketchtf/models/sketchnet.py


def check_sizes(sizes, multiple=16) -> tuple:
    """Sorted distinct canvas sizes, each a positive multiple of `multiple`."""
    try:
        out = tuple(sorted({int(s) for s in sizes}))
    except (TypeError, ValueError):
        raise ValueError(f"adaptive.sizes must be integers, got {sizes!r}") from None
    if not out or any(s < multiple or s % multiple for s in out):
        raise ValueError(f"adaptive.sizes={list(out)}: each size must be a multiple of {multiple} (>= {multiple})")
    return out


def split_holdout(records, fraction: float, seed: int = 0):
    """Stratified, stable (train, holdout) split of train records by id: the
    holdout is never trained on, so the selector learns from honest mistakes."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"adaptive.holdout_fraction must be in (0, 1), got {fraction}")
    by_class = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r.id)
    dup = len(records) - len({r.id for r in records})
    if dup:
        raise ValueError(f"{dup} train records share an id; the holdout split needs unique record ids")
    held = set()
    for parts in split_files(by_class, test_fraction=fraction, seed=seed).values():
        held.update(parts["test"])
    return [r for r in records if r.id not in held], [r for r in records if r.id in held]


def size_config(data_cfg, size: int):
    """The data section drawn natively at `size` (no render_size crop)."""
    c = data_cfg.copy_and_resolve_references() if hasattr(data_cfg, "copy_and_resolve_references") \
        else dict(data_cfg)
    c["image_size"] = int(size)
    c["render_size"] = 0
    return c


def multires_dataset(data_cfg, sizes, *, records, class_names, batch_size, seed=0, size_weights=None):
    """Training stream whose every batch is rendered at one size drawn at random
    (seeded) from `sizes` with probabilities `size_weights` (default uniform).

    Returns (dataset of ([B, S, S, C], [B]) with S varying per batch, DatasetInfo)."""
    sizes = check_sizes(sizes)
    streams, info = [], None
    for k, s in enumerate(sizes):
        ds, info = pipeline.make_dataset(size_config(data_cfg, s), "train", batch_size=batch_size, training=True,
                                         seed=seed + 1000 * k, records=records, class_names=class_names)
        streams.append(ds)
    w = np.ones(len(sizes)) if not size_weights else np.asarray(size_weights, np.float64)
    if w.shape != (len(sizes),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"adaptive.size_weights={size_weights!r}: need {len(sizes)} non-negative weights")
    logits = tf.constant(np.log(np.maximum(w / w.sum(), 1e-12))[None], tf.float32)
    choice = tf.data.Dataset.random(seed=seed).map(
        lambda r: tf.cast(tf.random.stateless_categorical(logits, 1, tf.stack([r, r // 7 + 1]))[0, 0], tf.int64))
    return tf.data.Dataset.choose_from_datasets(streams, choice), info


def train_multires(config, workdir):
    """Trains config.model (default sketchnet_gp) on a random canvas size per
    batch; the standard callbacks evaluate at the largest size. Holdout ids go
    to workdir/holdout.json for the selector. Returns the final metrics dict."""
    from sketchtf.training import trainer
    strategy = trainer.start_run(config, workdir)
    seed = int(config.get("seed", 0))
    ad = config.adaptive
    sizes = check_sizes(ad.sizes)
    records = pipeline.load_records(config.data, "train")
    if not records:
        raise ValueError(f"no train records for data.source={config.data.source!r}")
    class_names = pipeline.vocabulary(config.data, records)
    train_recs, held = split_holdout(records, float(ad.holdout_fraction), seed=int(config.data.get("split_seed", 0)))
    trainer.record_run(config, workdir, class_names, strategy)
    with open(os.path.join(workdir, "holdout.json"), "w") as f:
        json.dump(sorted(r.id for r in held), f)
    bs = int(config.train.batch_size)
    train_ds, info = multires_dataset(config.data, sizes, records=train_recs, class_names=class_names,
                                      batch_size=bs, seed=seed, size_weights=list(ad.get("size_weights", ()) or ()))
    eval_ds, einfo = pipeline.make_dataset(size_config(config.data, sizes[-1]), config.get("eval_split", "test"),
                                           batch_size=int(config.eval.batch_size), training=False,
                                           class_names=class_names)
    with trainer.run_scope(config):
        model = trainer.initial_model(config, len(class_names))
        steps = int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)
        trainer.compile_model(model, config, steps)
        return trainer.fit_and_report(
            model, config, workdir, train_ds, info, eval_ds, einfo,
            title=f"{config.model.name} multi-resolution {list(sizes)} on {config.data.source}",
            extra=dict(sizes=list(sizes), holdout_examples=len(held), eval_size=sizes[-1]))


def load_holdout(config, workdir):
    """The train records held out by train_multires (ids in workdir/holdout.json)."""
    path = os.path.join(workdir, "holdout.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} missing: train with `python -m sketchtf.adaptive train` first")
    with open(path) as f:
        ids = set(json.load(f))
    held = [r for r in pipeline.load_records(config.data, "train") if r.id in ids]
    if len(held) != len(ids):
        raise ValueError(f"{path}: {len(ids) - len(held)} holdout ids are no longer in the train data")
    return held


def size_probabilities(model, data_cfg, records, class_names, sizes, batch_size=128):
    """Softmax outputs of `model` on `records` drawn at each size, through the
    eval pipeline (the renderer serving uses). Returns (probs [A, N, K], labels [N])."""
    out, labels = [], None
    step = tf.function(lambda x: tf.nn.softmax(model(x, training=False), -1))
    for s in sizes:
        ds, _ = pipeline.make_dataset(size_config(data_cfg, s), "test", batch_size=batch_size, training=False,
                                      records=records, class_names=class_names)
        ps, ys = [], []
        for x, y in ds:
            ps.append(step(x).numpy())
            ys.append(y.numpy())
        out.append(np.concatenate(ps))
        labels = np.concatenate(ys)
    return np.stack(out), labels
