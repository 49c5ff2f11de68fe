"""The fused [pool ->] BN -> sign of the served XNOR Sketch-A-Net: AVX-512 kernel vs scalar loop.

Times `xnor.norm_bitpack` on the three input shapes the model feeds it at
225 px (71x71x64 pool 3/2, 31x31x128 pool 3/2, 15x15x256 no pool), each as a
graph loop of --calls (best of --repeats), with the kernel the CPU picks and
with the scalar loop (SKETCHTF_XNOR_PATH=scalar, read on every call), in turn
per repeat, after checking that both give the same bits. One thread.

    python benchmarks/norm_bitpack.py [--calls 200] [--repeats 5]

Ends with ONE JSON line: ms per call of each and their ratio per shape.
"""
import argparse
import json
import os
import sys

import numpy as np

SHAPES = {"pool1_bn2": ((1, 71, 71, 64), 3, 2), "pool2_bn3": ((1, 31, 31, 128), 3, 2),
          "bn4": ((1, 15, 15, 256), 1, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import sketchtf  # noqa: F401  (environment before TensorFlow loads)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from xnor_conv import _looped, _time_calls
    from sketchtf.ops import xnor

    rng = np.random.default_rng(0)
    best = xnor.available_paths()[-1]
    out = {"path": best}
    for name, (shape, pool, stride) in SHAPES.items():
        x = tf.constant(rng.standard_normal(shape).astype(np.float32))
        scale = tf.constant(rng.uniform(-2, 2, shape[-1]).astype(np.float32))
        offset = tf.constant(rng.standard_normal(shape[-1]).astype(np.float32))
        op = lambda t: xnor.norm_bitpack(t, scale, offset, pool, stride)  # noqa: E731
        run = _looped(lambda t: tf.cast(op(t), tf.float32))
        ms = {best: [], "scalar": []}
        bits = {}
        for _ in range(args.repeats):
            for path in ms:
                os.environ["SKETCHTF_XNOR_PATH"] = path
                bits.setdefault(path, op(x).numpy())
                _time_calls(run, x, 2)
                ms[path].append(1e3 * _time_calls(run, x, args.calls))
        os.environ.pop("SKETCHTF_XNOR_PATH")
        np.testing.assert_array_equal(bits[best], bits["scalar"])
        b, s = min(ms[best]), min(ms["scalar"])
        print(f"{name:10s} {str(shape[1:]):16s} pool {pool}/{stride}: {best} {b:.4f} ms, scalar {s:.4f} ms, {s / b:.2f}x")
        out.update({f"{name}_{best}_ms": round(b, 4), f"{name}_scalar_ms": round(s, 4),
                    f"{name}_scalar_vs_{best}": round(s / b, 2)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
