"""Table II (seed A) on quickdraw_10class_ndjson: an EfficientNet-B4 teacher distilled into a student.

  # teacher first, at the students' input size
  python -m sketchtf.train --config=configs/efficientnet_b4_qd10.py --workdir=runs/baselines/efficientnet_b4 \
      --config.data.image_size=64 --config.train.epochs=3
  # one row per student: mobilenetv2 | mobilenetv2_s1 | mobilenetv2_s2 | sketchnet
  python -m sketchtf.distill --config=configs/kd_qd10.py:mobilenetv2_s1 --workdir=runs/kd/mobilenetv2_s1

The arg is "<student>[,smoke][,live]": smoke = tiny synthetic variant for tests
(set distill.teacher_workdir to a smoke teacher); live = run the teacher on
every batch instead of the cached logits. Input size (64 px), epochs (3), batch
(64) and optimizer equal the students trained without KD in
scripts/baselines_qd10.sh (configs/<student>_qd10.py at image_size=64, epochs=3),
so each KD row has its same-size, same-budget no-KD pair; override with
--config.data.image_size / --config.train.epochs for both.
"""
import ml_collections

from sketchtf.config import experiment, quickdraw10, smoke

STUDENTS = ("mobilenetv2", "mobilenetv2_s1", "mobilenetv2_s2", "sketchnet")


def get_config(arg=None):
    parts = [p for p in (arg or "mobilenetv2").split(",") if p]
    student = parts[0]
    unknown = [p for p in parts[1:] if p not in ("smoke", "live")]
    if student not in STUDENTS or unknown:
        raise ValueError(f"configs/kd_qd10.py:{arg}: expected '<student>[,smoke][,live]' with student in {STUDENTS}")
    c = experiment(student, data=quickdraw10(image_size=64), epochs=3, batch_size=64, lr=1e-3)
    c.distill = ml_collections.ConfigDict(dict(
        teacher_workdir="runs/baselines/efficientnet_b4",
        alpha=0.1,           # weight of the hard-label CE; 1 - alpha on the soft targets
        temperature=4.0,
        cache="none" if "live" in parts else "logits",
        feature=dict(teacher_layer="", student_layer="", beta=0.0),
    ))
    c.export.model_name = f"kd_{student}"
    if "smoke" in parts:
        smoke(c)
    return c
