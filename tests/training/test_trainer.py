"""trainer library pieces that need no full run: init_from another workdir."""
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
