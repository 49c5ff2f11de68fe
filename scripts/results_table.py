"""Prints markdown table rows from finished workdirs (their metrics.json), to check
or paste into docs/results.md by hand.

  python scripts/results_table.py runs/baselines/sketchnet runs/baselines/mobilenetv2 ...

It only reads; it does not edit docs/results.md. The tables there were copied by
hand (row labels and the code column too), so check the page's numbers against
this output. Works for any run written by `python -m sketchtf.train` or
`python -m sketchtf.distill` (metrics.json with the trainer's "extra": model,
params, image_size, epochs, fit_wall_s), and for the folders `python -m
sketchtf.evaluate` writes (e.g. <workdir>/eval_test_10view for --ten_view);
`?` marks a field the run did not record.
"""
import json
import os
import sys


def row(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        m = json.load(f)
    e = m.get("extra", {})
    worst = m.get("worst_class") or {}
    if not worst:  # older metrics.json: lowest per-class accuracy, ties to the first class
        name, v = min(m["per_class"].items(), key=lambda kv: kv[1]["accuracy"])
        worst = dict(name=name, accuracy=v["accuracy"])
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    params = e.get("params")
    wall = e.get("fit_wall_s")
    return (f"| {os.path.basename(os.path.normpath(workdir))} | {e.get('model', '?')} | "
            f"{'?' if params is None else f'{params:,}'} | "
            f"{e.get('image_size', '?')} | {pct(m['top1'])} | {pct(m['top5'])} | {pct(m['macro_precision'])} | "
            f"{pct(m['macro_recall'])} | {pct(m['macro_f1'])} | {worst['name']} {100 * worst['accuracy']:.1f} | "
            f"{e.get('epochs', '?')} | {'?' if wall is None else f'{wall} s'} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("| run | model | params | px | top-1 | top-5 | macro P | macro R | macro F1 | worst class | epochs | fit wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wd in sys.argv[1:]:
        print(row(wd))
