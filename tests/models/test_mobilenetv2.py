import numpy as np
import pytest

from sketchtf.keras import keras
from sketchtf.models import build_model
from sketchtf.models import mobilenetv2 as mnv2


def _names(model):
    return {layer.name for layer in model.layers}


def _randomize(model, seed=0):
    """Distinct weights everywhere (BN variances positive), so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            new = [rng.normal(0, 0.2, w.shape).astype(np.float32) for w in ws]
            if isinstance(layer, keras.layers.BatchNormalization):
                new[0] = 1.0 + 0.1 * new[0]
                new[-1] = rng.uniform(0.5, 1.5, ws[-1].shape).astype(np.float32)
            layer.set_weights(new)


@pytest.fixture(scope="module")
def keras_ckpt(tmp_path_factory):
    """A random Keras MobileNetV2 no-top checkpoint file and its model."""
    ref = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None,
                                         pooling="avg")
    _randomize(ref)
    path = tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_random_no_top.h5"
    ref.save_weights(str(path))
    return ref, str(path)


def test_block_list_is_the_standard_table():
    specs = mnv2.block_specs()
    assert [i for i, *_ in specs] == list(range(1, 18))
    assert [c for _, _, c, _ in specs] == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96,
                                           160, 160, 160, 320]
    assert [i for i, _, _, s in specs if s == 2] == [2, 4, 7, 14]


def test_student_layer_lists():
    assert mnv2.kept_layers(mnv2.STRATEGY_1_REMOVED) == [0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 14, 15, 17, 18]
    assert mnv2.kept_layers(mnv2.STRATEGY_2_REMOVED) == list(range(15))
    assert len(mnv2.kept_layers(mnv2.STRATEGY_1_REMOVED)) == len(mnv2.kept_layers(mnv2.STRATEGY_2_REMOVED)) == 15
    with pytest.raises(ValueError, match="1..18"):
        mnv2.kept_layers((0,))


def test_full_param_count_equals_keras():
    ours = build_model("mobilenetv2", num_classes=1000, input_shape=(96, 96, 3))
    ref = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None)
    assert ours.count_params() == ref.count_params() == 3_538_984


def test_alpha_param_count_equals_keras():
    ours = build_model("mobilenetv2", num_classes=1000, input_shape=(96, 96, 3), alpha=0.5)
    ref = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5, weights=None)
    assert ours.count_params() == ref.count_params()


def test_students_blocks_and_names():
    s1 = build_model("mobilenetv2_s1", num_classes=10, input_shape=(32, 32, 1))
    s2 = build_model("mobilenetv2_s2", num_classes=10, input_shape=(32, 32, 1))
    f1, f2 = mnv2.feature_layer_names(s1), mnv2.feature_layer_names(s2)
    assert sorted(f1) == mnv2.kept_layers(mnv2.STRATEGY_1_REMOVED)
    assert sorted(f2) == list(range(15))
    assert f1[12] == "block_12_add" and f1[14] == "block_14_project_bn" and f1[18] == "head_relu"
    assert not any(n.startswith(("block_6_", "block_10_", "block_13_", "block_16_")) for n in _names(s1))
    assert "head_conv" not in _names(s2) and "block_14_project_bn" in _names(s2)
    assert s2.get_layer("avg_pool").input.shape[-1] == 160
    assert s1.get_layer("avg_pool").input.shape[-1] == 1280


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv2_s1", "mobilenetv2_s2"])
def test_tiny_forward(name):
    m = build_model(name, num_classes=10, input_shape=(32, 32, 1))
    y = m(np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32), training=True)
    assert y.shape == (2, 10) and np.isfinite(y.numpy()).all()


def _pooled(model):
    return keras.Model(model.input, model.get_layer("avg_pool").output)


def test_keras_checkpoint_mapping_matches_keras(keras_ckpt):
    ref, path = keras_ckpt
    x = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    ours = build_model("mobilenetv2", num_classes=5, input_shape=(32, 32, 3), weights=path)
    want = ref(2.0 * x - 1.0, training=False).numpy()  # Keras expects [-1, 1]
    np.testing.assert_allclose(_pooled(ours)(x, training=False), want, rtol=1e-4, atol=1e-4)


def test_gray_input_sums_stem_over_rgb(keras_ckpt):
    ref, path = keras_ckpt
    g = np.random.default_rng(3).random((2, 32, 32, 1), dtype=np.float32)
    ours = build_model("mobilenetv2", num_classes=5, input_shape=(32, 32, 1), weights=path)
    want = ref(np.repeat(2.0 * g - 1.0, 3, axis=-1), training=False).numpy()
    np.testing.assert_allclose(_pooled(ours)(g, training=False), want, rtol=1e-4, atol=1e-4)


def test_students_get_kept_blocks(keras_ckpt):
    ref, path = keras_ckpt
    s1 = build_model("mobilenetv2_s1", num_classes=5, input_shape=(32, 32, 3), weights=path)
    # Our block 7 is Keras' block_6 (Keras numbers blocks from 0).
    for ours, theirs in [("block_7_expand", "block_6_expand"), ("block_17_project_bn", "block_16_project_BN"),
                         ("block_1_depthwise", "expanded_conv_depthwise"), ("head_conv", "Conv_1")]:
        for a, b in zip(s1.get_layer(ours).get_weights(), ref.get_layer(theirs).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_transfer_weights_teacher_to_student():
    teacher = build_model("mobilenetv2", num_classes=10, input_shape=(32, 32, 1))
    _randomize(teacher, seed=5)
    student = build_model("mobilenetv2_s2", num_classes=3, input_shape=(32, 32, 1))
    copied = mnv2.transfer_weights(teacher, student)
    assert "block_14_project" in copied and "stem_conv" in copied and "logits" not in copied
    np.testing.assert_array_equal(student.get_layer("block_9_expand").get_weights()[0],
                                  teacher.get_layer("block_9_expand").get_weights()[0])


def test_weights_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        build_model("mobilenetv2", num_classes=3, input_shape=(32, 32, 1), weights=str(missing))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.h5.*not a Keras MobileNetV2"):
        build_model("mobilenetv2", num_classes=3, input_shape=(32, 32, 1), weights=str(junk))
    with pytest.raises(ValueError, match="1 or 3 input channels"):
        build_model("mobilenetv2", num_classes=3, input_shape=(32, 32, 6), weights="imagenet")

    # Offline: what keras.utils.get_file raises when the URL cannot be fetched.
    def offline(fname, origin, **kw):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="could not get ImageNet weights.*weights=<path>"):
        build_model("mobilenetv2_s1", num_classes=3, input_shape=(32, 32, 1), weights="imagenet")
