"""Quick Draw at scale: a 2M-drawing, 345-class corpus through prepare and the shard pipeline.

  python benchmarks/scale.py                     # from the repo root: ~45-60 min on 2 idle cores
                                                 # (~75+ min when they are shared), ~3 GB of /tmp
  python benchmarks/scale.py --drawings=20000    # the same steps, small: ~10 min idle (21 min on a loaded machine)

Most of the full run is the three full epochs (2.9M sketches at ~1-3k/s) and
the three 200-batch runs at 128 px.

Makes a Quick Draw-shaped corpus on local disk: one Google simplified
`<class>.ndjson` per class for all 345 classes (the 344 files of
../shared/data/quickdraw_simplified_ndjson plus zigzag from
quickdraw_10class_ndjson/train), each drawing a real one taken round-robin and
perturbed with seeded noise (per point gaussian sigma 2 px, a random scale and
shift), so no two lines are equal. The corpus is deleted at the end (--keep
leaves it). Then measures, side by side in one run:

  1. conversion rate: prepare.run_local on 2 processes over the whole corpus
     (40 train shards); and on a 10% sub-corpus both Beam's DirectRunner (2
     workers, multi_processing; in_memory if that fails) and run_local, with
     the two manifest.json files compared byte for byte;
  2. bytes per drawing: shards (every split) vs the ndjson they came from;
  3. peak RSS (VmHWM of a fresh process) of the shard training input at 10%,
     50% and 100% of the corpus (views holding 4, 20, 40 of the 40 train
     shards): one full epoch of make_dataset(training=True, batch 64,
     shuffle_buffer 20000) at a tiny image_size (every stage runs: read,
     shuffle, parse, normalize, stroke and image augmentation, batch, render;
     rendering 2M at 128 px would take hours on 2 cores), and 200 batches at
     128 px; time to the first batch at each size; and, as the "before", the
     in-memory path (load_records + make_dataset, 50 batches at 128 px) on the
     10% sub-corpus;
  4. pipeline sketches/s at 128 px from shards vs today's in-memory pipeline
     on the same data (quickdraw_10class_ndjson/train, prepared to 8 shards),
     both built in one process, timed in interleaved rounds (A B B A A B);
  5. SketchNet training images/s at 128 px on this CPU, and from these a cost
     model for one epoch of 50M drawings on 1, 8 and 32 workers.

Peak RSS is each child process's own VmHWM (/proc/self/status), not
ru_maxrss, which after fork+exec can carry the parent's size. Rates are
wall-clock on a shared machine: the 1-minute load average is recorded.
Ends with one JSON line of headline figures and their targets.
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags

import sketchtf  # noqa: F401  (TF_USE_LEGACY_KERAS before TF; TensorFlow itself is imported late)

_DRAWINGS = flags.DEFINE_integer("drawings", 2_000_000, "Drawings in the corpus (at least; rounded up to whole "
                                 "classes). View sizes scale with it (10%, 50%, 100%).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder to make the run's scratch folder in (default: the "
                               "system temp folder, e.g. /tmp). The scratch folder is removed unless --keep.")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the corpus, shards and views.")
_CLASSES_LIMIT = flags.DEFINE_integer("classes_limit", 0, "Only the first N of the 345 classes (dry runs; 0 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the stroke noise.")
_EPOCH_SIZE = flags.DEFINE_integer("epoch_image_size", 8, "image_size of the full-epoch RSS runs.")
_RSS_BATCHES = flags.DEFINE_integer("rss_batches", 200, "Batches of the 128 px RSS runs.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timing rounds per pipeline in the shards vs in-memory comparison.")
_ROUND_BATCHES = flags.DEFINE_integer("round_batches", 15, "Timed batches per round.")
_SKIP_BEAM = flags.DEFINE_bool("skip_beam", False, "Leave out the Beam DirectRunner run.")

NUM_CLASSES = 345
TRAIN_SHARDS = 40
VIEW_FRACTIONS = (0.1, 0.5, 1.0)
SUB_FRACTION = 0.1                 # the Beam / in-memory sub-corpus
BATCH = 64
SIZE = 128
QD10_TRAIN_SHARDS = 8
NOISE_SIGMA_PX = 2.0
TARGET_PIPELINE_RATIO = 1.0        # shards vs in-memory sketches/s
TARGET_RSS_GB = 2.0                # at every size
TARGET_FIRST_BATCH_S = 10.0
FLAT_RATIO = 1.25                  # "flat": peak RSS at 100% <= 1.25 x peak RSS at 10%
COST_MODEL_DRAWINGS = 50_000_000
COST_MODEL_WORKERS = (1, 8, 32)
BEAM_ARGS = ["--runner=DirectRunner", "--direct_num_workers=2", "--default_sdk_harness_log_level=WARNING"]


def _data(name: str) -> str:
    from sketchtf import config
    path = config.data_path(name)
    if not path or not os.path.isdir(path):
        sys.exit(f"benchmarks/scale.py: {name} not found (looked for {path or '../shared/data/' + name}); "
                 "set SKETCHTF_DATA to the shared data folder that holds it.")
    return path


def _human(n: float) -> str:
    """2000000 -> '2M', 200000 -> '0.2M', 2000 -> '2k' (labels of the view sizes)."""
    if n >= 1e5:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}k" if n >= 1e3 else str(int(n))


def _gb(kb: int) -> float:
    return round(kb / 2 ** 20, 3)


# ============================================================================= 0. the corpus (no TensorFlow here)

def class_sources(limit: int = 0) -> list[tuple[str, str]]:
    """(class, ndjson file of its real drawings) for the 345 classes, sorted."""
    simplified = _data("quickdraw_simplified_ndjson")
    found = {n[:-len(".ndjson")]: os.path.join(simplified, n) for n in os.listdir(simplified)
             if n.endswith(".ndjson")}
    found.setdefault("zigzag", os.path.join(_data("quickdraw_10class_ndjson"), "train", "zigzag.ndjson"))
    if len(found) != NUM_CLASSES:
        sys.exit(f"benchmarks/scale.py: expected {NUM_CLASSES} classes, found {len(found)}")
    names = sorted(found)
    return [(c, found[c]) for c in (names[:limit] if limit else names)]


def _base_drawings(path: str) -> list[tuple]:
    """Each drawing of a file as (points float (N, 2), [(start, end) of each stroke])."""
    import numpy as np
    out = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                strokes = json.loads(line)["drawing"]
                ends = np.cumsum([len(s[0]) for s in strokes]).tolist()
                pts = np.concatenate([np.asarray(s[:2], np.float64).T for s in strokes])
                out.append((pts, list(zip([0] + ends[:-1], ends))))
    return out


def _perturb(rng, pts):
    """Per-point gaussian noise, a random scale (0.9-1.1) about the centre and a
    shift (+-8 px), clipped to Google's 0..255 and rounded to ints."""
    import numpy as np
    u = rng.random(3)
    scale, shift = 0.9 + 0.2 * u[0], 16.0 * u[1:] - 8.0
    moved = rng.normal(0.0, NOISE_SIGMA_PX, pts.shape)
    moved += pts * scale + (127.5 * (1.0 - scale) + shift)   # (pts - c) * scale + c + shift
    np.clip(moved, 0, 255, out=moved)
    return np.rint(moved, out=moved).astype(np.int64)


def _line(word: str, key: str, i: int, pts, bounds) -> bytes:
    """One Google simplified ndjson line."""
    xs, ys = pts.T.tolist()
    ts = f"2017-03-{1 + i % 28:02d} {(i // 28) % 24:02d}:{(i // 672) % 60:02d}:00.00000 UTC"
    obj = {"word": word, "countrycode": "XX", "timestamp": ts, "recognized": True, "key_id": key,
           "drawing": [[xs[a:b], ys[a:b]] for a, b in bounds]}
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")


def _write_class(task) -> tuple[int, int, int, int]:
    """Pool task: one class's file in the corpus and its first lines in the
    sub-corpus; returns (bytes, lines, sub bytes, sub lines)."""
    import numpy as np
    index, word, source, per_class, sub_per_class, corpus, sub, seed = task
    base = _base_drawings(source)
    rng = np.random.default_rng([seed, index])
    sizes = [0, 0]
    with open(os.path.join(corpus, f"{word}.ndjson"), "wb") as full, \
            open(os.path.join(sub, f"{word}.ndjson"), "wb") as small:
        for i in range(per_class):
            pts, bounds = base[i % len(base)]
            line = _line(word, f"{index:03d}{i:08d}", i, _perturb(rng, pts), bounds)
            full.write(line)
            sizes[0] += len(line)
            if i < sub_per_class:
                small.write(line)
                sizes[1] += len(line)
    return sizes[0], per_class, sizes[1], min(per_class, sub_per_class)


def make_corpus(root: str, drawings: int, classes_limit: int, seed: int) -> dict:
    """Writes root/corpus (>= drawings lines) and root/sub (the first 10% of
    each class's lines) on 2 processes."""
    sources = class_sources(classes_limit)
    per_class = math.ceil(drawings / len(sources))
    sub_per_class = math.ceil(per_class * SUB_FRACTION)
    corpus, sub = os.path.join(root, "corpus"), os.path.join(root, "sub")
    os.makedirs(corpus)
    os.makedirs(sub)
    tasks = [(i, word, path, per_class, sub_per_class, corpus, sub, seed) for i, (word, path) in enumerate(sources)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(_write_class, tasks, chunksize=4)
    seconds = time.perf_counter() - t0
    total = [sum(p[k] for p in parts) for k in range(4)]
    return dict(corpus=corpus, sub=sub, classes=len(sources), per_class=per_class, bytes=total[0],
                drawings=total[1], sub_bytes=total[2], sub_drawings=total[3], seconds=seconds)


# ============================================================================= 1-2. conversion

def _ndjson_cfg(path: str):
    from sketchtf.config import data_config
    return data_config(source="quickdraw_ndjson", path=path, test_fraction=0.05, valid_fraction=0.05)


def _records(manifest: dict) -> int:
    return sum(s["records"] for s in manifest["splits"].values())


def _shard_bytes(manifest: dict) -> int:
    return sum(sh["bytes"] for s in manifest["splits"].values() for sh in s["shards"])


def convert_local(corpus: str, out: str) -> dict:
    """run_local on 2 processes, timed (pool start-up included: it is part of a run)."""
    from sketchtf.data import prepare
    t0 = time.perf_counter()
    manifest = prepare.run_local(_ndjson_cfg(corpus), out, workers=2, train_shards=TRAIN_SHARDS)
    seconds = time.perf_counter() - t0
    return dict(manifest=manifest, seconds=seconds, records=_records(manifest),
                per_s=_records(manifest) / seconds, shard_bytes=_shard_bytes(manifest))


def convert_beam(sub: str, out: str) -> dict:
    """run_beam on DirectRunner with 2 workers: multi_processing, else in_memory."""
    try:
        from sketchtf.data.beam_prepare import run_beam
        import apache_beam  # noqa: F401
    except ImportError:
        return dict(mode="not installed")
    import logging
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' INFO lines, relayed
    errors = {}
    for mode in ("multi_processing", "in_memory"):
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            manifest = run_beam(_ndjson_cfg(sub), out, train_shards=TRAIN_SHARDS,
                                pipeline_args=BEAM_ARGS + [f"--direct_running_mode={mode}"])
        except Exception as e:  # noqa: BLE001  (any runner failure: record it, try the next mode)
            errors[mode] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            continue
        seconds = time.perf_counter() - t0
        return dict(mode=mode, seconds=seconds, records=_records(manifest), per_s=_records(manifest) / seconds,
                    errors=errors)
    return dict(mode="failed", errors=errors)


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


# ============================================================================= 3. views of the prepared folder

def _count_labels(paths: list[str]) -> dict:
    """Records per class of some shards (read with tf.data, labels only)."""
    import numpy as np
    import tensorflow as tf
    spec = {"label": tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(paths, num_parallel_reads=2).batch(8192).map(
        lambda r: tf.io.parse_example(r, spec)["label"])
    counts: dict = {}
    for labels in ds.as_numpy_iterator():
        names, n = np.unique(labels, return_counts=True)
        for name, k in zip(names, n):
            counts[name.decode("utf-8")] = counts.get(name.decode("utf-8"), 0) + int(k)
    return counts


def make_view(prepared: str, manifest: dict, num_train: int, out: str) -> int:
    """A prepared folder holding the first num_train train shards (symlinks),
    with its train records and per-class counts recounted from those shards
    (make_dataset sizes an epoch by the counts). Returns its train records."""
    from sketchtf.data import shards
    os.makedirs(out)
    view = json.loads(json.dumps(manifest))
    chosen = manifest["splits"]["train"]["shards"][:num_train]
    for split in manifest["splits"]:
        for sh in manifest["splits"][split]["shards"]:
            os.symlink(os.path.join(prepared, sh["file"]), os.path.join(out, sh["file"]))
    if num_train < len(manifest["splits"]["train"]["shards"]):
        counts = _count_labels([os.path.join(prepared, sh["file"]) for sh in chosen])
        view["splits"]["train"] = {"records": sum(sh["records"] for sh in chosen), "counts": counts,
                                   "shards": chosen}
        assert sum(counts.values()) == view["splits"]["train"]["records"]
    shards.write_json(os.path.join(out, shards.MANIFEST), view)
    return view["splits"]["train"]["records"]


# ============================================================================= children: one fresh process each

def in_child(fn, *args):
    """fn(*args) in a fresh (spawned) process, so its peak RSS is its own."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _take(it, n: int) -> int:
    sketches = 0
    for _ in range(n):
        x, _ = next(it)
        sketches += int(x.shape[0])
    return sketches


def child_stream(view: str, image_size: int, batches: int) -> dict:
    """Child: the shard training input of `view`; batches=0 runs one full epoch.
    Time to the first batch counts from before make_dataset (TF already imported)."""
    t0 = time.perf_counter()
    from sketchtf.config import data_config
    from sketchtf.data import pipeline
    import_s = time.perf_counter() - t0
    rss_imported = _status_kb("VmRSS")
    cfg = data_config(source="shards", path=view, image_size=image_size, shuffle_buffer=20000)
    t0 = time.perf_counter()
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=BATCH, training=True)
    it = iter(ds)
    sketches = _take(it, 1)
    first = time.perf_counter() - t0
    hwm_first = _status_kb("VmHWM")
    steps = batches or info.steps_per_epoch
    rest = _take(it, steps - 1)
    seconds = time.perf_counter() - t0
    return dict(records=info.num_examples, steps=steps, sketches=sketches + rest, first_batch_s=first,
                seconds=seconds, per_s=rest / max(seconds - first, 1e-9),  # after the first batch
                import_s=import_s, rss_imported_gb=_gb(rss_imported),
                hwm_first_batch_gb=_gb(hwm_first), peak_rss_gb=_gb(_status_kb("VmHWM")))


def child_in_memory(sub: str, batches: int) -> dict:
    """Child: today's in-memory path on the sub-corpus ndjson (load_records +
    make_dataset at 128 px), `batches` batches."""
    from sketchtf.data import pipeline
    rss_imported = _status_kb("VmRSS")
    cfg = _ndjson_cfg(sub)
    cfg.image_size = SIZE
    t0 = time.perf_counter()
    records = pipeline.load_records(cfg, "train")
    load_s = time.perf_counter() - t0
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=BATCH, training=True, records=records)
    it = iter(ds)
    _take(it, 1)
    first = time.perf_counter() - t0
    sketches = BATCH + _take(it, batches - 1)
    return dict(records=info.num_examples, load_s=load_s, first_batch_s=first, sketches=sketches,
                rss_imported_gb=_gb(rss_imported), peak_rss_gb=_gb(_status_kb("VmHWM")))


def child_compare(shard_folder: str, rounds: int, round_batches: int) -> dict:
    """Child: shards vs in-memory pipeline at 128 px on quickdraw_10class_ndjson/train,
    both alive in this process; 5 warm-up batches each, then rounds in the
    order A B B A A B ..., each round 2 untimed batches (the other pipeline's
    buffers filled while it waited) then round_batches timed."""
    from sketchtf import config
    from sketchtf.data import pipeline
    memory_cfg = config.quickdraw10(image_size=SIZE)
    shard_cfg = config.quickdraw10(image_size=SIZE, source="shards", path=shard_folder)
    its, infos = {}, {}
    for name, cfg in (("memory", memory_cfg), ("shards", shard_cfg)):
        ds, infos[name] = pipeline.make_dataset(cfg, "train", batch_size=BATCH, training=True)
        its[name] = iter(ds)
        _take(its[name], 5)
    rates = {"memory": [], "shards": []}
    for r in range(rounds):
        for name in (("memory", "shards") if r % 2 == 0 else ("shards", "memory")):
            _take(its[name], 2)
            t0 = time.perf_counter()
            n = _take(its[name], round_batches)
            rates[name].append(n / (time.perf_counter() - t0))
    return dict(rates=rates, memory=statistics.median(rates["memory"]), shards=statistics.median(rates["shards"]),
                records=infos["shards"].num_examples, memory_records=infos["memory"].num_examples)


def child_train_rate(warmup: int = 3, steps: int = 10) -> float:
    """Child: SketchNet (345 classes) training images/s at 128 px, batch 64, Adam."""
    import numpy as np
    from sketchtf.keras import keras
    from sketchtf.models import build_model
    model = build_model("sketchnet", num_classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = (np.arange(BATCH) % NUM_CLASSES).astype(np.int32)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * BATCH / (time.perf_counter() - t0)


# ============================================================================= steps of main

def step_convert(root: str, corpus: dict) -> dict:
    print("converting the corpus on 2 processes ...", flush=True)
    full = convert_local(corpus["corpus"], os.path.join(root, "shards"))
    print(f"  {full['records']:,} records in {full['seconds']:.0f} s: {full['per_s']:,.0f} drawings/s", flush=True)
    out = dict(full=full, beam=dict(mode="skipped"), manifests_equal=None)
    print("converting the sub-corpus: run_local (2 processes) and Beam DirectRunner ...", flush=True)
    out["sub_local"] = convert_local(corpus["sub"], os.path.join(root, "sub_local"))
    if not _SKIP_BEAM.value:
        beam_out = os.path.join(root, "sub_beam")
        out["beam"] = convert_beam(corpus["sub"], beam_out)
        if "per_s" in out["beam"]:
            out["manifests_equal"] = _same_bytes(os.path.join(root, "sub_local", "manifest.json"),
                                                 os.path.join(beam_out, "manifest.json"))
        shutil.rmtree(beam_out, ignore_errors=True)
    shutil.rmtree(os.path.join(root, "sub_local"), ignore_errors=True)
    return out


def step_rss(root: str, prepared: str, manifest: dict, drawings: int, sub: str) -> dict:
    """Per view size: a full epoch at a tiny image_size and rss_batches at 128 px,
    each in a fresh process; and the in-memory path on the sub-corpus."""
    out = {}
    n_train = len(manifest["splits"]["train"]["shards"])
    for frac in VIEW_FRACTIONS:
        label = _human(drawings * frac)
        k = max(1, round(n_train * frac))
        view = os.path.join(root, f"view_{k:02d}")
        records = make_view(prepared, manifest, k, view)
        print(f"view {label}: {k} of {n_train} train shards, {records:,} train records", flush=True)
        epoch = in_child(child_stream, view, _EPOCH_SIZE.value, 0)
        print(f"  one epoch at {_EPOCH_SIZE.value} px: {epoch['sketches']:,} sketches in {epoch['seconds']:.0f} s, "
              f"peak RSS {epoch['peak_rss_gb']:.2f} GB", flush=True)
        px128 = in_child(child_stream, view, SIZE, _RSS_BATCHES.value)
        print(f"  {_RSS_BATCHES.value} batches at {SIZE} px: first batch {px128['first_batch_s']:.1f} s, "
              f"peak RSS {px128['peak_rss_gb']:.2f} GB", flush=True)
        out[label] = dict(shards=k, records=records, epoch=epoch, px128=px128)
    print("in-memory path on the sub-corpus ...", flush=True)
    memory = in_child(child_in_memory, sub, 50)
    print(f"  peak RSS {memory['peak_rss_gb']:.2f} GB", flush=True)
    return dict(views=out, memory=memory, memory_label=_human(drawings * SUB_FRACTION))


def step_compare(root: str) -> dict:
    from sketchtf import config
    from sketchtf.data import prepare
    folder = os.path.join(root, "qd10_shards")
    prepare.run_local(config.quickdraw10(image_size=SIZE), folder, workers=2, train_shards=QD10_TRAIN_SHARDS)
    print("shards vs in-memory pipeline, 10-class data, 128 px ...", flush=True)
    out = in_child(child_compare, folder, _ROUNDS.value, _ROUND_BATCHES.value)
    out["ratio"] = out["shards"] / out["memory"]
    print(f"  shards {out['shards']:.0f} sketches/s, in-memory {out['memory']:.0f}: {out['ratio']:.2f}x", flush=True)
    return out


def cost_model(pipeline_per_s: float, train_per_s: float, convert_per_s: float) -> dict:
    """Epoch hours for 50M drawings. overlapped: input and training on separate
    resources (e.g. an accelerator per worker), rate = min of the two;
    same_cores: both on this CPU, rate = 1 / (1/pipeline + 1/train). N workers:
    ASSUMED linear scaling (not measured)."""
    overlapped = min(pipeline_per_s, train_per_s)
    same_cores = 1.0 / (1.0 / pipeline_per_s + 1.0 / train_per_s)

    def hours(rate, workers):
        return round(COST_MODEL_DRAWINGS / (rate * workers) / 3600.0, 2)
    return dict(drawings=COST_MODEL_DRAWINGS,
                epoch_hours_overlapped={str(n): hours(overlapped, n) for n in COST_MODEL_WORKERS},
                epoch_hours_same_cores={str(n): hours(same_cores, n) for n in COST_MODEL_WORKERS},
                convert_hours_2proc=hours(convert_per_s, 1),
                scaling="linear in workers: an assumption, not measured")


def print_table(c: dict, conv: dict, rss: dict, cmp_: dict, train: float, cost: dict) -> None:
    full, sub, beam = conv["full"], conv["sub_local"], conv["beam"]
    ndjson_bpd = c["bytes"] / c["drawings"]
    shard_bpd = full["shard_bytes"] / full["records"]
    sub_label = _human(c["drawings"] * SUB_FRACTION)
    rows = [
        "",
        f"corpus        {c['drawings']:,} drawings, {c['classes']} classes, {c['bytes'] / 1e6:,.1f} MB ndjson, "
        f"generated in {c['seconds']:.0f} s (2 processes)",
        f"convert       run_local, 2 processes:  {full['per_s']:9,.0f} drawings/s  ({full['records']:,} in "
        f"{full['seconds']:.0f} s)",
        f"  sub {sub_label:>5s}   run_local, 2 processes:  {sub['per_s']:9,.0f} drawings/s",
    ]
    if "per_s" in beam:
        rows.append(f"  sub {sub_label:>5s}   Beam DirectRunner ({beam['mode']}, 2 workers): {beam['per_s']:9,.0f} "
                    f"drawings/s; manifest byte-equal to run_local: {conv['manifests_equal']}")
    else:
        rows.append(f"  Beam          {beam['mode']} {beam.get('errors', '')}")
    rows += [
        f"bytes/drawing shards {shard_bpd:.1f} vs ndjson {ndjson_bpd:.1f} ({ndjson_bpd / shard_bpd:.2f}x smaller)",
        f"pipeline 128px shards {cmp_['shards']:.0f} vs in-memory {cmp_['memory']:.0f} sketches/s: "
        f"{cmp_['ratio']:.2f}x (target >= {TARGET_PIPELINE_RATIO})",
        "",
        f"{'size':>6s} {'shards':>6s} {'train recs':>11s} | {'epoch@' + str(_EPOCH_SIZE.value) + 'px':>10s} "
        f"{'peak GB':>8s} {'1st batch':>9s} | {str(_RSS_BATCHES.value) + '@128px':>10s} {'peak GB':>8s} "
        f"{'1st batch':>9s} {'sk/s':>6s}  (sk/s: after the first batch)",
    ]
    for label, v in rss["views"].items():
        e, p = v["epoch"], v["px128"]
        rows.append(f"{label:>6s} {v['shards']:>6d} {v['records']:>11,d} | {e['seconds']:>9.0f}s "
                    f"{e['peak_rss_gb']:>8.2f} {e['first_batch_s']:>8.1f}s | {p['seconds']:>9.0f}s {p['peak_rss_gb']:>8.2f} "
                    f"{p['first_batch_s']:>8.1f}s {p['per_s']:>6.0f}")
    m = rss["memory"]
    rows += [
        f"in-memory {rss['memory_label']}: {m['records']:,} train records, 50 batches at 128 px: peak RSS "
        f"{m['peak_rss_gb']:.2f} GB, first batch {m['first_batch_s']:.1f} s (load_records {m['load_s']:.1f} s)",
        f"  (a fresh process with TensorFlow imported holds ~{m['rss_imported_gb']:.2f} GB; targets: peak <= "
        f"{TARGET_RSS_GB} GB and flat, first batch <= {TARGET_FIRST_BATCH_S:g} s)",
        "",
        f"SketchNet 128 px training on this CPU: {train:.1f} images/s (batch {BATCH})",
        f"cost model, one epoch of {COST_MODEL_DRAWINGS / 1e6:.0f}M drawings (pipeline {cmp_['shards']:.0f}/s, "
        f"training {train:.0f}/s per worker; N workers: linear scaling ASSUMED):",
    ]
    for n in COST_MODEL_WORKERS:
        rows.append(f"  {n:>2d} worker(s): {cost['epoch_hours_overlapped'][str(n)]:8.2f} h input and training on "
                    f"separate resources, {cost['epoch_hours_same_cores'][str(n)]:8.2f} h sharing one CPU")
    rows.append(f"  converting {COST_MODEL_DRAWINGS / 1e6:.0f}M drawings on 2 processes: "
                f"{cost['convert_hours_2proc']:.2f} h")
    print("\n".join(rows), flush=True)


def main(argv):
    del argv
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    root = tempfile.mkdtemp(prefix="sketchtf_scale_", dir=_WORKDIR.value)
    print(f"scratch folder {root}; {os.cpu_count()} cores, 1-min load average {load_start:.2f}", flush=True)
    try:
        corpus = make_corpus(root, _DRAWINGS.value, _CLASSES_LIMIT.value, _SEED.value)
        print(f"corpus: {corpus['drawings']:,} drawings ({corpus['per_class']:,} a class, {corpus['classes']} "
              f"classes), {corpus['bytes'] / 1e6:,.1f} MB ndjson in {corpus['seconds']:.0f} s", flush=True)
        conv = step_convert(root, corpus)
        prepared, manifest = os.path.join(root, "shards"), conv["full"]["manifest"]
        rss = step_rss(root, prepared, manifest, corpus["drawings"], corpus["sub"])
        cmp_ = step_compare(root)
        print("SketchNet training rate ...", flush=True)
        train = in_child(child_train_rate)
        cost = cost_model(cmp_["shards"], train, conv["full"]["per_s"])
        print_table(corpus, conv, rss, cmp_, train, cost)
    finally:
        if _KEEP.value:
            print(f"kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)

    views = rss["views"]
    epoch_rss = {k: v["epoch"]["peak_rss_gb"] for k, v in views.items()}
    px128_rss = {k: v["px128"]["peak_rss_gb"] for k, v in views.items()}
    all_rss = list(epoch_rss.values()) + list(px128_rss.values())
    first = {k: round(v["px128"]["first_batch_s"], 2) for k, v in views.items()}
    labels = list(views)
    beam = conv["beam"]
    summary = dict(
        drawings=corpus["drawings"], classes=corpus["classes"], ndjson_mb=round(corpus["bytes"] / 1e6, 1),
        generate_s=round(corpus["seconds"], 1),
        convert_local_2proc_per_s=round(conv["full"]["per_s"], 1),
        convert_local_2proc_s=round(conv["full"]["seconds"], 1),
        sub_drawings=corpus["sub_drawings"],
        convert_sub_local_2proc_per_s=round(conv["sub_local"]["per_s"], 1),
        convert_beam_direct_per_s=round(beam["per_s"], 1) if "per_s" in beam else None,
        beam=beam["mode"], beam_errors=beam.get("errors") or None,
        beam_equal_manifest=conv["manifests_equal"],
        bytes_per_drawing_shards=round(conv["full"]["shard_bytes"] / conv["full"]["records"], 1),
        bytes_per_drawing_ndjson=round(corpus["bytes"] / corpus["drawings"], 1),
        pipeline_shards_per_s=round(cmp_["shards"], 1), pipeline_memory_per_s=round(cmp_["memory"], 1),
        shards_vs_memory_pipeline=round(cmp_["ratio"], 3), target_pipeline_ratio=TARGET_PIPELINE_RATIO,
        meets_pipeline_target=cmp_["ratio"] >= TARGET_PIPELINE_RATIO,
        view_train_records={k: v["records"] for k, v in views.items()},
        peak_rss_gb=epoch_rss, epoch_image_size=_EPOCH_SIZE.value,
        peak_rss_at_first_batch_gb={k: v["epoch"]["hwm_first_batch_gb"] for k, v in views.items()},
        epoch_s={k: round(v["epoch"]["seconds"], 1) for k, v in views.items()},
        peak_rss_128px_gb=px128_rss, rss_batches_128px=_RSS_BATCHES.value,
        rss_growth_ratio=round(max(epoch_rss[labels[-1]] / epoch_rss[labels[0]],
                                   px128_rss[labels[-1]] / px128_rss[labels[0]]), 3),
        **{f"in_memory_rss_gb_{rss['memory_label']}": rss["memory"]["peak_rss_gb"]},
        target_rss_gb=TARGET_RSS_GB, flat_ratio=FLAT_RATIO,
        meets_rss_target=max(all_rss) <= TARGET_RSS_GB and
        max(epoch_rss[labels[-1]] / epoch_rss[labels[0]], px128_rss[labels[-1]] / px128_rss[labels[0]]) <= FLAT_RATIO,
        first_batch_s=first, target_first_batch_s=TARGET_FIRST_BATCH_S,
        meets_first_batch_target=max(first.values()) <= TARGET_FIRST_BATCH_S,
        sketchnet_train_img_per_s=round(train, 1),
        cost_model_50M_epoch_hours=cost["epoch_hours_overlapped"],
        cost_model_50M_epoch_hours_same_cores=cost["epoch_hours_same_cores"],
        cost_model_50M_convert_hours_2proc=cost["convert_hours_2proc"], cost_model_scaling=cost["scaling"],
        cores=os.cpu_count(), load_avg_1min_start=round(load_start, 2),
        load_avg_1min_end=round(os.getloadavg()[0], 2), wall_s=round(time.perf_counter() - t_start, 1),
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
