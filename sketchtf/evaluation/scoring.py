"""Scoring a Keras model on a split: the per-epoch evaluation of training, the
final `python -m sketchtf.evaluate`, and Sketch-A-Net's 10-view vote.

The 10-view vote renders at data.render_size (e.g. 256), takes the 4 corner
and centre crops of data.image_size (225) and their mirror images, and
majority-votes the 10 predictions (seed C). evaluate_workdir writes
<workdir>/eval_<split>[_10view]/metrics.json and report.md through the one
metrics module.
"""
from __future__ import annotations

import os
import sys
import weakref

import numpy as np
import tensorflow as tf

from sketchtf.data import augment, pipeline
from sketchtf.evaluation import metrics as M
from sketchtf.evaluation import report
from sketchtf.keras import keras

# One traced inference step per model, reused by every call (each epoch's
# evaluation, the final one): a fresh tf.function per call retraced every time,
# and the last batch's smaller size traced again (reduce_retracing generalizes it).
_STEPS = weakref.WeakKeyDictionary()


def inference_step(model):
    step = _STEPS.get(model)
    if step is None:
        step = _STEPS[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return step


def predict_scores(model, dataset, class_names, top_k=5):
    """Runs the model over an eval dataset; returns the metrics dict and mean loss."""
    acc = M.MetricsAccumulator(class_names, top_k=top_k)
    step = inference_step(model)
    losses = []
    for batch in dataset:
        x, y = batch[0], batch[1]
        logits = step(x)
        losses.append(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True).numpy())
        acc.update(y.numpy(), logits.numpy())
    return acc.result(), float(np.mean(np.concatenate(losses)))


def evaluate_ten_view(model, config, class_names, split="test"):
    """Majority vote over 10 views; returns the metrics dict."""
    d = config.data
    size, render_size = int(d.image_size), int(d.get("render_size", 0) or d.image_size)
    if render_size <= size:
        raise ValueError(f"--ten_view needs data.render_size > data.image_size (got {render_size} <= {size})")
    full = d.copy_and_resolve_references()
    full.image_size, full.render_size = render_size, 0
    ds, _ = pipeline.make_dataset(full, split, batch_size=int(config.eval.get("batch_size", 64)) // 10 or 1,
                                  training=False, class_names=class_names)
    step = inference_step(model)
    labels, views = [], []
    for x, y in ds:
        v = augment.ten_views(x, size)  # [10, B, s, s, C]
        shape = tf.shape(v)
        logits = step(tf.reshape(v, tf.concat([[-1], shape[2:]], 0)))
        views.append(M.softmax(tf.reshape(logits, [10, shape[1], -1]).numpy()))
        labels.append(y.numpy())
    scores = M.vote(np.concatenate(views, axis=1), method="majority")
    return M.classification_metrics(np.concatenate(labels), scores, class_names)


def evaluate_workdir(workdir, split="test", ten_view=False):
    from sketchtf.workdir import load_trained_model
    model, config, class_names = load_trained_model(workdir)
    if ten_view:
        result = evaluate_ten_view(model, config, class_names, split)
    else:
        ds, _ = pipeline.make_dataset(config.data, split, batch_size=int(config.eval.get("batch_size", 64)),
                                      training=False, class_names=class_names)
        result, _ = predict_scores(model, ds, class_names)
    out = os.path.join(workdir, f"eval_{split}" + ("_10view" if ten_view else ""))
    report.write_report(out, result, title=f"{config.model.name} on {split}" + (" (10-view vote)" if ten_view else ""),
                        extra=dict(params=int(model.count_params()), command=" ".join(sys.argv)))
    return result, out
