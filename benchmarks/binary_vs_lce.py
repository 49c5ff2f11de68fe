"""sketchtf's XNOR ops vs Larq Compute Engine (LCE), TF fp32 and TFLite fp32, in one run.

Sketch-A-Net's binary layers L2..L5 (shapes from benchmarks/xnor_conv.py) and
the whole XNOR Sketch-A-Net (registry `sketchanet_xnor`, 225 px, random
weights: a speed benchmark; inputs are real drawings, xnor_conv.sketch_batch,
because our model's float L1 runs on the ink only) at batch 1 and 32, on 1
and 2 threads, through
  tf32    TF fp32: conv + bias + ReLU (layers) / float `sketchanet` (model),
          timed in a tf.while_loop inside one graph (xnor_conv.py's helpers)
  tfl32   TFLite fp32 of the same float graph (ai-edge-litert Interpreter,
          num_threads; XNNPACK as the interpreter applies it by default)
  lce     LCE: the same binary layers as larq QuantConv2D (ste_sign inputs and
          kernels, the SAME weights, zero padding after binarization), converted
          with lce.convert_keras_model, run by LCE's Interpreter (num_threads);
          float input, so LCE's time includes its bit-packing (LceQuantize);
          LCE's default binary-conv kernel (lce) and use_indirect_bgemm=True
          (lce_ib), both timed; "ours vs LCE" uses the faster of the two
  ours    sketchtf.ops.xnor.xnor_conv2d on the float input with bitpack_channels
          in the same graph (like LCE); the model: binarize.pack_model's forward
  ours_pp the same on input packed beforehand (layers only)
TensorFlow's thread count is fixed once it starts, so every thread count runs
in a child process of this script; the child starts the LCE worker
(benchmarks/_lce_worker.py in LCE's venv) as a server and, in every repeat,
times each variant of a case in turn (LCE through a request to the worker),
so load from other processes hits all of them alike; figures are medians.
TFLite/LCE are timed as Python loops of invoke() (a few us per call);
TF as a graph loop (no per-call dispatch).

LCE's venv: ~/.cache/sketchtf/lce-venv (--lce-venv), created on first use with
`python3.11 -m venv` and `pip install larq larq-compute-engine==0.13.0
tensorflow==2.13.1`; if that fails, column lce is skipped with a message.

Outputs are checked before timing: ours == the plain-TF reference
relu(alpha * conv2d(sign x, sign W) + bias) (allclose), and ours vs LCE
on the same input and weights (max abs difference printed; same math, so
allclose is required unless --no-check-lce).

Prints a table and ends with ONE JSON line (headline ratios, the targets).

    python benchmarks/binary_vs_lce.py [--repeats 5] [--batches 1,32] [--threads 1,2]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_lce_worker.py")
DEFAULT_VENV = os.path.expanduser("~/.cache/sketchtf/lce-venv")
LCE_PIP = ["larq==0.14.0", "larq-compute-engine==0.13.0", "tensorflow==2.13.1"]
TARGETS = {"ours_vs_lce": 3.0, "xnor_vs_fp32_b32": 15.0, "xnor_vs_fp32_b1": 10.0,
           "threads2_vs_1_b1": 1.6}
VARIANTS = ("tf32", "tfl32", "lce", "lce_ib", "ours", "ours_pp")
LCE_KERNELS = {"lce": "default", "lce_ib": "indirect"}


# ---------------------------------------------------------------- machine, venv
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ensure_lce_venv(venv, log=print):
    """Python of a venv with larq + LCE; None (after saying why) if it cannot be made."""
    py = os.path.join(venv, "bin", "python")
    check = [py, "-c", "import larq, larq_compute_engine, tensorflow"]
    if os.path.exists(py) and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    log(f"creating LCE venv {venv} (pip install {' '.join(LCE_PIP)}) ...")
    try:
        if not os.path.exists(py):
            subprocess.run(["python3.11", "-m", "venv", venv], check=True, capture_output=True)
        r = subprocess.run([py, "-m", "pip", "install", "-q", *LCE_PIP], capture_output=True,
                           text=True)
        if r.returncode != 0:
            log(f"SKIP lce: pip install failed: {r.stderr.strip()[-800:]}")
            return None
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"SKIP lce: cannot create the venv: {e}")
        return None
    if subprocess.run(check, capture_output=True).returncode != 0:
        log("SKIP lce: larq_compute_engine does not import in its venv")
        return None
    return py


# ---------------------------------------------------------------- cases
def layer_case(name, batch, seed):
    """One binary layer: float input, weights, alpha, bias (numpy) and the LCE spec."""
    from xnor_conv import LAYERS
    hw, cin, cout, k, padding = LAYERS[name]
    rng = np.random.default_rng(seed)
    a = {
        "x": rng.standard_normal((batch, hw, hw, cin)).astype(np.float32),
        "w": (rng.standard_normal((k, k, cin, cout)) * 0.05).astype(np.float32),
        "bias": (rng.standard_normal(cout) * 0.1).astype(np.float32),
    }
    a["alpha"] = np.abs(a["w"]).mean(axis=(0, 1, 2)).astype(np.float32)
    return dict(name=f"{name}_b{batch}", layer=name, batch=batch, padding=padding,
                cin=cin, arrays=a)


def worker_inputs(cases, model_spec=None):
    """The arrays and JSON spec the LCE worker reads (one npz): layer cases are
    one `bconv` (+ alpha/bias and ReLU) on the float input; model_spec adds
    whole-model cases built by model_layers_spec."""
    arrays, spec = {}, []
    for c in cases:
        p = c["name"] + "/"
        for key in ("x", "w", "alpha", "bias"):
            arrays[p + key] = c["arrays"][key]
        spec.append({"name": c["name"], "batch": c["batch"],
                     "input_shape": list(c["arrays"]["x"].shape[1:]), "check": p + "x",
                     "layers": [{"type": "bconv", "kernel": p + "w", "alpha": p + "alpha",
                                 "bias": p + "bias", "strides": 1,
                                 "padding": c["padding"].lower(), "activation": "relu"}]})
    for m in model_spec or ():
        arrays.update(m["arrays"])
        spec.append({k: v for k, v in m.items() if k != "arrays"})
    arrays["spec"] = np.array(json.dumps(spec))
    return arrays, spec


def model_layers_spec(keras_model, name, batch, x):
    """LCE worker spec of an XNOR Keras chain model (sketchanet_xnor): the same
    layers and weights, BinaryConv2D -> bconv with alpha = mean|W| per filter."""
    from sketchtf.layers import BinaryConv2D
    from sketchtf.keras import keras
    arrays, layers = {f"{name}/x": x}, []
    for layer in keras_model.layers:
        p = f"{name}/{layer.name}/"
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, BinaryConv2D):
            if not layer.binary_activations or layer.input_scaling:
                raise ValueError(f"{layer.name}: only XNOR layers without input scaling")
            w = layer.kernel.numpy()
            b = layer.bias.numpy() if layer.use_bias else np.zeros(w.shape[-1], np.float32)
            arrays.update({p + "w": w, p + "alpha": np.abs(w).mean(axis=(0, 1, 2)),
                           p + "bias": b})
            layers.append({"type": "bconv", "kernel": p + "w", "alpha": p + "alpha",
                           "bias": p + "bias", "strides": list(layer.strides),
                           "padding": layer.padding, "activation": layer.activation.__name__})
        elif isinstance(layer, keras.layers.Conv2D):
            arrays.update({p + "w": layer.kernel.numpy(), p + "b": layer.bias.numpy()})
            layers.append({"type": "conv", "kernel": p + "w", "bias": p + "b",
                           "strides": list(layer.strides), "padding": layer.padding,
                           "activation": layer.activation.__name__})
        elif isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = (t.numpy() for t in (layer.gamma, layer.beta, layer.moving_mean,
                                              layer.moving_variance))
            arrays.update({p + "g": g, p + "b": b, p + "m": m, p + "v": v})
            layers.append({"type": "bn", "gamma": p + "g", "beta": p + "b", "mean": p + "m",
                           "var": p + "v", "epsilon": float(layer.epsilon)})
        elif isinstance(layer, keras.layers.MaxPooling2D):
            layers.append({"type": "maxpool", "pool": list(layer.pool_size),
                           "strides": list(layer.strides), "padding": layer.padding})
        elif isinstance(layer, keras.layers.Flatten):
            layers.append({"type": "flatten"})
        else:
            raise ValueError(f"{layer.name}: no LCE equivalent for {type(layer).__name__}")
    return {"name": name, "batch": batch, "input_shape": list(x.shape[1:]),
            "check": f"{name}/x", "layers": layers, "arrays": arrays}


# ---------------------------------------------------------------- child: one thread count
class LceWorker:
    def __init__(self, py, npz, threads, out_dir):
        self.proc = subprocess.Popen([py, WORKER, npz, str(threads), out_dir],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError(f"LCE worker failed: {err.strip()[-1500:]}")
        self.info = json.loads(line)
        self.outputs = dict(np.load(os.path.join(out_dir, "outputs.npz")))

    def time(self, case, kernel, n):
        self.proc.stdin.write(json.dumps({"case": case, "kernel": kernel, "n": n}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self):
        try:
            self.proc.stdin.write('{"quit": true}\n')
            self.proc.stdin.flush()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def _tflite_runner(tf, fn, shape, threads):
    """ai-edge-litert interpreter of the float graph `fn` at a fixed input shape."""
    from ai_edge_litert.interpreter import Interpreter
    conc = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    flat = tf.lite.TFLiteConverter.from_concrete_functions([conc], fn).convert()
    it = Interpreter(model_content=flat, num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x):
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)

    def timed(x, n):
        it.set_tensor(inp, x)
        t0 = time.perf_counter()
        for _ in range(n):
            it.invoke()
        return (time.perf_counter() - t0) / n

    return run, timed


def _layer_graphs(tf, xnor, w, wp, alpha, bias, cin, pad):
    """conv + bias + ReLU: fp32, ours on the float input (packing included), ours on
    packed input. Plain closures (no tensor default args: tf.function would make
    them inputs of the TFLite graph)."""
    def fp32(t):
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(t, w, 1, pad), bias))

    def ours_pp(tp):
        return xnor.xnor_conv2d(tp, wp, alpha, bias, cin, 1, pad, fused_relu=True)

    def ours(t):
        return ours_pp(xnor.bitpack_channels(t))

    return fp32, ours, ours_pp


def child(args):
    threads = args.child_threads
    sys.path.insert(0, HERE)
    import sketchtf  # noqa: F401
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op or threads)
    import xnor_conv
    from xnor_conv import _looped, _random_weights, sketch_batch
    from sketchtf.ops import xnor
    from sketchtf.models import build_model
    from sketchtf.ship import binarize

    batches = [int(b) for b in args.batches.split(",")]
    names = [s for s in args.layers.split(",") if s]
    cases = [layer_case(n, b, seed=int(n[1:]) * 100 + b) for n in names for b in batches]
    checks, runners = {}, {}
    sign = lambda t: tf.where(t >= 0, 1.0, -1.0)  # noqa: E731
    for c in cases:
        a = c["arrays"]
        x, w, alpha, bias = (tf.constant(a[k]) for k in ("x", "w", "alpha", "bias"))
        pad, cin = c["padding"], c["cin"]
        wp, xp = xnor.pack_filter(w), xnor.bitpack_channels(x)
        fp32, ours, ours_pp = _layer_graphs(tf, xnor, w, wp, alpha, bias, cin, pad)
        ref = tf.nn.relu(tf.nn.conv2d(sign(x), sign(w), 1, pad) * alpha + bias).numpy()
        got = ours(x).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(got, ours_pp(xp).numpy())
        tfl_run, tfl_time = _tflite_runner(tf, fp32, a["x"].shape, threads)
        np.testing.assert_allclose(tfl_run(a["x"]), fp32(x).numpy(), rtol=1e-3, atol=1e-3)
        checks[c["name"]] = {"ours_vs_tf_ref_maxabs": float(np.abs(got - ref).max()), "ours": got}
        runners[c["name"]] = {"tf32": (_looped(fp32), x), "tfl32": (tfl_time, a["x"]),
                              "ours": (_looped(ours), x), "ours_pp": (_looped(ours_pp), xp)}
    model_specs = []
    if not args.skip_model:
        shape = (args.model_size, args.model_size, 1)
        fm = build_model("sketchanet", num_classes=args.classes, input_shape=shape)
        xm = build_model("sketchanet_xnor", num_classes=args.classes, input_shape=shape)
        _random_weights(fm, 0)
        _random_weights(xm, 2)
        packed = binarize.pack_model(xm)
        for b in batches:
            name = f"model_b{b}"
            xin, model_input = sketch_batch(b, args.model_size)  # its L1 runs on the ink
            xt = tf.constant(xin)
            want = xm(xt, training=False).numpy()
            got = packed(xt).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
            ffn = lambda t: fm(t, training=False)  # noqa: E731
            tfl_run, tfl_time = _tflite_runner(tf, ffn, xin.shape, threads)
            np.testing.assert_allclose(tfl_run(xin), ffn(xt).numpy(), rtol=1e-3, atol=1e-3)
            checks[name] = {"input": model_input, "ours_vs_tf_ref_maxabs": float(np.abs(got - want).max()),
                            "ours": got, "ref_scale": float(np.abs(want).max())}
            runners[name] = {"tf32": (_looped(ffn), xt), "tfl32": (tfl_time, xin),
                             "ours": (_looped(packed.forward), xt)}
            model_specs.append(model_layers_spec(xm, name, b, xin))

    worker, lce_info = None, {"skipped": args.lce_python is None}
    with tempfile.TemporaryDirectory() as tmp:
        if args.lce_python:
            arrays, _ = worker_inputs(cases, model_specs)
            npz = os.path.join(tmp, "cases.npz")
            np.savez(npz, **arrays)
            try:
                worker = LceWorker(args.lce_python, npz, threads, tmp)
                lce_info = dict(worker.info)
            except Exception as e:  # noqa: BLE001  (report and go on without LCE)
                lce_info = {"skipped": True, "why": str(e)[-1500:]}
                print(f"SKIP lce ({threads} threads): {e}", file=sys.stderr)
        for name, ch in checks.items():
            if worker:
                scale = float(np.abs(ch["ours"]).max())
                d = max(float(np.abs(worker.outputs[f"{name}/{k}"] - ch["ours"]).max())
                        for k in LCE_KERNELS.values())
                ch["ours_vs_lce_maxabs"] = d
                ch["ours_vs_lce_rel"] = d / max(scale, 1e-12)
                if name.startswith("model"):
                    ch["argmax_equal"] = all(
                        np.array_equal(worker.outputs[f"{name}/{k}"].argmax(-1),
                                       ch["ours"].argmax(-1)) for k in LCE_KERNELS.values())
                if ch["ours_vs_lce_rel"] > 1e-3 and not args.no_check_lce:
                    raise AssertionError(f"{name}: ours vs LCE differ by {d} (scale {scale})")
            del ch["ours"]

        def timer(case, v):
            if v in LCE_KERNELS:
                return lambda n: worker.time(case, LCE_KERNELS[v], n)
            fn, arg = runners[case][v]
            if v == "tfl32":
                return lambda n: fn(arg, n)
            return lambda n: xnor_conv._time_calls(fn, arg, n)

        results = {}
        for case in runners:
            vs = [v for v in VARIANTS if v in runners[case] or (v in LCE_KERNELS and worker)]
            timers = {v: timer(case, v) for v in vs}
            calls = {}
            for v, t in timers.items():
                t(1)
                calls[v] = max(1, int(args.min_sample_s / max(t(2), 1e-6)))
            samples = {v: [] for v in vs}
            for _ in range(args.repeats):
                for v, t in timers.items():
                    # Untimed calls first: every engine's threads spin for a while after
                    # their work (ruy's, XNNPACK's pthreadpool, ours), and on 2 cores the
                    # next variant would share them with the previous one's spinners. (An
                    # idle pause instead made the next calls of every variant slower here:
                    # cores left idle come back slowly on this VM.)
                    t(max(1, calls[v] // 4))
                    samples[v].append(t(calls[v]))
            results[case] = {v: float(np.median(s)) for v, s in samples.items()}
        if worker:
            worker.close()
    print(json.dumps({"threads": threads, "seconds": results, "checks": checks,
                      "lce": lce_info, "path": xnor.available_paths()[-1],
                      "cpu_features": xnor.cpu_features(),
                      "tf": tf.__version__}))


# ---------------------------------------------------------------- parent
def summarize(runs, names, batches, with_model):
    """Headline ratios from {threads: child result}: sums of per-layer times."""
    out = {}
    for th, r in runs.items():
        s = r["seconds"]
        for b in batches:
            sel = [f"{n}_b{b}" for n in names]
            tot = {v: sum(s[c][v] for c in sel) for v in VARIANTS if all(v in s[c] for c in sel)}
            key = f"t{th}_b{b}"
            out[f"layers_ours_vs_tf32_{key}"] = round(tot["tf32"] / tot["ours"], 2)
            out[f"layers_ours_pp_vs_tf32_{key}"] = round(tot["tf32"] / tot["ours_pp"], 2)
            out[f"layers_ours_vs_tfl32_{key}"] = round(tot["tfl32"] / tot["ours"], 2)
            if "lce" in tot:
                best = min(tot["lce"], tot["lce_ib"])  # LCE's faster kernel on this machine
                out[f"layers_ours_vs_lce_{key}"] = round(best / tot["ours"], 2)
                out[f"layers_ours_vs_lce_default_{key}"] = round(tot["lce"] / tot["ours"], 2)
                out[f"layers_ours_vs_lce_indirect_{key}"] = round(tot["lce_ib"] / tot["ours"], 2)
                out[f"layers_lce_best_vs_tf32_{key}"] = round(tot["tf32"] / best, 2)
            out[f"layers_ours_ms_{key}"] = round(tot["ours"] * 1e3, 3)
            if with_model:
                m = s[f"model_b{b}"]
                out[f"model_ours_vs_tf32_{key}"] = round(m["tf32"] / m["ours"], 2)
                out[f"model_ours_vs_tfl32_{key}"] = round(m["tfl32"] / m["ours"], 2)
                if "lce" in m:
                    out[f"model_ours_vs_lce_{key}"] = round(min(m["lce"], m["lce_ib"]) / m["ours"], 2)
                    out[f"model_ours_vs_lce_default_{key}"] = round(m["lce"] / m["ours"], 2)
                    out[f"model_ours_vs_lce_indirect_{key}"] = round(m["lce_ib"] / m["ours"], 2)
                out[f"model_ours_ms_{key}"] = round(m["ours"] * 1e3, 3)
    if 1 in runs and 2 in runs and 1 in batches:
        t = {th: sum(runs[th]["seconds"][f"{n}_b1"]["ours"] for n in names) for th in (1, 2)}
        out["layers_ours_threads2_vs_1_b1"] = round(t[1] / t[2], 2)
        if with_model:
            out["model_ours_threads2_vs_1_b1"] = round(
                runs[1]["seconds"]["model_b1"]["ours"] / runs[2]["seconds"]["model_b1"]["ours"], 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", default="L2,L3,L4,L5")
    ap.add_argument("--model-size", type=int, default=225)
    ap.add_argument("--classes", type=int, default=250)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--min-sample-s", type=float, default=0.02)
    ap.add_argument("--lce-venv", default=DEFAULT_VENV)
    ap.add_argument("--no-lce", action="store_true")
    ap.add_argument("--no-check-lce", action="store_true",
                    help="report ours vs LCE differences instead of failing on them")
    ap.add_argument("--inter_op", type=int, default=1,
                    help="TF inter-op threads in every child (0: as many as intra-op). 1: a batch-1 "
                         "graph is a chain of ops, and an idle second inter-op thread only spins "
                         "against the intra-op ones")
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lce-python", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_threads:
        return child(args)

    names = [s for s in args.layers.split(",") if s]
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    lce_py = None if args.no_lce else ensure_lce_venv(args.lce_venv)
    if args.no_lce:
        print("SKIP lce: --no-lce")
    runs = {}
    for th in threads:
        cmd = [sys.executable, os.path.abspath(__file__), "--child-threads", str(th),
               "--repeats", str(args.repeats), "--batches", args.batches, "--layers", args.layers,
               "--model-size", str(args.model_size), "--classes", str(args.classes),
               "--min-sample-s", str(args.min_sample_s), "--inter_op", str(args.inter_op)]
        cmd += ["--skip-model"] * args.skip_model + ["--no-check-lce"] * args.no_check_lce
        cmd += ["--lce-python", lce_py] if lce_py else []
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode != 0 or not lines:
            sys.stderr.write(r.stderr[-4000:])
            raise SystemExit(f"child with {th} threads failed (rc {r.returncode})")
        runs[th] = json.loads(lines[-1])
        for ln in r.stderr.splitlines():
            if ln.startswith("SKIP"):
                print(ln)

    first = runs[threads[0]]
    feats = first["cpu_features"]
    has512 = any("avx512" in f for f in feats)
    lce = first["lce"]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; kernel path {first['path']} "
          f"({'AVX-512 present' if has512 else 'AVX2 only, NO AVX-512'}); cpu features: "
          f"{', '.join(feats)}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"TF {first['tf']} (ours, tf32, tfl32: ai-edge-litert); LCE: "
          + ("skipped" if lce.get("skipped") else
             f"larq-compute-engine {lce['lce']} / larq {lce['larq']} / TF {lce['tf']}, "
             "lce = default kernel, lce_ib = use_indirect_bgemm=True, "
             f"ops {sorted({o for v in lce['ops'].values() for o in v})}"))
    print(f"wall clock, median of {args.repeats} repeats, variants interleaved; "
          "ours = xnor_conv2d incl. bit-packing of the float input, "
          "ours_pp = on pre-packed input")
    hdr = (f"{'case':10} {'thr':>3} " + " ".join(f"{v + ' ms':>10}" for v in VARIANTS)
           + f" {'vs tf32':>7} {'vs tfl32':>8} {'vs lce':>6} {'|ours-lce|':>10}")
    print(hdr)
    print("-" * len(hdr))
    for th, r in runs.items():
        for case, s in r["seconds"].items():
            ch = r["checks"][case]
            cols = " ".join(f"{s[v]*1e3:10.3f}" if v in s else f"{'-':>10}" for v in VARIANTS)
            lce_x = (f"{min(s['lce'], s['lce_ib'])/s['ours']:6.2f}" if "lce" in s
                     else f"{'-':>6}")
            diff = f"{ch['ours_vs_lce_maxabs']:10.2e}" if "ours_vs_lce_maxabs" in ch else f"{'-':>10}"
            print(f"{case:10} {th:3d} {cols} {s['tf32']/s['ours']:7.2f} "
                  f"{s['tfl32']/s['ours']:8.2f} {lce_x} {diff}")
    print("ratios = other variant's time / ours (ours incl. packing; vs lce: LCE's faster "
          "kernel of the two); |ours-lce| = max abs "
          "output difference on the same input and weights; ours vs TF reference max abs: "
          + ", ".join(f"{c} {ch['ours_vs_tf_ref_maxabs']:.1e}"
                      for c, ch in runs[threads[0]]["checks"].items()))
    summary = summarize(runs, names, batches, not args.skip_model)
    met = {}
    for th in threads:
        for b in batches:
            k = f"layers_ours_vs_lce_t{th}_b{b}"
            if k in summary:
                met[f"ours_vs_lce_t{th}_b{b}"] = summary[k] >= TARGETS["ours_vs_lce"]
        for b, tk in ((32, "xnor_vs_fp32_b32"), (1, "xnor_vs_fp32_b1")):
            k = f"layers_ours_vs_tf32_t{th}_b{b}"
            if k in summary:
                met[f"{tk}_t{th}"] = summary[k] >= TARGETS[tk]
    if "layers_ours_threads2_vs_1_b1" in summary:
        met["threads2_vs_1_b1"] = summary["layers_ours_threads2_vs_1_b1"] >= TARGETS["threads2_vs_1_b1"]
    summary.update(targets=TARGETS, targets_met=met, cpu=cpu_model(), path=first["path"], avx512=has512,
                   lce_skipped=bool(lce.get("skipped")),
                   loadavg_1min=round(os.getloadavg()[0], 2), repeats=args.repeats)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
