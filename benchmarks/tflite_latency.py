"""Float vs QAT-INT8 vs PTQ-INT8 TFLite of one student, measured in one run:
top-1 and per-class quantization loss on the test split, file sizes, and latency
per sketch at 1 thread (interpreter only, and strokes -> render -> interpreter).

  python benchmarks/tflite_latency.py --float_workdir=runs/sketchnet [--qat_workdir=runs/qat_sketchnet]
  python benchmarks/tflite_latency.py            # no flags: trains a tiny smoke model first (runs anywhere)
  ... --extra_tflite=ptq_float_head=runs/ptq_fh/tflite/ptq_int8.tflite   # more files of the same model

--qat_workdir reuses a finished `python -m sketchtf.quantize` run (its
tflite/qat_int8.tflite and ptq_int8.tflite); otherwise QAT fine-tunes
--qat_epochs from the float checkpoint into --work. Ends with one JSON line;
targets: <= 1 ms per sketch at the student's input size, <= 1 point per class.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sketchtf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF)

FLAGS = flags.FLAGS
flags.DEFINE_string("float_workdir", "", "Trained float student; empty = train a smoke model.")
flags.DEFINE_string("qat_workdir", "", "Finished sketchtf.ship.quantize run to reuse (QAT mode).")
flags.DEFINE_string("work", "", "Where to write the QAT run (default: a temp dir).")
flags.DEFINE_integer("qat_epochs", 1, "QAT fine-tune epochs when no --qat_workdir.")
flags.DEFINE_integer("qat_steps", 0, "Steps per QAT epoch (0 = a full pass).")
flags.DEFINE_integer("runs", 200, "Latency runs per model (median; >= 200).")
flags.DEFINE_string("split", "test", "Evaluation split.")
flags.DEFINE_string("json_out", "", "Also write the summary here.")
flags.DEFINE_list("extra_tflite", [], "More files of the same model to measure beside them, as "
                  "name=path (e.g. ptq_float_head=runs/ptq_fh/tflite/ptq_int8.tflite).")


def smoke_float(work):
    from sketchtf.training import trainer
    from sketchtf.config import experiment, smoke
    c = smoke(experiment("sketchnet"), image_size=32)
    wd = os.path.join(work, "float_smoke")
    trainer.train_and_evaluate(c, wd)
    return wd


def qat_run(float_workdir, work, epochs, steps):
    from sketchtf.ship import quantize
    from sketchtf.config import load_saved_config
    c = load_saved_config(float_workdir)
    c.quantize = quantize.quantize_defaults()
    c.quantize.float_workdir = float_workdir
    if c.data.source == "synthetic":  # the smoke model: a small calibration set
        c.quantize.representative_size, c.quantize.probe_per_class = 40, 4
    c.train.epochs = int(epochs)
    c.train.steps_per_epoch = int(steps)
    c.train.lr = float(c.train.lr) / 10  # fine-tuning a converged model
    c.model.init_from = ""
    wd = os.path.join(work, "qat")
    quantize.quantize_and_export(c, wd)
    return wd


def main(argv):
    del argv
    import numpy as np

    from sketchtf.ship import gates
    from sketchtf.evaluation import metrics as M
    from sketchtf.data import pipeline
    from sketchtf.ship.tflite_runner import TFLiteClassifier
    from sketchtf.workdir import load_trained_model

    t_start = time.time()
    work = FLAGS.work or tempfile.mkdtemp(prefix="tflite_latency_")
    float_wd = FLAGS.float_workdir or smoke_float(work)
    qat_wd = FLAGS.qat_workdir or qat_run(float_wd, work, FLAGS.qat_epochs, FLAGS.qat_steps)
    model, config, class_names = load_trained_model(float_wd)
    files = {k: os.path.join(qat_wd, "tflite", f"{k}.tflite") for k in ("float", "qat_int8", "ptq_int8")}
    for item in FLAGS.extra_tflite:
        name, sep, path = item.partition("=")
        if not sep or not name or name in files:
            raise SystemExit(f"error: --extra_tflite wants name=path with a new name, got {item!r}")
        files[name] = path
    missing = [p for p in files.values() if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"error: {missing} not found: run python -m sketchtf.quantize (mode qat) first")

    x, y = gates._images_labels(config.data, FLAGS.split, class_names)
    records = pipeline.load_records(config.data, FLAGS.split)
    m_keras = M.classification_metrics(y, gates.keras_logits(model, x), class_names)
    rows = {}
    for name, path in files.items():
        r = TFLiteClassifier(path, num_threads=1)
        m = M.classification_metrics(y, r.predict(x), class_names)
        loss = M.per_class_loss_pts(m_keras, m)
        model_only = gates.measure_latency(r, images=x, runs=FLAGS.runs)
        with_render = gates.measure_latency(r, data_cfg=config.data, records=records, runs=FLAGS.runs)
        rows[name] = dict(top1=m["top1"], worst_class=m["worst_class"], max_class_loss_pts=max(loss.values()),
                          per_class_loss_pts=loss, size_bytes=r.size_bytes, ops=r.op_names(),
                          latency_model_ms=model_only["median_ms"], latency_render_model_ms=with_render["median_ms"])

    print(f"{config.model.name} at {config.data.image_size} px, {len(y)} {FLAGS.split} sketches; "
          f"Keras float top-1 {100 * m_keras['top1']:.2f} %")
    width = max(9, *map(len, rows))
    print(f"{'model':{width}s} {'top-1 %':>8s} {'worst class':>22s} {'max loss pt':>11s} {'size KB':>9s} "
          f"{'ms model':>9s} {'ms render+model':>16s}")
    for name, r in rows.items():
        print(f"{name:{width}s} {100 * r['top1']:8.2f} {r['worst_class']['name'][:14]:>14s} "
              f"{100 * r['worst_class']['accuracy']:6.1f} % {r['max_class_loss_pts']:11.2f} "
              f"{r['size_bytes'] / 1e3:9.1f} {r['latency_model_ms']:9.3f} {r['latency_render_model_ms']:16.3f}")
    summary = dict(model=config.model.name, image_size=int(config.data.image_size), split=FLAGS.split,
                   examples=int(len(y)), float_workdir=os.path.abspath(float_wd), qat_workdir=os.path.abspath(qat_wd),
                   keras_float_top1=round(m_keras["top1"], 4),
                   **{f"{n}_top1": round(r["top1"], 4) for n, r in rows.items()},
                   **{f"{n}_max_class_loss_pts": round(r["max_class_loss_pts"], 2) for n, r in rows.items()},
                   **{f"{n}_kb": round(r["size_bytes"] / 1e3, 1) for n, r in rows.items()},
                   **{f"{n}_ms": round(r["latency_model_ms"], 3) for n, r in rows.items()},
                   **{f"{n}_render_ms": round(r["latency_render_model_ms"], 3) for n, r in rows.items()},
                   threads=1, runs=FLAGS.runs, target_ms=1.0, target_class_loss_pts=1.0,
                   wall_s=round(time.time() - t_start, 1))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(dict(summary, details=rows), f, indent=2, default=str)
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
