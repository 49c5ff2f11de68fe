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

import contextlib
import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from sketchtf.data import augment as aug
from sketchtf.data import render, shards
from sketchtf.data.records import SkipCounter

SOURCES = ("synthetic", "quickdraw_ndjson", "sketchrnn_npz", "bitmap_npy",
           "tuberlin_svg", "tuberlin_png", "image_folder", "shards")


@dataclasses.dataclass
class DatasetInfo:
    class_names: list
    num_examples: int
    steps_per_epoch: int
    skipped: str
    kind: str  # "strokes" or "images"


def _get(cfg, key, default=None):
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


# Splits each source can put records of a requested split in: sources with
# splits of their own keep them, and `valid` is carved from their train.
_FROM = {"train": ("train",), "valid": ("train", "valid"), "test": ("test",)}


def _in_split(records, split: str, cfg, fixed=None) -> list:
    """The one split rule (shards.assign_split: a hash of the record id), as
    sketchtf.prepare applies it, so in-memory and prepared sets agree."""
    kw = dict(seed=int(_get(cfg, "split_seed", 0)), test_fraction=float(_get(cfg, "test_fraction", 0.2)),
              valid_fraction=float(_get(cfg, "valid_fraction", 0.0)), fixed=fixed)
    return [r for r in records if shards.assign_split(r.id, **kw) == split]


def _split_dir(path: str, split: str) -> Optional[str]:
    """root/train and root/test layouts (e.g. quickdraw_10class_ndjson)."""
    sub = os.path.join(path, split)
    return sub if os.path.isdir(sub) else None


def load_records(cfg, split: str, skipped: Optional[SkipCounter] = None) -> list:
    """Reads every record of `split` ("train" | "valid" | "test") from cfg.source."""
    source = _get(cfg, "source", "synthetic")
    path = _get(cfg, "path", "")
    classes = list(_get(cfg, "classes") or []) or None
    limit = _get(cfg, "limit_per_class") or None
    bad = dict(skip_bad=bool(_get(cfg, "skip_bad", False)), skipped=skipped)
    if split not in shards.SPLITS:
        raise ValueError(f"split must be one of {shards.SPLITS}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"data.source={source!r}: expected one of {SOURCES}")
    if source == "synthetic":
        from sketchtf.data import synthetic
        out = []
        for part in _FROM[split]:
            if part == "valid":
                continue
            n = int(_get(cfg, "synthetic_per_class", 200)) if part == "train" else \
                int(_get(cfg, "synthetic_test_per_class", 50))
            recs = synthetic.generate(n, split=part, seed=int(_get(cfg, "synthetic_seed", 0)),
                                      classes=tuple(classes or synthetic.CLASSES))
            out += _in_split(recs, split, cfg, fixed=part)
        return out
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"data.path={path!r} does not exist for data.source={source!r}; point --config.data.path "
            f"at local files (see README), or use data.source='synthetic' offline")
    if source == "shards":
        return [r for r in shards.iter_records(path, split) if classes is None or r.label in classes]
    if source == "quickdraw_ndjson":
        from sketchtf.data.quickdraw import read_ndjson
        opts = dict(classes=classes, recognized_only=bool(_get(cfg, "recognized_only", False)),
                    with_times=False, limit_per_class=limit, **bad)
        if os.path.isdir(path) and any(_split_dir(path, s) for s in shards.SPLITS):
            return [r for part in _FROM[split] if _split_dir(path, part)
                    for r in _in_split(read_ndjson(_split_dir(path, part), **opts), split, cfg, fixed=part)]
        return _in_split(read_ndjson(path, **opts), split, cfg)
    if source == "sketchrnn_npz":
        from sketchtf.data.quickdraw import read_sketchrnn_npz
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".npz")) \
            if os.path.isdir(path) else [path]
        out = []
        for f in files:
            for part in _FROM[split]:
                recs = read_sketchrnn_npz(f, split=part, **bad)
                recs = recs if not limit else [r for _, r in zip(range(limit), recs)]
                out += _in_split(recs, split, cfg, fixed=part)
        return out
    if source == "bitmap_npy":
        from sketchtf.data.quickdraw import read_bitmap_npy
        return _in_split(read_bitmap_npy(path, classes=classes, limit_per_class=limit, **bad), split, cfg)
    if source == "tuberlin_svg":
        from sketchtf.data.tuberlin import read_tuberlin_svg
        return _in_split(read_tuberlin_svg(path, classes=classes, **bad), split, cfg)
    from sketchtf.data import image_folder
    ink = "dark" if source == "tuberlin_png" else "auto"
    return _in_split(image_folder.read_image_folder(path, split="all", ink=ink, classes=classes, **bad), split, cfg)


def vocabulary(cfg, train_records) -> list:
    """Class names: cfg.classes in its order, else the sorted train labels."""
    classes = list(_get(cfg, "classes") or [])
    return classes or sorted({r.label for r in train_records})


@dataclasses.dataclass
class _Source:
    """Serialized records (shards.encode) as a dataset of (record, index)."""
    dataset: tf.data.Dataset
    class_names: list
    counts: list          # records per class, in class_names order
    kind: str
    skipped: str
    from_shards: bool


def _memory_source(records, class_names, skipped: SkipCounter) -> _Source:
    """Small in-memory sets: encoded as shard records, so they take the same
    path as prepared shards from here on."""
    index = {c: i for i, c in enumerate(class_names)}
    missing = sorted({r.label for r in records} - set(index))
    if missing:
        raise ValueError(f"labels {missing[:5]} are not in the vocabulary {class_names[:10]}...")
    strokes = [r.strokes is not None for r in records]
    if any(strokes) and not all(strokes):
        raise ValueError("a data set must be all stroke records or all image records")
    if not any(strokes):
        shapes = {r.image.shape for r in records}
        if len(shapes) > 1:
            raise ValueError(f"image records of different sizes {sorted(shapes)[:3]}; set the reader's size=")
    counts = np.bincount([index[r.label] for r in records], minlength=len(class_names)).tolist()
    ds = tf.data.Dataset.from_tensor_slices(([shards.encode(r) for r in records],
                                             np.arange(len(records), dtype=np.int64)))
    return _Source(ds, class_names, counts, "strokes" if all(strokes) else "images", skipped.report(), False)


def _shard_source(cfg, split: str, class_names, training: bool, seed: int, worker) -> _Source:
    """Prepared shards streamed: shuffled file order (each epoch), interleaved
    reads. index = the record's place in the split (shard offset + position).
    worker=(index, count): this worker reads every count-th shard only (file
    sharding, done here rather than by tf.distribute's auto-shard rewrite,
    which cannot see through the pipeline's position counter); the dataset
    says so (auto-shard OFF) so tf.distribute does not shard it again."""
    folder = _get(cfg, "path")
    manifest = shards.read_manifest(folder)
    paths = shards.split_files(folder, manifest, split, verify=_get(cfg, "verify_shards", "size"))
    sizes = [sh["records"] for sh in manifest["splits"][split]["shards"]]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    class_names = list(class_names or _get(cfg, "classes") or manifest["vocabulary"])
    per_class = manifest["splits"][split]["counts"]
    index, count = worker
    if count > len(paths):
        raise shards.ShardError(folder, split, f"{len(paths)} shards cannot feed {count} workers; "
                                           f"prepare with --train_shards >= {count}")
    files = tf.data.Dataset.from_tensor_slices((paths, offsets)).shard(count, index)
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()

    def read(path, offset):
        return tf.data.TFRecordDataset(path).enumerate().map(lambda i, rec: (rec, offset + i))
    ds = files.interleave(read, cycle_length=max(1, min(len(paths), int(_get(cfg, "interleave", 16)))),
                          block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    sk = manifest["skipped"]
    skipped = f"{sk['errors']} bad records skipped when prepared" + "".join(
        f", {n} left out ({why})" for why, n in sorted(sk["filtered"].items()))
    return _Source(ds.with_options(options), class_names, [per_class.get(c, 0) for c in class_names],
                   manifest["kind"], skipped, True)


def _balance(ds, counts, how: str, seed: int):
    """Resamples (record, label, index) toward class weights count**0 (uniform)
    or count**0.5 (sqrt). Rejection resampling, which mixes the accepted
    stream with sample_from_datasets: each record is read once, where one
    filtered stream per class would read every shard once per class."""
    if how not in ("uniform", "sqrt"):
        raise ValueError(f"data.class_balance={how!r}: expected none, uniform or sqrt")
    c = np.asarray(counts, np.float64)
    initial = c / c.sum()
    target = np.where(c > 0, np.ones_like(c) if how == "uniform" else np.sqrt(c), 0.0)
    target = target / target.sum()
    ds = ds.rejection_resample(lambda rec, label, idx: label, target_dist=target.astype(np.float32),
                               initial_dist=initial.astype(np.float32), seed=seed)
    return ds.map(lambda label, el: el)


def make_dataset(cfg, split: str, *, batch_size: int, training: bool, seed: int = 0,
                 records=None, class_names=None, with_index: bool = False, start: int = 0,
                 worker: tuple = (0, 1)):
    """Builds the tf.data pipeline. Returns (dataset, DatasetInfo).

    data.source="shards" streams a prepared folder (sketchtf.prepare) with
    memory bounded by data.shuffle_buffer; other sources are read into memory
    and then take the same path. Training datasets repeat forever; use
    info.steps_per_epoch. Elements are (images [B, S, S, C] float32 ink=1,
    labels [B] int32[, index [B] int64]). Pass class_names (from the train
    split) when building an eval split. start: skip this many training
    elements (a resumed run continues at its input position; the stream and
    its augmentation draws are the same as if it had not stopped).
    worker: (index, count) under multi-worker training: from shards each
    worker streams its own shards (see _shard_source).
    """
    skipped = SkipCounter()
    if records is None and _get(cfg, "source") == "shards":
        src = _shard_source(cfg, split, class_names, training, seed, worker)
    else:
        if records is None:
            records = load_records(cfg, split, skipped)
        if not records:
            raise ValueError(f"no records for split {split!r} of data.source={_get(cfg, 'source')!r}")
        src = _memory_source(records, list(class_names or vocabulary(cfg, records)), skipped)
    n = int(sum(src.counts))
    if n == 0:
        raise ValueError(f"no records of classes {src.class_names[:5]}... in split {split!r}")
    draw = render.RenderSettings.from_config(cfg)
    if src.kind == "images" and draw.channels != 1:
        raise ValueError("the 6-channel stroke-order stack needs stroke records, not images")
    do_aug = training and bool(_get(cfg, "augment", True))
    parallel = _get(cfg, "num_parallel_calls", None) or tf.data.AUTOTUNE
    ds = _labelled_stream(cfg, src, n, training, seed, start, parallel)
    ds = _drawn(ds, src.kind, draw, do_aug, cfg, seed, batch_size, parallel)

    def finish(images, label, idx, seeds):
        if do_aug:
            crop = draw.size if draw.render_size > draw.size else None
            images = aug.augment_images(images, seeds, dict(_get(cfg, "image_aug", None) or {}), crop=crop)
        elif draw.render_size > draw.size:
            images = aug.center_crop(images, draw.size)
        images = tf.ensure_shape(images, [None, draw.size, draw.size, draw.channels])
        return (images, label, idx) if with_index else (images, label)
    ds = ds.map(finish, num_parallel_calls=parallel, deterministic=True).prefetch(tf.data.AUTOTUNE)
    return ds, DatasetInfo(src.class_names, n, -(-n // batch_size), src.skipped, src.kind)


def _labelled_stream(cfg, src, n, training, seed, start, parallel):
    """Serialized records -> (position, (record, label, index)): labels looked up
    in the vocabulary, shuffled, class-balanced, numbered, skipped to `start`."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(src.class_names),
                                            tf.range(len(src.class_names), dtype=tf.int32)),
        default_value=-1)

    def with_label(rec, idx):
        label = tf.io.parse_single_example(rec, {"label": tf.io.FixedLenFeature([], tf.string)})["label"]
        return rec, table.lookup(label), idx

    ds = src.dataset
    if training and not src.from_shards:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(with_label, num_parallel_calls=parallel, deterministic=True)
    if src.from_shards:  # classes outside the vocabulary (a data.classes subset) stay out
        ds = ds.filter(lambda rec, label, idx: label >= 0)
        if training:
            ds = ds.shuffle(int(_get(cfg, "shuffle_buffer", 20000)), seed=seed, reshuffle_each_iteration=True)
    if training and _get(cfg, "class_balance", "none") not in ("none", "", None):
        ds = _balance(ds, src.counts, _get(cfg, "class_balance"), seed)
    # Position in the stream (seeds the augmentation). A scan, not enumerate():
    # enumerate zips in a range dataset, a second source that tf.data's
    # auto-shard cannot shard.
    ds = ds.scan(tf.constant(0, tf.int64), lambda c, el: (c + 1, (c, el)))
    if start:
        ds = ds.skip(int(start))  # before parsing and rendering: the skipped part is only read
    return ds


def _drawn(ds, kind, draw, do_aug, cfg, seed, batch_size, parallel):
    """(position, (record, label, index)) -> batches of (images at render_size,
    label, index, per-element seed): strokes augmented and rendered, or images
    decoded and resized."""
    base_seed = tf.constant([seed, 0], tf.int64)
    stroke_cfg = dict(_get(cfg, "stroke_aug", None) or {})

    def elem_seed(counter):
        return tf.random.experimental.stateless_fold_in(base_seed, counter)

    if kind == "strokes":
        def prep(counter, el):
            rec, label, idx = el
            _, points, ids = shards.parse_strokes(rec)
            unit = render.normalize(points[None], tf.shape(points)[:1], draw.margin)[0]
            w = tf.constant(draw.line_width)
            if do_aug:
                unit, ids, w = aug.augment_strokes(unit, ids, elem_seed(counter), draw.render_size, stroke_cfg)
            return unit, ids, tf.shape(unit)[0], w, label, idx, elem_seed(counter)

        def paint(unit, ids, lengths, w, label, idx, seeds):
            images = render.render(unit, ids, lengths, size=draw.render_size, line_width=w, channels=draw.channels)
            return images, label, idx, seeds
        ds = ds.map(prep, num_parallel_calls=parallel, deterministic=True).padded_batch(batch_size)
        return ds.map(paint, num_parallel_calls=parallel, deterministic=True)

    def prep_image(counter, el):
        rec, label, idx = el
        _, image = shards.parse_image(rec)
        img = tf.image.convert_image_dtype(image[..., None], tf.float32)
        img = tf.image.resize(img, [draw.render_size, draw.render_size], antialias=True)
        return img, label, idx, elem_seed(counter)
    return ds.map(prep_image, num_parallel_calls=parallel, deterministic=True).batch(batch_size)


@contextlib.contextmanager
def explain_data_errors(cfg):
    """Wraps loops over a pipeline: tf.data's DataLossError (bad CRC, cut
    record) does not name the file; from shards it is re-raised as a
    ShardError naming the shard and the record index."""
    try:
        yield
    except tf.errors.DataLossError as err:
        if _get(cfg, "source") != "shards":
            raise
        folder = _get(cfg, "path")
        manifest = shards.read_manifest(folder)
        paths = [p for split in manifest["splits"] for p in shards.split_files(folder, manifest, split)]
        found = shards.locate_corruption(paths)
        if found is None:
            raise
        raise found from err
