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


def _strip_logits(x, k):
    """Logits = the ink mean of k vertical 2 px strips, each with its own weight
    (no two strips tie by symmetry): depends on where the ink is, so the corner
    crops and their mirror images disagree."""
    return [x[..., 2 * c:2 * c + 2].mean() * (20 + 7 * c) for c in range(k)]


def test_ten_view_vote_is_the_majority_of_the_ten_crops():
    import tensorflow as tf
    from sketchtf.data import pipeline
    from sketchtf.keras import keras
    c = smoke(experiment("sketchanet"), image_size=24)
    c.data.render_size = 32
    classes = list(synthetic.CLASSES)
    k = len(classes)
    inp = keras.Input((24, 24, 1))
    out = keras.layers.Lambda(lambda x: tf.stack(
        [tf.reduce_mean(x[:, :, 2 * c:2 * c + 2, 0], [1, 2]) * (20 + 7 * c) for c in range(k)], -1))(inp)
    m = evaluate.evaluate_ten_view(keras.Model(inp, out), c, classes)
    # The oracle, in numpy: crops at the 4 corners and the centre, their mirrors,
    # one vote each, ties broken by the summed probabilities.
    full = c.data.copy_and_resolve_references()
    full.image_size, full.render_size = 32, 0
    ds, _ = pipeline.make_dataset(full, "test", batch_size=8, training=False, class_names=classes)
    voted, centre, labels = [], [], []
    for x, y in ds:
        for img in x.numpy()[..., 0]:
            views = [img[t:t + 24, l:l + 24] for t, l in [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]]
            logits = np.array([_strip_logits(v, k) for v in views + [v[:, ::-1] for v in views]])
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            votes = np.bincount(probs.argmax(1), minlength=k)
            best = np.flatnonzero(votes == votes.max())
            voted.append(best[np.argmax(probs.sum(0)[best])])
            centre.append(int(np.argmax(logits[4])))
        labels += list(y.numpy())
    want = np.zeros((k, k), np.int64)
    np.add.at(want, (np.array(labels), np.array(voted)), 1)
    np.testing.assert_array_equal(np.asarray(m["confusion"]), want)
    assert voted != centre  # the vote is more than the centre view


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
