"""Larq Compute Engine side of benchmarks/binary_vs_lce.py (runs in LCE's own venv).

Not imported by sketchtf: LCE needs an older TensorFlow than sketchtf, so
binary_vs_lce.py runs this file with the python of a separate venv:

    python _lce_worker.py CASES.npz NUM_THREADS OUT_DIR

CASES.npz holds `spec` (JSON: a list of cases, each {"name", "batch",
"input_shape", "layers": [...]}) and the arrays the layers name. Layer kinds:
  conv     float Conv2D            (kernel, bias, strides, padding, activation)
  bconv    larq QuantConv2D, ste_sign on inputs and kernel, zero padding after
           binarization (pad_values=0), no bias; then x * alpha + bias (a
           BatchNormalization with mean 0, variance 1, which LCE's converter
           fuses into the binary conv's output transform) and the activation
  bn       BatchNormalization      (gamma, beta, mean, var, epsilon)
  maxpool  MaxPooling2D            (pool, strides, padding)
  flatten  Flatten
Every case is built as a Keras model with a fixed batch, converted with
`larq_compute_engine.convert_keras_model` and loaded into LCE's Interpreter
with NUM_THREADS twice: LCE's default binary conv kernel ("default",
im2col + BGEMM) and use_indirect_bgemm=True ("indirect"). The worker writes each case's output on the case's `check`
input to OUT_DIR/outputs.npz, prints one JSON line {"ready": ...}, then
answers requests on stdin, one JSON line each:
  {"case": name, "kernel": "default"|"indirect", "n": calls}  ->  {"seconds": seconds per call (wall clock)}
  {"quit": true}              ->  exits
so that the caller can interleave LCE with its own variants in every repeat.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import larq as lq  # noqa: E402
import larq_compute_engine as lce  # noqa: E402
from larq_compute_engine.tflite.python.interpreter import Interpreter  # noqa: E402


KERNELS = ("default", "indirect")


def build(case, arrays):
    """A fixed-batch Keras model of the case's layers, weights set."""
    inp = tf.keras.Input(case["input_shape"], batch_size=case["batch"])
    x = inp
    for i, layer in enumerate(case["layers"]):
        kind, w = layer["type"], lambda key: arrays[layer[key]]
        if kind == "conv":
            k = w("kernel")
            conv = tf.keras.layers.Conv2D(k.shape[-1], k.shape[:2], strides=layer["strides"],
                                          padding=layer["padding"], activation=layer["activation"])
            x = conv(x)
            conv.set_weights([k, w("bias")])
        elif kind == "bconv":
            k = w("kernel")
            conv = lq.layers.QuantConv2D(
                k.shape[-1], k.shape[:2], strides=layer["strides"], padding=layer["padding"],
                pad_values=0.0, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                kernel_constraint=None, use_bias=False)
            x = conv(x)
            conv.set_weights([k])
            eps = 1e-3
            bn = tf.keras.layers.BatchNormalization(epsilon=eps)
            x = bn(x)
            o = k.shape[-1]
            bn.set_weights([w("alpha") * np.float32(np.sqrt(1.0 + eps)), w("bias"),
                            np.zeros(o, np.float32), np.ones(o, np.float32)])
            if layer["activation"] not in (None, "linear"):
                x = tf.keras.layers.Activation(layer["activation"])(x)
        elif kind == "bn":
            bn = tf.keras.layers.BatchNormalization(epsilon=layer["epsilon"])
            x = bn(x)
            bn.set_weights([w("gamma"), w("beta"), w("mean"), w("var")])
        elif kind == "maxpool":
            x = tf.keras.layers.MaxPooling2D(layer["pool"], layer["strides"], layer["padding"])(x)
        elif kind == "flatten":
            x = tf.keras.layers.Flatten()(x)
        else:
            raise ValueError(f"unknown layer kind {kind!r} in case {case['name']}")
    return tf.keras.Model(inp, x)


def main():
    npz, threads, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    data = np.load(npz)
    arrays = {k: data[k] for k in data.files}
    cases = json.loads(str(arrays.pop("spec")))
    interps, outputs, ops = {}, {}, {}
    for case in cases:
        model = build(case, arrays)
        flat = lce.convert_keras_model(model)
        x = arrays[case["check"]]
        for kernel in KERNELS:
            it = Interpreter(flat, num_threads=threads, use_indirect_bgemm=kernel == "indirect")
            outputs[f"{case['name']}/{kernel}"] = it.interpreter.predict([x])[0]
            interps[case["name"], kernel] = (it.interpreter, [x])
        # which TFLite ops LCE produced (e.g. LceBconv2d, LceQuantize): shows the binary path ran
        ops[case["name"]] = sorted(set(_op_names(flat)))
    np.savez(os.path.join(out_dir, "outputs.npz"), **outputs)
    print(json.dumps({"ready": True, "tf": tf.__version__, "lce": lce.__version__,
                      "larq": lq.__version__, "threads": threads,
                      "kernels": KERNELS, "ops": ops}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        it, x = interps[req["case"], req["kernel"]]
        n = int(req["n"])
        t0 = time.perf_counter()
        for _ in range(n):
            it.predict(x)
        print(json.dumps({"seconds": (time.perf_counter() - t0) / n}), flush=True)


def _op_names(flatbuffer):
    """Custom op names in a TFLite flatbuffer (LCE's ops are custom ops)."""
    names = []
    for name in (b"LceBconv2d", b"LceQuantize", b"LceDequantize", b"LceBMaxPool2d"):
        if name in flatbuffer:
            names.append(name.decode())
    return names


if __name__ == "__main__":
    main()
