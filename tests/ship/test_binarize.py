"""Converter to packed 1-bit inference models: equality with the Keras float
simulation on briefly trained nets, the file format, sizes, and errors."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sketchtf.ship import binarize
from sketchtf.training.callbacks import predict_scores
from sketchtf.config import save_config
from sketchtf.keras import keras
from sketchtf.layers import BinaryConv2D, BinaryDense
from sketchtf.training.trainer import build_data, compile_model, make_model

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = ["L2", "L3", "L4", "L5", "L6", "L7"]


def _config(name, arg="smoke"):
    import importlib.util
    spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / f"{name}_qd10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _trained(name, arg="smoke", steps=4):
    """A model trained a few steps on the smoke data (so BN statistics, biases and
    weights are no longer at their initial values), plus a batch of eval images."""
    c = _config(name, arg)
    keras.utils.set_random_seed(0)
    train_ds, info, eval_ds, _ = build_data(c)
    model = make_model(c, len(info.class_names))
    compile_model(model, c, steps)
    model.fit(train_ds, epochs=1, steps_per_epoch=steps, verbose=0)
    images = next(iter(eval_ds))[0][:6]
    return model, c, info.class_names, images


@pytest.fixture(scope="module")
def binary_run():
    return _trained("sketchanet_binary")


@pytest.fixture(scope="module")
def xnor_run():
    return _trained("sketchanet_xnor", "smoke,input_scaling")


@pytest.fixture(scope="module")
def xnor_plain_run():
    """XNOR without K: what the packed model serves through norm_bitpack."""
    return _trained("sketchanet_xnor", "smoke", steps=2)


def _layer_inputs(model, names, images):
    probe = keras.Model(model.input, [model.get_layer(n).input for n in names])
    outs = probe(images, training=False)
    return dict(zip(names, outs if len(names) > 1 else [outs]))


def _sign(x):
    return tf.where(x >= 0, 1.0, -1.0)


def test_xnor_integer_sums_equal_the_float_simulation_exactly(xnor_run):
    model, _, _, images = xnor_run
    packed = binarize.pack_model(model)
    inputs = _layer_inputs(model, BINARY, images)
    for name in BINARY:
        layer, x = model.get_layer(name), inputs[name]
        # What the layer convolves, before alpha and K: sign(x) * sign(W); +-1 sums
        # are integers far below 2^24, so float32 holds them exactly.
        ref = tf.nn.conv2d(_sign(x), _sign(layer.kernel), list(layer.strides),
                           layer.padding.upper())
        dot = packed.step(name).dot(x)
        assert dot.dtype == tf.int32
        np.testing.assert_array_equal(dot.numpy(), ref.numpy().astype(np.int32), err_msg=name)
        assert len(np.unique(dot.numpy())) > 3, f"{name}: degenerate sums prove nothing"


def _check_layers_and_logits(model, packed, images, names):
    inputs = _layer_inputs(model, names, images)
    for name in names:
        want = model.get_layer(name)(inputs[name], training=False).numpy()
        got = packed.step(name)(inputs[name]).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max() + 1e-6,
                                   err_msg=name)
    want = model(images, training=False).numpy()
    got = packed(images).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max() + 1e-6)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    return got


def test_binary_weight_model_matches_float_simulation(binary_run):
    model, _, _, images = binary_run
    packed = binarize.pack_model(model)
    kinds = {e["config"]["name"]: e["kind"] for e in packed.entries}
    assert all(kinds[n] == "binary_weight_conv2d" for n in BINARY)
    assert kinds["L1"] == kinds["L8"] == "keras"
    _check_layers_and_logits(model, packed, images, BINARY)


def test_xnor_model_matches_float_simulation(xnor_run):
    model, _, _, images = xnor_run
    packed = binarize.pack_model(model)
    assert all(e["kind"] == "xnor_conv2d" for e in packed.entries if e["config"]["name"] in BINARY)
    assert all(e["config"]["input_scaling"] for e in packed.entries if e["kind"] == "xnor_conv2d")
    _check_layers_and_logits(model, packed, images, BINARY)


def test_served_xnor_model_fuses_pool_norm_sign_exactly(xnor_plain_run):
    """Without K, the packed XNOR model serves [pool ->] BN -> sign -> L2..L7 as one
    norm_bitpack op per layer: logits equal the unfused steps' exactly, and the
    Keras model's within float tolerance. With K (xnor_run) nothing is fused."""
    model, _, _, images = xnor_plain_run
    packed = binarize.pack_model(model, ink_first_layer=False)
    fused = [s for s in packed._plan.value if isinstance(s, binarize._NormSignStep)]
    assert [s.xnor_step.config["name"] for s in fused] == BINARY
    assert [s.pool_size for s in fused] == [3, 3, 1, 1, 3, 1]  # pool1, pool2, pool5 in front
    # Up to L8 (a matmul when served, _MatmulStep) the served values equal the unfused steps'.
    names = [e["config"]["name"] for e in packed.entries]
    y = tf.convert_to_tensor(images)
    for step in packed.steps[:names.index("L8")]:
        y = step(y)
    z = tf.convert_to_tensor(images)
    for step in packed._plan.value[:[type(s) for s in packed._plan.value].index(binarize._MatmulStep)]:
        z = step(z)
    np.testing.assert_array_equal(z.numpy(), y.numpy())
    got = packed(images).numpy()
    want = model(images, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max() + 1e-6)


def test_served_binary_weight_model_fuses_its_pools(binary_run):
    """The binary-weight model serves pool1 -> L2, pool2 -> L3, pool5 -> L6 as one op
    each (the pool inside binary_weight_conv2d): up to L8 the same values as the
    unfused steps, exactly; logits within float tolerance of the Keras model."""
    model, _, _, images = binary_run
    packed = binarize.pack_model(model, ink_first_layer=False)
    plan = packed._plan.value
    fused = [s for s in plan if isinstance(s, binarize._PoolBinaryWeightStep)]
    assert [s.bw_step.config["name"] for s in fused] == ["L2", "L3", "L6"]
    assert [(s.pool_size, s.pool_stride) for s in fused] == [(3, 2)] * 3
    assert not any(getattr(getattr(s, "layer", None), "name", "").startswith("pool") for s in plan)
    names = [e["config"]["name"] for e in packed.entries]
    y = tf.convert_to_tensor(images)
    for step in packed.steps[:names.index("L8")]:
        y = step(y)
    z = tf.convert_to_tensor(images)
    for step in plan[:[type(s) for s in plan].index(binarize._MatmulStep)]:
        z = step(z)
    np.testing.assert_array_equal(z.numpy(), y.numpy())
    got, want = packed(images).numpy(), model(images, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max() + 1e-6)


def test_served_last_conv_is_a_matmul_and_dropout_is_dropped(binary_run, xnor_plain_run):
    """L8, a VALID float conv over its whole (1x1) input, is served as one matmul, equal to the
    Keras layer up to summation order; Dropout, identity at inference, is not a served step."""
    for model, _, _, images in (binary_run, xnor_plain_run):
        packed = binarize.pack_model(model)
        plan = packed._plan.value
        matmuls = [s for s in plan if isinstance(s, binarize._MatmulStep)]
        assert [s.layer.name for s in matmuls] == ["L8"]
        assert not any(isinstance(getattr(s, "layer", None), binarize.keras.layers.Dropout) for s in plan)
        l8 = packed.step("L8")
        x = tf.convert_to_tensor(packed.intermediates(images)["drop7"])
        want = l8(x).numpy()
        np.testing.assert_allclose(matmuls[0](x).numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        # Another input size (not the window's): the layer itself, not a wrong reshape.
        wide = tf.concat([x, x], axis=2)
        np.testing.assert_array_equal(matmuls[0](wide).numpy(), l8(wide).numpy())


def test_served_first_layer_runs_on_the_ink(xnor_plain_run, binary_run):
    """By default the float L1 on the input drawing is served by the ink-sparse op:
    logits match the unfused steps within float tolerance (summation order only)."""
    for model, _, _, images in (xnor_plain_run, binary_run):
        packed = binarize.pack_model(model)
        assert isinstance(packed._plan.value[0], binarize._InkConvStep)
        assert not isinstance(binarize.pack_model(model, ink_first_layer=False)._plan.value[0],
                              binarize._InkConvStep)
        y = tf.convert_to_tensor(images)
        for step in packed.steps:
            y = step(y)
        want = y.numpy()
        np.testing.assert_allclose(packed(images).numpy(), want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max() + 1e-6)
        l1 = packed.steps[0](images).numpy()
        np.testing.assert_allclose(packed._plan.value[0](images).numpy(), l1, rtol=1e-5,
                                   atol=1e-5 * np.abs(l1).max())


def test_xnor_input_scaling_is_not_fused(xnor_run):
    packed = binarize.pack_model(xnor_run[0], ink_first_layer=False)
    assert not any(isinstance(s, binarize._NormSignStep) for s in packed._plan.value)
    assert [s for s in packed._plan.value if s in packed.steps] == \
        [s for s in packed.steps if s.config["name"] not in ("drop6", "drop7", "L8")]


def test_file_round_trip_and_header(binary_run, xnor_run, tmp_path):
    for model, c, class_names, images in (binary_run, xnor_run):
        packed = binarize.pack_model(model, class_names)
        path = tmp_path / f"{model.name}.sktb"
        size = packed.save(path)
        assert size == path.stat().st_size
        loaded = binarize.load(path)
        assert loaded.class_names == class_names and loaded.input_shape == [88, 88, 1]
        np.testing.assert_array_equal(loaded(images).numpy(), packed(images).numpy())
        raw = path.read_bytes()
        assert raw[:8] == b"SKTFBIN1"
        hlen = int.from_bytes(raw[8:16], "little")
        header = json.loads(raw[16:16 + hlen])
        assert header["name"] == model.name and header["version"] == 1
        assert [layer["config"]["name"] for layer in header["layers"]] == \
            [layer.name for layer in model.layers[1:]]


def test_packed_binary_layers_take_one_bit_per_weight(binary_run, tmp_path):
    model, _, _, _ = binary_run
    packed = binarize.pack_model(model)
    for e in packed.entries:
        if e["kind"] != "binary_weight_conv2d":
            continue
        kernel = model.get_layer(e["config"]["name"]).kernel
        float_bytes = int(np.prod(kernel.shape)) * 4
        # in_channels are multiples of 64 here, so no padding bits: exactly 1/32.
        assert e["tensors"]["weights"].nbytes * 32 == float_bytes
    sizes = binarize.size_report(packed.entries)
    ratio = sizes["binary_float32_bytes"] / sizes["binary_packed_bytes"]
    assert 28 < ratio <= 32, ratio  # alpha and bias stay float32
    file_bytes = packed.save(tmp_path / "m.sktb")
    assert file_bytes < sizes["total_packed_bytes"] + 16384  # header + alignment only
    assert file_bytes < sizes["total_float32_bytes"] / 15


def _tiny_dense_model():
    x = inp = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(x)
    x = BinaryDense(70, activation="relu", name="bw")(x)  # 70: not a multiple of 64
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = BinaryDense(5, binary_activations=True, input_scaling=True, activation="tanh", name="xd")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 + (1.0 if "variance" in w.name else 0)
                       for w in model.weights])
    return model


def test_dense_layers_and_other_activations():
    model = _tiny_dense_model()
    packed = binarize.pack_model(model)
    assert [e["kind"] for e in packed.entries] == ["keras", "binary_weight_dense", "keras", "xnor_dense"]
    images = np.random.default_rng(4).standard_normal((3, 4, 4, 3)).astype(np.float32)
    _check_layers_and_logits(model, packed, images, ["bw", "xd"])
    x = _layer_inputs(model, ["xd"], images)["xd"]
    ref = tf.matmul(_sign(x), _sign(model.get_layer("xd").kernel))
    np.testing.assert_array_equal(packed.step("xd").dot(x).numpy().reshape(3, 5), ref.numpy())


def test_non_chain_model_is_rejected():
    inp = keras.Input((8, 8, 2))
    a = BinaryConv2D(4, 3, padding="same")(inp)
    out = keras.layers.Add()([a, inp[..., :1] * 0 + a])
    with pytest.raises(ValueError, match="not a chain"):
        binarize.pack_model(keras.Model(inp, out))


@pytest.fixture()
def small_file(tmp_path):
    path = tmp_path / "tiny.sktb"
    binarize.pack_model(_tiny_dense_model()).save(path)
    return path


def _corrupt(path, edit):
    raw = bytearray(path.read_bytes())
    edit(raw)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.__setitem__(slice(0, 8), b"NOTAFILE"), "not a sketchtf packed model"),
    (lambda r: r.__setitem__(slice(len(r) - 40, len(r)), b""), "truncated or padded"),
    (lambda r: r.__setitem__(-1, r[-1] ^ 0xFF), "CRC-32 mismatch"),
    (lambda r: r.__setitem__(slice(8, 16), (10**9).to_bytes(8, "little")), "runs past the end"),
    (lambda r: r.__setitem__(slice(16, 18), b"[["), "JSON header is invalid"),
])
def test_bad_files_raise_clear_errors(small_file, edit, message):
    _corrupt(small_file, edit)
    with pytest.raises(binarize.PackedFileError, match=message) as e:
        binarize.load(small_file)
    assert str(small_file) in str(e.value)


def test_bad_header_fields_name_the_field(small_file):
    raw = small_file.read_bytes()
    hlen = int.from_bytes(raw[8:16], "little")
    header = json.loads(raw[16:16 + hlen])
    header["layers"][1]["tensors"]["weights"]["shape"][0] += 1
    text = json.dumps(header).encode()
    text += b" " * (hlen - len(text))  # same length: the data section stays where it was
    assert len(text) == hlen
    small_file.write_bytes(raw[:16] + text + raw[16 + hlen:])
    with pytest.raises(binarize.PackedFileError, match=r"layers\[1\]\.tensors\.weights .*does not fit"):
        binarize.load(small_file)


def test_command_line_packs_a_trained_workdir(binary_run, tmp_path):
    model, c, class_names, images = binary_run
    wd = tmp_path / "run"
    save_config(c, str(wd))
    (wd / "classes.json").write_text(json.dumps(class_names))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(wd / "checkpoints"),
                               max_to_keep=1).save(checkpoint_number=1)
    out = tmp_path / "packed.sktb"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # cwd outside the source tree: `python -m` must import the installed package (whose
    # build step compiled the ops), not the uncompiled sources of the checkout
    r = subprocess.run([sys.executable, "-m", "sketchtf.binarize", f"--workdir={wd}", f"--out={out}",
                        "--eval_split=test"], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stdout and "check: max |packed - keras|" in r.stdout
    # the packed model's test metrics (C++ ops) equal the Keras model's on the same pipeline
    packed = json.loads((wd / "eval_test_packed" / "metrics.json").read_text())
    _, _, eval_ds, _ = build_data(c)
    keras_metrics, _ = predict_scores(model, eval_ds, class_names)
    assert packed["top1"] == pytest.approx(keras_metrics["top1"]) and packed["confusion"] == keras_metrics["confusion"]
    loaded = binarize.load(out)
    np.testing.assert_allclose(loaded(images).numpy(), model(images, training=False).numpy(),
                               rtol=1e-4, atol=1e-5)


_LOAD_SAVED_MODEL = r"""
import sys
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[1])
out = {}
for i, path in enumerate(sys.argv[2:]):
    if i == 0:
        # Without sketchtf's op library the graph's ops are unknown to TensorFlow.
        try:
            tf.saved_model.load(path)
            raise SystemExit("loaded without the op library")
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001  (the exact class differs between TF versions)
            assert "Sketchtf" in str(e), str(e)[-2000:]
    from sketchtf.ship import binarize  # registers the ops with tf.load_op_library
    fn = binarize.load_saved_model(path)
    out[f"y{i}"] = fn(images=tf.constant(data["images"]))[binarize.SERVING_OUTPUT].numpy()
np.savez(sys.argv[1] + ".out.npz", **out)
print("loaded", len(out))
"""


def test_saved_model_export_runs_in_a_fresh_process(binary_run, xnor_run, xnor_plain_run, tmp_path):
    """export_saved_model writes a SavedModel whose graph calls the C++ ops; a new
    Python process (no Keras model, no .sktb) registers them and gets the same logits."""
    paths, want = [], []
    images = np.asarray(xnor_run[3])
    # XNOR (+K), XNOR served through norm_bitpack, binary weight
    for i, (model, _, class_names, _) in enumerate((xnor_run, xnor_plain_run, binary_run)):
        packed = binarize.pack_model(model, class_names)
        path = str(tmp_path / f"{i}_{model.name}_saved" / "1")
        assert binarize.export_saved_model(packed, path) == path
        paths.append(path)
        want.append(packed(images).numpy())
    data = tmp_path / "images.npz"
    np.savez(data, images=images)
    # The installed package (CI: site-packages, with its built ops), not the source tree.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", _LOAD_SAVED_MODEL, str(data), *paths],
                       capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    got = np.load(str(data) + ".out.npz")
    for i, w in enumerate(want):
        # same graph, same kernels, same thread count rules: equal up to float summation order
        np.testing.assert_allclose(got[f"y{i}"], w, rtol=1e-5, atol=1e-5)
        assert (got[f"y{i}"].argmax(-1) == w.argmax(-1)).all()
