"""benchmarks/binary_vs_lce.py: what it hands to the LCE worker (no LCE needed).

The benchmark's ours-vs-LCE comparison only means something if the worker
builds the same layers with the same weights; these check the npz/spec
round trip without installing LCE (the worker itself runs in LCE's venv).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import binary_vs_lce  # noqa: E402


def _round_trip(arrays, tmp_path):
    path = tmp_path / "cases.npz"
    np.savez(path, **arrays)
    data = np.load(path)
    got = {k: data[k] for k in data.files}
    return json.loads(str(got.pop("spec"))), got


def test_layer_cases_round_trip_weights(tmp_path):
    cases = [binary_vs_lce.layer_case("L3", 1, seed=7), binary_vs_lce.layer_case("L2", 2, seed=8)]
    arrays, spec = binary_vs_lce.worker_inputs(cases)
    spec2, got = _round_trip(arrays, tmp_path)
    assert spec2 == spec
    for c, s in zip(cases, spec2):
        (layer,) = s["layers"]
        assert layer["type"] == "bconv" and layer["activation"] == "relu"
        assert layer["padding"] == c["padding"].lower()
        assert s["batch"] == c["batch"] and s["input_shape"] == list(c["arrays"]["x"].shape[1:])
        np.testing.assert_array_equal(got[s["check"]], c["arrays"]["x"])
        for key in ("kernel", "alpha", "bias"):
            want = c["arrays"]["w" if key == "kernel" else key]
            np.testing.assert_array_equal(got[layer[key]], want)
        np.testing.assert_allclose(got[layer["alpha"]], np.abs(got[layer["kernel"]]).mean((0, 1, 2)))


def test_model_spec_covers_the_xnor_net(tmp_path):
    from sketchtf.layers import BinaryConv2D
    from sketchtf.models import build_model

    m = build_model("sketchanet_xnor", num_classes=5, input_shape=(81, 81, 1))
    x = np.random.default_rng(0).random((1, 81, 81, 1)).astype(np.float32)
    ms = binary_vs_lce.model_layers_spec(m, "model_b1", 1, x)
    arrays, spec = binary_vs_lce.worker_inputs([], [ms])
    (s,), got = _round_trip(arrays, tmp_path)
    kinds = [layer["type"] for layer in s["layers"]]
    assert kinds.count("bconv") == 6 and kinds.count("bn") == 6 and kinds.count("conv") == 2
    assert kinds[-1] == "flatten" and kinds.count("maxpool") == 3
    binary = [layer for layer in m.layers if isinstance(layer, BinaryConv2D)]
    for layer, entry in zip(binary, [e for e in s["layers"] if e["type"] == "bconv"]):
        np.testing.assert_array_equal(got[entry["kernel"]], layer.kernel.numpy())
        np.testing.assert_array_equal(got[entry["bias"]], layer.bias.numpy())
        assert entry["padding"] == layer.padding
        assert entry["activation"] == layer.activation.__name__
