"""Keras callbacks of the training loop: safe checkpoints, NaN stop, evaluation
with TensorBoard figures, learning-rate logging and a run log.

Order matters: callbacks that add entries to `logs` (evaluation, lr) run before
TensorBoard / CSVLogger, which write what they receive.
"""
from __future__ import annotations

import datetime
import json
import math
import os

import numpy as np
import tensorflow as tf

from sketchtf.evaluation import report
from sketchtf.evaluation.scoring import predict_scores
from sketchtf.keras import keras
from sketchtf.training import optim


def _finite_weights(model) -> bool:
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


class NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss and remembers it (TerminateOnNaN + a flag)."""

    def __init__(self):
        super().__init__()
        self.hit_nan = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.hit_nan = True
            self.model.stop_training = True
            print(f"\nnon-finite loss at batch {batch}: stopping; the last good checkpoint is kept")


class SafeCheckpoint(keras.callbacks.Callback):
    """Saves a tf.train checkpoint after each finished epoch, never a NaN one.

    Checkpoint files are written before the 'checkpoint' index points at them,
    so a crash mid-save leaves the previous checkpoint intact.
    """

    def __init__(self, directory, guard: NanGuard, max_to_keep: int = 3, target=None):
        super().__init__()
        self.directory, self.guard, self.max_to_keep = directory, guard, max_to_keep
        self.target = target  # the model to save when fitting a wrapper (a Distiller)
        self.manager = None

    @property
    def saved_model(self):
        return self.target or self.model

    def _mgr(self):
        if self.manager is None:
            ckpt = tf.train.Checkpoint(model=self.saved_model)
            self.manager = tf.train.CheckpointManager(ckpt, self.directory, max_to_keep=self.max_to_keep)
        return self.manager

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss", 0.0)
        if self.guard.hit_nan or not math.isfinite(float(loss)) or not _finite_weights(self.saved_model):
            return
        self._mgr().save(checkpoint_number=epoch + 1)

    def restore_best(self) -> str | None:
        """Loads the best checkpoint kept by BestCheckpoint into the model, if any."""
        path = tf.train.latest_checkpoint(os.path.join(self.directory, "best"))
        if path:
            tf.train.Checkpoint(model=self.saved_model).restore(path).expect_partial()
        return path

    def restore_last_good(self) -> str | None:
        path = self._mgr().latest_checkpoint
        if path:
            self.manager.checkpoint.restore(path).expect_partial()
        return path


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the epoch with the best logs[monitor] (higher is better) in
    <checkpoints>/best/, with best.json saying which epoch and value. Runs after
    EvalCallback (which puts val_* into the logs). workdir.load_trained_model
    prefers this checkpoint: the run's model is the one chosen on `valid`."""

    def __init__(self, directory, guard: NanGuard, monitor="val_top1", target=None):
        super().__init__()
        self.directory, self.guard, self.monitor, self.target = os.path.join(directory, "best"), guard, monitor, target
        self.best = self._saved_value()

    def _saved_value(self):
        path = os.path.join(self.directory, "best.json")
        if os.path.exists(path):  # a resumed run keeps comparing with its earlier best
            with open(path) as f:
                return float(json.load(f)["value"])
        return -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or self.guard.hit_nan or not float(value) > self.best:
            return
        self.best = float(value)
        model = self.target or self.model
        mgr = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), self.directory, max_to_keep=1)
        path = mgr.save(checkpoint_number=epoch + 1)
        with open(os.path.join(self.directory, "best.json"), "w") as f:
            json.dump(dict(epoch=epoch + 1, monitor=self.monitor, value=self.best, checkpoint=path), f)


class LearningRateLogger(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = optim.current_lr(self.model.optimizer)


class RunLog(keras.callbacks.Callback):
    """Appends one line per (re)start to run_log.txt: shows where a resume began."""

    def __init__(self, workdir):
        super().__init__()
        self.path = os.path.join(workdir, "run_log.txt")
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first:
            self._first = False
            with open(self.path, "a") as f:
                f.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} started at epoch {epoch + 1}\n")
            if epoch:
                print(f"resumed from backup: continuing at epoch {epoch + 1}")


class EvalCallback(keras.callbacks.Callback):
    """Every `every` epochs: test-split metrics into logs (val_*), plus a
    confusion-matrix image and the per-class table in TensorBoard."""

    def __init__(self, dataset, class_names, tb_dir, every=1, samples=None, target=None):
        super().__init__()
        self.target = target  # the model to evaluate when fitting a wrapper
        self.dataset, self.class_names, self.every = dataset, class_names, max(1, int(every))
        self.writer = tf.summary.create_file_writer(os.path.join(tb_dir, "eval"))
        self.samples = samples
        self.last = None

    def on_train_begin(self, logs=None):
        if self.samples is not None:
            images, labels = self.samples
            grid = report.image_grid(images[..., :1], 8, labels=[self.class_names[i] for i in labels])
            with self.writer.as_default():
                tf.summary.image("input_samples", grid[None], step=0)

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last_epoch:
            return
        result, loss = predict_scores(self.target or self.model, self.dataset, self.class_names)
        self.last = result
        if logs is not None:
            logs.update(val_loss=loss, val_top1=result["top1"], val_top5=result["top5"],
                        val_macro_f1=result["macro_f1"])
        cm = np.asarray(result["confusion"])
        with self.writer.as_default():
            tf.summary.image("confusion_matrix", report.confusion_matrix_figure(cm, self.class_names)[None],
                             step=epoch + 1)
            tf.summary.text("per_class", report.per_class_table_markdown(result), step=epoch + 1)
        self.writer.flush()
