"""FLOPs and CPU latency of the model zoo per input size.

    python -m sketchtf.evaluation.profile [--models=sketchnet,mobilenetv2] [--sizes=32,64,96,128,224]
        [--threads=1] [--runs=20] [--out=docs/profile.md]

FLOPs convention (TF's profiler, which `model_flops` runs on the frozen graph
of one batch-1 forward pass in inference mode): one multiply-add = 2 FLOPs
(Conv2D: 2 x outputs x kh x kw x in_channels; MatMul: 2 x in x out), plus 1
FLOP per element for BiasAdd and element-wise arithmetic (Add, Mul, Sub,
RealDiv; Mean = global average pooling counts its input elements); MaxPool
counts kh x kw per output. Not counted: BatchNorm (FusedBatchNorm: folded into
the preceding conv when deployed), activations (ReLU, sigmoid, swish's sigmoid
part), padding and reshapes. Numbers are per example.

Latency: median wall time of one batch-1 forward call (a tf.function, no XLA)
after warm-up, on `threads` intra-op threads (inter-op 1). Thread counts can
only be set before TensorFlow starts, so the CLI sets them first thing.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from sketchtf.keras import keras

DEFAULT_SIZES = (32, 64, 96, 128, 224)
SKETCHANET_MIN_SIZE = 81  # nothing is left after pool5 below this (sketchtf/models/sketchanet.py)


def _input_spec(model, input_shape):
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    model_shape = getattr(model, "input_shape", None)
    if isinstance(model_shape, tuple) and len(model_shape) == 4:
        fixed = tuple(model_shape[1:])
        if any(m is not None and m != s for m, s in zip(fixed, shape)):
            raise ValueError(f"input_shape {shape} does not match the model's input {fixed}")
    return tf.TensorSpec((1,) + shape, tf.float32)


def _profile(model, input_shape):
    """TF profiler's float-op tree for one batch-1 inference pass on the frozen graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(_input_spec(model, input_shape))
    graph = convert_variables_to_constants_v2(concrete).graph  # weights as constants: shapes are all static
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                         options=opts)


def model_flops(model, input_shape) -> int:
    """FLOPs per example of one forward pass (1 multiply-add = 2 FLOPs; see module doc).

    model: a tf_keras model taking [B, H, W, C]; input_shape: (H, W, C)."""
    return int(_profile(model, input_shape).total_float_ops)


def flops_by_op(model, input_shape) -> dict:
    """{op type: FLOPs} behind model_flops (which op types were counted)."""
    out = {}

    def walk(node):
        if node.float_ops:
            out[node.name] = out.get(node.name, 0) + int(node.float_ops)
        for child in node.children:
            walk(child)
    walk(_profile(model, input_shape))
    return out


def set_threads(threads):
    """Sets intra-op threads (inter-op 1); None keeps the process' setting.

    TF fixes both when its runtime starts: a different count afterwards raises
    RuntimeError (set it at the start of the process, as the CLI does)."""
    if threads is None:
        return
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as e:
        raise RuntimeError(
            f"cannot use threads={threads}: TensorFlow already started with "
            f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} intra-op threads ({e}); "
            "call set_threads before any TF op, or pass threads=None") from None


def measure_latency(model, size, threads=1, runs=20, warmup=3, channels=None, max_seconds=None) -> dict:
    """Batch-1 CPU latency of `model` at a size x size input.

    model: a tf_keras model, or a registry name (built with 10 classes, 1 channel
    unless `channels`). Returns {median_ms, min_ms, runs}: median / min over the
    timed calls (at least 3; `max_seconds` stops earlier than `runs`)."""
    set_threads(threads)
    if isinstance(model, str):
        from sketchtf.models import build_model
        model = build_model(model, num_classes=10, input_shape=(size, size, channels or 1))
    if channels is None:
        shape = getattr(model, "input_shape", None)
        channels = shape[-1] if isinstance(shape, tuple) and shape[-1] else 1
    spec = _input_spec(model, (size, size, channels))
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    x = tf.constant(np.random.default_rng(0).random(spec.shape, dtype=np.float32))
    for _ in range(max(1, int(warmup))):
        fn(x).numpy()
    times = []
    start = time.perf_counter()
    while len(times) < max(3, int(runs)):
        t0 = time.perf_counter()
        fn(x).numpy()  # .numpy() waits for the result
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return dict(median_ms=1e3 * statistics.median(times), min_ms=1e3 * min(times), runs=len(times))


def profile_models(models, sizes=DEFAULT_SIZES, threads=1, runs=20, max_seconds=20.0, num_classes=10,
                   log=print) -> list:
    """One row per (model, size): {model, size, params, flops, median_ms, min_ms, runs, note}."""
    from sketchtf.models import build_model
    set_threads(threads)
    rows = []
    for name in models:
        for size in sizes:
            row = dict(model=name, size=int(size), params=None, flops=None, median_ms=None, min_ms=None,
                       runs=0, note="")
            if name == "sketchanet" and size < SKETCHANET_MIN_SIZE:
                row["note"] = f"needs >= {SKETCHANET_MIN_SIZE} px"
                rows.append(row)
                continue
            keras.backend.clear_session()
            gc.collect()
            try:
                model = build_model(name, num_classes=num_classes, input_shape=(size, size, 1))
            except ValueError as e:  # a model that rejects this size says why
                row["note"] = str(e)
                rows.append(row)
                continue
            row["params"] = int(model.count_params())
            row["flops"] = model_flops(model, (size, size, 1))
            row.update(measure_latency(model, size, threads=None, runs=runs, channels=1, max_seconds=max_seconds))
            log(f"{name:16s} {size:4d}px  params {row['params']:>11,}  MFLOPs {row['flops'] / 1e6:10.1f}  "
                f"latency {row['median_ms']:8.2f} ms (min {row['min_ms']:.2f}, {row['runs']} runs)")
            rows.append(row)
    return rows


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, TF {tf.__version__}"


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def render_table(rows, *, threads, machine, load_before, load_after, command, wall_s) -> str:
    out = [
        "# FLOPs, parameters and CPU latency of the zoo per input size",
        "",
        f"Generated by `{command}` in {wall_s:.0f} s.",
        "",
        f"- Machine: {machine}.",
        f"- Latency: median of batch-1 forward calls on {threads} intra-op thread(s) (inter-op 1), "
        "after 3 warm-up calls; `min` is the fastest call.",
        f"- Machine load average (1/5/15 min) before: {load_before}; after: {load_after}. Other jobs shared "
        "the CPUs (load above the CPU count means contention): medians are then upper bounds of an idle "
        "machine's and `min` is the closer estimate; FLOPs and params do not depend on load.",
        "- FLOPs: TF profiler on the frozen inference graph, per example; 1 multiply-add = 2 FLOPs; "
        "MaxPool counted as kh x kw per output, BatchNorm and activations not counted (see `sketchtf/evaluation/profile.py`).",
        "- Binary-weight models (e.g. sketchanet_xnor) are counted as the float graph they run here; an "
        "XNOR/popcount kernel would need fewer operations than the FLOPs shown.",
        "- Params: Keras `count_params()` at 10 classes, 1-channel input (includes BatchNorm moving "
        "statistics; SketchNet's flatten and Sketch-A-Net's L6 kernel grow with the input size).",
        "",
        "| model | input | params | MFLOPs | latency median (ms) | latency min (ms) | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["flops"] is None:
            out.append(f"| {r['model']} | {r['size']} | - | - | - | - | {r['note']} |")
            continue
        out.append(f"| {r['model']} | {r['size']} | {r['params']:,} | {r['flops'] / 1e6:,.1f} | "
                   f"{r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['runs']} |")
    out.append("")
    return "\n".join(out)


def main(argv):
    del argv
    from absl import flags
    from sketchtf.models import available_models
    f = flags.FLAGS
    set_threads(f.threads)  # before anything starts TF's runtime
    # frozen_mlp (sketchtf.training.features) is a backbone + head assembly, not a zoo model of its own
    zoo = [m for m in available_models() if m != "frozen_mlp"]
    models = [m.strip() for m in f.models.split(",") if m.strip()] if f.models else zoo
    unknown = sorted(set(models) - set(available_models()))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; known: {', '.join(available_models())}")
    try:
        sizes = [int(s) for s in f.sizes.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--sizes={f.sizes!r}: expected comma-separated integers") from None
    load_before = load_average()
    t0 = time.time()
    rows = profile_models(models, sizes, threads=f.threads, runs=f.runs, max_seconds=f.max_seconds)
    text = render_table(rows, threads=f.threads, machine=machine_description(), load_before=load_before,
                        load_after=load_average(), command="python -m sketchtf.evaluation.profile " + " ".join(sys.argv[1:]),
                        wall_s=time.time() - t0)
    sys.stdout.write("\n" + text)
    if f.out:
        os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
        with open(f.out, "w") as fh:
            fh.write(text)
        print(f"wrote {f.out}")


if __name__ == "__main__":
    # Flags live here so that importing sketchtf.evaluation.profile (model_flops) defines none.
    from absl import app, flags
    flags.DEFINE_string("models", "", "Comma-separated registry names; empty = the whole zoo.")
    flags.DEFINE_string("sizes", ",".join(str(s) for s in DEFAULT_SIZES), "Comma-separated input sizes (px).")
    flags.DEFINE_integer("threads", 1, "Intra-op threads for the latency runs.")
    flags.DEFINE_integer("runs", 20, "Timed batch-1 calls per model and size (at least 3).")
    flags.DEFINE_float("max_seconds", 20.0, "Stop timing a cell after this long (once 3 runs are done).")
    flags.DEFINE_string("out", "docs/profile.md", "Markdown file to write ('' = print only).")
    app.run(main)
