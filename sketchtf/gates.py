"""Ship gates for an INT8 TFLite model (sketchtf/ship/gates.py); exits 1 when one fails.

  python -m sketchtf.gates --config=configs/gates_sketchnet_qd10.py:qat \
      [--float_workdir=runs/sketchnet] [--tflite=runs/qat_sketchnet/tflite/qat_int8.tflite]
"""
import sys

from absl import flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", None, "Gates config (configs/gates_*.py[:arg]).")
_OVERRIDES = dict(
    float_workdir=flags.DEFINE_string("float_workdir", "", "Overrides config.float_workdir."),
    tflite=flags.DEFINE_string("tflite", "", "Overrides config.tflite."),
    out_dir=flags.DEFINE_string("out_dir", "", "Overrides config.out_dir."))


def main(argv):
    del argv
    from sketchtf.ship.gates import gate_defaults, run_gates, table_markdown
    cfg = _CONFIG.value if _CONFIG.value is not None else gate_defaults()
    for key, flag in _OVERRIDES.items():
        if flag.value:
            cfg[key] = flag.value
    result = run_gates(cfg)
    print(table_markdown(result["rows"]))
    print(f"{'PASS' if result['passed'] else 'FAIL'}  -> {result['out_dir']}/gates.md")
    sys.exit(0 if result["passed"] else 1)


def run():
    console.run(main)


if __name__ == "__main__":
    run()
