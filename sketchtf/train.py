"""Train any model of the zoo on any data source.

  python -m sketchtf.train --config=configs/sketchnet_qd10.py --workdir=runs/sketchnet \
      [--config.train.epochs=3]
  tensorboard --logdir runs/sketchnet/tb

Rerunning the same command after a crash continues from the last finished epoch.
The same config scales out with one field (docs/distribute.md):
  --config.strategy=mirrored                      all GPUs of this machine
  python -m sketchtf.launch --workers=2 -- ...    local multi-worker (TF_CONFIG set per worker)
  --config.mixed_precision=mixed_float16          16-bit compute, float32 logits, loss scaling
"""
from absl import flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (checkpoints, TensorBoard, report).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from sketchtf.training import trainer
    try:
        result = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except trainer.NonFiniteLossError as e:
        raise SystemExit(f"error: {e}")
    split = _CONFIG.value.get("eval_split", "test")
    print(f"{split} top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    print(f"report: {_WORKDIR.value}/report.md   TensorBoard: tensorboard --logdir {_WORKDIR.value}/tb")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
