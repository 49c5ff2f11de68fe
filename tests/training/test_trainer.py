"""trainer library pieces: init_from another workdir; choosing the model on valid."""
import numpy as np
import pytest
import tensorflow as tf

from sketchtf.training import trainer
from sketchtf.models import build_model


def _saved_run(tmp_path, name="sketchnet", shape=(32, 32, 1)):
    model = build_model(name, num_classes=3, input_shape=shape)
    tf.train.Checkpoint(model=model).save(str(tmp_path / "checkpoints" / "ckpt"))
    return model


def test_init_from_workdir_copies_every_weight(tmp_path):
    src = _saved_run(tmp_path)
    dst = build_model("sketchnet", num_classes=3, input_shape=(32, 32, 1))
    assert not np.allclose(src.weights[0].numpy(), dst.weights[0].numpy())
    trainer.init_from_workdir(dst, str(tmp_path))
    for a, b in zip(src.weights, dst.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_init_from_a_different_architecture_fails(tmp_path):
    _saved_run(tmp_path, "sketchnet")
    other = build_model("mobilenetv2_s2", num_classes=3, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="init_from: cannot start"):
        trainer.init_from_workdir(other, str(tmp_path))


def test_init_from_without_checkpoints_names_the_folder(tmp_path):
    model = build_model("sketchnet", num_classes=3, input_shape=(32, 32, 1))
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        trainer.init_from_workdir(model, str(tmp_path))


def _valid_smoke(tmp_path, **train):
    from sketchtf.config import experiment, smoke
    c = smoke(experiment("sketchnet", model_kwargs=dict(filters=(4, 8, 8, 8), bottleneck=4, dense=8)))
    c.data.synthetic_per_class = 10
    c.data.valid_fraction = 0.3
    c.eval_split = "valid"
    c.train.update(train)
    return c


def test_keep_best_refuses_to_choose_on_test(tmp_path):
    c = _valid_smoke(tmp_path, keep_best=True)
    c.eval_split = "test"
    with pytest.raises(ValueError, match="eval_split='valid'"):
        trainer.train_and_evaluate(c, str(tmp_path / "run"))


def test_keep_best_loads_the_epoch_chosen_on_valid(tmp_path):
    import csv
    import json
    import numpy as np
    import tensorflow as tf
    from sketchtf import workdir as run_folder
    c = _valid_smoke(tmp_path, keep_best=True, epochs=4, lr=3e-2)
    wd = tmp_path / "run"
    result = trainer.train_and_evaluate(c, str(wd))
    rows = list(csv.DictReader(open(wd / "history.csv")))
    scores = [float(r["val_top1"]) for r in rows]
    best = json.loads((wd / "checkpoints" / "best" / "best.json").read_text())
    assert best["epoch"] == 1 + int(np.argmax(scores)) and best["value"] == pytest.approx(max(scores))
    assert result["top1"] == pytest.approx(max(scores))  # the report is the chosen model's
    assert run_folder.latest_checkpoint(str(wd)).startswith(str(wd / "checkpoints" / "best"))
    model, config, names = run_folder.load_trained_model(str(wd))
    chosen = run_folder.build_config_model(config, len(names))
    tf.train.Checkpoint(model=chosen).restore(best["checkpoint"]).expect_partial()
    for a, b in zip(model.get_weights(), chosen.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_stops_on_valid(tmp_path):
    import csv
    c = _valid_smoke(tmp_path, early_stop_patience=1, epochs=12, lr=0.0)  # lr 0: valid never improves
    wd = tmp_path / "run"
    trainer.train_and_evaluate(c, str(wd))
    assert len(list(csv.DictReader(open(wd / "history.csv")))) == 2  # epoch 1, then 1 without gain
