"""Any sketch source -> sharded records + manifest.json (see shards.py).

The conversion is three steps that any engine can run:

  plan(cfg)            work units: one per source file (or class folder), and
                       byte ranges of big ndjson files, so a 6 GB file is read
                       by many workers and never held whole
  unit_records(unit)   a unit's drawings as (split, shard, order key, record)
  write_shard(...)     one shard's records in order-key order -> .tfrecord

`run_local` runs them on a multiprocessing pool (spilling each unit's records
to a file grouped by shard, then writing each shard from the spills);
sketchtf/data/beam_prepare.py runs the same functions as an Apache Beam
pipeline. Both end in `finish`, which writes the manifest: the same input
gives byte-equal shards and manifests on either engine, with any number of
workers, because a record's split, shard and place are hashes of its key.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import shutil
import struct
from typing import Iterator, Optional

import tensorflow as tf

from sketchtf.data import shards
from sketchtf.data.records import SkipCounter, SketchDataError

# Quick Draw's class files are 20-200 MB; a unit of this size keeps per-worker
# memory small (its encoded records are buffered) and spreads one big file.
DEFAULT_CHUNK_BYTES = 64 << 20
# Auto shard count: about this much source per train shard (ndjson shrinks ~3x).
SOURCE_BYTES_PER_SHARD = 256 << 20
STROKE_SOURCES = ("quickdraw_ndjson", "sketchrnn_npz", "tuberlin_svg", "synthetic")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of work: a file (or a byte range of it) or a class folder."""
    source: str
    path: str
    start: int = 0
    end: int = -1
    first_line: int = 1
    fixed: Optional[str] = None   # the split its source gave ("train", "test", ...)
    label: str = ""               # the class of a per-class unit


def _get(cfg, key, default=None):
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def options(cfg) -> dict:
    """The reader and split options that decide the output (kept in the manifest)."""
    classes = list(_get(cfg, "classes") or [])
    return dict(source=_get(cfg, "source", "synthetic"), path=str(_get(cfg, "path", "") or ""),
                classes=classes, recognized_only=bool(_get(cfg, "recognized_only", False)),
                keep_times=bool(_get(cfg, "keep_times", False)), skip_bad=bool(_get(cfg, "skip_bad", False)),
                split_seed=int(_get(cfg, "split_seed", 0)),
                test_fraction=float(_get(cfg, "test_fraction", 0.2)),
                valid_fraction=float(_get(cfg, "valid_fraction", 0.0)),
                synthetic_per_class=int(_get(cfg, "synthetic_per_class", 200)),
                synthetic_test_per_class=int(_get(cfg, "synthetic_test_per_class", 50)),
                synthetic_seed=int(_get(cfg, "synthetic_seed", 0)),
                samples_per_curve=int(_get(cfg, "samples_per_curve", 8)))


# ----------------------------------------------------------------------------- plan

def _listdir(path, suffix):
    return sorted(n for n in os.listdir(path) if n.endswith(suffix) and not n.startswith("."))


def _ndjson_units(opts, chunk_bytes) -> list[Unit]:
    from sketchtf.data.quickdraw import _stem, ndjson_chunks
    path, classes = opts["path"], set(opts["classes"]) or None
    if os.path.isfile(path):
        groups = [(None, [path])]
    else:
        subs = [s for s in ("train", "valid", "test") if os.path.isdir(os.path.join(path, s))]
        groups = [(s, [os.path.join(path, s, n) for n in _listdir(os.path.join(path, s), ".ndjson")])
                  for s in subs] or [(None, [os.path.join(path, n) for n in _listdir(path, ".ndjson")])]
        if classes:
            found = {_stem(f) for _, files in groups for f in files}
            missing = sorted(classes - found)
            if missing:
                raise SketchDataError(path, None, f"no .ndjson file for classes {missing}")
            groups = [(s, [f for f in files if _stem(f) in classes]) for s, files in groups]
    return [Unit("quickdraw_ndjson", f, start, end, first, fixed)
            for fixed, files in groups for f in files for start, end, first in ndjson_chunks(f, chunk_bytes)]


def _class_dirs(root, classes):
    names = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)) and not n.startswith("."))
    if classes:
        missing = sorted(set(classes) - set(names))
        if missing:
            raise SketchDataError(root, None, f"no folder for classes {missing}")
        names = [n for n in names if n in classes]
    return names


def plan(cfg, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[list[Unit], list[dict]]:
    """(work units, source files [{path, bytes}]) for the data config."""
    opts = options(cfg)
    source, path = opts["source"], opts["path"]
    if source == "synthetic":
        return [Unit("synthetic", "", fixed=s) for s in ("train", "test")], []
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"data.path={path!r} does not exist for data.source={source!r}")
    if source == "quickdraw_ndjson":
        units = _ndjson_units(opts, chunk_bytes)
    elif source in ("sketchrnn_npz", "bitmap_npy"):
        suffix = ".npz" if source == "sketchrnn_npz" else ".npy"
        files = [path] if os.path.isfile(path) else [os.path.join(path, n) for n in _listdir(path, suffix)]
        units = [Unit(source, f, fixed=s) for f in files
                 for s in (("train", "valid", "test") if source == "sketchrnn_npz" else (None,))]
    elif source in ("tuberlin_svg", "tuberlin_png", "image_folder"):
        units = [Unit(source, path, label=c) for c in _class_dirs(path, opts["classes"])]
    else:
        raise ValueError(f"data.source={source!r} cannot be prepared into shards")
    files = sorted({os.path.join(u.path, u.label) if u.label else u.path for u in units})
    return units, [{"path": f, "bytes": _tree_bytes(f)} for f in files]


def _tree_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def shard_counts(source_files: list[dict], opts: dict, train_shards: int = 0) -> dict:
    """Shards per split: train_shards (0 = about one per 256 MB of source, at
    least 2 so two workers can split a run), valid/test about a tenth of it."""
    total = sum(f["bytes"] for f in source_files)
    n = int(train_shards) or max(2, math.ceil(total / SOURCE_BYTES_PER_SHARD))
    small = max(1, math.ceil(n / 10))
    return {"train": n, "valid": small, "test": small}


# ----------------------------------------------------------------------------- read a unit

def _read(unit: Unit, opts: dict, skipped: SkipCounter, split_fixed: Optional[str]):
    bad = dict(skip_bad=opts["skip_bad"], skipped=skipped)
    classes = opts["classes"] or None
    if unit.source == "quickdraw_ndjson":
        from sketchtf.data.quickdraw import read_ndjson_chunk
        return read_ndjson_chunk(unit.path, unit.start, unit.end, unit.first_line, classes=classes,
                                 recognized_only=opts["recognized_only"], with_times=opts["keep_times"], **bad)
    if unit.source == "synthetic":
        from sketchtf.data import synthetic
        n = opts["synthetic_per_class"] if unit.fixed == "train" else opts["synthetic_test_per_class"]
        return synthetic.generate(n, split=unit.fixed, seed=opts["synthetic_seed"],
                                  classes=tuple(classes or synthetic.CLASSES))
    if unit.source == "sketchrnn_npz":
        from sketchtf.data.quickdraw import read_sketchrnn_npz
        return read_sketchrnn_npz(unit.path, split=split_fixed, **bad)
    if unit.source == "bitmap_npy":
        from sketchtf.data.quickdraw import read_bitmap_npy
        return read_bitmap_npy(unit.path, classes=classes, **bad)
    if unit.source == "tuberlin_svg":
        from sketchtf.data.tuberlin import read_tuberlin_svg
        return read_tuberlin_svg(unit.path, classes=[unit.label], samples_per_curve=opts["samples_per_curve"], **bad)
    from sketchtf.data.image_folder import read_image_folder
    return read_image_folder(unit.path, split="all", classes=[unit.label],
                             ink="dark" if unit.source == "tuberlin_png" else "auto", **bad)


def split_sketches(unit: Unit, opts: dict, skipped: SkipCounter) -> Iterator[tuple]:
    """(split, Sketch) for each drawing of a unit, by the one split rule."""
    for sketch in _read(unit, opts, skipped, unit.fixed):
        yield shards.assign_split(sketch.id, seed=opts["split_seed"], test_fraction=opts["test_fraction"],
                                  valid_fraction=opts["valid_fraction"], fixed=unit.fixed), sketch


def unit_records(unit: Unit, opts: dict, counts: dict, stats: dict) -> Iterator[tuple]:
    """(split, shard, order key, serialized record) for each drawing of a unit.

    stats (filled in place): kinds seen, bad records (count and first
    messages) and records left out on request, by reason.
    """
    skipped = SkipCounter()
    kinds = set()
    for split, sketch in split_sketches(unit, opts, skipped):
        digest = shards.key_hash(sketch.id, opts["split_seed"])
        kinds.add("images" if sketch.strokes is None else "strokes")
        yield split, shards.shard_of(digest, counts[split]), digest, shards.encode(sketch)
    stats.update(unit_stats(kinds, skipped))


def unit_stats(kinds, skipped: SkipCounter) -> dict:
    return {"kinds": sorted(kinds), "errors": len(skipped), "first_errors": [str(e) for e in skipped.errors[:5]],
            "filtered": dict(skipped.filtered)}


def merge_stats(all_stats: list[dict]) -> dict:
    out = {"kinds": set(), "errors": 0, "first_errors": [], "filtered": {}}
    for s in all_stats:
        out["kinds"].update(s["kinds"])
        out["errors"] += s["errors"]
        out["first_errors"] = sorted(out["first_errors"] + s["first_errors"])[:10]
        for k, v in s["filtered"].items():
            out["filtered"][k] = out["filtered"].get(k, 0) + v
    out["kinds"] = sorted(out["kinds"])
    return out


# ----------------------------------------------------------------------------- write a shard

def write_shard(out_dir: str, split: str, index: int, count: int, items) -> dict:
    """Writes (order key, record) items in order-key order; returns its manifest entry."""
    name = shards.shard_name(split, index, count)
    path = os.path.join(out_dir, name)
    labels: dict = {}
    n = 0
    with tf.io.TFRecordWriter(path + ".tmp") as w:
        for _, record in sorted(items):
            w.write(record)
            n += 1
            label = _label_of(record)
            labels[label] = labels.get(label, 0) + 1
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return {"split": split, "file": name, "records": n, "bytes": tf.io.gfile.stat(path).length,
            "sha256": shards.sha256_file(path), "counts": labels}


def _label_of(record: bytes) -> str:
    return tf.train.Example.FromString(record).features.feature["label"].bytes_list.value[0].decode("utf-8")


def finish(out_dir: str, opts: dict, counts: dict, source_files: list[dict], shard_infos: list[dict],
           stats: dict, class_order: Optional[list] = None) -> dict:
    """Writes empty shards the data left empty, then manifest.json; returns it."""
    from sketchtf import __version__
    have = {(i["split"], i["file"]) for i in shard_infos}
    infos = list(shard_infos)
    for split, n in counts.items():
        for k in range(n):
            if (split, shards.shard_name(split, k, n)) not in have:
                infos.append(write_shard(out_dir, split, k, n, []))
    if len(stats["kinds"]) > 1:
        raise SketchDataError(opts["path"], None, "a data set must be all stroke records or all image records")
    splits = {}
    for split in counts:
        mine = sorted((i for i in infos if i["split"] == split), key=lambda i: i["file"])
        per_class: dict = {}
        for i in mine:
            for c, v in i["counts"].items():
                per_class[c] = per_class.get(c, 0) + v
        splits[split] = {"records": sum(i["records"] for i in mine), "counts": per_class,
                         "shards": [{k: i[k] for k in ("file", "records", "bytes", "sha256")} for i in mine]}
    found = sorted({c for s in splits.values() for c in s["counts"]})
    manifest = {"format": shards.FORMAT, "version": __version__,
                "kind": (stats["kinds"] or ["strokes"])[0], "vocabulary": list(class_order or found),
                "splits": splits, "sources": source_files, "options": opts,
                "skipped": {k: stats[k] for k in ("errors", "first_errors", "filtered")}}
    shards.write_json(os.path.join(out_dir, shards.MANIFEST), manifest)
    return manifest


# ----------------------------------------------------------------------------- local engine

_SPILL_HEAD = struct.Struct("<32sI")


def _spill_unit(args) -> tuple[dict, dict]:
    """Pool task: reads one unit and writes its records to one spill file,
    grouped by (split, shard); returns ({(split, shard): (offset, length)}, stats)."""
    unit, opts, counts, path = args
    groups: dict = {}
    stats: dict = {}
    for split, shard, digest, record in unit_records(unit, opts, counts, stats):
        groups.setdefault((split, shard), []).append(_SPILL_HEAD.pack(digest, len(record)) + record)
    index = {}
    with open(path, "wb") as f:
        for key in sorted(groups):
            blob = b"".join(groups[key])
            index[key] = (f.tell(), len(blob))
            f.write(blob)
    return index, stats


def _read_spills(pieces) -> Iterator[tuple]:
    for path, (offset, length) in pieces:
        with open(path, "rb") as f:
            f.seek(offset)
            blob = f.read(length)
        pos = 0
        while pos < len(blob):
            digest, n = _SPILL_HEAD.unpack_from(blob, pos)
            pos += _SPILL_HEAD.size
            yield digest, blob[pos:pos + n]
            pos += n


def _write_from_spills(args) -> dict:
    out_dir, split, index, count, pieces = args
    return write_shard(out_dir, split, index, count, _read_spills(pieces))


class _Engine:
    """map() on a pool of `workers` processes (in this process for 1), with a
    progress bar; one pool for both passes (each worker imports TF once)."""

    def __init__(self, workers: int):
        # spawn: TensorFlow is not fork-safe.
        self.pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None

    def map(self, fn, tasks, desc):
        from sketchtf.console import progress
        it = self.pool.imap(fn, tasks) if self.pool else map(fn, tasks)
        return progress(it, total=len(tasks), desc=desc)

    def close(self):
        if self.pool:
            self.pool.close()
            self.pool.join()


def prepare_outputs(cfg, out_dir: str, *, chunk_bytes: int, train_shards: int):
    """What both engines need first: (opts, units, sources, shard counts)."""
    opts = options(cfg)
    units, sources = plan(cfg, chunk_bytes)
    counts = shard_counts(sources, opts, train_shards)
    tf.io.gfile.makedirs(out_dir)
    if tf.io.gfile.exists(os.path.join(out_dir, shards.MANIFEST)):
        tf.io.gfile.remove(os.path.join(out_dir, shards.MANIFEST))
    return opts, units, sources, counts


def run_local(cfg, out_dir: str, *, workers: int = 2, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
              train_shards: int = 0) -> dict:
    """Prepares cfg's source into out_dir on `workers` processes; returns the manifest."""
    opts, units, sources, counts = prepare_outputs(cfg, out_dir, chunk_bytes=chunk_bytes,
                                                   train_shards=train_shards)
    spill_dir = os.path.join(out_dir, "_spill")
    os.makedirs(spill_dir, exist_ok=True)
    engine = _Engine(workers)
    try:
        tasks = [(u, opts, counts, os.path.join(spill_dir, f"{i:06d}.spill")) for i, u in enumerate(units)]
        pieces: dict = {}
        stats = []
        for (index, st), task in zip(engine.map(_spill_unit, tasks, "read"), tasks):
            stats.append(st)
            for key, where in index.items():
                pieces.setdefault(key, []).append((task[3], where))
        jobs = [(out_dir, split, k, counts[split], pieces[(split, k)]) for split, k in sorted(pieces)]
        infos = list(engine.map(_write_from_spills, jobs, "write"))
    finally:
        engine.close()
        shutil.rmtree(spill_dir, ignore_errors=True)
    return finish(out_dir, opts, counts, sources, infos, merge_stats(stats), opts["classes"] or None)
