"""FLOPs accounting (exact on hand-countable models), latency, the profile table CLI."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from sketchtf.evaluation import profile
from sketchtf.keras import keras
from sketchtf.models import build_model

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_conv_and_dense_flops_match_a_hand_count():
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="valid")(x)  # -> 6x6x4
    x = keras.layers.Flatten()(x)                      # 144
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * (6 * 6 * 4) * (3 * 3 * 3)   # 2 FLOPs per multiply-add: 7776
    dense = 2 * 144 * 5                     # 1440
    bias = 6 * 6 * 4 + 5                    # one add per output element
    assert profile.model_flops(model, (8, 8, 3)) == conv + dense + bias == 9365
    assert profile.flops_by_op(model, (8, 8, 3)) == {"Conv2D": conv, "MatMul": dense, "BiasAdd": bias}


def test_strided_same_conv_without_bias():
    inputs = keras.Input((9, 9, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, strides=2, padding="same", use_bias=False)(inputs))
    assert profile.model_flops(model, (9, 9, 1)) == 2 * (5 * 5 * 2) * (3 * 3 * 1)


def test_flops_grow_with_input_size_and_shape_must_match():
    small = profile.model_flops(build_model("sketchnet", num_classes=10, input_shape=(32, 32, 1)), (32, 32, 1))
    model = build_model("sketchnet", num_classes=10, input_shape=(64, 64, 1))
    big = profile.model_flops(model, (64, 64, 1))
    assert 3.5 * small < big < 4.5 * small  # convs scale with pixel count
    with pytest.raises(ValueError, match="does not match"):
        profile.model_flops(model, (32, 32, 1))
    with pytest.raises(ValueError, match="height, width, channels"):
        profile.model_flops(model, (64, 64))


def test_measure_latency_in_process():
    model = build_model("sketchnet", num_classes=10, input_shape=(32, 32, 1))
    r = profile.measure_latency(model, 32, threads=None, runs=4, warmup=1)
    assert r["runs"] == 4 and 0 < r["min_ms"] <= r["median_ms"]
    r = profile.measure_latency("sketchnet", 32, threads=None, runs=3, warmup=1)
    assert r["median_ms"] > 0


def test_thread_count_cannot_change_once_tf_runs():
    tf.constant(1.0) + 1.0  # TF's runtime is up
    other = tf.config.threading.get_intra_op_parallelism_threads() + 3
    with pytest.raises(RuntimeError, match="set_threads before any TF op"):
        profile.set_threads(other)
    with pytest.raises(ValueError, match=">= 1"):
        profile.set_threads(0)


def test_cli_writes_table_with_rows_for_each_model_and_size(tmp_path):
    out = tmp_path / "profile.md"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "sketchtf.evaluation.profile", "--models=sketchnet,sketchanet", "--sizes=32,88",
                        "--runs=3", "--threads=1", f"--out={out}"], capture_output=True, text=True, timeout=300,
                       env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert "on 1 intra-op thread(s)" in text and "load average" in text
    rows = {(m.group(1), int(m.group(2))): m.group(3) for m in
            re.finditer(r"^\| (\w+) \| (\d+) \| (.*)\|$", text, flags=re.M)}
    assert set(rows) == {("sketchnet", 32), ("sketchnet", 88), ("sketchanet", 32), ("sketchanet", 88)}
    assert "needs >= 81 px" in rows[("sketchanet", 32)]
    cells = [c.strip() for c in rows[("sketchnet", 32)].split("|")]
    params, mflops, median = int(cells[0].replace(",", "")), float(cells[1].replace(",", "")), float(cells[2])
    model = build_model("sketchnet", num_classes=10, input_shape=(32, 32, 1))
    assert params == model.count_params()
    assert mflops == round(profile.model_flops(model, (32, 32, 1)) / 1e6, 1)
    assert median > 0
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, "-m", "sketchtf.evaluation.profile", "--models=nonet", "--out="], check=True,
                       capture_output=True, env=env, cwd=REPO, timeout=300)
