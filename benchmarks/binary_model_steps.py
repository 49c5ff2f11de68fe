"""Where the time of a packed binary Sketch-A-Net goes at batch 1: one step at a time.

Times the forward pass of the first k steps of `binarize.pack_model(...)` for
k = 1..n (each as a graph loop, best of --repeats), so each step's share is the
difference of consecutive totals (small negative differences are noise).
Random weights (speed does not depend on them), 225 px, 250 classes by default.
TF's thread count is fixed once it starts: run once per --threads value.

    python benchmarks/binary_model_steps.py [--model sketchanet_xnor] [--threads 1]

Then times the forward pass the packed model serves (`packed.forward`: the
float steps in front of each XNOR layer fused into one op, the float L1 on the
ink only) against the total, and the same with TF's dense conv for L1. The
steps are the unfused Keras/op steps (L1 dense). Input: one real drawing
(--input sketches, the default) or uniform noise.

Ends with ONE JSON line: per-step ms, the total and the served forward.
"""
import argparse
import json
import os
import sys

import numpy as np


def _step_name(step):
    """A served step's label: the layers it runs."""
    from sketchtf.ship import binarize
    if isinstance(step, binarize._NormSignStep):  # [pool ->] bn -> sign -> the XNOR layer
        return ("pool+" if step.pool_size > 1 else "") + "bn+sign+" + step.xnor_step.config["name"]
    if isinstance(step, binarize._PoolBinaryWeightStep):
        return "pool+" + step.bw_step.config["name"]
    if isinstance(step, binarize._InkConvStep):
        return "ink_conv"
    if isinstance(step, binarize._MatmulStep):
        return "matmul:" + step.layer.name
    return step.config["name"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sketchanet_xnor",
                    help="a binary registry model: sketchanet_xnor or sketchanet_binary")
    ap.add_argument("--threads", type=int, default=1, help="TF intra- and inter-op threads (0: TF default)")
    ap.add_argument("--inter_op", type=int, default=1,
                    help="TF inter-op threads (-1: as --threads). 1: a batch-1 graph is a chain of ops, "
                         "and an idle second inter-op thread only spins against the intra-op ones")
    ap.add_argument("--size", type=int, default=225)
    ap.add_argument("--classes", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50, help="forward passes per timed graph loop")
    ap.add_argument("--input", choices=("sketches", "uniform"), default="sketches",
                    help="sketches: real drawings (xnor_conv.sketch_batch); uniform: random noise, "
                         "100%% ink, the worst case for the ink-sparse L1")
    args = ap.parse_args(argv)

    import sketchtf  # noqa: F401  (environment before TensorFlow loads)
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads if args.inter_op < 0 else args.inter_op)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from xnor_conv import _looped, _random_weights, _time_calls, sketch_batch
    from sketchtf.models import build_model
    from sketchtf.ops import xnor
    from sketchtf.ship import binarize

    model = build_model(args.model, num_classes=args.classes, input_shape=(args.size, args.size, 1))
    _random_weights(model, 2)
    packed = binarize.pack_model(model)
    if args.input == "sketches":
        images, source = sketch_batch(1, args.size)
    else:
        images, source = np.random.default_rng(1).random((1, args.size, args.size, 1)).astype(np.float32), "uniform noise"
    x = tf.constant(images)
    names = [e["config"]["name"] for e in packed.entries]
    print(f"{args.model}, batch 1, {args.size} px, path {xnor.available_paths()[-1]}, "
          f"threads {args.threads or 'TF default'}, inter-op {args.inter_op if args.inter_op >= 0 else 'same'}; best of {args.repeats} x {args.calls} calls; "
          f"input: {source}")
    totals = []
    def best_ms(forward):
        run = _looped(forward)
        _time_calls(run, x, 3)  # trace and warm up
        return 1e3 * min(_time_calls(run, x, args.calls) for _ in range(args.repeats))

    for k in range(1, len(packed.steps) + 1):
        def forward(t, steps=packed.steps[:k]):
            for step in steps:
                t = step(t)
            return t
        totals.append(best_ms(forward))
        step_ms = totals[-1] - (totals[-2] if k > 1 else 0.0)
        print(f"{k:2d} {names[k - 1]:12s} total {totals[-1]:7.3f} ms   step {step_ms:7.3f} ms")
    # What the packed model serves: its forward(), with pool -> BN -> sign in front of
    # each XNOR layer fused into one op (binarize._fuse_steps); the steps above are unfused.
    served = best_ms(packed.forward)
    # The served plan's own steps (fused), timed the same way: where the served time goes.
    plan, plan_totals = packed._plan.value, []
    print("served steps:")
    for k in range(1, len(plan) + 1):
        def forward(t, steps=plan[:k]):
            for step in steps:
                t = step(t)
            return t
        plan_totals.append(best_ms(forward))
        print(f"{k:2d} {_step_name(plan[k - 1]):22s} total {plan_totals[-1]:7.3f} ms   "
              f"step {plan_totals[-1] - (plan_totals[-2] if k > 1 else 0.0):7.3f} ms")
    dense_l1 = best_ms(binarize.pack_model(model, ink_first_layer=False).forward)
    print(f"served forward (fused norm+sign steps, L1 on the ink): {served:7.3f} ms, "
          f"{totals[-1] / served:.2f}x the steps above; with TF's dense L1 {dense_l1:7.3f} ms "
          f"({dense_l1 / served:.2f}x)")
    steps = {n: round(totals[i] - (totals[i - 1] if i else 0.0), 4) for i, n in enumerate(names)}
    served_steps = {f"{k + 1}:{_step_name(st)}": round(plan_totals[k] - (plan_totals[k - 1] if k else 0.0), 4)
                    for k, st in enumerate(plan)}
    print(json.dumps({"model": args.model, "threads": args.threads, "inter_op": args.inter_op, "total_ms": round(totals[-1], 4),
                      "served_ms": round(served, 4), "served_dense_l1_ms": round(dense_l1, 4), "input": source, "step_ms": steps, "served_step_ms": served_steps, "loadavg_1min": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
