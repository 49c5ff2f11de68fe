"""QAT of the MobileNetV2 strategy-1 student (same as configs/qat_sketchnet_qd10.py:mobilenetv2_s1).

  python -m sketchtf.quantize --config=configs/qat_mobilenetv2_s1_qd10.py --workdir=runs/qat_mobilenetv2_s1 \
      --config.quantize.float_workdir=runs/mobilenetv2_s1
"""
import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("qat_base", pathlib.Path(__file__).with_name("qat_sketchnet_qd10.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(arg=None):
    return _base.get_config(",".join(["mobilenetv2_s1"] + [p for p in (arg or "").split(",") if p]))
