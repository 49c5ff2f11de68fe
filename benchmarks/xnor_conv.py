"""XNOR and binary-weight convolutions vs fp32 tf.nn.conv2d, side by side.

Sketch-A-Net's binary layers at 225 px input (SEEDS.md section C):
  L2  5x5,  64->128 on 35x35 VALID -> 31x31
  L3  3x3, 128->256 on 15x15 SAME
  L4  3x3, 256->256 on 15x15 SAME (L5 has the same shape)
at batch 1 and 32. Every variant computes conv + bias + ReLU (fp32 through
grappler's fused conv): fp32 tf.nn.conv2d; XnorConv2D on pre-packed input
("xnor") and with BitpackChannels of the float input in the same call
("xnor+pack"); BinaryWeightConv2D on the float input ("bw"). Variants are
timed in turn within every repeat (so load from other processes hits all of
them alike); each figure is the median over repeats after warm-up, timed as
n iterations of a tf.while_loop inside one tf.function, n sized from a short
timing so that a sample lasts about --min-sample-s (0.2 s): the tf.function
call that starts a sample (0.3-0.6 ms of Python dispatch) is then under ~0.5%
of every figure (measured and printed). At 0.02 s (the default until session
15) it was up to ~4% of the fastest layers' figures and ~2% of fp32's: the
ratios read ~2% low and the ceiling fractions, absolute rates, up to ~4% low.

Whole model: batch-1 latency of float Sketch-A-Net (Keras, fp32) vs the
binary-weight and XNOR Sketch-A-Nets converted by sketchtf.ship.binarize (packed
weights, C++ ops; L1 and L8 float), at the paper's 225 px / 250 classes by
default, timed the same way (whole forward pass in a graph loop, median of
--model-repeats, variants interleaved). Random weights: speed does not depend
on them, and packed outputs are checked against the Keras model first. Model
size: float32 weight bytes and the .h5 weights file of float Sketch-A-Net vs
the packed binary-weight file (paper: 32.72 MB -> 1.82 MB).

Prints tables, then ONE JSON line of headline ratios (fp32 time / op time,
summed over L2..L5; whole-model ratios; sizes) with the targets and the
measured popcount ceilings: the streaming probe and the register-resident one
(compute bound of the kernel's own instruction sequence), with each layer's
XNOR rate as a fraction of the latter on the threads used: the median's rate
(headline), less the loop's own time ("op only"), and the fastest sample's
("best": the probe reports its best trial, so this is like for like).

    python benchmarks/xnor_conv.py [--repeats 9] [--batches 1,32] [--threads 0]
    python benchmarks/xnor_conv.py --threads 1 --clock cpu   # per core, load-independent
    python benchmarks/xnor_conv.py --model-size 128 --classes 10   # the qd10 "128" configs
    python benchmarks/xnor_conv.py --split   # batch-1 threading: 1 thread vs old/new sharding
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

import sketchtf  # noqa: F401  (environment before TensorFlow loads)
import tensorflow as tf
from sketchtf.ops import xnor

# name: (input size, in channels, out channels, kernel, padding)
LAYERS = {
    "L2": (35, 64, 128, 5, "VALID"),
    "L3": (15, 128, 256, 3, "SAME"),
    "L4": (15, 256, 256, 3, "SAME"),
    "L5": (15, 256, 256, 3, "SAME"),
}
VARIANTS = ("fp32", "xnor", "xnor+pack", "bw")
TARGETS = {"xnor_vs_fp32_b32": 15.0, "xnor_vs_fp32_b1": 10.0, "bw_vs_fp32": 1.0,  # issue 17
           "model_bw_vs_float_b1": 3.0, "model_xnor_vs_float_b1": 8.0, "paper_size_mb": [32.72, 1.82]}
MODELS = ("float", "binary_weight", "xnor", "xnor_k")


def _layer_fns(hw, cin, cout, k, padding, batch, seed):
    """Inputs and one tf.function per variant for one layer shape."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((batch, hw, hw, cin)), tf.float32)
    w = tf.constant(rng.standard_normal((k, k, cin, cout)) * 0.05, tf.float32)
    bias = tf.constant(rng.standard_normal(cout) * 0.1, tf.float32)
    alpha = tf.reduce_mean(tf.abs(w), axis=[0, 1, 2])
    w_packed = xnor.pack_filter(w)
    x_packed = xnor.bitpack_channels(x)

    ops = {
        "fp32": (lambda x: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, padding), bias)), x),
        "xnor": (lambda xp: xnor.xnor_conv2d(xp, w_packed, alpha, bias, cin, 1, padding,
                                             fused_relu=True), x_packed),
        "xnor+pack": (lambda x: xnor.xnor_conv2d(xnor.bitpack_channels(x), w_packed, alpha, bias,
                                                 cin, 1, padding, fused_relu=True), x),
        "bw": (lambda x: xnor.binary_weight_conv2d(x, w_packed, alpha, bias, 1, padding,
                                                   fused_relu=True), x),
    }
    # The ops must compute what they claim before their speed means anything.
    sign = lambda t: tf.where(t >= 0, 1.0, -1.0)  # noqa: E731
    ref_xnor = tf.nn.relu(tf.nn.conv2d(sign(x), sign(w), 1, padding) * alpha + bias)
    ref_bw = tf.nn.relu(tf.nn.conv2d(x, sign(w), 1, padding) * alpha + bias)
    np.testing.assert_allclose(ops["xnor"][0](x_packed), ref_xnor, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ops["xnor+pack"][0](x), ref_xnor, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ops["bw"][0](x), ref_bw, rtol=1e-4, atol=1e-3)
    # The graph loop's own cost per call (while loop + the ops that consume y),
    # timed the same way around tf.identity: part of every variant's figure.
    ops["loop"] = (tf.identity, x)
    return {v: (_looped(op), arg) for v, (op, arg) in ops.items()}


def _looped(op):
    """tf.function running `op(arg)` n times in one graph (a while loop), so
    that Python's per-call dispatch (0.1-0.5 ms here) is not what is timed: a
    served model runs these ops inside one graph too."""
    @tf.function
    def run(arg, n):
        def body(i, s):
            y = op(arg)
            # One element keeps y live: a single strided slice (a reshape
            # first was one more op a call: the loop 4.7 -> 4.4-4.6 us at two
            # threads). Every variant's output is float32.
            return i + 1, s + y[(0,) * y.shape.rank]

        return tf.while_loop(lambda i, s: i < n, body, (tf.constant(0), tf.constant(0.0)),
                             parallel_iterations=1)[1]

    return run


def sketch_batch(batch, size):
    """Whole-model benchmark inputs: real drawings, as a served model sees them.
    The first (float) layer runs on the ink only (xnor.ink_conv2d), so its time
    depends on the input; uniform noise would be a 100%-ink worst case. Draws
    `batch` Quick Draw test drawings (../shared/data/quickdraw_10class_ndjson,
    one class after another) rendered at `size` px, else the project's
    synthetic sketches. Returns (images [B, size, size, 1], description)."""
    from sketchtf import config
    from sketchtf.data import quickdraw, render, synthetic
    path = config.data_path("quickdraw_10class_ndjson")
    if path and os.path.isdir(os.path.join(path, "test")):
        per_class = -(-batch // len(quickdraw.list_ndjson_classes(os.path.join(path, "test"))))
        records = list(quickdraw.read_ndjson(os.path.join(path, "test"), limit_per_class=per_class))
        source = "quickdraw_10class test"
    else:
        records = list(synthetic.generate(-(-batch // len(synthetic.CLASSES)), split="test"))
        source = "synthetic sketches"
    records = records[:batch]
    pts, ids, lens = render.padded_batch([r.strokes for r in records])
    images = render.render(render.normalize(pts, lens), ids, lens, size=size).numpy()
    return images, f"{len(records)} {source} drawings at {size} px, {100 * (images > 0).mean():.1f}% ink"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _time_calls(run, arg, n):
    t0 = _clock()
    run(arg, tf.constant(n)).numpy()
    return (_clock() - t0) / n


def measure_layers(batches=(1, 32), repeats=9, warmup=2, min_sample_s=0.2, layers=None):
    """Per-layer timings: a list of dicts with layer, batch, seconds per call of
    each variant (median over `repeats`), ratios to fp32, and XNOR word rates."""
    rows = []
    for name, (hw, cin, cout, k, padding) in LAYERS.items():
        if layers and name not in layers:
            continue
        for batch in batches:
            fns = _layer_fns(hw, cin, cout, k, padding, batch, seed=int(name[1:]) * 100 + batch)
            calls = {}
            for v, (fn, arg) in fns.items():
                for _ in range(warmup):
                    _time_calls(fn, arg, 2)
                one = _time_calls(fn, arg, 4)
                calls[v] = max(1, int(min_sample_s / max(one, 1e-6)))
            samples = {v: [] for v in fns}
            for _ in range(repeats):
                for v, (fn, arg) in fns.items():
                    samples[v].append(_time_calls(fn, arg, calls[v]))
            sec = {v: float(np.median(s)) for v, s in samples.items()}
            # What starting a sample costs (the tf.function call around the loop).
            loop_fn, loop_arg = fns["loop"]
            dispatch = min(_time_calls(loop_fn, loop_arg, 1) for _ in range(5)) - sec["loop"]
            out_hw = hw - k + 1 if padding == "VALID" else hw
            word_pairs = batch * out_hw * out_hw * cout * k * k * -(-cin // 64)
            rows.append({
                "layer": name, "batch": batch,
                "shape": f"{k}x{k} {cin}->{cout} on {hw}x{hw} {padding}",
                "seconds": sec,
                "dispatch_s": dispatch,
                # Of the shortest variant sample (calls were sized from a 4-call
                # timing that includes the dispatch, so samples run short of
                # min_sample_s): the largest share dispatch takes of a figure.
                "dispatch_share": dispatch / min(calls[v] * sec[v] for v in VARIANTS),
                "vs_fp32": {v: sec["fp32"] / sec[v] for v in VARIANTS if v != "fp32"},
                "xnor_gwords_s": word_pairs / sec["xnor"] / 1e9,
                # The fastest sample: the same statistic as the ceiling probe
                # (best of its trials), so the like-for-like fraction; the
                # median above is the headline.
                "xnor_best_gwords_s": word_pairs / min(samples["xnor"]) / 1e9,
                # Less the loop's own time: the op alone (at batch 1 the loop's
                # ~4 us is 5-10% of a two-thread XNOR layer).
                "xnor_op_gwords_s": word_pairs / max(sec["xnor"] - sec["loop"], 1e-9) / 1e9,
                "fp32_gmacs_s": batch * out_hw * out_hw * cout * k * k * cin / sec["fp32"] / 1e9,
            })
    return rows


SPLIT_MODES = ("serial", "pixels", "tfpool", "auto")


def measure_split(batch=1, repeats=9, warmup=2, min_sample_s=0.2, layers=None):
    """Batch-1 threading, side by side in one process: each layer's XNOR and
    binary-weight op with SKETCHTF_XNOR_SPLIT (read by the ops on every call)
    = "serial" (the whole op on the calling thread: the one-thread baseline),
    "pixels" (TF cost-model sharding, the rule before the batch-1 split),
    "tfpool" (equal shards, one per thread, run on TF's intra-op pool) and
    "auto" (the same shards on the spinning helpers of ops/fork_join.h),
    interleaved within every repeat. Returns {layer: {op: {mode: seconds}}}."""
    out = {}
    old = os.environ.get("SKETCHTF_XNOR_SPLIT")
    try:
        for name, (hw, cin, cout, k, padding) in LAYERS.items():
            if layers and name not in layers:
                continue
            fns = _layer_fns(hw, cin, cout, k, padding, batch, seed=int(name[1:]) * 100 + batch)
            todo = [(op, m) for op in ("xnor", "bw") for m in SPLIT_MODES]
            calls = {}
            for op, m in todo:
                os.environ["SKETCHTF_XNOR_SPLIT"] = m
                fn, arg = fns[op]
                for _ in range(warmup):
                    _time_calls(fn, arg, 2)
                calls[op, m] = max(1, int(min_sample_s / max(_time_calls(fn, arg, 4), 1e-6)))
            samples = {key: [] for key in todo}
            for _ in range(repeats):
                for op, m in todo:
                    os.environ["SKETCHTF_XNOR_SPLIT"] = m
                    fn, arg = fns[op]
                    samples[op, m].append(_time_calls(fn, arg, calls[op, m]))
            out[name] = {op: {m: float(np.median(samples[op, m])) for m in SPLIT_MODES}
                         for op in ("xnor", "bw")}
    finally:
        if old is None:
            os.environ.pop("SKETCHTF_XNOR_SPLIT", None)
        else:
            os.environ["SKETCHTF_XNOR_SPLIT"] = old
    return out


def _random_weights(model, seed):
    """Glorot-like random weights, BN statistics near what training gives."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.name or "gamma" in w.name:
            w.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif len(shape) > 1:
            w.assign((rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(np.float32))
        else:
            w.assign((rng.standard_normal(shape) * 0.1).astype(np.float32))


def build_models(size=225, classes=250, seed=0):
    """{variant: (forward fn for a graph, Keras model)} plus packed files' sizes."""
    from sketchtf.ship import binarize
    from sketchtf.models import build_model

    shape = (size, size, 1)
    keras_models = {
        "float": build_model("sketchanet", num_classes=classes, input_shape=shape),
        "binary_weight": build_model("sketchanet_binary", num_classes=classes, input_shape=shape),
        "xnor": build_model("sketchanet_xnor", num_classes=classes, input_shape=shape),
        "xnor_k": build_model("sketchanet_xnor", num_classes=classes, input_shape=shape,
                              input_scaling=True),
    }
    for i, m in enumerate(keras_models.values()):
        _random_weights(m, seed + i)
    x = tf.constant(np.random.default_rng(seed).random((2, *shape)), tf.float32)
    fns, sizes = {"float": lambda t: keras_models["float"](t, training=False)}, {}
    with tempfile.TemporaryDirectory() as tmp:
        h5 = os.path.join(tmp, "float.h5")
        keras_models["float"].save_weights(h5)
        sizes["float_h5_bytes"] = os.path.getsize(h5)
        sizes["float32_weight_bytes"] = 4 * int(keras_models["float"].count_params())
        for v in MODELS[1:]:
            packed = binarize.pack_model(keras_models[v])
            want = keras_models[v](x, training=False).numpy()
            np.testing.assert_allclose(packed(x).numpy(), want, rtol=1e-3,
                                       atol=1e-3 * np.abs(want).max())
            sizes[f"{v}_packed_bytes"] = packed.save(os.path.join(tmp, f"{v}.sktb"))
            fns[v] = packed.forward
    return fns, sizes


def measure_models(size=225, classes=250, batch=1, repeats=21, warmup=2, min_sample_s=0.05):
    """Whole-model latency (seconds per forward pass, median) and sizes."""
    fns, sizes = build_models(size, classes)
    images, source = sketch_batch(batch, size)
    x = tf.constant(images)
    looped = {v: _looped(fn) for v, fn in fns.items()}
    calls = {}
    for v, run in looped.items():
        for _ in range(warmup):
            _time_calls(run, x, 2)
        calls[v] = max(1, int(min_sample_s / max(_time_calls(run, x, 4), 1e-6)))
    samples = {v: [] for v in looped}
    for _ in range(repeats):
        for v, run in looped.items():
            samples[v].append(_time_calls(run, x, calls[v]))
    sec = {v: float(np.median(s)) for v, s in samples.items()}
    return dict(size=size, classes=classes, batch=batch, input=source, seconds=sec, sizes=sizes,
                vs_float={v: sec["float"] / sec[v] for v in MODELS[1:]})


def add_ceiling_fractions(rows, register_all):
    """Adds to each row its XNOR word-pair rate as a fraction of the register-
    resident XOR+popcount ceiling (`popcount_roofline(path, "register")` on the
    same threads): how close the kernel gets to its instruction sequence's
    compute bound."""
    for r in rows:
        r["xnor_of_register_ceiling"] = r["xnor_gwords_s"] * 1e9 / register_all
        r["xnor_op_of_register_ceiling"] = r["xnor_op_gwords_s"] * 1e9 / register_all
        r["xnor_best_of_register_ceiling"] = r["xnor_best_gwords_s"] * 1e9 / register_all
    return rows


def summarize(rows, roofline_all, register_all=None, register_threads=None):
    """Headline ratios over the whole L2..L5 stack (sums of per-layer times).
    roofline_all: the streaming probe (all threads); register_all (optional):
    the register-resident probe on register_threads threads."""
    out = {}
    for batch in sorted({r["batch"] for r in rows}):
        sel = [r for r in rows if r["batch"] == batch]
        tot = {v: sum(r["seconds"][v] for r in sel) for v in VARIANTS}
        out[f"xnor_vs_fp32_b{batch}"] = round(tot["fp32"] / tot["xnor"], 2)
        out[f"xnor_incl_pack_vs_fp32_b{batch}"] = round(tot["fp32"] / tot["xnor+pack"], 2)
        out[f"bw_vs_fp32_b{batch}"] = round(tot["fp32"] / tot["bw"], 2)
        out[f"xnor_min_layer_vs_fp32_b{batch}"] = round(min(r["vs_fp32"]["xnor"] for r in sel), 2)
    best = max(rows, key=lambda r: r["xnor_gwords_s"])
    out["xnor_best_gwords_s"] = round(best["xnor_gwords_s"], 2)
    out["popcount_roofline_gwords_s"] = round(roofline_all / 1e9, 2)
    out["xnor_of_roofline"] = round(best["xnor_gwords_s"] * 1e9 / roofline_all, 2)
    if register_all:
        out["register_ceiling_gwords_s"] = round(register_all / 1e9, 2)
        out["register_ceiling_threads"] = register_threads
        out["xnor_of_register_ceiling"] = {
            f"{r['layer']}_b{r['batch']}": round(r["xnor_gwords_s"] * 1e9 / register_all, 3)
            for r in rows}
        out["xnor_op_of_register_ceiling"] = {
            f"{r['layer']}_b{r['batch']}": round(r["xnor_op_gwords_s"] * 1e9 / register_all, 3)
            for r in rows}
        out["xnor_best_sample_of_register_ceiling"] = {
            f"{r['layer']}_b{r['batch']}": round(r["xnor_best_of_register_ceiling"], 3) for r in rows}
    out["loop_us"] = {f"{r['layer']}_b{r['batch']}": round(r["seconds"]["loop"] * 1e6, 2) for r in rows}
    if rows and "dispatch_s" in rows[0]:
        out["sample_dispatch_ms"] = round(max(r["dispatch_s"] for r in rows) * 1e3, 3)
        out["sample_dispatch_share_max"] = round(max(r["dispatch_share"] for r in rows), 4)
    out["targets"] = TARGETS
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--layers", default="", help="comma list, e.g. L2,L4 (default all)")
    ap.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0 = TF default)")
    ap.add_argument("--inter_op", type=int, default=1,
                    help="TF inter-op threads (0 = TF default). 1: the ops here run one at a time, and "
                         "an idle second inter-op thread only spins against the intra-op ones")
    ap.add_argument("--model-size", type=int, default=225, help="whole-model input side (px)")
    ap.add_argument("--classes", type=int, default=250, help="whole-model classes (250: TU-Berlin)")
    ap.add_argument("--model-repeats", type=int, default=21)
    ap.add_argument("--min-sample-s", type=float, default=0.2,
                    help="least seconds a layer sample lasts (graph-loop iterations per "
                         "tf.function call), so the call's own dispatch is a negligible share")
    ap.add_argument("--skip-models", action="store_true", help="layer table only")
    ap.add_argument("--split", action="store_true",
                    help="only the batch-1 threading table: one thread (serial) vs the old "
                         "(pixels) and new (auto) sharding on the TF threads, one process")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="cpu = process CPU time: with --threads 1 it ignores time the OS gives "
                         "to other processes (a per-core figure on a shared machine)")
    args = ap.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    tf.get_logger().setLevel("ERROR")  # one tf.function per variant: retracing notices are noise
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    batches = tuple(int(b) for b in args.batches.split(","))
    layers = [s for s in args.layers.split(",") if s]

    path = xnor.available_paths()[-1]
    threads = args.threads or f"TF default ({os.cpu_count()} cores)"
    if args.split:
        sp = measure_split(1, args.repeats, min_sample_s=args.min_sample_s, layers=layers)
        print(f"batch-1 threading, path {path}, TF intra-op threads: {threads}; {args.clock} clock, "
              f"median of {args.repeats}, modes interleaved; speedup = serial / mode")
        modes = SPLIT_MODES[1:]
        print(f"{'layer':5} {'op':4} {'serial ms':>9}" + "".join(f" {m + ' ms':>9}" for m in modes)
              + "".join(f" {m + ' x':>8}" for m in modes))
        res = {}
        for name, ops in sp.items():
            for op, t in ops.items():
                print(f"{name:5} {op:4} {t['serial']*1e3:9.3f}" + "".join(f" {t[m]*1e3:9.3f}" for m in modes)
                      + "".join(f" {t['serial']/t[m]:8.2f}" for m in modes))
        for op in ("xnor", "bw"):
            tot = {m: sum(sp[n][op][m] for n in sp) for m in SPLIT_MODES}
            for m in modes:
                res[f"{op}_b1_speedup_{m}"] = round(tot["serial"] / tot[m], 2)
            res[f"{op}_b1_ms"] = {m: round(v * 1e3, 3) for m, v in tot.items()}
        res.update(path=path, threads=threads, clock=args.clock,
                   loadavg_1min=round(os.getloadavg()[0], 2))
        print(json.dumps(res))
        return res
    roof_paths = {p: xnor.popcount_roofline(p) for p in xnor.available_paths()}
    reg_paths = {p: xnor.popcount_roofline(p, "register", return_threads=True)
                 for p in xnor.available_paths()}
    rows = measure_layers(batches, args.repeats, min_sample_s=args.min_sample_s, layers=layers)
    reg_one, reg_all, reg_threads = reg_paths[path]
    add_ceiling_fractions(rows, reg_all)

    print(f"kernel path: {path} (cpu: {', '.join(xnor.cpu_features())}); TF intra-op threads: "
          f"{threads}; {args.clock} clock, median of {args.repeats} repeats")
    hdr = (f"{'layer':5} {'batch':>5} {'fp32 ms':>9} {'xnor ms':>9} {'+pack ms':>9} {'bw ms':>9}"
           f" {'xnor x':>7} {'+pack x':>7} {'bw x':>6} {'fp32 GMAC/s':>11} {'xnor Gword/s':>12}"
           f" {'of ceil':>7} {'op only':>7} {'best':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        s, v = r["seconds"], r["vs_fp32"]
        print(f"{r['layer']:5} {r['batch']:5d} {s['fp32']*1e3:9.3f} {s['xnor']*1e3:9.3f}"
              f" {s['xnor+pack']*1e3:9.3f} {s['bw']*1e3:9.3f} {v['xnor']:7.1f}"
              f" {v['xnor+pack']:7.1f} {v['bw']:6.2f} {r['fp32_gmacs_s']:11.1f}"
              f" {r['xnor_gwords_s']:12.2f} {r['xnor_of_register_ceiling']:7.1%}"
              f" {r['xnor_op_of_register_ceiling']:7.1%} {r['xnor_best_of_register_ceiling']:7.1%}")
    print(f"of ceil = XNOR word pairs/s / the {path} register-resident XOR+popcount ceiling on "
          f"{reg_threads} thread(s) ({reg_all/1e9:.2f} Gword/s); op only: less the graph loop's "
          f"own time per call (tf.identity in the same loop, "
          f"{min(r['seconds']['loop'] for r in rows)*1e6:.1f}-{max(r['seconds']['loop'] for r in rows)*1e6:.1f} us); "
          f"best: the fastest sample's rate (the ceiling is its probe's best trial)")
    print(f"samples sized for {args.min_sample_s} s; the call that starts one costs <= "
          f"{max(r['dispatch_s'] for r in rows)*1e3:.2f} ms, <= "
          f"{max(r['dispatch_share'] for r in rows):.2%} of a figure")
    for p, (one, allt) in roof_paths.items():
        r1, ra, rt = reg_paths[p]
        print(f"popcount ceiling ({p}): register {r1/1e9:.2f} Gword/s one thread, "
              f"{ra/1e9:.2f} on {rt}; stream (L1) {one/1e9:.2f} / {allt/1e9:.2f}")
    summary = summarize(rows, roof_paths[path][1], reg_all, reg_threads)
    if not args.skip_models:
        mm = measure_models(args.model_size, args.classes, repeats=args.model_repeats)
        print(f"\nwhole model, batch 1, {mm['size']} px, {mm['classes']} classes "
              f"(median of {args.model_repeats}; input: {mm['input']}):")
        for v in MODELS:
            ratio = "" if v == "float" else f"  {mm['vs_float'][v]:.2f}x vs float"
            print(f"  {v:14} {mm['seconds'][v] * 1e3:8.3f} ms{ratio}")
        z = mm["sizes"]
        print(f"model size: float32 weights {z['float32_weight_bytes'] / 1e6:.2f} MB, .h5 "
              f"{z['float_h5_bytes'] / 1e6:.2f} MB; packed binary-weight "
              f"{z['binary_weight_packed_bytes'] / 1e6:.3f} MB, XNOR {z['xnor_packed_bytes'] / 1e6:.3f} MB")
        summary.update({
            "model_px": mm["size"], "model_classes": mm["classes"], "model_input": mm["input"],
            "model_float_b1_ms": round(mm["seconds"]["float"] * 1e3, 3),
            **{f"model_{v}_b1_ms": round(mm["seconds"][v] * 1e3, 3) for v in MODELS[1:]},
            "model_bw_vs_float_b1": round(mm["vs_float"]["binary_weight"], 2),
            "model_xnor_vs_float_b1": round(mm["vs_float"]["xnor"], 2),
            "model_xnor_k_vs_float_b1": round(mm["vs_float"]["xnor_k"], 2),
            "float32_weights_mb": round(z["float32_weight_bytes"] / 1e6, 3),
            "float_h5_mb": round(z["float_h5_bytes"] / 1e6, 3),
            "packed_bw_mb": round(z["binary_weight_packed_bytes"] / 1e6, 3),
            "packed_xnor_mb": round(z["xnor_packed_bytes"] / 1e6, 3),
            "size_ratio_h5_vs_packed_bw": round(z["float_h5_bytes"] / z["binary_weight_packed_bytes"], 1),
        })
    summary["path"] = path
    summary["threads"] = threads
    summary["clock"] = args.clock
    summary["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other processes on the machine
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
