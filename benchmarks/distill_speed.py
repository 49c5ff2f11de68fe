"""Steps/s of (a) the student alone, (b) a Distiller with a live teacher, (c) a
Distiller reading cached teacher logits; the cache build is timed on its own.

    python benchmarks/distill_speed.py [--student=mobilenetv2_s2 --teacher=mobilenetv2
        --size=32 --batch=32 --steps=30 --warmup=5 --per_class=40]

All three fit the same augmented synthetic training stream (the real input
pipeline: stroke augmentation + rendering) for `warmup` + `steps` steps; the
rate is taken over the last `steps` (a timing callback), so graph tracing is
left out. Target: (c) <= 1.15 x (a) in time per step. Defaults are small so a run
takes a few minutes on 2 CPU cores; the teacher is bigger than the student
(MobileNetV2 vs strategy-2 MobileNetV2) as in Table II. Prints one JSON line last.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sketchtf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF)
import tensorflow as tf  # noqa: E402

from sketchtf.training import distill  # noqa: E402
from sketchtf.config import data_config  # noqa: E402
from sketchtf.data import pipeline  # noqa: E402
from sketchtf.keras import keras  # noqa: E402
from sketchtf.models import build_model  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.warmup:
            self.t0 = time.perf_counter()
        elif batch + 1 > self.warmup:
            self.n += 1
            self.t1 = time.perf_counter()

    def seconds_per_step(self):
        return (self.t1 - self.t0) / self.n


def timed_fit(model, ds, warmup, steps):
    timer = StepTimer(warmup)
    model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
    return timer.seconds_per_step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--student", default="mobilenetv2_s2")
    p.add_argument("--teacher", default="mobilenetv2")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--per_class", type=int, default=40)
    a = p.parse_args()
    cfg = data_config(source="synthetic", image_size=a.size, synthetic_per_class=a.per_class)
    train, info = pipeline.make_dataset(cfg, "train", batch_size=a.batch, training=True, with_index=True)
    k = len(info.class_names)
    shape = (a.size, a.size, 1)
    keras.utils.set_random_seed(0)
    teacher = build_model(a.teacher, num_classes=k, input_shape=shape)
    metrics = lambda: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]  # noqa: E731
    plain = train.map(lambda x, y, i: (x, y))

    # (a) student alone
    student = build_model(a.student, num_classes=k, input_shape=shape)
    student.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=metrics())
    t_a = timed_fit(student, plain, a.warmup, a.steps)
    # (b) live teacher
    d = distill.Distiller(build_model(a.student, num_classes=k, input_shape=shape), teacher)
    d.compile(keras.optimizers.Adam(1e-3), metrics=metrics())
    t_b = timed_fit(d, plain, a.warmup, a.steps)
    # (c) cached logits: the cache is built once (its own timing), then the teacher never runs
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = tf.train.Checkpoint(model=teacher).write(os.path.join(tmp, "teacher", "ckpt-1"))
        conf = dict(seed=0, data=cfg, eval=dict(batch_size=128))
        from ml_collections import ConfigDict
        t0 = time.perf_counter()
        logits, _ = distill.load_or_build_cache(teacher, ckpt, ConfigDict(conf), info.class_names, tmp,
                                                log=lambda s: None)
        build_s = time.perf_counter() - t0
    d = distill.Distiller(build_model(a.student, num_classes=k, input_shape=shape))
    d.compile(keras.optimizers.Adam(1e-3), metrics=metrics())
    t_c = timed_fit(d, distill.with_cached_logits(train, logits), a.warmup, a.steps)
    out = dict(student=a.student, teacher=a.teacher, image_size=a.size, batch=a.batch, steps=a.steps,
               warmup=a.warmup, train_examples=info.num_examples,
               student_params=int(student.count_params()), teacher_params=int(teacher.count_params()),
               s_per_step_student=round(t_a, 4), s_per_step_live_teacher=round(t_b, 4),
               s_per_step_cached=round(t_c, 4), cache_build_s=round(build_s, 2),
               live_over_student=round(t_b / t_a, 3), cached_over_student=round(t_c / t_a, 3),
               target_cached_le_1_15=bool(t_c <= 1.15 * t_a), cores=os.cpu_count(),
               load_avg_1min=round(os.getloadavg()[0], 2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
