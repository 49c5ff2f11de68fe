"""Sharded record files: the compact on-disk form of any sketch source.

A prepared folder (written by sketchtf.prepare, read by pipeline.make_dataset
with data.source="shards") holds

  manifest.json                      vocabulary, counts per class and split,
                                     shards with sizes and sha256, source files,
                                     reader options, package version
  train-00000-of-00008.tfrecord ...  tf.train.Example records (below)

One record (tf.train.Example), one drawing:
  label           bytes   class name (the vocabulary lives in the manifest)
  key             bytes   the reader's id (Quick Draw key_id)
  points_i16      bytes   int16 little-endian (x, y) of all points, strokes
                          concatenated in drawing order, when every coordinate
                          is an integer in int16 range (simplified Quick Draw)
  points_f32      bytes   float32 (x, y) otherwise (raw canvases); one is empty
  stroke_lengths  int64[] points per stroke (varint-coded: 1-2 bytes each)
  times_ms        bytes   int32 ms since the first point (raw Quick Draw, when kept)
  image           bytes   uint8 pixels, ink 255 on 0 (image sources) ...
  image_shape     int64[] ... with their (height, width)

TFRecord, not ArrayRecord: tf.data reads it natively and in parallel with no
extra dependency, CRCs every record (a corrupt shard is detected, not read as
garbage), and Beam writes it on every runner. ArrayRecord's gain is random
access for a global shuffle, which this pipeline does not need: shards are
already in hash order (a drawing's place is a hash of its key) and training
interleaves shards through a bounded shuffle buffer.

The split is a hash of the key alone (`assign_split`), so a drawing never
changes split when classes or files are added.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf

from sketchtf.data.records import Sketch, SketchDataError

MANIFEST = "manifest.json"
FORMAT = "sketchtf-shards-v1"
SPLITS = ("train", "valid", "test")
_I16 = np.iinfo(np.int16)


class ShardError(SketchDataError):
    """A prepared folder that does not match its manifest, or a corrupt shard."""


# ----------------------------------------------------------------------------- split and order

def key_hash(key: str, seed: int = 0) -> bytes:
    """32 bytes that fix a drawing's split, shard and place in its shard."""
    return hashlib.sha256(f"{int(seed)}:{key}".encode("utf-8")).digest()


def unit_interval(digest: bytes) -> float:
    """The first 8 bytes of a key hash as a uniform number in [0, 1)."""
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_split(key: str, *, seed: int = 0, test_fraction: float = 0.0,
                 valid_fraction: float = 0.0, fixed: Optional[str] = None) -> str:
    """The split of one drawing: a stable function of its key.

    fixed: the split its source gave it ("train" / "valid" / "test"), kept as
    is, except that `valid` is carved from a source's train by the same hash.
    """
    u = unit_interval(key_hash(key, seed))
    if fixed in ("test", "valid"):
        return fixed
    if fixed is None and u < test_fraction:
        return "test"
    lo = test_fraction if fixed is None else 0.0
    return "valid" if u < lo + valid_fraction else "train"


def shard_of(digest: bytes, num_shards: int) -> int:
    return int.from_bytes(digest[8:16], "big") % num_shards


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


# ----------------------------------------------------------------------------- record codec

def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))


def encode(s: Sketch) -> bytes:
    """Sketch -> serialized tf.train.Example (see the module docstring)."""
    f = {"label": _bytes(s.label.encode("utf-8")), "key": _bytes(s.id.encode("utf-8"))}
    if s.strokes is not None:
        pts = np.concatenate([np.asarray(k, np.float32).reshape(-1, 2) for k in s.strokes])
        exact = np.all(pts == np.round(pts)) and pts.min() >= _I16.min and pts.max() <= _I16.max
        f["points_i16"] = _bytes(pts.astype("<i2").tobytes() if exact else b"")
        f["points_f32"] = _bytes(b"" if exact else pts.astype("<f4").tobytes())
        f["stroke_lengths"] = _ints(len(k) for k in s.strokes)
        if s.times:
            f["times_ms"] = _bytes(np.round(np.concatenate(s.times)).astype("<i4").tobytes())
    elif s.image is not None:
        img = np.ascontiguousarray(s.image, np.uint8)
        f["image"] = _bytes(img.tobytes())
        f["image_shape"] = _ints(img.shape[:2])
    else:
        raise SketchDataError(s.id, None, "record has neither strokes nor an image")
    # deterministic: features is a proto map, whose order otherwise varies by process.
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString(deterministic=True)


def decode(serialized: bytes) -> Sketch:
    """The inverse of encode, in numpy (for tools, tests and small splits)."""
    ex = tf.train.Example.FromString(serialized).features.feature

    def b(name):
        return ex[name].bytes_list.value[0] if name in ex and ex[name].bytes_list.value else b""

    label, key = b("label").decode("utf-8"), b("key").decode("utf-8")
    if "image_shape" in ex:
        shape = tuple(ex["image_shape"].int64_list.value)
        return Sketch(label=label, id=key, image=np.frombuffer(b("image"), np.uint8).reshape(shape).copy())
    pts = np.concatenate([np.frombuffer(b("points_i16"), "<i2").astype(np.float32),
                          np.frombuffer(b("points_f32"), "<f4")]).reshape(-1, 2)
    ends = np.cumsum(list(ex["stroke_lengths"].int64_list.value))[:-1]
    times = b("times_ms")
    t = np.split(np.frombuffer(times, "<i4").astype(np.float32), ends) if times else None
    return Sketch(label=label, id=key, strokes=np.split(pts, ends), times=t)


_FEATURES = {
    "label": tf.io.FixedLenFeature([], tf.string),
    "key": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "points_i16": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "points_f32": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "stroke_lengths": tf.io.VarLenFeature(tf.int64),
    "image": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image_shape": tf.io.FixedLenFeature([2], tf.int64, default_value=[0, 0]),
}


def parse_strokes(serialized):
    """In-graph: serialized record -> (label bytes, points [N, 2] f32, stroke_ids [N] i32)."""
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    i16 = tf.cast(tf.io.decode_raw(ex["points_i16"], tf.int16, little_endian=True), tf.float32)
    f32 = tf.io.decode_raw(ex["points_f32"], tf.float32, little_endian=True)
    points = tf.reshape(tf.concat([i16, f32], 0), [-1, 2])
    lengths = tf.sparse.to_dense(ex["stroke_lengths"])
    ids = tf.repeat(tf.range(tf.size(lengths, out_type=tf.int32)), tf.cast(lengths, tf.int32))
    return ex["label"], points, ids


def parse_image(serialized):
    """In-graph: serialized record -> (label bytes, uint8 image [H, W])."""
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), tf.cast(ex["image_shape"], tf.int32))
    return ex["label"], img


# ----------------------------------------------------------------------------- manifest

def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def write_json(path: str, obj) -> None:
    """Deterministic JSON (sorted keys), written atomically."""
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


def is_prepared(path: str) -> bool:
    return bool(path) and tf.io.gfile.exists(os.path.join(path, MANIFEST))


def read_manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise ShardError(folder, None, f"no {MANIFEST}: not a prepared folder (run python -m sketchtf.prepare)")
    try:
        with tf.io.gfile.GFile(path) as f:
            m = json.load(f)
    except ValueError as e:
        raise ShardError(path, None, f"unreadable manifest: {e}") from None
    if m.get("format") != FORMAT:
        raise ShardError(path, "format", f"expected {FORMAT!r}, got {m.get('format')!r}")
    return m


def split_files(folder: str, manifest: dict, split: str, *, verify: str = "size") -> list[str]:
    """The shard paths of `split`, checked against the manifest.

    verify: "size" (stat each file: catches missing and truncated shards at
    once), "sha256" (read every byte), or "none".
    """
    if split not in manifest["splits"]:
        raise ShardError(os.path.join(folder, MANIFEST), "splits",
                         f"no split {split!r}; it has {sorted(manifest['splits'])}")
    paths = []
    for sh in manifest["splits"][split]["shards"]:
        path = os.path.join(folder, sh["file"])
        if verify != "none":
            if not tf.io.gfile.exists(path):
                raise ShardError(path, None, f"shard listed in {MANIFEST} is missing")
            size = tf.io.gfile.stat(path).length
            if size != sh["bytes"]:
                raise ShardError(path, None, f"{size} bytes but {MANIFEST} says {sh['bytes']} "
                                             f"(truncated or replaced shard)")
            if verify == "sha256" and sha256_file(path) != sh["sha256"]:
                raise ShardError(path, None, f"sha256 differs from {MANIFEST} (corrupt or replaced shard)")
        paths.append(path)
    return paths


def locate_corruption(paths: list[str]) -> Optional[ShardError]:
    """Reads each shard record by record and names the first unreadable one.

    tf.data reports a bad CRC or a cut record without the file name; this
    finds it (the pipeline calls it when iteration fails with DataLossError).
    """
    for path in paths:
        n = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                n += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            return ShardError(path, f"record {n}", f"corrupt shard ({e.message.splitlines()[0]})")
    return None


def iter_records(folder: str, split: str, *, manifest: Optional[dict] = None) -> Iterator[Sketch]:
    """Decoded records of one split, shard by shard (for tools and small splits)."""
    manifest = manifest or read_manifest(folder)
    paths = split_files(folder, manifest, split)
    for path in paths:
        i = 0
        try:
            for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                yield decode(raw)
                i += 1
        except tf.errors.DataLossError as e:
            raise ShardError(path, f"record {i}", f"corrupt shard ({e.message.splitlines()[0]})") from None
