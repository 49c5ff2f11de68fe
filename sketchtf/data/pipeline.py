"""Any sketch source -> a batched, prefetched tf.data pipeline of images + labels.

    records = load_records(cfg, "train")            # readers, parsed once
    ds, info = make_dataset(cfg, "train", batch_size=64, training=True)

Strokes are parsed once into flat arrays held in memory; per element the
pipeline normalizes to the unit canvas, augments in stroke space (training),
pads a batch, renders it in one call of the one renderer, then augments in image
space and crops. Training streams repeat forever (Keras takes steps_per_epoch)
and every random draw is stateless, seeded by (seed, position in the stream),
so a run is reproducible and each epoch sees new augmentations.

`cfg` is the `data` ConfigDict of an experiment (see configs/common.py):
source, path, image_size, render_size, channels, line_width_px, margin,
augment, stroke_aug, image_aug, classes, limit_per_class, ... .
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from sketchtf.data import augment as aug
from sketchtf.data import render
from sketchtf.data.records import Sketch, SkipCounter

SOURCES = ("synthetic", "quickdraw_ndjson", "sketchrnn_npz", "bitmap_npy",
           "tuberlin_svg", "tuberlin_png", "image_folder")


@dataclasses.dataclass
class DatasetInfo:
    class_names: list
    num_examples: int
    steps_per_epoch: int
    skipped: str
    kind: str  # "strokes" or "images"


def _get(cfg, key, default=None):
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def _stratified(records, split: str, seed: int, fraction: float) -> list:
    """The image-folder split rule (image_folder.split_files) applied to record
    ids, for sources without a split of their own: stratified and stable."""
    from sketchtf.data.image_folder import split_files
    by_class: dict = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r.id)
    chosen = set()
    for parts in split_files(by_class, test_fraction=fraction, seed=seed).values():
        chosen.update(parts["train" if split == "train" else "test"])
    return [r for r in records if r.id in chosen]


def _split_dir(path: str, split: str) -> Optional[str]:
    """root/train and root/test layouts (e.g. quickdraw_10class_ndjson)."""
    sub = os.path.join(path, "valid" if split == "valid" else split)
    return sub if os.path.isdir(sub) else None


def load_records(cfg, split: str, skipped: Optional[SkipCounter] = None) -> list:
    """Reads every record of `split` ("train" | "test" | "valid") from cfg.source."""
    source = _get(cfg, "source", "synthetic")
    path = _get(cfg, "path", "")
    classes = list(_get(cfg, "classes") or []) or None
    limit = _get(cfg, "limit_per_class") or None
    skip_bad = bool(_get(cfg, "skip_bad", False))
    seed = int(_get(cfg, "split_seed", 0))
    test_fraction = float(_get(cfg, "test_fraction", 0.2))
    bad = dict(skip_bad=skip_bad, skipped=skipped)
    if source not in SOURCES:
        raise ValueError(f"data.source={source!r}: expected one of {SOURCES}")
    if source == "synthetic":
        from sketchtf.data import synthetic
        n = int(_get(cfg, "synthetic_per_class", 200)) if split == "train" else \
            int(_get(cfg, "synthetic_test_per_class", 50))
        return list(synthetic.generate(n, split=split, seed=int(_get(cfg, "synthetic_seed", 0)),
                                       classes=tuple(classes or synthetic.CLASSES)))
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"data.path={path!r} does not exist for data.source={source!r}; point --config.data.path "
            f"at local files (see README), or use data.source='synthetic' offline")

    def hashed(records):
        return _stratified(list(records), split, seed, test_fraction)

    if source == "quickdraw_ndjson":
        from sketchtf.data.quickdraw import read_ndjson
        opts = dict(classes=classes, recognized_only=bool(_get(cfg, "recognized_only", False)),
                    with_times=False, limit_per_class=limit, **bad)
        sub = _split_dir(path, split) if os.path.isdir(path) else None
        if sub:
            return list(read_ndjson(sub, **opts))
        return hashed(read_ndjson(path, **opts))
    if source == "sketchrnn_npz":
        from sketchtf.data.quickdraw import read_sketchrnn_npz
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".npz")) \
            if os.path.isdir(path) else [path]
        out = []
        for f in files:
            recs = read_sketchrnn_npz(f, split=split, **bad)
            out.extend(recs if not limit else [r for _, r in zip(range(limit), recs)])
        return out
    if source == "bitmap_npy":
        from sketchtf.data.quickdraw import read_bitmap_npy
        return hashed(read_bitmap_npy(path, classes=classes, limit_per_class=limit, **bad))
    if source == "tuberlin_svg":
        from sketchtf.data.tuberlin import read_tuberlin_svg
        return hashed(read_tuberlin_svg(path, classes=classes, **bad))
    from sketchtf.data import image_folder, tuberlin
    reader = tuberlin.read_tuberlin_png if source == "tuberlin_png" else image_folder.read_image_folder
    return list(reader(path, split=split, test_fraction=test_fraction, seed=seed, **bad))


def vocabulary(cfg, train_records) -> list:
    """Class names: cfg.classes in its order, else the sorted train labels."""
    classes = list(_get(cfg, "classes") or [])
    return classes or sorted({r.label for r in train_records})


def _to_tensors(records, class_names):
    """Records -> in-memory tensors: ragged strokes or a stack of images."""
    index = {c: i for i, c in enumerate(class_names)}
    missing = sorted({r.label for r in records} - set(index))
    if missing:
        raise ValueError(f"labels {missing[:5]} are not in the vocabulary {class_names[:10]}...")
    labels = np.array([index[r.label] for r in records], np.int32)
    if all(r.strokes is not None for r in records):
        pts, ids, lens = [], [], []
        for r in records:
            p, s = render.strokes_to_arrays(r.strokes)
            pts.append(p)
            ids.append(s)
            lens.append(len(p))
        splits = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        points = tf.RaggedTensor.from_row_splits(np.concatenate(pts), splits)
        stroke_ids = tf.RaggedTensor.from_row_splits(np.concatenate(ids), splits)
        return "strokes", (points, stroke_ids), labels
    if any(r.image is None for r in records):
        raise ValueError("a data set must be all stroke records or all image records")
    shapes = {r.image.shape for r in records}
    if len(shapes) > 1:
        raise ValueError(f"image records of different sizes {sorted(shapes)[:3]}; set the reader's size=")
    return "images", (np.stack([r.image for r in records]),), labels


def _sizes(cfg):
    size = int(_get(cfg, "image_size", 128))
    render_size = int(_get(cfg, "render_size", 0) or size)
    if render_size < size:
        raise ValueError(f"data.render_size={render_size} must be >= data.image_size={size} (it is cropped to it)")
    return size, render_size


def make_dataset(cfg, split: str, *, batch_size: int, training: bool, seed: int = 0,
                 records=None, class_names=None, with_index: bool = False):
    """Builds the tf.data pipeline. Returns (dataset, DatasetInfo).

    Training datasets repeat forever; use info.steps_per_epoch. Elements are
    (images [B, S, S, C] float32 ink=1, labels [B] int32[, index [B] int64]).
    Pass class_names (from the train split) when building an eval split.
    """
    skipped = SkipCounter()
    if records is None:
        records = load_records(cfg, split, skipped)
    if not records:
        raise ValueError(f"no records for split {split!r} of data.source={_get(cfg, 'source')!r}")
    class_names = list(class_names or vocabulary(cfg, records))
    kind, tensors, labels = _to_tensors(records, class_names)
    size, render_size = _sizes(cfg)
    channels = int(_get(cfg, "channels", 1))
    if kind == "images" and channels != 1:
        raise ValueError("the 6-channel stroke-order stack needs stroke records, not images")
    margin = float(_get(cfg, "margin", 0.06))
    width = float(_get(cfg, "line_width_px", 4.0)) * render_size / 128.0
    do_aug = training and bool(_get(cfg, "augment", True))
    stroke_cfg = dict(_get(cfg, "stroke_aug", None) or {})
    image_cfg = dict(_get(cfg, "image_aug", None) or {})
    n = len(labels)
    parallel = _get(cfg, "num_parallel_calls", None) or tf.data.AUTOTUNE
    base_seed = tf.constant([seed, 0], tf.int64)

    ds = tf.data.Dataset.from_tensor_slices(tensors + (labels, np.arange(n, dtype=np.int64)))
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate()

    def elem_seed(counter):
        return tf.random.experimental.stateless_fold_in(base_seed, counter)

    if kind == "strokes":
        def prep(counter, el):
            points, ids, label, idx = el
            unit = render.normalize(points[None], tf.shape(points)[:1], margin)[0]
            w = tf.constant(width)
            if do_aug:
                unit, ids, w = aug.augment_strokes(unit, ids, elem_seed(counter), render_size, stroke_cfg)
            return unit, ids, tf.shape(unit)[0], w, label, idx, elem_seed(counter)

        ds = ds.map(prep, num_parallel_calls=parallel, deterministic=True)
        ds = ds.padded_batch(batch_size, drop_remainder=False)

        def draw(unit, ids, lengths, w, label, idx, seeds):
            images = render.render(unit, ids, lengths, size=render_size, line_width=w, channels=channels)
            return images, label, idx, seeds
        ds = ds.map(draw, num_parallel_calls=parallel, deterministic=True)
    else:
        def prep_image(counter, el):
            image, label, idx = el
            img = tf.image.convert_image_dtype(image[..., None], tf.float32)
            img = tf.image.resize(img, [render_size, render_size], antialias=True)
            return img, label, idx, elem_seed(counter)
        ds = ds.map(prep_image, num_parallel_calls=parallel, deterministic=True)
        ds = ds.batch(batch_size)

    def finish(images, label, idx, seeds):
        if do_aug:
            images = aug.augment_images(images, seeds, image_cfg, crop=size if render_size > size else None)
        elif render_size > size:
            images = aug.center_crop(images, size)
        images = tf.ensure_shape(images, [None, size, size, channels])
        return (images, label, idx) if with_index else (images, label)
    ds = ds.map(finish, num_parallel_calls=parallel, deterministic=True).prefetch(tf.data.AUTOTUNE)
    steps = -(-n // batch_size)
    return ds, DatasetInfo(class_names, n, steps, skipped.report(), kind)
