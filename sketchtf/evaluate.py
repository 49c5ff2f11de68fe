"""Evaluate a trained workdir on a split, optionally with Sketch-A-Net's 10 views.

  python -m sketchtf.evaluate --workdir=runs/sketchanet [--split=test] [--ten_view]
  python -m sketchtf.evaluate --workdir=runs/sketchnet --tflite=runs/qat/tflite/qat_int8.tflite

--ten_view renders at data.render_size (e.g. 256), takes the 4 corner and centre
crops of data.image_size (225) and their mirror images, and majority-votes the
10 predictions (seed C). Writes <workdir>/eval_<split>[_10view]/metrics.json and
report.md through the one metrics module.

--tflite runs that .tflite file (float, int8 or uint8 io; sketchtf.tflite_runner)
instead of the Keras checkpoint, on the same images from the same pipeline and
renderer (the workdir gives the data config and vocabulary). Writes
<workdir>/eval_<split>_<file name>/.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import tensorflow as tf

from sketchtf import metrics as M
from sketchtf import report
from sketchtf.callbacks import predict_scores
from sketchtf.data import augment, pipeline


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
    step = tf.function(lambda x: model(x, training=False))
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
    from sketchtf.trainer import load_trained_model
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


def evaluate_tflite(workdir, tflite_path, split="test", num_threads=1):
    """Metrics of a .tflite classifier on `split` of workdir's data config."""
    import json
    from sketchtf.config import load_saved_config
    from sketchtf.tflite_runner import TFLiteClassifier, predict_scores_tflite
    config = load_saved_config(workdir)
    with open(os.path.join(workdir, "classes.json")) as f:
        class_names = json.load(f)
    runner = TFLiteClassifier(tflite_path, num_threads=num_threads)
    expected = (int(config.data.image_size), int(config.data.image_size), int(config.data.get("channels", 1)))
    if runner.input_shape != expected:
        raise ValueError(f"{tflite_path} takes {runner.input_shape} images but {workdir}/config.json "
                         f"renders {expected}")
    ds, _ = pipeline.make_dataset(config.data, split, batch_size=int(config.eval.get("batch_size", 64)),
                                  training=False, class_names=class_names)
    result, loss = predict_scores_tflite(runner, ds, class_names)
    name = os.path.splitext(os.path.basename(tflite_path))[0]
    out = os.path.join(workdir, f"eval_{split}_{name}")
    report.write_report(out, result, title=f"{name}.tflite ({config.model.name}) on {split}",
                        extra=dict(tflite=os.path.abspath(tflite_path), size_bytes=runner.size_bytes,
                                   io_dtype=str(runner.input_dtype), eval_loss=round(loss, 4),
                                   command=" ".join(sys.argv)))
    return result, out


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    if f.tflite:
        if f.ten_view:
            raise SystemExit("error: --ten_view is for Keras checkpoints, not --tflite")
        result, out = evaluate_tflite(f.workdir, f.tflite, f.split)
    else:
        result, out = evaluate_workdir(f.workdir, f.split, f.ten_view)
    print(f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  macro-F1 {result['macro_f1']:.4f}  -> {out}")


if __name__ == "__main__":
    from absl import app, flags
    flags.DEFINE_string("workdir", None, "Training workdir.")
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_bool("ten_view", False, "Sketch-A-Net 10-view (5 crops x flip) majority vote.")
    flags.DEFINE_string("tflite", "", "Evaluate this .tflite file (data config and classes from --workdir).")
    flags.mark_flag_as_required("workdir")
    app.run(main)
