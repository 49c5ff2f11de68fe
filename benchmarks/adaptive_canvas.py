"""Adaptive canvas size vs fixed sizes, trained and evaluated in one run.

    python benchmarks/adaptive_canvas.py                 # quickdraw_10class_ndjson, CPU-sized
    python benchmarks/adaptive_canvas.py --quick         # synthetic smoke (about a minute)
    python benchmarks/adaptive_canvas.py --epochs=15 --limit_per_class=0 --baseline_fixed=128   # the full run

Steps: train sketchnet_gp on a random size per batch (configs/adaptive_qd10.py,
train records minus a 10% holdout); per-size outputs on holdout and test;
REINFORCE selectors and the cascade fitted on the holdout at each lambda; test
accuracy vs mean FLOPs per sketch; optional dedicated fixed-size models trained
with the same budget; the default policy exported as a SavedModel and reloaded
(fresh tf.saved_model.load) to check it answers like the table. Writes
docs/adaptive.md and docs/adaptive.png (--quick: into the workdir) and ends with
one JSON line.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sketchtf  # noqa: E402,F401

flags.DEFINE_bool("quick", False, "Synthetic smoke run (sizes 32/64, one epoch).")
flags.DEFINE_string("workdir", "runs/adaptive_bench", "Run folder (replaced when --fresh).")
flags.DEFINE_bool("fresh", True, "Delete the workdir first.")
flags.DEFINE_integer("epochs", 3, "Multi-resolution training epochs.")
flags.DEFINE_integer("limit_per_class", 300, "Train drawings per class (0 = all 1000).")
flags.DEFINE_string("sizes", "32,64,96,128", "Canvas sizes.")
flags.DEFINE_string("lambdas", "0.005,0.01,0.02,0.05,0.1,0.2,0.4", "Lambda sweep for the plot.")
flags.DEFINE_string("baseline_fixed", "", "Sizes of dedicated single-size models to train too (e.g. 128).")
flags.DEFINE_string("out_md", "docs/adaptive.md", "Markdown report (--quick: <workdir>/adaptive.md).")
flags.DEFINE_string("out_png", "docs/adaptive.png", "Plot (--quick: <workdir>/adaptive.png).")
F = flags.FLAGS


def _config():
    from configs.adaptive_qd10 import get_config
    c = get_config("smoke" if F.quick else None)
    if not F.quick:
        c.train.epochs = F.epochs
        c.data.limit_per_class = F.limit_per_class
        c.adaptive.sizes = tuple(int(s) for s in F.sizes.split(","))
        c.train.verbose = 2
    else:
        c.data.synthetic_per_class = 16
        c.data.synthetic_test_per_class = 8
    return c


def _dedicated(config, size, workdir):
    """A single-size sketchnet_gp trained with the same recipe on the same records."""
    from sketchtf.adaptive import multires
    c = config.copy_and_resolve_references()
    c.adaptive.sizes = (size,)
    return multires.train_multires(c, workdir)


def _plot(rows, sweep, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fixed = [r for r in rows if r["method"].startswith("fixed") or r["method"].startswith("dedicated")]
    for r in fixed:
        ax.scatter(r["mean_flops"] / 1e6, r["top1"], marker="s" if r["method"].startswith("fixed") else "D",
                   color="k" if r["method"].startswith("fixed") else "tab:gray")
        ax.annotate(r["method"], (r["mean_flops"] / 1e6, r["top1"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8)
    for method, color in (("selector", "tab:blue"), ("selector_lowres", "tab:green"), ("cascade", "tab:red")):
        pts = sorted((r["mean_flops"] / 1e6, r["top1"]) for r in sweep if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts), "o-", color=color, label=f"{method} (lambda sweep)", ms=4)
    orc = [r for r in rows if r["method"].startswith("oracle")]
    if orc:
        ax.scatter(orc[0]["mean_flops"] / 1e6, orc[0]["top1"], marker="*", s=120, color="tab:orange",
                   label="oracle (bound)")
    ax.set_xscale("log")
    ax.set_xlabel("mean MFLOPs per sketch (log)")
    ax.set_ylabel("top-1 % (test)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(rows):
    out = ["| method | top-1 % | mean MFLOPs / sketch | x fixed-max FLOPs | share of sketches per size |",
           "|---|---|---|---|---|"]
    for r in rows:
        share = ", ".join(f"{s}: {100 * v:.0f}%" for s, v in r["size_share"].items() if v) if r.get("size_share") else ""
        out.append(f"| {r['method']} | {r['top1']:.2f} | {r['mean_flops'] / 1e6:,.2f} | {r['flops_vs_max']:.3f} | "
                   f"{share} |")
    return "\n".join(out)


def _served_agreement(model, class_names, config, sizes, costs, policy, test_records, rows_method, probs, feats,
                      labels, export_base):
    """Exports `policy`, reloads it fresh, and compares with the table's answers."""
    import numpy as np
    import tensorflow as tf
    from sketchtf.adaptive import policy as P
    from sketchtf.adaptive.evaluate import selector_inputs
    from sketchtf.adaptive.serving import export_adaptive
    from sketchtf.ship.export import strokes_to_request
    path = export_adaptive(model, class_names, config.data, sizes, costs, policy, export_base, "adaptive")
    fn = tf.saved_model.load(path).signatures["predict_strokes"]
    served_pred, served_size = [], []
    for i in range(0, len(test_records), 128):
        s, ln = strokes_to_request([r.strokes for r in test_records[i:i + 128]])
        out = fn(strokes=tf.constant(s), lengths=tf.constant(ln))
        served_pred.append(out["top_k_ids"].numpy()[:, 0])
        served_size.append(out["canvas_size"].numpy())
    served_pred, served_size = np.concatenate(served_pred), np.concatenate(served_size)
    if policy["kind"] == "cascade":
        used, pred, _ = P.cascade_decide(probs, policy["chain"], policy["threshold"], costs)
    else:
        sel = P.Selector.from_dict(policy["selector"])
        used = sel.choose(selector_inputs(probs, feats, sel.lowres)).numpy()
        pred = np.argmax(probs[used, np.arange(len(labels))], -1)
    return dict(path=path, served_top1=round(100 * float(np.mean(served_pred == labels)), 2),
                pred_agreement=float(np.mean(served_pred == pred)),
                size_agreement=float(np.mean(served_size == np.asarray(sizes)[used])))


def main(argv):
    del argv
    import shutil

    from sketchtf.adaptive import evaluate as E
    from sketchtf.adaptive import multires
    from sketchtf.data import pipeline
    from sketchtf.workdir import load_trained_model
    t_start = time.time()
    config = _config()
    wd = F.workdir
    if F.fresh and os.path.exists(wd):
        shutil.rmtree(wd)
    out_md = os.path.join(wd, "adaptive.md") if F.quick else F.out_md
    out_png = os.path.join(wd, "adaptive.png") if F.quick else F.out_png
    sizes = multires.check_sizes(config.adaptive.sizes)

    t0 = time.time()
    train_result = multires.train_multires(config, os.path.join(wd, "multires"))
    train_wall = time.time() - t0
    model, _, class_names = load_trained_model(os.path.join(wd, "multires"))
    costs = E.size_flops(model, sizes, int(config.data.channels))
    held = multires.load_holdout(config, os.path.join(wd, "multires"))
    test = pipeline.load_records(config.data, "test")
    hold_t = E.holdout_tables(model, config.data, held, class_names, sizes, 128)
    test_t = E.holdout_tables(model, config.data, test, class_names, sizes, 128)
    policies = E.fit_policies(*hold_t, costs, config.adaptive, int(config.seed))
    E.save_json(policies, os.path.join(wd, "policy.json"))
    rows = E.evaluate_policies(*test_t, costs, sizes, policies)
    lambdas = [float(x) for x in F.lambdas.split(",")] if not F.quick else [0.02, 0.2]
    sweep = E.lambda_sweep(hold_t, test_t, costs, sizes, config.adaptive, lambdas, int(config.seed))

    for s in [int(x) for x in F.baseline_fixed.split(",") if x.strip()]:
        res = _dedicated(config, s, os.path.join(wd, f"fixed{s}"))
        dm, _, _ = load_trained_model(os.path.join(wd, f"fixed{s}"))
        fl = E.size_flops(dm, [s])[0]
        rows.insert(len(sizes), dict(method=f"dedicated {s}", top1=round(100 * res["top1"], 2), mean_flops=float(fl),
                                     flops_vs_max=round(fl / max(costs), 4), size_share={s: 1.0}))

    served = _served_agreement(model, class_names, config, sizes, costs, policies[policies["default"]], test,
                               policies["default"], test_t[0], test_t[2], test_t[1], os.path.join(wd, "exported"))
    by = {r["method"]: r for r in rows}
    ref = by.get(f"dedicated {sizes[-1]}", by[f"fixed {sizes[-1]}"])
    default = by[policies["default"]]
    adaptive_best = [r for r in rows if r["method"] in ("selector", "selector_lowres", "cascade")]
    within = [r for r in adaptive_best + [x for x in sweep] if r["top1"] >= ref["top1"] - 0.5]
    cheapest_within = min(within, key=lambda r: r["mean_flops"]) if within else None
    title = (f"{'synthetic smoke' if F.quick else 'quickdraw_10class test'} ({len(test)} sketches); "
             f"sketchnet_gp, {config.train.epochs} epoch(s)")
    _plot(rows, sweep, out_png, title)
    best_fixed = max((r for r in rows if r["method"].startswith(("fixed", "dedicated"))), key=lambda r: r["top1"])
    caveat = "" if best_fixed["top1"] <= ref["top1"] + 0.5 else (
        f" **Caveat:** the reference is not the best fixed size ({best_fixed['method']} px: {best_fixed['top1']:.2f}%), "
        "so the model is undertrained at the largest size and meeting the target here says little; against "
        f"{best_fixed['method']} the default is {default['top1'] - best_fixed['top1']:+.2f} pt at "
        f"{best_fixed['mean_flops'] / default['mean_flops']:.2f}x its FLOPs.")
    command = "python benchmarks/adaptive_canvas.py " + " ".join(sys.argv[1:])
    headline = dict(
        ref=ref["method"], ref_top1=ref["top1"], default_policy=policies["default"],
        default_top1=default["top1"], default_flops_ratio=round(ref["mean_flops"] / default["mean_flops"], 2),
        best_within_half_pt=(dict(method=cheapest_within["method"], lambda_flops=cheapest_within.get("lambda_flops"),
                                  top1=cheapest_within["top1"],
                                  flops_ratio=round(ref["mean_flops"] / cheapest_within["mean_flops"], 2))
                             if cheapest_within else None),
        target="top1 >= ref - 0.5 at flops_ratio >= 3",
        met=bool(default["top1"] >= ref["top1"] - 0.5 and ref["mean_flops"] / default["mean_flops"] >= 3),
        served_pred_agreement=served["pred_agreement"], served_size_agreement=served["size_agreement"],
        best_fixed=best_fixed["method"], best_fixed_top1=best_fixed["top1"],
        train_wall_s=round(train_wall, 1), total_wall_s=round(time.time() - t_start, 1))
    md = [
        "# Adaptive canvas size (issue 8 item 2, seed B)",
        "",
        f"Generated by `{command}` (total {headline['total_wall_s']:.0f} s, multi-resolution training "
        f"{train_wall:.0f} s) on {'synthetic data' if F.quick else 'quickdraw_10class_ndjson'}; "
        f"test split: {len(test)} sketches. Every number below comes from that run.",
        "",
        "## Setup",
        f"- Recognizer: `sketchnet_gp` (SketchNet's 4 conv blocks + 1x1 bottleneck, global mean+max pooling head, "
        f"{model.count_params():,} params) trained once on batches rendered natively at a random size of "
        f"{list(sizes)} per batch; {config.train.epochs} epoch(s), batch {config.train.batch_size}, Adam "
        f"{config.train.lr}; train drawings per class: {config.data.limit_per_class or 'all'}, of which "
        f"{config.adaptive.holdout_fraction:.0%} held out for the policies ({len(held)} sketches). Top-1 at "
        f"{sizes[-1]} px after training: {100 * train_result['top1']:.2f}%.",
        "- FLOPs per sketch (`sketchtf.evaluation.profile.model_flops`, 1 multiply-add = 2 FLOPs): "
        + ", ".join(f"{s} px {c / 1e6:,.1f} M" for s, c in zip(sizes, costs)) + ". Adaptive costs add every size "
        "tried (cascade), the 32 px pass (selector_lowres) and the selector's MLP; stroke statistics and rendering "
        "are not counted (for the fixed sizes neither).",
        f"- Policies fitted on the holdout at lambda = {config.adaptive.lambda_flops} (reward = correct - lambda x "
        "FLOPs / FLOPs(max)). selector: 7 stroke statistics -> MLP(16) -> size, REINFORCE with a learned baseline; "
        "selector_lowres: the same plus the 32 px answer's max prob, margin and entropy; cascade: chain of sizes "
        "and one threshold searched on the holdout with the same objective. Default = best holdout objective: "
        f"**{policies['default']}**.",
        "",
        f"## Test accuracy vs mean FLOPs (lambda = {config.adaptive.lambda_flops})",
        "",
        _table(rows),
        "",
        "Cascade chain: " + " -> ".join(str(sizes[k]) for k in policies["cascade"]["chain"])
        + f" px, threshold {policies['cascade']['threshold']:.3f}.",
        "",
        "## Lambda sweep (fitted on the holdout, scored on test)",
        "",
        "| lambda | method | top-1 % | mean MFLOPs | x fixed-max |",
        "|---|---|---|---|---|",
    ] + [f"| {r['lambda_flops']} | {r['method']} | {r['top1']:.2f} | {r['mean_flops'] / 1e6:,.2f} | "
         f"{r['flops_vs_max']:.3f} |" for r in sweep] + [
        "",
        f"![accuracy vs FLOPs]({os.path.basename(out_png)})",
        "",
        "## Headline",
        "",
        f"Reference: {ref['method']} px, top-1 {ref['top1']:.2f}%. Default policy {policies['default']}: "
        f"top-1 {default['top1']:.2f}% at {headline['default_flops_ratio']}x fewer FLOPs. Target (top-1 within "
        f"0.5 pt at >= 3x fewer FLOPs): {'met' if headline['met'] else 'not met'} in this run. One test sketch is "
        f"{100 / len(test):.2f} pt." + caveat,
        "",
        f"Exported SavedModel (`predict_strokes`, reloaded with tf.saved_model.load): its top-1 class equals the "
        f"table's for {100 * served['pred_agreement']:.1f}% of test sketches and its canvas_size for "
        f"{100 * served['size_agreement']:.1f}% (served top-1 {served['served_top1']:.2f}%).",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    with open(out_md, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {out_md} and {out_png}")
    print(json.dumps(dict(headline, rows={r["method"]: [r["top1"], round(r["mean_flops"] / 1e6, 2)] for r in rows})))


if __name__ == "__main__":
    app.run(main)
