"""INT8 TFLite for a trained float run: TFMOT QAT or PTQ (sketchtf/ship/quantize.py).

  python -m sketchtf.quantize --config=configs/qat_sketchnet_qd10.py --workdir=runs/qat_sketchnet
"""
from absl import flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config with a quantize section (configs/qat_*.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from sketchtf.ship.quantize import quantize_and_export
    out = quantize_and_export(_CONFIG.value, _WORKDIR.value)
    for p in out["annotations"]:
        print(f"annotated {p['layer']} ({p['type']}): {p['handling']} - {p['why']}")
    for name, path in out["files"].items():
        print(f"{name:9s} {out['sizes'][name] / 1e6:7.3f} MB  {path}")
    if "qat_keras_top1" in out:
        print(f"QAT Keras top-1 {out['qat_keras_top1']:.4f}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
