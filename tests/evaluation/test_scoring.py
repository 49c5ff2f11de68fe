import numpy as np

from sketchtf import workdir as run_folder
from sketchtf.evaluation import scoring as evaluate
from sketchtf.config import experiment, smoke
from sketchtf.data import synthetic
from sketchtf.models import build_model


def test_ten_view_vote_covers_every_test_sketch():
    c = smoke(experiment("sketchanet"), image_size=88)
    c.data.render_size = 96
    classes = list(synthetic.CLASSES)
    model = build_model("sketchanet", num_classes=len(classes), input_shape=(88, 88, 1))
    m = evaluate.evaluate_ten_view(model, c, classes)
    assert m["num_examples"] == 2 * len(classes)
    assert 0.0 <= m["top1"] <= m["top5"] <= 1.0
    assert np.asarray(m["confusion"]).sum() == m["num_examples"]


def test_ten_view_needs_a_larger_render():
    import pytest
    c = smoke(experiment("sketchanet"), image_size=88)
    with pytest.raises(ValueError, match="render_size"):
        evaluate.evaluate_ten_view(None, c, list(synthetic.CLASSES))


def test_tflite_evaluation_equals_keras_within_the_gate(tmp_path):
    import json
    from sketchtf.training import trainer
    from sketchtf.ship.quantize import float_tflite
    c = smoke(experiment("sketchnet"), image_size=32)
    wd = str(tmp_path / "run")
    trainer.train_and_evaluate(c, wd)
    model, config, classes = run_folder.load_trained_model(wd)
    path = tmp_path / "float.tflite"
    path.write_bytes(float_tflite(model))
    keras_m, _ = evaluate.evaluate_workdir(wd, "test")
    from sketchtf.ship.tflite_runner import evaluate_tflite
    tfl_m, out = evaluate_tflite(wd, str(path), "test")
    assert out.endswith("eval_test_float")
    # gate: <= 1 % of test images may change class between Keras and TFLite float
    cm_k, cm_t = np.asarray(keras_m["confusion"]), np.asarray(tfl_m["confusion"])
    assert np.abs(cm_k - cm_t).sum() / 2 <= 0.01 * keras_m["num_examples"]
    saved = json.loads((tmp_path / "run" / "eval_test_float" / "metrics.json").read_text())
    assert saved["top1"] == tfl_m["top1"] and saved["extra"]["io_dtype"] == "float32"
