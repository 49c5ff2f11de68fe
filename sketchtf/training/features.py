"""Frozen-feature training (seed E): a classifier head on a frozen backbone's cached features.

    python -m sketchtf.training.features --backbone_workdir=runs/efficientnet_b4 --workdir=runs/b4_frozen_linear \
        [--config=configs/frozen_linear.py[:mlp|smoke]] [--finetune_workdir=runs/b4_finetune]
    python -m sketchtf.training.features --compare=runs/b4_frozen_linear,runs/b4_finetune

1. The backbone (any trained workdir, via sketchtf.workdir.load_trained_model) is cut at
   the input of its classifier layer: the pooled features (for Sketch-A-Net the
   1x1 map before L8, flattened).
2. Features of the un-augmented train and eval splits are computed once into
   <cache_dir>/<split>-<key>.npz, rows ordered by drawing index. The key hashes
   the feature layers' weight values, the data section and the vocabulary, so
   changed backbone weights (or data) never reuse a stale cache.
3. Only the head trains (config.train: AdamW + one-cycle by default), on the
   cached arrays: seconds, not a backbone forward/backward pass per step.
4. Backbone + head become one tf_keras model written as a normal training
   workdir (config.json, classes.json, checkpoints/, metrics.json, report.md):
   a linear head is copied into the backbone's own classifier layer, so the
   workdir is the backbone's architecture and `python -m sketchtf.export
   --workdir` reads it as is. An MLP head (head.hidden > 0) is the registered
   model "frozen_mlp" (sketchtf/models/frozen_mlp.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time

import ml_collections
import numpy as np
import tensorflow as tf

from sketchtf.training import optim
from sketchtf.evaluation import report
from sketchtf.evaluation import metrics as M
from sketchtf.config import save_config
from sketchtf.data import pipeline
from sketchtf.keras import keras
from sketchtf.models.frozen_mlp import assemble, build_head, feature_model



# ---------------------------------------------------------------------------
# Fingerprints (the backbone is cut by models/frozen_mlp.py: feature_model)

def weights_fingerprint(model) -> str:
    """sha256 of the weight values (and shapes) in model order."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(w.numpy())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# The feature cache

@dataclasses.dataclass
class FeatureSet:
    features: np.ndarray   # [N, D] float32, row i = drawing index i
    labels: np.ndarray     # [N] int32
    path: str
    built: bool            # False when read from the cache
    build_wall_s: float    # time the features took when they were computed
    build_cpu_s: float | None  # process CPU seconds (all threads) of it; None: not recorded


def _data_for_features(data_cfg):
    d = ml_collections.ConfigDict(data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg))
    d.augment = False  # the un-augmented view (eval rendering)
    return d


def cache_key(fmodel, data_cfg, split, class_names, weights_hash=None) -> str:
    d = _data_for_features(data_cfg)
    payload = json.dumps(dict(weights=weights_hash or weights_fingerprint(fmodel), split=split,
                              classes=list(class_names), data=d.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cached_features(fmodel, data_cfg, split, class_names, cache_dir, batch_size=128, log=print) -> FeatureSet:
    """Features of `split` from <cache_dir>/<split>-<key>.npz, computed once.

    fmodel: a feature model (feature_model(backbone)). A cache file for the same
    split with another key (other weights or data) is deleted when the new one
    is written."""
    key = cache_key(fmodel, data_cfg, split, class_names)
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{split}-{key}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            if str(z["key"]) != key:
                raise ValueError(f"{path}: stored key {z['key']} != {key} (file renamed by hand?); delete it")
            return FeatureSet(z["features"], z["labels"], path, False, float(z["build_wall_s"]),
                              float(z["build_cpu_s"]) if "build_cpu_s" in z.files else None)
    t0, c0 = time.time(), time.process_time()
    ds, info = pipeline.make_dataset(_data_for_features(data_cfg), split, batch_size=batch_size, training=False,
                                     class_names=class_names, with_index=True)
    step = tf.function(lambda x: fmodel(x, training=False))
    feats, labels, index = [], [], []
    for x, y, idx in ds:
        feats.append(step(x).numpy().astype(np.float32))
        labels.append(y.numpy())
        index.append(idx.numpy())
    index = np.concatenate(index)
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(info.num_examples)):
        raise RuntimeError(f"split {split!r}: drawing indices are not 0..{info.num_examples - 1}")
    features, labels = np.concatenate(feats)[order], np.concatenate(labels)[order].astype(np.int32)
    wall, cpu = time.time() - t0, time.process_time() - c0
    for old in os.listdir(cache_dir):
        if old.startswith(f"{split}-") and old.endswith(".npz"):
            os.remove(os.path.join(cache_dir, old))
    tmp = path + ".tmp.npz"
    np.savez(tmp, features=features, labels=labels, key=np.array(key), build_wall_s=np.array(wall),
             build_cpu_s=np.array(cpu))
    os.replace(tmp, path)  # never a half-written cache file
    log(f"features {split}: {features.shape} in {wall:.1f} s -> {path}")
    return FeatureSet(features, labels, path, True, wall, cpu)


# ---------------------------------------------------------------------------
# Head training

def train_head(head, train: FeatureSet, train_cfg, seed=0, log=print):
    """Fits the head on cached features; returns (wall, process CPU) seconds of the fit."""
    bs = int(train_cfg.batch_size)
    n = len(train.labels)
    steps = -(-n // bs)
    head.compile(optimizer=optim.build_optimizer(train_cfg, steps),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    ds = tf.data.Dataset.from_tensor_slices((train.features, train.labels)) \
        .shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(bs).prefetch(tf.data.AUTOTUNE)
    t0, c0 = time.time(), time.process_time()
    from sketchtf.training.trainer import verbosity
    hist = head.fit(ds, epochs=int(train_cfg.epochs), verbose=verbosity(train_cfg.get("verbose", 2)))
    wall, cpu = time.time() - t0, time.process_time() - c0
    loss = hist.history["loss"][-1]
    if not np.isfinite(loss):
        raise RuntimeError(f"head training ended with a non-finite loss ({loss}); lower train.lr")
    log(f"head: {int(train_cfg.epochs)} epochs x {steps} steps in {wall:.1f} s, final loss {loss:.4f}")
    return wall, cpu


def head_scores(head, fs: FeatureSet, batch_size=1024) -> np.ndarray:
    return head.predict(fs.features, batch_size=batch_size, verbose=0)


# ---------------------------------------------------------------------------
# The run

def train_frozen(config, backbone_workdir, workdir, log=print) -> dict:
    """Trains a head on `backbone_workdir`'s frozen features; writes `workdir`.

    config: configs/frozen_*.py (head, train, cache_dir, feature_batch_size).
    Returns the eval metrics dict (with "extra": wall times)."""
    from sketchtf.workdir import latest_checkpoint, load_trained_model
    t_start = time.time()
    backbone, bconfig, class_names = load_trained_model(backbone_workdir)
    for layer in backbone.layers:
        layer.trainable = False
    fmodel = feature_model(backbone)
    cache_dir = config.get("cache_dir") or os.path.join(workdir, "feature_cache")
    fbs = int(config.get("feature_batch_size", 128))
    split = bconfig.get("eval_split", "test")
    train = cached_features(fmodel, bconfig.data, "train", class_names, cache_dir, fbs, log)
    evals = cached_features(fmodel, bconfig.data, split, class_names, cache_dir, fbs, log)

    keras.utils.set_random_seed(int(config.get("seed", 0)))
    hidden, dropout = int(config.head.hidden), float(config.head.get("dropout", 0.0))
    head = build_head(train.features.shape[1], len(class_names), hidden, dropout)
    fit_wall, fit_cpu = train_head(head, train, config.train, seed=int(config.get("seed", 0)), log=log)
    result = M.classification_metrics(evals.labels, head_scores(head, evals), class_names)
    model = assemble(backbone, head)

    # The workdir: the backbone's config with this run's model/train sections.
    out = ml_collections.ConfigDict(bconfig.to_dict())
    out.train = ml_collections.ConfigDict(config.train.to_dict())
    if hidden:
        out.model = ml_collections.ConfigDict(dict(
            name="frozen_mlp", weights="", init_from="",
            kwargs=dict(backbone=bconfig.model.name, backbone_kwargs=dict(bconfig.model.get("kwargs", {}) or {}),
                        hidden=hidden, head_dropout=dropout)))
    out.model.init_from = ""
    out.model.weights = ""  # everything comes from checkpoints/
    out.frozen = ml_collections.ConfigDict(dict(backbone_workdir=os.path.abspath(backbone_workdir),
                                                backbone_checkpoint=latest_checkpoint(backbone_workdir),
                                                head=config.head.to_dict(), cache_dir=os.path.abspath(cache_dir)))
    save_config(out, workdir)
    with open(os.path.join(workdir, "classes.json"), "w") as f:
        json.dump(list(class_names), f)
    ckpt = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), os.path.join(workdir, "checkpoints"),
                                      max_to_keep=1)
    ckpt.save(checkpoint_number=int(config.train.epochs))

    extra = dict(
        model=out.model.name, backbone=bconfig.model.name, backbone_workdir=os.path.abspath(backbone_workdir),
        head="linear" if not hidden else f"mlp {hidden}", params=int(model.count_params()),
        head_params=int(head.count_params()), feature_dim=int(train.features.shape[1]),
        epochs=int(config.train.epochs), batch_size=int(config.train.batch_size),
        image_size=int(bconfig.data.image_size), train_examples=len(train.labels), eval_examples=len(evals.labels),
        features_train_wall_s=round(train.build_wall_s, 1), features_eval_wall_s=round(evals.build_wall_s, 1),
        features_from_cache=not train.built, head_fit_wall_s=round(fit_wall, 1),
        # CPU seconds: robust to other jobs sharing the machine (wall times are not)
        features_train_cpu_s=None if train.build_cpu_s is None else round(train.build_cpu_s, 1), head_fit_cpu_s=round(fit_cpu, 1),
        # like trainer's fit_wall_s: training only (train-split features + head fit), no eval
        fit_wall_s=round(train.build_wall_s + fit_wall, 1), run_wall_s=round(time.time() - t_start, 1),
        command=" ".join(sys.argv))
    report.write_report(workdir, result, title=f"frozen {bconfig.model.name} + {extra['head']} head",
                        extra=extra)
    return dict(result, extra=extra)


def compare(frozen_workdir, finetune_workdir) -> str:
    """A markdown table: training wall time and accuracy of a frozen-feature run
    vs an end-to-end fine-tune (any trainer workdir), from their metrics.json."""
    rows = []
    for label, wd in (("frozen features + head", frozen_workdir), ("fine-tune end to end", finetune_workdir)):
        path = os.path.join(wd, "metrics.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: finish that run first")
        with open(path) as f:
            m = json.load(f)
        e = m.get("extra", {})
        if "fit_wall_s" not in e:
            raise KeyError(f"{path}: extra.fit_wall_s missing (not a sketchtf training run?)")
        rows.append((label, wd, e.get("model", "?"), e.get("epochs", "?"), float(e["fit_wall_s"]),
                     float(m["top1"]), float(m["top5"]), float(m["macro_f1"])))
    lines = ["| run | workdir | model | epochs | training wall (s) | top-1 | top-5 | macro-F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.4f} | {r[6]:.4f} | {r[7]:.4f} |")
    speed = rows[1][4] / rows[0][4] if rows[0][4] > 0 else float("inf")
    lines += ["", f"frozen-feature training took {rows[0][4]:.1f} s vs {rows[1][4]:.1f} s ({speed:.1f}x faster); "
              f"top-1 {rows[0][5] - rows[1][5]:+.4f} vs fine-tuning. Frozen wall = train-split feature "
              "extraction + head fit; fine-tune wall = trainer fit_wall_s (both exclude the final eval)."]
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    if f.compare:
        parts = [p for p in f.compare.split(",") if p]
        if len(parts) != 2:
            raise SystemExit("--compare=FROZEN_WORKDIR,FINETUNE_WORKDIR")
        print(compare(*parts))
        return
    config = f.config
    backbone = f.backbone_workdir or config.get("backbone_workdir", "")
    if not backbone or not f.workdir:
        raise SystemExit("--backbone_workdir (or config.backbone_workdir) and --workdir are required")
    r = train_frozen(config, backbone, f.workdir)
    e = r["extra"]
    print(f"top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
          f"features {e['features_train_wall_s']} s (cached: {e['features_from_cache']})  "
          f"head fit {e['head_fit_wall_s']} s")
    print(f"report: {f.workdir}/report.md   export: python -m sketchtf.export --workdir={f.workdir}")
    if f.finetune_workdir:
        print(compare(f.workdir, f.finetune_workdir))


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    from sketchtf import console
    from sketchtf.training.features import main as _main
    config_flags.DEFINE_config_file(
        "config", os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs",
                                      "frozen_linear.py")),
        "Frozen-feature config (configs/frozen_*.py[:arg]).")
    flags.DEFINE_string("backbone_workdir", "", "Trained workdir whose last checkpoint is the frozen backbone.")
    flags.DEFINE_string("workdir", "", "Output workdir (exportable with python -m sketchtf.export).")
    flags.DEFINE_string("finetune_workdir", "", "An end-to-end fine-tune workdir to compare with at the end.")
    flags.DEFINE_string("compare", "", "FROZEN_WORKDIR,FINETUNE_WORKDIR: only print the comparison.")
    console.run(_main)
