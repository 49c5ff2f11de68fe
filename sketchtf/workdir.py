"""The run folder contract shared by training, evaluation and shipping.

A workdir holds:
  config.json    the resolved config (sketchtf.config)
  classes.json   the vocabulary, index = label
  checkpoints/   one tf.train checkpoint per finished epoch (never a NaN one);
                 checkpoints/best/ the epoch chosen on valid (train.keep_best)
and, from training, backup/, tb/, history.csv, metrics.json, report.md.

Models never import this module; train, evaluate and ship read and write runs
only through it.
"""
from __future__ import annotations

import json
import os

from sketchtf.config import load_saved_config, save_config


def input_shape(config):
    """(height, width, channels) of the images the config's model takes."""
    d = config.data
    return (int(d.image_size), int(d.image_size), int(d.channels))


def write_run(workdir, config, class_names):
    """Writes config.json and classes.json (the chief's job under tf.distribute)."""
    os.makedirs(workdir, exist_ok=True)
    save_config(config, workdir)
    with open(os.path.join(workdir, "classes.json"), "w") as f:
        json.dump(list(class_names), f)


def read_classes(workdir):
    path = os.path.join(workdir, "classes.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir}: no classes.json (not a finished run folder; train first)")
    with open(path) as f:
        return json.load(f)


def read_run(workdir):
    """(config, class_names) of a run folder."""
    classes = read_classes(workdir)
    return load_saved_config(workdir), classes


def build_config_model(config, num_classes):
    """The zoo model config.model names, as a float32 model (no distribution wrappers)."""
    from sketchtf.models import build_model
    kwargs = dict(config.model.get("kwargs", {}) or {})
    return build_model(config.model.name, num_classes=num_classes, input_shape=input_shape(config),
                       weights=config.model.get("weights", None) or None, **kwargs)


def latest_checkpoint(workdir):
    """The run's model: checkpoints/best/ when the run kept its best epoch on
    valid (train.keep_best), else the last finished epoch."""
    import tensorflow as tf
    ckdir = os.path.join(workdir, "checkpoints")
    path = tf.train.latest_checkpoint(os.path.join(ckdir, "best")) or tf.train.latest_checkpoint(ckdir)
    if not path:
        raise FileNotFoundError(f"no checkpoint in {ckdir}: train first (python -m sketchtf.train ...)")
    return path


def load_trained_model(workdir):
    """Rebuilds the model from workdir/config.json and restores its last checkpoint.

    Returns (model, config, class_names)."""
    import tensorflow as tf
    config, class_names = read_run(workdir)
    model = build_config_model(config, len(class_names))
    tf.train.Checkpoint(model=model).restore(latest_checkpoint(workdir)).expect_partial()
    return model, config, class_names
