"""Evaluate a trained workdir on a split, optionally with Sketch-A-Net's 10 views,
or a .tflite file on the same images.

  python -m sketchtf.evaluate --workdir=runs/sketchanet [--split=test] [--ten_view]
  python -m sketchtf.evaluate --workdir=runs/sketchnet --tflite=runs/qat/tflite/qat_int8.tflite

Writes <workdir>/eval_<split>[_10view | _<tflite name>]/metrics.json and report.md.
--tflite runs that file (float, int8 or uint8 io) instead of the Keras checkpoint,
on the same images from the same pipeline and renderer (the workdir gives the
data config and vocabulary).
"""
from absl import flags

from sketchtf import console

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_TEN_VIEW = flags.DEFINE_bool("ten_view", False, "Sketch-A-Net 10-view (5 crops x flip) majority vote.")
_TFLITE = flags.DEFINE_string("tflite", "", "Evaluate this .tflite file (data config and classes from --workdir).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    if _TFLITE.value:
        if _TEN_VIEW.value:
            raise SystemExit("error: --ten_view is for Keras checkpoints, not --tflite")
        from sketchtf.ship.tflite_runner import evaluate_tflite
        result, out = evaluate_tflite(_WORKDIR.value, _TFLITE.value, _SPLIT.value)
    else:
        from sketchtf.evaluation.scoring import evaluate_workdir
        result, out = evaluate_workdir(_WORKDIR.value, _SPLIT.value, _TEN_VIEW.value)
    print(f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  macro-F1 {result['macro_f1']:.4f}  -> {out}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
