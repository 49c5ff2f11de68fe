"""Distill a trained teacher into a student (seed A; sketchtf/training/distill.py).

  python -m sketchtf.distill --config=configs/kd_qd10.py:mobilenetv2_s1 --workdir=runs/kd_s1
"""
from absl import flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", None, "KD config file (configs/kd_qd10.py[:student[,smoke]]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; checkpoints there are the student's.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from sketchtf.training import distill, trainer
    try:
        result = distill.distill_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except trainer.NonFiniteLossError as e:
        raise SystemExit(f"error: {e}")
    print(f"student top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    print(f"report: {_WORKDIR.value}/report.md   export: python -m sketchtf.export --workdir={_WORKDIR.value}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
