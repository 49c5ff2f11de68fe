"""Trained binary model -> packed 1-bit .sktb model on the C++ ops (sketchtf/ship/binarize.py).

  python -m sketchtf.binarize --workdir=runs/sketchanet_binary_128 --out=runs/sketchanet_binary_128.sktb
"""
from absl import flags

from sketchtf import console

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained run (sketchtf.train workdir) with Binary layers.")
_OUT = flags.DEFINE_string("out", None, "Packed model file to write (.sktb).")
_EVAL_SPLIT = flags.DEFINE_string("eval_split", "", "Also evaluate the packed model (C++ ops) on this split, e.g. test.")
_CHECK = flags.DEFINE_integer("check", 4, "Compare packed vs Keras logits on this many random images (0 = skip).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
    del argv
    from sketchtf.ship.binarize import binarize_workdir
    try:
        r = binarize_workdir(_WORKDIR.value, _OUT.value, _CHECK.value, _EVAL_SPLIT.value)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print(f"wrote {_OUT.value}: {r['file_bytes']} bytes; float32 weights {r['total_float32_bytes']} "
          f"bytes ({r['total_float32_bytes'] / r['file_bytes']:.1f}x); binary layers "
          f"{r['binary_float32_bytes']} -> {r['binary_packed_bytes']} bytes")
    if "check_max_abs_logit_diff" in r:
        print(f"check: max |packed - keras| logits on {_CHECK.value} random images = "
              f"{r['check_max_abs_logit_diff']:.3g}")
    if "eval" in r:
        e = r["eval"]
        print(f"packed model on {_EVAL_SPLIT.value}: top-1 {e['top1']:.4f}  top-5 {e['top5']:.4f}  "
              f"macro-F1 {e['macro_f1']:.4f}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
