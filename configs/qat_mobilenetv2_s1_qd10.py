"""QAT of the MobileNetV2 strategy-1 student (same as configs/qat_sketchnet_qd10.py:mobilenetv2_s1).

  python -m sketchtf.quantize --config=configs/qat_mobilenetv2_s1_qd10.py --workdir=runs/qat_mobilenetv2_s1 \
      --config.quantize.float_workdir=runs/mobilenetv2_s1
"""
from sketchtf.config import sibling_config


def get_config(arg=None):
    parts = ["mobilenetv2_s1"] + [p for p in (arg or "").split(",") if p]
    return sibling_config(__file__, "qat_sketchnet_qd10.py", ",".join(parts))
