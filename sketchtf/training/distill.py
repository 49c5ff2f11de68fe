"""Knowledge distillation (Hinton et al. 2015; seed A): a trained teacher, a student.

    python -m sketchtf.distill --config=configs/kd_qd10.py:mobilenetv2_s1 --workdir=runs/kd_s1

Per example, with teacher logits t, student logits s, label y, temperature T:

    loss = alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))
           [+ beta * mean((P(resize(f_s)) - f_t)^2)       feature distillation]

The T^2 factor keeps the soft-target gradients on the scale of the hard-label
ones when T changes (Hinton et al. sec. 2). Per-example losses are reduced with
tf.nn.compute_average_loss (sum / GLOBAL batch), so the Distiller trains the
same under any tf.distribute strategy as on one device; it keeps no Python-side
state between steps.

Teacher outputs, two ways (config `distill.cache`):
  "none"    the teacher runs (frozen, training=False) on every student batch,
            on the very augmented images the student sees;
  "logits"  the paper's flow: the teacher runs once over the training set and
            its logits are stored in <workdir>/teacher_cache/ keyed by drawing
            index; student epochs look them up (pipeline `with_index`) and never
            run the teacher. The cache is reused by a resumed run and rebuilt
            when the teacher checkpoint (path, size, mtime), the data section or
            the vocabulary changes.

Augmentation and the cache. The cached view is the UN-AUGMENTED rendering of
each drawing (view "clean"): the student sees a fresh augmentation each epoch,
the soft targets stay those of the clean drawing. Caching K augmented views
instead is not possible with the current pipeline: its augmentation seed is
the element's position in the shuffled stream, and the shuffle order changes
each time the dataset is iterated, so (drawing, view) does not determine the
image. What the clean view costs is measured by clean_view_agreement (the
command is in docs/distill.md): how often the teacher's top-1 on the augmented
image agrees with its top-1 on the clean one.

Feature distillation (`distill.feature`): the output of `student_layer` goes
through a learned 1x1 projection to the channels of `teacher_layer` (bilinear
resize first when the grids differ) and is pulled to the teacher's feature by a
mean squared error of weight beta. It needs the live teacher (features are not
cached). The projection is a training-only part of the Distiller.

Saving: checkpoints in the workdir are the student's (trainer.fit_and_report
tracks `distiller.student`), so `python -m sketchtf.export --workdir` exports
the student alone. `Distiller.save`, `save_weights` and `export` likewise write
the student only.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from sketchtf import workdir as run_folder
from sketchtf.keras import keras
from sketchtf.evaluation import scoring
from sketchtf.training import distribute, trainer

CACHE_DIR = "teacher_cache"
CACHE_MODES = ("none", "logits")


def _per_example(loss_fn, a, b, what):
    """Per-example values of a Keras loss (its unreduced `call`) or a function."""
    values = loss_fn.call(a, b) if isinstance(loss_fn, keras.losses.Loss) else loss_fn(a, b)
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 0:
        raise ValueError(f"Distiller: {what} returned a scalar; it must return one value per example "
                         f"(a keras.losses.Loss, or a function without reduction)")
    if values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return tf.cast(values, tf.float32)


def kl_from_logits(teacher_logits, student_logits, temperature):
    """KL(softmax(t/T) || softmax(s/T)) per example, in log space (no clipping)."""
    log_pt = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_ps = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    return tf.reduce_sum(tf.exp(log_pt) * (log_pt - log_ps), axis=-1)


class Distiller(keras.Model):
    """Trains `student` against a frozen `teacher` (or against cached teacher logits).

    teacher: a Keras model returning logits, or None when every training batch
      carries the teacher's logits as a third element (x, y, teacher_logits).
    feature: optional dict(teacher_layer=, student_layer=) for feature
      distillation (needs `teacher`); its weight is `beta` in compile.
    """

    def __init__(self, student, teacher=None, *, feature=None, name="distiller"):
        super().__init__(name=name)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.feature = dict(feature or {})
        self.projection = None
        if self.feature.get("teacher_layer") or self.feature.get("student_layer"):
            self._build_feature_models()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if self.projection else None

    def _build_feature_models(self):
        tl, sl = self.feature.get("teacher_layer"), self.feature.get("student_layer")
        if not tl or not sl:
            raise ValueError(f"distill.feature needs both teacher_layer and student_layer, got {self.feature}")
        if self.teacher is None:
            raise ValueError("feature distillation needs the live teacher: set distill.cache='none'")

        def layer_out(model, layer_name, who):
            try:
                return model.get_layer(layer_name).output
            except ValueError:
                names = [layer.name for layer in model.layers]
                raise ValueError(f"distill.feature.{who}_layer={layer_name!r} is not a layer of {model.name} "
                                 f"(some layers: {names[-12:]})") from None

        t_feat = layer_out(self.teacher, tl, "teacher")
        s_feat = layer_out(self.student, sl, "student")
        if t_feat.shape.rank != s_feat.shape.rank or t_feat.shape.rank not in (2, 4):
            raise ValueError(f"distill.feature: {tl} {t_feat.shape} and {sl} {s_feat.shape} must both be "
                             f"[B, H, W, C] maps or both [B, C] vectors")
        # Two-output views over the same layers: training them trains the student itself.
        self.teacher_features = keras.Model(self.teacher.inputs, [t_feat, self.teacher.outputs[0]],
                                            name="teacher_features")
        self.student_features = keras.Model(self.student.inputs, [s_feat, self.student.outputs[0]],
                                            name="student_features")
        channels = int(t_feat.shape[-1])
        self.projection = (keras.layers.Conv2D(channels, 1, name="feature_projection") if t_feat.shape.rank == 4
                           else keras.layers.Dense(channels, name="feature_projection"))
        self.projection.build(s_feat.shape)
        self.teacher_grid = tuple(int(d) for d in t_feat.shape[1:3]) if t_feat.shape.rank == 4 else None

    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None,
                alpha=0.1, temperature=3.0, beta=0.0, **kwargs):
        """alpha weighs the hard-label loss, 1 - alpha the soft one; beta the feature loss.

        student_loss_fn(labels, student_logits); distillation_loss_fn(
        softmax(t/T), softmax(s/T)), both per example (Keras Loss objects are
        called unreduced). Defaults: sparse CE from logits and KL(t || s)."""
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"distill.alpha={alpha} must be in [0, 1]")
        if float(temperature) <= 0:
            raise ValueError(f"distill.temperature={temperature} must be > 0")
        if float(beta) and self.projection is None:
            raise ValueError("distill.feature.beta > 0 needs teacher_layer and student_layer")
        self.student_loss_fn = student_loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha, self.temperature, self.beta = float(alpha), float(temperature), float(beta)

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.student_loss_tracker, self.distill_loss_tracker]
        if self.feature_loss_tracker is not None:
            trackers.append(self.feature_loss_tracker)
        return trackers + super().metrics

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def _distillation_values(self, teacher_logits, student_logits):
        t = tf.cast(teacher_logits, tf.float32)
        s = tf.cast(student_logits, tf.float32)
        if self.distillation_loss_fn is None:
            return kl_from_logits(t, s, self.temperature)
        return _per_example(self.distillation_loss_fn, tf.nn.softmax(t / self.temperature),
                            tf.nn.softmax(s / self.temperature), "distillation_loss_fn")

    def _feature_values(self, s_feat, t_feat):
        s_feat = tf.cast(s_feat, tf.float32)
        if self.teacher_grid is not None and tuple(s_feat.shape[1:3]) != self.teacher_grid:
            s_feat = tf.image.resize(s_feat, self.teacher_grid, method="bilinear")
        diff = tf.cast(self.projection(s_feat), tf.float32) - tf.cast(t_feat, tf.float32)
        return tf.reduce_mean(tf.square(diff), axis=list(range(1, diff.shape.rank)))

    def compute_losses(self, x, y, teacher_logits=None, training=True):
        """(total per-example, parts dict, student logits); runs the teacher if needed."""
        t_feat = s_feat = None
        if self.projection is not None:
            t_feat, teacher_logits = self.teacher_features(x, training=False)
            s_feat, student_logits = self.student_features(x, training=training)
        else:
            if teacher_logits is None:
                if self.teacher is None:
                    raise ValueError("Distiller without a teacher needs batches (x, y, teacher_logits)")
                teacher_logits = self.teacher(x, training=False)
            student_logits = self.student(x, training=training)
        teacher_logits = tf.stop_gradient(teacher_logits)
        student_logits = tf.cast(student_logits, tf.float32)
        hard = _per_example(self.student_loss_fn, y, student_logits, "student_loss_fn")
        soft = self._distillation_values(teacher_logits, student_logits)
        total = self.alpha * hard + (1.0 - self.alpha) * self.temperature ** 2 * soft
        parts = dict(student_loss=hard, distillation_loss=soft)
        if self.projection is not None:
            feat = self._feature_values(s_feat, tf.stop_gradient(t_feat))
            total = total + self.beta * feat
            parts["feature_loss"] = feat
        return total, parts, student_logits

    def _unpack(self, data):
        if isinstance(data, (tuple, list)) and len(data) == 3:
            return data
        x, y = data[0], data[1]
        return x, y, None

    def _update(self, y, total, parts, student_logits):
        n = tf.cast(tf.shape(total)[0], tf.float32)
        self.loss_tracker.update_state(tf.reduce_mean(total), sample_weight=n)
        self.student_loss_tracker.update_state(tf.reduce_mean(parts["student_loss"]), sample_weight=n)
        self.distill_loss_tracker.update_state(tf.reduce_mean(parts["distillation_loss"]), sample_weight=n)
        if self.feature_loss_tracker is not None:
            self.feature_loss_tracker.update_state(tf.reduce_mean(parts["feature_loss"]), sample_weight=n)
        self.compiled_metrics.update_state(y, student_logits)
        return {m.name: m.result() for m in self.metrics}

    def trainable_for_step(self):
        variables = list(self.student.trainable_variables)
        if self.projection is not None:
            variables += self.projection.trainable_variables
        return variables

    def train_step(self, data):
        x, y, cached = self._unpack(data)
        with tf.GradientTape() as tape:
            total, parts, student_logits = self.compute_losses(x, y, cached, training=True)
            # sum / global batch: replicas' gradients are summed, so this is the mean.
            loss = tf.nn.compute_average_loss(total)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        self.optimizer.minimize(loss, self.trainable_for_step(), tape=tape)
        return self._update(y, total, parts, student_logits)

    def test_step(self, data):
        """Evaluates the student (and both loss parts when teacher targets exist)."""
        x, y, cached = self._unpack(data)
        if self.teacher is None and cached is None:
            logits = tf.cast(self.student(x, training=False), tf.float32)
            hard = _per_example(self.student_loss_fn, y, logits, "student_loss_fn")
            self.student_loss_tracker.update_state(hard)
            self.compiled_metrics.update_state(y, logits)
            return {m.name: m.result() for m in self.metrics}
        total, parts, logits = self.compute_losses(x, y, cached, training=False)
        return self._update(y, total, parts, logits)

    # The student is the product: saving a Distiller writes the student alone.
    def save(self, filepath, *args, **kwargs):
        return self.student.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        return self.student.save_weights(filepath, *args, **kwargs)


# --------------------------------------------------------------------------- cache

def checkpoint_fingerprint(checkpoint_path):
    """Path + (name, size, mtime_ns) of each checkpoint file: changes when the teacher is retrained."""
    files = sorted(glob.glob(checkpoint_path + ".*"))
    if not files:
        raise FileNotFoundError(f"teacher checkpoint {checkpoint_path} has no files")
    stats = [(os.path.basename(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files]
    return dict(checkpoint=os.path.abspath(checkpoint_path), files=stats)


def cache_key(checkpoint_path, data_cfg, class_names, num_examples):
    """What the cached logits depend on; the sha1 of it names the cache file.

    checkpoint_path: the teacher's checkpoint, or a list of them (an ensemble;
    a list of one keys as the bare path does, so single-teacher caches stay valid)."""
    paths = [checkpoint_path] if isinstance(checkpoint_path, str) else list(checkpoint_path)
    data = json.loads(data_cfg.to_json_best_effort(sort_keys=True)) if hasattr(data_cfg, "to_json_best_effort") \
        else dict(data_cfg)
    prints = [checkpoint_fingerprint(p) for p in paths]
    key = dict(teacher=prints[0] if len(prints) == 1 else prints, data=data, classes=list(class_names),
               num_examples=int(num_examples), view="clean")
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return key, digest


def teacher_logits(teacher, dataset, num_examples, num_classes):
    """Runs the teacher over (images, labels, index) batches; returns logits [N, K] by index."""
    out = np.full((num_examples, num_classes), np.nan, np.float32)
    step = tf.function(lambda x: teacher(x, training=False))
    for batch in dataset:
        images, index = batch[0], batch[2]
        out[index.numpy()] = tf.cast(step(images), tf.float32).numpy()
    missing = int(np.isnan(out).any(axis=1).sum())
    if missing:
        raise RuntimeError(f"teacher cache: {missing} of {num_examples} drawings got no teacher logits")
    return out


def load_or_build_cache(teacher, checkpoint_path, config, class_names, workdir, *, batch_size=None, log=print):
    """Teacher logits of the un-augmented training drawings, from workdir/teacher_cache.

    Returns (logits [N, K] float32, info dict with path, built, seconds)."""
    from sketchtf.data import pipeline
    seed = int(config.get("seed", 0))
    ds, info = pipeline.make_dataset(config.data, "train", batch_size=int(batch_size or config.eval.batch_size),
                                     training=False, seed=seed, class_names=class_names, with_index=True)
    key, digest = cache_key(checkpoint_path, config.data, class_names, info.num_examples)
    cache_dir = os.path.join(workdir, CACHE_DIR)
    path = os.path.join(cache_dir, f"logits-{digest}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            logits = z["logits"]
        log(f"teacher cache: reusing {path}")
        return logits, dict(path=path, built=False, seconds=0.0)
    t0 = time.time()
    logits = teacher_logits(teacher, ds, info.num_examples, len(class_names))
    seconds = time.time() - t0
    os.makedirs(cache_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(cache_dir, "logits-*")):
        os.remove(stale)  # another teacher or data: never read again
    tmp = path + ".tmp.npz"
    np.savez(tmp, logits=logits)
    with open(os.path.join(cache_dir, f"logits-{digest}.json"), "w") as f:
        json.dump(dict(key, build_seconds=round(seconds, 2)), f, indent=1, default=str)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated cache under the real name
    log(f"teacher cache: {info.num_examples} drawings in {seconds:.1f} s -> {path}")
    return logits, dict(path=path, built=True, seconds=seconds)


def with_cached_logits(dataset, logits):
    """(images, labels, index) batches -> (images, labels, teacher_logits)."""
    table = tf.constant(logits, tf.float32)
    return dataset.map(lambda x, y, i: (x, y, tf.gather(table, i)), num_parallel_calls=tf.data.AUTOTUNE)


def clean_view_agreement(teacher, config, class_names, batches=10, seed=0):
    """What caching the clean view costs: the teacher on augmented training
    batches vs on the same drawings un-augmented (the cached targets).

    Returns dict(examples, top1_agreement, mean_kl (clean || augmented) at
    distill.temperature, teacher accuracy on each view)."""
    from sketchtf.data import pipeline
    temperature = float(config.distill.get("temperature", 1.0)) if "distill" in config else 1.0
    bs = int(config.train.batch_size)
    clean_ds, info = pipeline.make_dataset(config.data, "train", batch_size=bs, training=False, seed=seed,
                                           class_names=class_names, with_index=True)
    clean = teacher_logits(teacher, clean_ds, info.num_examples, len(class_names))
    aug_ds, _ = pipeline.make_dataset(config.data, "train", batch_size=bs, training=True, seed=seed,
                                      class_names=class_names, with_index=True)
    step = tf.function(lambda x: teacher(x, training=False))
    agree, kl, acc_aug, acc_clean, n = 0, 0.0, 0, 0, 0
    for x, y, idx in aug_ds.take(batches):
        a = tf.cast(step(x), tf.float32)
        c = tf.constant(clean[idx.numpy()])
        agree += int(tf.reduce_sum(tf.cast(tf.argmax(a, -1) == tf.argmax(c, -1), tf.int32)))
        kl += float(tf.reduce_sum(kl_from_logits(c, a, temperature)))
        acc_aug += int(tf.reduce_sum(tf.cast(tf.argmax(a, -1, output_type=tf.int32) == y, tf.int32)))
        acc_clean += int(tf.reduce_sum(tf.cast(tf.argmax(c, -1, output_type=tf.int32) == y, tf.int32)))
        n += int(tf.shape(y)[0])
    return dict(examples=n, top1_agreement=agree / n, mean_kl=kl / n, temperature=temperature,
                teacher_acc_augmented=acc_aug / n, teacher_acc_clean=acc_clean / n)


# --------------------------------------------------------------------------- training

def teacher_workdirs(distill_cfg):
    """distill.teacher_workdir as a list: one run folder, or several joined by commas (an ensemble)."""
    return [w.strip() for w in str(distill_cfg.get("teacher_workdir", "") or "").split(",") if w.strip()]


class Ensemble(keras.Model):
    """Frozen members whose logits are averaged: one teacher to the Distiller.

    The mean of logits, not of probabilities: it is what a single teacher's
    logits are to the KD loss (softmax at temperature T of the mean), and equal
    members give back the member. A subclassed model, since the members of an
    ensemble of runs usually share a layer name (their architecture's)."""

    def __init__(self, members, name="ensemble"):
        super().__init__(name=name)
        self.members = list(members)
        for m in self.members:
            m.trainable = False

    def call(self, x, training=False):
        del training  # a teacher always runs in inference mode
        return tf.add_n([tf.cast(m(x, training=False), tf.float32) for m in self.members]) / len(self.members)


def ensemble(members, name="ensemble"):
    """An Ensemble of the members, built (its weights exist) from the first member's input shape."""
    model = Ensemble(members, name=name)
    model.build((None,) + tuple(members[0].input_shape[1:]))
    return model


def load_teacher(config, class_names):
    """The teacher from distill.teacher_workdir, checked against the student's data.

    Returns (teacher, checkpoint paths [one per member], teacher name). Several comma-separated workdirs make an ensemble teacher (mean logits)."""
    twds = teacher_workdirs(config.distill)
    bad = [w for w in twds if not os.path.isdir(w)]
    if not twds or bad:
        raise FileNotFoundError(f"distill.teacher_workdir={config.distill.get('teacher_workdir', '')!r}: "
                                f"{bad[0] if bad else 'nothing'} is not a training workdir: train the teacher "
                                f"first (python -m sketchtf.train --config=configs/efficientnet_b4_qd10.py ...)")
    members, ckpts, names = [], [], []
    s_shape = run_folder.input_shape(config)
    for twd in twds:
        teacher, tconfig, tclasses = run_folder.load_trained_model(twd)
        if list(tclasses) != list(class_names):
            raise ValueError(f"teacher {twd}/classes.json {tclasses[:5]}... differs from the student's "
                             f"vocabulary {list(class_names)[:5]}...")
        t_shape = run_folder.input_shape(tconfig)
        if t_shape != s_shape:
            raise ValueError(f"teacher {twd} takes {t_shape} images but the student's data gives {s_shape}: "
                             f"train the teacher at data.image_size={s_shape[0]} "
                             f"(or set the student's to {t_shape[0]})")
        members.append(teacher)
        ckpts.append(run_folder.latest_checkpoint(twd))
        names.append(tconfig.model.name)
    if len(members) == 1:
        return members[0], ckpts, names[0]
    return ensemble(members), ckpts, "ensemble(" + ",".join(names) + ")"


def distill_and_evaluate(config, workdir):
    """Trains config.model from the teacher of config.distill; returns the student's metrics."""
    d = config.distill
    cache = d.get("cache", "none")
    if cache not in CACHE_MODES:
        raise ValueError(f"distill.cache={cache!r}: expected one of {CACHE_MODES}")
    feature = d.get("feature", None) or {}
    feature = dict(feature.to_dict() if hasattr(feature, "to_dict") else feature)
    beta = float(feature.pop("beta", 0.0) or 0.0)
    if not (feature.get("teacher_layer") or feature.get("student_layer")):
        feature = {}
    if feature and cache != "none":
        raise ValueError("distill.feature needs the live teacher: set distill.cache='none'")
    strategy = trainer.start_run(config, workdir)
    train_ds, info, eval_ds, einfo = trainer.build_data(config, with_index=cache == "logits", strategy=strategy,
                                                        workdir=workdir)
    trainer.record_run(config, workdir, info.class_names, strategy)
    steps = int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)
    with trainer.run_scope(config):
        teacher, tckpt, tname = load_teacher(config, info.class_names)
        extra = dict(teacher=tname, teacher_workdir=str(d.teacher_workdir),
                     teacher_params=int(teacher.count_params()), alpha=float(d.alpha),
                     temperature=float(d.temperature), cache=cache,
                     # what the student is distilled from, on the split the run watches (valid)
                     teacher_eval_top1=round(scoring.predict_scores(teacher, eval_ds, info.class_names)[0]["top1"], 4),
                     eval_split=str(config.get("eval_split", "test")))
        if cache == "logits":
            # Non-chief workers keep their copy in their own folder (no concurrent writes).
            logits, cinfo = load_or_build_cache(teacher, tckpt, config, info.class_names,
                                                distribute.worker_dir(workdir, strategy))
            train_ds = with_cached_logits(train_ds, logits)
            extra.update(cache_built=cinfo["built"], cache_build_s=round(cinfo["seconds"], 1))
            teacher = None  # student epochs never run it
        student = trainer.initial_model(config, len(info.class_names))
        distiller = Distiller(student, teacher, feature=feature)
        if feature:
            extra.update(feature=dict(feature, beta=beta))
        distiller.compile(optimizer=trainer.build_optimizer(config, steps, strategy),
                          metrics=trainer.train_metrics(),
                          alpha=float(d.alpha), temperature=float(d.temperature), beta=beta,
                          jit_compile=bool(config.get("jit_compile", False)))
        title = f"{config.model.name} distilled from {tname} on {config.data.source}"
        return trainer.fit_and_report(student, config, workdir, train_ds, info, eval_ds, einfo, title=title,
                                      fit_model=distiller, extra=extra)
