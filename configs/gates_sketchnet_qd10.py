"""Ship gates (seed D's thresholds) for the INT8 SketchNet on quickdraw_10class_ndjson/test.

  python -m sketchtf.gates --config=configs/gates_sketchnet_qd10.py:qat \
      --config.float_workdir=runs/sketchnet --config.tflite=runs/qat_sketchnet/tflite/qat_int8.tflite

arg: "qat" (default) or "ptq" picks <qat workdir>/tflite/{qat,ptq}_int8.tflite;
"external" adds the optional external-set gate on quickdraw_simplified_ndjson
(25 other drawings a class, the 9 of our classes it has; no zigzag).
"""
from sketchtf.config import data_path
from sketchtf.ship.gates import gate_defaults

CLASSES = ("The Eiffel Tower", "broom", "cloud", "door", "hamburger", "jail", "key", "sun", "tree")


def get_config(arg=None):
    parts = [p for p in (arg or "qat").split(",") if p]
    unknown = [p for p in parts if p not in ("qat", "ptq", "external")]
    if unknown:
        raise ValueError(f"gates config: unknown arg {unknown}; use qat, ptq, external")
    kind = "ptq" if "ptq" in parts else "qat"
    c = gate_defaults()
    c.float_workdir = "runs/sketchnet"
    c.tflite = f"runs/qat_sketchnet/tflite/{kind}_int8.tflite"
    if "external" in parts:
        c.external.path = data_path("quickdraw_simplified_ndjson")
        c.external.classes = CLASSES
        c.external.min_top1 = 0.80
    return c
