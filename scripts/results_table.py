"""Prints docs/results.md table rows from finished workdirs (metrics.json), so the
numbers in the docs are copied by a program, not by hand.

  python scripts/results_table.py runs/baselines/sketchnet runs/baselines/mobilenetv2 ...
"""
import json
import os
import sys


def row(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        m = json.load(f)
    e = m.get("extra", {})
    worst = min(m["per_class"].items(), key=lambda kv: kv[1]["accuracy"])
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    return (f"| {os.path.basename(os.path.normpath(workdir))} | {e.get('model', '?')} | {e.get('params', 0):,} | "
            f"{e.get('image_size', '?')} | {pct(m['top1'])} | {pct(m['top5'])} | {pct(m['macro_precision'])} | "
            f"{pct(m['macro_recall'])} | {pct(m['macro_f1'])} | {worst[0]} {100 * worst[1]['accuracy']:.1f} | "
            f"{e.get('epochs', '?')} | {e.get('fit_wall_s', '?')} s |")


if __name__ == "__main__":
    print("| run | model | params | px | top-1 | top-5 | macro P | macro R | macro F1 | worst class | epochs | fit wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wd in sys.argv[1:]:
        print(row(wd))
