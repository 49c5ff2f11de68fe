"""Optimizers and learning-rate schedules from the `train` config section.

  schedule="constant"     lr
  schedule="exponential"  lr * decay_rate ** (step / decay_steps), staircase
                          (Sketch-A-Net: Adam 1e-3, x0.96 every 1000 steps)
  schedule="cosine"       cosine decay to 0 over the run, optional warmup
  schedule="onecycle"     seed E: linear warmup to lr over warmup_frac of the
                          run, then cosine anneal to lr / final_div
"""
from __future__ import annotations

import math

import tensorflow as tf

from sketchtf.keras import keras


@keras.saving.register_keras_serializable(package="sketchtf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup from lr/div to lr, then cosine down to lr/final_div."""

    def __init__(self, max_lr, total_steps, warmup_frac=0.3, div=25.0, final_div=1e4):
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.warmup_frac, self.div, self.final_div = float(warmup_frac), float(div), float(final_div)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.maximum(1.0, self.warmup_frac * self.total_steps)
        start, end = self.max_lr / self.div, self.max_lr / self.final_div
        up = start + (self.max_lr - start) * tf.minimum(step / warm, 1.0)
        frac = tf.clip_by_value((step - warm) / tf.maximum(1.0, self.total_steps - warm), 0.0, 1.0)
        down = end + (self.max_lr - end) * 0.5 * (1.0 + tf.cos(math.pi * frac))
        return tf.where(step < warm, up, down)

    def get_config(self):
        return dict(max_lr=self.max_lr, total_steps=self.total_steps, warmup_frac=self.warmup_frac,
                    div=self.div, final_div=self.final_div)


def build_schedule(cfg, steps_per_epoch: int):
    """A float lr or a LearningRateSchedule for the run described by cfg (train section)."""
    total = max(1, int(cfg.epochs) * int(steps_per_epoch))
    name = cfg.get("schedule", "constant")
    lr = float(cfg.lr)
    if name == "constant":
        return lr
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=int(cfg.get("decay_steps", 1000)), decay_rate=float(cfg.get("decay_rate", 0.96)),
            staircase=True)
    if name == "cosine":
        warm = int(float(cfg.get("warmup_frac", 0.0)) * total)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warm else lr, decay_steps=max(1, total - warm), warmup_target=lr if warm else None,
            warmup_steps=warm)
    if name == "onecycle":
        return OneCycle(lr, total, warmup_frac=float(cfg.get("warmup_frac", 0.3)))
    raise ValueError(f"train.schedule={name!r}: expected constant, exponential, cosine or onecycle")


def build_optimizer(cfg, steps_per_epoch: int):
    """Adam, AdamW or SGD (momentum) from cfg.optimizer, with the schedule."""
    lr = build_schedule(cfg, steps_per_epoch)
    name = cfg.get("optimizer", "adam")
    clip = cfg.get("clipnorm", None) or None
    if name == "adam":
        return keras.optimizers.Adam(lr, clipnorm=clip)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=float(cfg.get("weight_decay", 1e-4)), clipnorm=clip)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=float(cfg.get("momentum", 0.9)), nesterov=True, clipnorm=clip)
    raise ValueError(f"train.optimizer={name!r}: expected adam, adamw or sgd")


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(keras.backend.get_value(lr))
