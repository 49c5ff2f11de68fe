"""Distiller: loss formula, frozen teacher, teacher-logit cache, feature distillation,
and `python -m sketchtf.distill` end to end into an export of the student alone."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sketchtf.training import distill
from sketchtf.ship import export
from sketchtf.config import data_config, experiment, smoke
from sketchtf.data import pipeline, synthetic
from sketchtf.evaluation import scoring
from sketchtf.keras import keras
from sketchtf.models import build_model

REPO = pathlib.Path(__file__).resolve().parents[2]
K = 5


def tiny(name="sketchnet", size=16, filters=(4, 8, 8, 8), seed=0):
    keras.utils.set_random_seed(seed)
    return build_model(name, num_classes=K, input_shape=(size, size, 1), filters=filters, bottleneck=4, dense=8)


def batch(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 1)).astype(np.float32), rng.integers(0, K, n).astype(np.int32)


def numpy_kd_loss(t, s, y, alpha, T):
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -log_softmax(s)[np.arange(len(y)), y]
    pt, log_pt, log_ps = np.exp(log_softmax(t / T)), log_softmax(t / T), log_softmax(s / T)
    kl = (pt * (log_pt - log_ps)).sum(-1)
    return alpha * ce + (1 - alpha) * T ** 2 * kl, ce, kl


@pytest.mark.parametrize("alpha,T", [(0.1, 4.0), (0.7, 1.0)])
def test_loss_matches_hand_computation(alpha, T):
    teacher, student = tiny(seed=1), tiny(seed=2)
    x, y = batch()
    d = distill.Distiller(student, teacher)
    d.compile(optimizer="sgd", alpha=alpha, temperature=T)
    total, parts, _ = d.compute_losses(tf.constant(x), tf.constant(y), training=False)
    t, s = teacher(x, training=False).numpy(), student(x, training=False).numpy()
    want, ce, kl = numpy_kd_loss(t.astype(np.float64), s.astype(np.float64), y, alpha, T)
    assert kl.min() > 1e-4  # distinct nets: the soft term is really exercised
    np.testing.assert_allclose(total.numpy(), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(parts["student_loss"].numpy(), ce, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(parts["distillation_loss"].numpy(), kl, rtol=1e-4, atol=1e-6)
    # Keras' KLDivergence on the tempered softmaxes (the keras.io convention) agrees.
    d2 = distill.Distiller(student, teacher)
    d2.compile(optimizer="sgd", alpha=alpha, temperature=T, distillation_loss_fn=keras.losses.KLDivergence())
    total2, _, _ = d2.compute_losses(tf.constant(x), tf.constant(y), training=False)
    np.testing.assert_allclose(total2.numpy(), want, rtol=1e-3, atol=1e-5)
    # The cached-logits path (third batch element) gives the same loss without the teacher.
    d3 = distill.Distiller(student)
    d3.compile(optimizer="sgd", alpha=alpha, temperature=T)
    total3, _, _ = d3.compute_losses(tf.constant(x), tf.constant(y), tf.constant(t), training=False)
    np.testing.assert_allclose(total3.numpy(), want, rtol=1e-4, atol=1e-6)


def test_bad_arguments_fail_clearly():
    d = distill.Distiller(tiny(seed=2), tiny(seed=1))
    with pytest.raises(ValueError, match="alpha"):
        d.compile(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        d.compile(temperature=0)
    with pytest.raises(ValueError, match="beta"):
        d.compile(beta=1.0)
    d.compile(optimizer="sgd", student_loss_fn=lambda y, s: tf.reduce_mean(s))
    x, y = batch()
    with pytest.raises(ValueError, match="one value per example"):
        d.compute_losses(tf.constant(x), tf.constant(y))
    with pytest.raises(ValueError, match="nope"):
        distill.Distiller(tiny(seed=2), tiny(seed=1), feature=dict(teacher_layer="nope", student_layer="block1_relu"))
    with pytest.raises(ValueError, match="live teacher"):
        distill.Distiller(tiny(seed=2), None, feature=dict(teacher_layer="block1_relu", student_layer="block1_relu"))


def test_fit_trains_student_only_and_reports_both_loss_parts():
    teacher, student = tiny(seed=1), tiny(seed=2)
    before_t = [w.copy() for w in teacher.get_weights()]
    before_s = [w.copy() for w in student.get_weights()]
    x, y = batch(32)
    d = distill.Distiller(student, teacher)
    d.compile(optimizer=keras.optimizers.SGD(0.1),
              metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], alpha=0.5, temperature=2.0)
    hist = d.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(hist)
    assert all(np.isfinite(v) for v in hist["loss"])
    for a, b in zip(before_t, teacher.get_weights()):  # includes BN moving statistics
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_s, student.get_weights()))
    logs = d.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(logs)
    # test_step scores the student: its accuracy is the student's own.
    want = np.mean(np.argmax(student.predict(x, verbose=0), -1) == y)
    assert logs["accuracy"] == pytest.approx(want)


def test_save_and_export_write_the_student_alone(tmp_path):
    teacher, student = tiny(seed=1, filters=(8, 16, 16, 16)), tiny(seed=2)
    d = distill.Distiller(student, teacher)
    d.compile(optimizer="sgd")
    d.save_weights(str(tmp_path / "w.h5"))
    clone = tiny(seed=5)
    clone.load_weights(str(tmp_path / "w.h5"))  # student-shaped weights file
    for a, b in zip(clone.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, b)
    cfg = data_config(source="synthetic", image_size=16)
    names = list(synthetic.CLASSES[:K])
    d.save(str(tmp_path / "student_keras"))  # a Keras SavedModel of the student
    loaded = keras.models.load_model(str(tmp_path / "student_keras"), compile=False)
    assert loaded.count_params() == student.count_params()
    path = export.export_saved_model(d.student, names, cfg, str(tmp_path / "exp"), "kd")
    assert saved_params(path) == student.count_params() != student.count_params() + teacher.count_params()
    probs, images = served_probs(path, cfg, names)
    np.testing.assert_allclose(probs, tf.nn.softmax(student(images, training=False)).numpy(), atol=1e-5)
    assert not np.allclose(probs, tf.nn.softmax(teacher(images, training=False)).numpy(), atol=1e-3)


def saved_params(path):
    """Values stored in a SavedModel's variables (the checkpoint's object graph left out)."""
    entries = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    return sum(int(np.prod(shape)) for name, shape in entries if not name.startswith("_CHECKPOINTABLE"))


def served_probs(path, data_cfg, names):
    """predict_strokes of the SavedModel on synthetic sketches, and their eval-path images."""
    sketches = [s for s in synthetic.generate(1, split="test") if s.label in names][:4]
    strokes, lengths = export.strokes_to_request([s.strokes for s in sketches])
    out = tf.saved_model.load(path).signatures["predict_strokes"](strokes=tf.constant(strokes),
                                                                   lengths=tf.constant(lengths))
    ds, _ = pipeline.make_dataset(data_cfg, "test", batch_size=4, training=False, records=sketches,
                                  class_names=names)
    return out["probabilities"].numpy(), next(iter(ds))[0]


def smoke_config(size=32):
    c = experiment("sketchnet", data=data_config(), model_kwargs=dict(filters=(4, 8, 8, 8), bottleneck=4, dense=8))
    return smoke(c, size)


def test_cache_reused_keyed_by_index_and_invalidated_when_teacher_changes(tmp_path):
    c = smoke_config()
    _, info = pipeline.make_dataset(c.data, "train", batch_size=16, training=False)
    names = info.class_names
    teacher = build_model("sketchnet", num_classes=len(names), input_shape=(32, 32, 1), filters=(4, 8, 8, 8),
                          bottleneck=4, dense=8)
    ckpt = tf.train.Checkpoint(model=teacher).write(str(tmp_path / "teacher" / "ckpt-1"))
    wd = str(tmp_path / "wd")
    logits, i1 = distill.load_or_build_cache(teacher, ckpt, c, names, wd, log=lambda s: None)
    assert i1["built"] and logits.shape == (info.num_examples, len(names))
    # Keyed by drawing index: logits[i] is the teacher on drawing i's clean render.
    clean, _ = pipeline.make_dataset(c.data, "train", batch_size=7, training=False, class_names=names,
                                     with_index=True)
    x, _, idx = next(iter(clean))
    np.testing.assert_allclose(logits[idx.numpy()], teacher(x, training=False).numpy(), atol=1e-5)
    # ... and the augmented training stream is paired with the same rows by index.
    train, _ = pipeline.make_dataset(c.data, "train", batch_size=16, training=True, class_names=names,
                                     with_index=True)
    ids = next(iter(train))[2].numpy()
    assert not np.array_equal(ids, np.sort(ids))  # shuffled: a positional lookup would be wrong
    # The index rides along in x here so that each batch's targets can be checked row by row.
    keep_index = train.map(lambda x, y, i: (i, y, i))
    for i, _, t in distill.with_cached_logits(keep_index, logits).take(2):
        np.testing.assert_array_equal(t.numpy(), logits[i.numpy()])
    ids2 = next(iter(train))[2].numpy()
    assert not np.array_equal(ids, ids2)  # each iteration reshuffles; only the index is a stable key
    # Reused as long as nothing changed.
    again, i2 = distill.load_or_build_cache(teacher, ckpt, c, names, wd, log=lambda s: None)
    assert not i2["built"] and i2["path"] == i1["path"]
    np.testing.assert_array_equal(again, logits)
    # A retrained teacher (new checkpoint) and other data invalidate it.
    teacher.get_layer("logits").kernel.assign_add(tf.ones_like(teacher.get_layer("logits").kernel))
    ckpt2 = tf.train.Checkpoint(model=teacher).write(str(tmp_path / "teacher" / "ckpt-2"))
    new, i3 = distill.load_or_build_cache(teacher, ckpt2, c, names, wd, log=lambda s: None)
    assert i3["built"] and i3["path"] != i1["path"] and not np.allclose(new, logits)
    assert not os.path.exists(i1["path"])  # the stale cache is removed
    c.data.line_width_px = 6.0
    assert distill.load_or_build_cache(teacher, ckpt2, c, names, wd, log=lambda s: None)[1]["built"]


def test_ensemble_teacher_is_the_mean_of_its_members_logits():
    a, b = tiny(seed=1), tiny(seed=3, filters=(8, 8, 8, 8))
    x, y = batch()
    ens = distill.ensemble([a, b])
    want = (a(x, training=False).numpy() + b(x, training=False).numpy()) / 2
    np.testing.assert_allclose(ens(x, training=False).numpy(), want, rtol=1e-5, atol=1e-6)
    assert ens.count_params() == a.count_params() + b.count_params()
    # Its top-1 on a labelled split is the mean logits' argmax against the labels.
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    top1 = scoring.predict_scores(ens, ds, [str(k) for k in range(K)])[0]["top1"]
    assert top1 == pytest.approx(float(np.mean(want.argmax(-1) == y)))


def test_cache_key_of_an_ensemble_covers_every_member(tmp_path):
    c = smoke_config()
    ckpts = [tf.train.Checkpoint(model=tiny(seed=s)).write(str(tmp_path / f"t{s}" / "ckpt-1")) for s in (1, 2)]
    single = distill.cache_key(ckpts[0], c.data, ["a"], 10)[1]
    assert distill.cache_key([ckpts[0]], c.data, ["a"], 10)[1] == single  # old single-teacher caches stay valid
    pair = distill.cache_key(ckpts, c.data, ["a"], 10)[1]
    assert pair != single and pair != distill.cache_key(ckpts[::-1], c.data, ["a"], 10)[1]
    assert distill.teacher_workdirs({"teacher_workdir": " runs/a, runs/b ,"}) == ["runs/a", "runs/b"]


def test_feature_distillation_loss_is_finite_and_projection_trains():
    teacher = tiny(seed=1, filters=(8, 16, 16, 16))
    student = tiny(seed=2)
    # Teacher block1_relu: 16x16x8; student block2_pool: 4x4x8 -> resized to 16x16, projected to 8 channels.
    d = distill.Distiller(student, teacher, feature=dict(teacher_layer="block1_relu", student_layer="block2_pool"))
    d.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=0.5, temperature=2.0, beta=1.0)
    proj_before = [w.copy() for w in d.projection.get_weights()]
    x, y = batch(16)
    hist = d.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    assert "feature_loss" in hist and all(np.isfinite(v) and v > 0 for v in hist["feature_loss"])
    assert hist["feature_loss"][-1] < hist["feature_loss"][0]
    assert any(not np.allclose(a, b) for a, b in zip(proj_before, d.projection.get_weights()))
    # The feature term adds beta * MSE to the logit losses.
    total, parts, _ = d.compute_losses(tf.constant(x), tf.constant(y), training=False)
    logit_only = 0.5 * parts["student_loss"] + 0.5 * 4.0 * parts["distillation_loss"]
    np.testing.assert_allclose(total.numpy(), (logit_only + parts["feature_loss"]).numpy(), rtol=1e-5)


def run(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(REPO))


def test_distill_entry_point_end_to_end_then_export_is_the_student(tmp_path):
    teacher_wd, wd = tmp_path / "teacher", tmp_path / "kd"
    from sketchtf.training import trainer
    teacher_cfg = smoke(experiment("sketchnet", data=data_config()))
    teacher_cfg.train.steps_per_epoch, teacher_cfg.train.verbose = 2, 0
    trainer.train_and_evaluate(teacher_cfg, str(teacher_wd))  # the teacher: a smoke SketchNet
    r = run("sketchtf.distill", f"--config={REPO}/configs/kd_qd10.py:mobilenetv2_s2,smoke", f"--workdir={wd}",
            f"--config.distill.teacher_workdir={teacher_wd}", "--config.train.steps_per_epoch=2")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((wd / "metrics.json").read_text())
    assert m["extra"]["teacher"] == "sketchnet" and m["extra"]["cache"] == "logits" and m["extra"]["cache_built"]
    hist = (wd / "history.csv").read_text().splitlines()[0].split(",")
    assert {"student_loss", "distillation_loss", "val_top1"} <= set(hist)
    assert list((wd / "teacher_cache").glob("logits-*.npz"))
    # The workdir's checkpoints are the student's: the export CLI's path gives a student-only SavedModel.
    from sketchtf.workdir import load_trained_model
    student, config, names = load_trained_model(str(wd))
    assert config.model.name == "mobilenetv2_s2"
    path = export.export_saved_model(student, names, config.data, str(tmp_path / "exp"), "kd")
    assert saved_params(path) == student.count_params()
    probs, images = served_probs(path, config.data, names)
    np.testing.assert_allclose(probs, tf.nn.softmax(student(images, training=False)).numpy(), atol=1e-5)
    assert 0.0 <= m["extra"]["teacher_eval_top1"] <= 1.0
    # Two teacher workdirs, comma-separated: one ensemble teacher, checked member by member.
    teacher_cfg.seed = 1
    trainer.train_and_evaluate(teacher_cfg, str(tmp_path / "teacher2"))
    config.distill.teacher_workdir = f"{teacher_wd},{tmp_path / 'teacher2'}"
    ens, ckpts, name = distill.load_teacher(config, names)
    assert name == "ensemble(sketchnet,sketchnet)" and len(ckpts) == 2 and ckpts[0] != ckpts[1]
    members = [load_trained_model(str(w))[0] for w in (teacher_wd, tmp_path / "teacher2")]
    np.testing.assert_allclose(ens(images, training=False).numpy(),
                               np.mean([m(images, training=False).numpy() for m in members], axis=0), atol=1e-5)
    config.distill.teacher_workdir = f"{teacher_wd},{tmp_path / 'missing'}"
    with pytest.raises(FileNotFoundError, match="missing"):
        distill.load_teacher(config, names)
