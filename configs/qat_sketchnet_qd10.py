"""QAT fine-tune (or PTQ) of a trained float student on quickdraw_10class_ndjson, then INT8 TFLite.

  python -m sketchtf.quantize --config=configs/qat_sketchnet_qd10.py --workdir=runs/qat_sketchnet \
      --config.quantize.float_workdir=runs/sketchnet [--config.data.image_size=64]

arg (comma-separated): a student name (sketchnet, mobilenetv2, mobilenetv2_s1,
mobilenetv2_s2; default sketchnet), "ptq" (no fine-tune: static PTQ only),
"float_head" (PTQ, the classifier left float, float32 input/output),
"uint8" (uint8 input/output), "smoke" (tiny synthetic run for tests).
data.image_size must be the float run's (checked).
"""
from sketchtf.config import experiment, quickdraw10, smoke
from sketchtf.ship.quantize import quantize_defaults

STUDENTS = ("sketchnet", "mobilenetv2", "mobilenetv2_s1", "mobilenetv2_s2")


def get_config(arg=None):
    parts = [p for p in (arg or "").split(",") if p]
    unknown = [p for p in parts if p not in STUDENTS + ("ptq", "float_head", "uint8", "smoke")]
    if unknown:
        raise ValueError(f"qat config: unknown arg {unknown}; use {STUDENTS}, ptq, float_head, uint8, smoke")
    model = next((p for p in parts if p in STUDENTS), "sketchnet")
    # Fine-tuning from a converged float model, the recipe chosen on valid (docs/results.md,
    # "QAT recipes chosen on valid" and session 11): BatchNorm frozen, lr 1e-5, distilled from
    # the float model itself, 4 epochs, keeping the epoch that best meets the per-class gate.
    # The float runs' split (valid carved from train): the fine-tune never sees valid,
    # and watches it rather than test (scored once, by the gates).
    c = experiment(model, data=quickdraw10(image_size=128, valid_fraction=0.1), epochs=4, batch_size=64,
                   lr=1e-5)
    c.eval_split = "valid"
    c.quantize = quantize_defaults()
    c.quantize.update(dict(freeze_bn=True, distill=True, select="gate"))
    c.quantize.float_workdir = f"runs/{model}"
    if "ptq" in parts:
        c.quantize.mode = "ptq"
    if "float_head" in parts:
        c.quantize.update(dict(mode="ptq", float_head=True, io_dtype="float32"))
    if "uint8" in parts:
        c.quantize.io_dtype = "uint8"
    if "smoke" in parts:
        smoke(c)
        c.quantize.representative_size = 20
        c.quantize.probe_per_class = 4
    return c
