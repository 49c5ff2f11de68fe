"""Sketch-A-Net's float L1 on real drawings: TF's dense conv vs the ink-sparse op.

L1 is a 15x15/3 conv with 64 filters on the 225 px drawing (+ bias + ReLU).
`xnor.ink_conv2d` skips zero inputs, so its time follows the ink: this times
both on --drawings Quick Draw test drawings (3 per class; synthetic sketches
offline), on an all-zero image and on uniform noise (100% ink, the worst
case), each as a graph loop of --calls (best of --repeats), in turn per
drawing. TF's thread count is fixed once it starts: run once per --threads.

    python benchmarks/ink_conv.py [--threads 1] [--drawings 30]

Ends with ONE JSON line: mean ms per drawing of each, their ratio, the ink
share, and the (output pixel, ink tap) pairs per drawing.
"""
import argparse
import json
import os
import sys

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="TF intra-op threads (inter-op: 1)")
    ap.add_argument("--drawings", type=int, default=30)
    ap.add_argument("--size", type=int, default=225)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import sketchtf  # noqa: F401  (environment before TensorFlow loads)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from xnor_conv import _looped, _time_calls, sketch_batch
    from sketchtf.ops import xnor

    images, source = sketch_batch(args.drawings, args.size)
    rng = np.random.default_rng(0)
    f = (rng.standard_normal((15, 15, 1, 64)) * 0.1).astype(np.float32)
    b = (rng.standard_normal(64) * 0.1).astype(np.float32)
    fns = {"tf": _looped(lambda x: tf.nn.relu(tf.nn.conv2d(x, f, 3, "VALID") + b)),
           "ink": _looped(lambda x: xnor.ink_conv2d(x, f, b, 3, "VALID", fused_relu=True))}
    ones = tf.ones([15, 15, 1, 1])
    pairs = tf.nn.conv2d(tf.cast(images > 0, tf.float32), ones, 3, "VALID").numpy().sum(axis=(1, 2, 3))

    def best_ms(fn, x):
        _time_calls(fn, x, 2)  # trace and warm up
        return 1e3 * min(_time_calls(fn, x, args.calls) for _ in range(args.repeats))

    cases = {"drawings": images, "zeros": np.zeros_like(images[:1]),
             "noise": rng.random(images[:1].shape).astype(np.float32)}
    res = {}
    for name, imgs in cases.items():
        ms = {v: [] for v in fns}
        for i in range(len(imgs)):
            x = tf.constant(imgs[i:i + 1])
            want = tf.nn.relu(tf.nn.conv2d(x, f, 3, "VALID") + b).numpy()
            np.testing.assert_allclose(xnor.ink_conv2d(x, f, b, 3, "VALID", fused_relu=True).numpy(), want,
                                       rtol=1e-5, atol=1e-5 * np.abs(want).max())
            for v, fn in fns.items():
                ms[v].append(best_ms(fn, x))
        res[name] = {v: float(np.mean(t)) for v, t in ms.items()}
        print(f"{name:9s} ({len(imgs)}): TF {res[name]['tf']:.3f} ms, ink op {res[name]['ink']:.3f} ms, "
              f"TF / ink {res[name]['tf'] / res[name]['ink']:.2f}x")
    print(f"input: {source}; {pairs.mean():.0f} (pixel, ink tap) pairs per drawing; "
          f"path {xnor.available_paths()[-1]}, {args.threads} thread(s)")
    print(json.dumps({"threads": args.threads, "input": source, "ink_share": round(float((images > 0).mean()), 4),
                      "pairs_per_drawing": round(float(pairs.mean())),
                      **{f"{c}_{v}_ms": round(res[c][v], 4) for c in res for v in fns},
                      "tf_vs_ink_drawings": round(res["drawings"]["tf"] / res["drawings"]["ink"], 2),
                      "tf_vs_ink_noise": round(res["noise"]["tf"] / res["noise"]["ink"], 2),
                      "path": xnor.available_paths()[-1], "loadavg_1min": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
