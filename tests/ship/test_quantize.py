"""QAT models build and convert to INT8 TFLite that runs in ai-edge-litert."""
import json

import numpy as np
import pytest

from sketchtf.ship import quantize
from sketchtf.config import experiment, smoke
from sketchtf.keras import keras
from sketchtf.models import build_model
from sketchtf.ship.tflite_runner import TFLiteClassifier

STUDENTS = ("sketchnet", "mobilenetv2", "mobilenetv2_s1", "mobilenetv2_s2")
SHAPE = (32, 32, 1)


@pytest.mark.parametrize("name", STUDENTS)
def test_qat_model_builds_for_each_student(name):
    m = build_model(name, num_classes=5, input_shape=SHAPE)
    before = [w.copy() for w in m.get_weights()]
    q = quantize.qat_model(m)
    plan = quantize.annotation_plan(m)
    # MobileNetV2's Rescaling is the one layer outside TFMOT's registry
    assert [p["layer"] for p in plan] == ([] if name == "sketchnet" else ["to_pm1"])
    assert q.get_layer("quant_block1_conv" if name == "sketchnet" else "quant_to_pm1")
    assert q.output_shape == (None, 5)
    # the float weights were copied into the QAT twin (first conv and the logits layer)
    first = "block1_conv" if name == "sketchnet" else "stem_conv"
    for layer in (first, "logits"):
        kernel = [w for w in q.get_layer("quant_" + layer).weights if w.name.endswith("/kernel:0")]
        np.testing.assert_array_equal(kernel[0].numpy(), m.get_layer(layer).kernel.numpy())
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_batch_norm_keeps_statistics_through_a_fit_step(freeze):
    q = quantize.qat_model(build_model("sketchnet", num_classes=5, input_shape=SHAPE))
    n_bn = sum(isinstance(getattr(l, "layer", l), keras.layers.BatchNormalization) for l in q.layers)
    if freeze:
        assert quantize.freeze_batch_norm(q) == n_bn == 5
    bn = q.get_layer("quant_block1_bn").layer
    before = [w.numpy().copy() for w in (bn.moving_mean, bn.moving_variance, bn.gamma)]
    q.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    q.fit(rng.random((16, *SHAPE), np.float32), rng.integers(0, 5, 16), epochs=1, verbose=0)
    after = [w.numpy() for w in (bn.moving_mean, bn.moving_variance, bn.gamma)]
    same = [np.array_equal(a, b) for a, b in zip(before, after)]
    assert same == ([True] * 3 if freeze else [False] * 3)


class _NotInRegistry(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_unquantizable_layer_is_named():
    inp = keras.Input(SHAPE)
    m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(_NotInRegistry(name="odd")(inp))))
    with pytest.raises(ValueError, match="odd"):
        quantize.qat_model(m)


def _calibrate(model, n=8):
    x = np.random.default_rng(1).random((n, *SHAPE), np.float32)
    model(x, training=True)  # lets the fake-quants see activation ranges
    return x


@pytest.mark.parametrize("name,io", [("sketchnet", "int8"), ("sketchnet", "uint8"), ("mobilenetv2_s2", "int8")])
def test_int8_tflite_runs_in_litert_and_matches_qat_keras(name, io):
    q = quantize.qat_model(build_model(name, num_classes=5, input_shape=SHAPE))
    x = _calibrate(q)
    r = TFLiteClassifier(quantize.to_tflite(q, x, io_dtype=io), num_threads=1)
    assert r.input_dtype == np.dtype(io) and r.output_dtype == np.dtype(io)
    # fully INT8: no float compute op; QUANTIZE/DEQUANTIZE only re-scale at the edges
    float_ops = set(r.op_names()) - {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE",
                                     "ADD", "MUL", "MEAN", "QUANTIZE", "DEQUANTIZE", "DELEGATE"}
    assert not float_ops
    got, want = r.predict(x), q(x, training=False).numpy()
    out_scale = r._out["quantization"][0]
    assert np.max(np.abs(got - want)) <= 4 * out_scale + 1e-6


def test_to_tflite_checks_arguments():
    m = build_model("sketchnet", num_classes=3, input_shape=SHAPE)
    with pytest.raises(ValueError, match="io_dtype"):
        quantize.to_tflite(m, np.zeros((1, *SHAPE), np.float32), io_dtype="int4")
    with pytest.raises(ValueError, match="representative"):
        quantize.to_tflite(m, None)


def _near_tie_model(name, delta=0.01):
    """A student whose classes 0 and 1 get the same logit plus delta for class 1
    (same weights, bias + delta), with the other classes far below: the float
    model always answers 1, and a logit grid coarser than delta makes it a tie."""
    m = build_model(name, num_classes=5, input_shape=SHAPE)
    head = m.layers[-1]
    w, b = head.get_weights()
    w[:, 1] = w[:, 0]
    b[1] = b[0] + delta
    b[2:] = -20.0  # spreads the output range: an int8 step of ~0.1
    head.set_weights([w, b])
    return m


@pytest.mark.parametrize("name", ["sketchnet", "mobilenetv2_s2"])
def test_float_head_keeps_the_classifier_float_and_breaks_output_ties(name):
    m = _near_tie_model(name)
    x = np.random.default_rng(1).random((16, *SHAPE), np.float32)
    assert (m(x, training=False).numpy().argmax(1) == 1).all()
    full = TFLiteClassifier(quantize.to_tflite(m, x, io_dtype="float32"), num_threads=1)
    head = TFLiteClassifier(quantize.to_tflite(m, x, io_dtype="float32", float_head=True), num_threads=1)
    # fully INT8: classes 0 and 1 mostly land on the same output step (0.01 of a
    # ~0.1 step: a tie unless the two straddle a rounding edge), and a tie goes to 0
    out = full.predict(x)
    top2 = np.sort(out, 1)[:, -2:]
    ties = top2[:, 0] == top2[:, 1]
    assert ties.mean() >= 0.5 and (out[ties].argmax(1) == 0).all()
    # the float classifier keeps the 0.01 apart: the float model's answer
    got = head.predict(x)
    assert head.input_dtype == np.float32 and head.output_dtype == np.float32
    assert (got.argmax(1) == 1).all()
    np.testing.assert_allclose(got[:, 1] - got[:, 0], 0.01, rtol=1e-3)
    # the body is still INT8: its conv weights are int8 tensors
    dtypes = [d["dtype"] for d in head.interpreter.get_tensor_details()]
    assert dtypes.count(np.int8) >= 5


def test_float_head_arguments():
    m = build_model("sketchnet", num_classes=3, input_shape=SHAPE)
    x = np.zeros((2, *SHAPE), np.float32)
    with pytest.raises(ValueError, match="float32"):
        quantize.to_tflite(m, x, io_dtype="int8", float_head=True)
    with pytest.raises(ValueError, match="PTQ"):
        quantize.to_tflite(quantize.qat_model(m), x, io_dtype="float32", float_head=True)


def test_calibration_counts_favour_worst_classes():
    c = quantize.calibration_counts([1.0, 0.9, 0.6, 0.8], total=101, worst_boost=2.0)
    assert c.sum() == 101
    assert np.argmax(c) == 2 and np.argmin(c) == 0
    assert c[2] == pytest.approx(3 * c[0], abs=2)  # worst class: 1 + boost shares
    assert list(quantize.calibration_counts([1.0, 1.0], total=7)) in ([4, 3], [3, 4])


def _smoke_qat_config(tmp_path, **quantize_overrides):
    """A smoke float SketchNet trained in tmp_path/float, and a QAT config pointing at it."""
    from sketchtf.training import trainer
    float_cfg = smoke(experiment("sketchnet"), image_size=32)
    float_cfg.data.synthetic_per_class = 2
    trainer.train_and_evaluate(float_cfg, str(tmp_path / "float"))
    c = smoke(experiment("sketchnet"), image_size=32)
    c.data.synthetic_per_class = 2
    c.quantize = quantize.quantize_defaults()
    c.quantize.update(dict(float_workdir=str(tmp_path / "float"), representative_size=24, probe_per_class=2,
                           **quantize_overrides))
    return c


def test_qat_job_fine_tunes_and_writes_float_ptq_qat_tflite(tmp_path):
    c = _smoke_qat_config(tmp_path)
    out = quantize.quantize_and_export(c, str(tmp_path / "qat"))
    assert sorted(out["files"]) == ["float", "ptq_int8", "qat_int8"]
    assert out["calibration"]["total"] == 24
    assert out["sizes"]["qat_int8"] < out["sizes"]["float"] / 3  # 8-bit weights
    saved = json.loads((tmp_path / "qat" / "tflite" / "quantize.json").read_text())
    assert saved["sizes"] == out["sizes"]
    assert (tmp_path / "qat" / "metrics.json").exists()  # the usual training report
    qm, _, names = quantize.load_qat_model(str(tmp_path / "qat"))
    assert qm.output_shape == (None, len(names))
    # a float run of another size is refused with the key that differs
    c.data.image_size = 48
    with pytest.raises(ValueError, match="data.image_size"):
        quantize.quantize_and_export(c, str(tmp_path / "bad"))
    c.data.image_size, c.data.valid_fraction = 32, 0.1  # and one with another valid split
    with pytest.raises(ValueError, match="data.valid_fraction"):
        quantize.quantize_and_export(c, str(tmp_path / "bad2"))


def test_ptq_job_with_float_head(tmp_path):
    """The config's float_head arg: PTQ with the classifier float, float32 in and out,
    recorded in quantize.json; QAT with float_head is refused."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[2] / "configs" / "qat_sketchnet_qd10.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    c = _smoke_qat_config(tmp_path)
    c.quantize.update(dict(cfg.get_config("float_head").quantize.items()),
                      float_workdir=c.quantize.float_workdir, representative_size=24, probe_per_class=2)
    assert (c.quantize.mode, c.quantize.io_dtype, c.quantize.float_head) == ("ptq", "float32", True)
    out = quantize.quantize_and_export(c, str(tmp_path / "ptq"))
    assert sorted(out["files"]) == ["float", "ptq_int8"] and out["float_head"] is True
    r = TFLiteClassifier(out["files"]["ptq_int8"])
    assert r.input_dtype == np.float32 and r.output_dtype == np.float32
    assert out["sizes"]["ptq_int8"] < out["sizes"]["float"] / 3  # the body's weights are 8-bit
    c.quantize.mode = "qat"
    with pytest.raises(ValueError, match="float_head"):
        quantize.quantize_and_export(c, str(tmp_path / "bad"))


def test_qat_fine_tune_can_distill_from_the_float_model(tmp_path):
    """quantize.distill: the fine-tune minimizes the Distiller's loss against the float
    model's logits (alpha 0: labels unused), and the run records its settings."""
    c = _smoke_qat_config(tmp_path, distill=True, distill_alpha=0.0, distill_temperature=2.0, freeze_bn=True)
    out = quantize.quantize_and_export(c, str(tmp_path / "qat"))
    assert out["frozen_batch_norm"] == 5 and "qat_int8" in out["files"]
    metrics = json.loads((tmp_path / "qat" / "metrics.json").read_text())
    assert metrics["extra"]["distill_alpha"] == 0.0 and metrics["extra"]["distill_temperature"] == 2.0
    history = (tmp_path / "qat" / "history.csv").read_text().splitlines()[0]
    assert "distillation_loss" in history  # the Distiller's loss was what fit minimized


def _scores(top1, per_class):
    return dict(top1=top1, per_class={c: dict(accuracy=a) for c, a in per_class.items()})


def test_gate_score_puts_any_lost_class_before_top1():
    """A fine-tune epoch that loses a drawing in one class scores below one that loses
    none, even with a higher top-1; epochs the evaluator skipped get no score."""
    float_scores = _scores(0.9, dict(a=0.9, b=0.9))
    gate = quantize.GateScore(float_scores)
    gate.evaluator = type("E", (), {})()
    gate.evaluator.last = _scores(0.95, dict(a=1.0, b=0.88))   # +5 top-1, but b loses 2 pt
    lossy = {"val_top1": 0.95}
    gate.on_epoch_end(0, lossy)
    gate.evaluator.last = _scores(0.91, dict(a=0.92, b=0.9))   # loses nothing
    clean = {"val_top1": 0.91}
    gate.on_epoch_end(1, clean)
    assert lossy["val_max_class_loss_pts"] == pytest.approx(2.0)
    assert clean["val_max_class_loss_pts"] == pytest.approx(0.0)
    assert clean["val_gate_score"] == pytest.approx(0.091)
    assert lossy["val_gate_score"] == pytest.approx(0.095 - 2.0)
    assert lossy["val_gate_score"] < clean["val_gate_score"]
    skipped = {"loss": 1.0}
    gate.on_epoch_end(2, skipped)
    assert "val_gate_score" not in skipped


def _tiny_qat_run(tmp_path, select, epochs):
    """A tiny float run and a QAT fine-tune of it choosing on valid with
    quantize.select: (config, workdir, quantize summary, history rows)."""
    import csv
    from sketchtf.training import trainer
    float_cfg = smoke(experiment("sketchnet"), image_size=32)
    float_cfg.data.update(dict(synthetic_per_class=6, valid_fraction=0.3))
    float_cfg.eval_split = "valid"
    trainer.train_and_evaluate(float_cfg, str(tmp_path / "float"))
    c = smoke(experiment("sketchnet"), image_size=32)
    c.data.update(dict(synthetic_per_class=6, valid_fraction=0.3))
    c.eval_split = "valid"
    c.train.update(dict(epochs=epochs, lr=3e-2))
    c.quantize = quantize.quantize_defaults()
    c.quantize.update(dict(float_workdir=str(tmp_path / "float"), representative_size=24, probe_per_class=2,
                           select=select))
    wd = tmp_path / "qat"
    out = quantize.quantize_and_export(c, str(wd))
    return c, wd, out, list(csv.DictReader(open(wd / "history.csv")))


def test_gate_score_can_score_the_tflite_file_instead_of_keras():
    """With tflite_scores the gate's measure is the converted file's, not the
    Keras QAT model's: here Keras loses nothing but the file loses 3 pt in b."""
    float_scores = _scores(0.9, dict(a=0.9, b=0.9))
    gate = quantize.GateScore(float_scores, tflite_scores=lambda: _scores(0.89, dict(a=0.91, b=0.87)))
    gate.evaluator = type("E", (), {})()
    gate.evaluator.last = _scores(0.92, dict(a=0.92, b=0.92))
    logs = {"val_top1": 0.92}
    gate.on_epoch_end(0, logs)
    assert logs["val_tflite_top1"] == pytest.approx(0.89)
    assert logs["val_max_class_loss_pts"] == pytest.approx(3.0)
    assert logs["val_keras_max_class_loss_pts"] == pytest.approx(-2.0)  # Keras gains 2 pt in each class
    assert logs["val_gate_score"] == pytest.approx(0.089 - 3.0)


def test_qat_select_gate_tflite_keeps_the_epoch_whose_file_scores_best(tmp_path):
    """select="gate_tflite": every evaluated epoch is converted and scored as a
    TFLite file; the kept epoch is the best of those, and the shipped
    qat_int8.tflite (converted from it) scores on valid what that epoch logged."""
    from sketchtf.ship.tflite_runner import evaluate_tflite
    c, wd, out, rows = _tiny_qat_run(tmp_path, "gate_tflite", epochs=2)
    assert len(rows) == 2 and all("val_tflite_top1" in r for r in rows)
    scores = [float(r["val_gate_score"]) for r in rows]
    best = json.loads((wd / "checkpoints" / "best" / "best.json").read_text())
    assert best["monitor"] == "val_gate_score" and best["epoch"] == 1 + int(np.argmax(scores))
    kept = rows[int(np.argmax(scores))]
    assert float(kept["val_gate_score"]) == pytest.approx(
        float(kept["val_tflite_top1"]) / 10 - max(0.0, float(kept["val_max_class_loss_pts"])), abs=1e-6)
    shipped, _ = evaluate_tflite(str(wd), out["files"]["qat_int8"], split="valid")
    assert shipped["top1"] == pytest.approx(float(kept["val_tflite_top1"]), abs=1e-6)
    assert json.loads((wd / "metrics.json").read_text())["extra"]["select"] == "gate_tflite"


def test_qat_select_gate_keeps_the_epoch_with_the_best_gate_score(tmp_path):
    c, wd, _, rows = _tiny_qat_run(tmp_path, "gate", epochs=3)
    assert len(rows) == 3
    for r in rows:
        loss = float(r["val_max_class_loss_pts"])
        assert float(r["val_gate_score"]) == pytest.approx(float(r["val_top1"]) / 10 - max(0.0, loss), abs=1e-6)
    best = json.loads((wd / "checkpoints" / "best" / "best.json").read_text())
    scores = [float(r["val_gate_score"]) for r in rows]
    assert best["monitor"] == "val_gate_score" and best["epoch"] == 1 + int(np.argmax(scores))
    metrics = json.loads((wd / "metrics.json").read_text())
    assert metrics["extra"]["select"] == "gate"
    c.quantize.select = "best"
    with pytest.raises(ValueError, match="quantize.select"):
        quantize.quantize_and_export(c, str(tmp_path / "bad"))
