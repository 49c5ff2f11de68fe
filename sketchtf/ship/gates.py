"""Ship gates: is this INT8 TFLite model good, faithful, fast and small enough?

  python -m sketchtf.gates --config=configs/gates_sketchnet_qd10.py:qat \
      [--config.float_workdir=runs/sketchnet] [--config.tflite=runs/qat_sketchnet/tflite/qat_int8.tflite]

Prints and writes (out_dir/gates.json, gates.md) a table gate | threshold |
measured | pass/fail, and exits 1 when any gate fails. Gates (seed D's defaults):
  int8_top1            INT8 TFLite top-1 on the split                  >= 94.5 %
  worst_class          INT8 TFLite accuracy of its worst class         >= 82.5 %
  train_inference_gap  share of split images where the Keras float model
                       and the float TFLite file predict different classes <= 1 %
  class_quant_loss     max over classes of (Keras float - INT8) accuracy  <= 1 pt
  latency              ms per sketch, 1 thread, median of >= 200 runs: strokes ->
                       project renderer (tf.function of ServingModule.render_strokes)
                       -> INT8 interpreter -> class                   <= 50 ms
  size                 INT8 .tflite file size (1 MB = 10^6 bytes)      <= 1 MB
  external_top1        optional: INT8 top-1 on another data set        >= config
All models see the same images, rendered by the project's one renderer.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import ml_collections
import numpy as np
import tensorflow as tf

from sketchtf.evaluation import metrics as M
from sketchtf.ship.tflite_runner import TFLiteClassifier

MIN_LATENCY_RUNS = 200


def gate_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        float_workdir="",       # trained float Keras run (config, classes, checkpoint)
        tflite="",              # the INT8 file under test
        float_tflite="",        # float TFLite of the same model; "" = float.tflite beside `tflite`, else converted
        split="test",
        out_dir="",             # "" = <dir of tflite>/gates_<tflite name>
        input="strokes",        # "strokes": latency includes rendering; "images": model only
        num_threads=1,
        latency_runs=MIN_LATENCY_RUNS,
        latency_warmup=10,
        min_int8_top1=0.945,
        min_worst_class=0.825,
        max_gap=0.01,
        max_class_quant_loss_pts=1.0,
        max_latency_ms=50.0,
        max_size_mb=1.0,
        external=dict(path="", source="quickdraw_ndjson", classes=(), limit_per_class=0, min_top1=0.0),
    ))


def _images_labels(data_cfg, split, class_names, batch_size=128, records=None):
    from sketchtf.data import pipeline
    ds, _ = pipeline.make_dataset(data_cfg, split, batch_size=batch_size, training=False,
                                  class_names=class_names, records=records)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def keras_logits(model, images, batch_size=128):
    step = tf.function(lambda x: model(x, training=False))
    return np.concatenate([step(images[i:i + batch_size]).numpy() for i in range(0, len(images), batch_size)])


def stroke_renderer(data_cfg):
    """tf.function strokes [1, P, 3], lengths [1] -> image [1, S, S, C]: the
    serving renderer (ServingModule.render_strokes) an app would call."""
    from sketchtf.ship.export import ServingModule
    module = ServingModule(None, ["_"], data_cfg)
    return tf.function(module.render_strokes, input_signature=[
        tf.TensorSpec([1, None, 3], tf.float32), tf.TensorSpec([1], tf.int32)])


def measure_latency(runner: TFLiteClassifier, *, data_cfg=None, records=None, images=None,
                    runs=MIN_LATENCY_RUNS, warmup=10) -> dict:
    """Per-sketch latency in ms (median, p90) over `runs` single-sketch calls,
    cycling through the given sketches.

    With `records` (stroke Sketches) each run renders the sketch with the
    project's renderer and classifies it: what an app pays per sketch. With
    `images` only the interpreter is timed."""
    if int(runs) < MIN_LATENCY_RUNS:
        raise ValueError(f"latency_runs={runs}: the latency gate needs a median over >= {MIN_LATENCY_RUNS} runs")
    from sketchtf.ship.export import strokes_to_request
    if records is not None:
        render = stroke_renderer(data_cfg)
        requests = [strokes_to_request([r.strokes]) for r in records]
        requests = [(tf.constant(s), tf.constant(n)) for s, n in requests]

        def one(i):
            s, n = requests[i % len(requests)]
            img = render(s, n).numpy()[0]
            return int(np.argmax(runner.predict_one(img)))
    elif images is not None:
        def one(i):
            return int(np.argmax(runner.predict_one(images[i % len(images)])))
    else:
        raise ValueError("measure_latency needs stroke records or images")
    for i in range(int(warmup)):
        one(i)
    times = []
    for i in range(int(runs)):
        t0 = time.perf_counter()
        one(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return dict(median_ms=statistics.median(times), p90_ms=float(np.percentile(times, 90)), runs=len(times),
                includes_render=records is not None, num_threads=None)


def _row(gate, op, threshold, measured, unit, fmt="{:.2f}", detail=""):
    ok = measured >= threshold if op == ">=" else measured <= threshold
    return dict(gate=gate, threshold=f"{op} {fmt.format(threshold)} {unit}".strip(),
                measured=f"{fmt.format(measured)} {unit}".strip(), passed=bool(ok),
                value=float(measured), limit=float(threshold), detail=detail)


def _external(cfg, runner, class_names):
    from sketchtf.config import data_config
    from sketchtf.data import pipeline
    e = cfg.external
    d = data_config(source=e.source, path=e.path, classes=list(e.classes or class_names),
                    limit_per_class=int(e.get("limit_per_class", 0)), image_size=runner.input_shape[0],
                    channels=runner.input_shape[2], augment=False)
    missing = sorted(set(d.classes) - set(class_names))
    if missing:
        raise ValueError(f"gates external.classes {missing} are not in the model's vocabulary {class_names}")
    # an external set is used whole: both of its splits
    records, seen = [], set()
    for split in ("train", "test"):
        for r in pipeline.load_records(d, split):
            if r.id not in seen:
                seen.add(r.id)
                records.append(r)
    x, y = _images_labels(d, "test", class_names, records=records)
    return M.classification_metrics(y, runner.predict(x), class_names), len(records)


def run_gates(cfg) -> dict:
    """Measures every gate; returns {rows, passed, metrics, latency, ...}."""
    from sketchtf.data import pipeline
    from sketchtf.ship.quantize import float_tflite
    from sketchtf.workdir import load_trained_model
    c = gate_defaults()
    c.update(dict(cfg))
    if not c.float_workdir or not c.tflite:
        raise ValueError("gates: set float_workdir (trained float run) and tflite (the INT8 file)")
    out_dir = c.out_dir or os.path.join(os.path.dirname(os.path.abspath(c.tflite)),
                                        "gates_" + os.path.splitext(os.path.basename(c.tflite))[0])
    os.makedirs(out_dir, exist_ok=True)
    model, config, class_names = load_trained_model(c.float_workdir)
    int8 = TFLiteClassifier(c.tflite, num_threads=c.num_threads)
    if tuple(int8.input_shape) != (int(config.data.image_size),) * 2 + (int(config.data.channels),):
        raise ValueError(f"{c.tflite} takes {int8.input_shape} images but {c.float_workdir} was trained on "
                         f"{config.data.image_size} px, {config.data.channels} channel(s)")
    float_path = c.float_tflite or os.path.join(os.path.dirname(os.path.abspath(c.tflite)), "float.tflite")
    if not os.path.isfile(float_path):
        float_path = os.path.join(out_dir, "float.tflite")
        with open(float_path, "wb") as f:
            f.write(float_tflite(model))
    flt = TFLiteClassifier(float_path, num_threads=c.num_threads)

    x, y = _images_labels(config.data, c.split, class_names)
    k_logits = keras_logits(model, x)
    f_logits, q_logits = flt.predict(x), int8.predict(x)
    m_keras = M.classification_metrics(y, k_logits, class_names)
    m_float = M.classification_metrics(y, f_logits, class_names)
    m_int8 = M.classification_metrics(y, q_logits, class_names)
    gap = float(np.mean(np.argmax(k_logits, 1) != np.argmax(f_logits, 1)))
    prob_diff = float(np.max(np.abs(M.softmax(k_logits) - M.softmax(f_logits))))
    loss = M.per_class_loss_pts(m_keras, m_int8)
    worst_loss_class = max(loss, key=loss.get)
    # Drawings the INT8 file classes apart from the Keras model, and how many of
    # them are exact ties of its top two logits: on a quantized output grid argmax
    # then takes the lower class index (quantize.float_head removes the grid).
    moved = np.argmax(q_logits, 1) != np.argmax(k_logits, 1)
    top2 = np.sort(q_logits, 1)[:, -2:]
    moved_ties = int(np.sum(moved & (top2[:, 0] == top2[:, 1])))

    if c.input == "strokes":
        records = pipeline.load_records(config.data, c.split)
        if any(r.strokes is None for r in records):
            raise ValueError(f"gates input='strokes' but {config.data.source} of {c.float_workdir} has image records; "
                             f"set input='images'")
        lat = measure_latency(int8, data_cfg=config.data, records=records, runs=c.latency_runs,
                              warmup=c.latency_warmup)
    elif c.input == "images":
        lat = measure_latency(int8, images=x, runs=c.latency_runs, warmup=c.latency_warmup)
    else:
        raise ValueError(f"gates input must be 'strokes' or 'images', got {c.input!r}")
    lat["num_threads"] = int(c.num_threads)

    rows = [
        _row("int8_top1", ">=", 100 * c.min_int8_top1, 100 * m_int8["top1"], "%",
             detail=f"{m_int8['num_examples']} {c.split} images; Keras float {100 * m_keras['top1']:.2f} %"),
        _row("worst_class", ">=", 100 * c.min_worst_class, 100 * m_int8["worst_class"]["accuracy"], "%",
             detail=m_int8["worst_class"]["name"]),
        _row("train_inference_gap", "<=", 100 * c.max_gap, 100 * gap, "%",
             detail=f"Keras vs float TFLite argmax disagreement; max |prob diff| {prob_diff:.2e}"),
        _row("class_quant_loss", "<=", c.max_class_quant_loss_pts, loss[worst_loss_class], "pt",
             detail=f"worst: {worst_loss_class}; {int(moved.sum())} drawings classed apart from Keras float, "
                    f"{moved_ties} of them top-2 ties in the INT8 output"),
        _row("latency", "<=", c.max_latency_ms, lat["median_ms"], "ms", fmt="{:.3f}",
             detail=f"median of {lat['runs']}, {c.num_threads} thread(s), "
                    f"{'render from strokes + ' if lat['includes_render'] else ''}INT8 model; p90 {lat['p90_ms']:.3f} ms"),
        _row("size", "<=", c.max_size_mb, int8.size_bytes / 1e6, "MB", fmt="{:.3f}", detail=f"{int8.size_bytes} bytes"),
    ]
    result = dict(tflite=os.path.abspath(c.tflite), float_tflite=os.path.abspath(float_path),
                  float_workdir=os.path.abspath(c.float_workdir), split=c.split, io_dtype=str(int8.input_dtype),
                  metrics=dict(keras_float=_brief(m_keras), tflite_float=_brief(m_float), tflite_int8=_brief(m_int8)),
                  per_class_loss_pts={k: round(v, 3) for k, v in loss.items()},
                  moved=dict(drawings=int(moved.sum()), top2_ties=moved_ties), latency=lat)
    if c.external.get("path"):
        m_ext, n = _external(c, int8, class_names)
        rows.append(_row("external_top1", ">=", 100 * c.external.min_top1, 100 * m_ext["top1"], "%",
                         detail=f"{n} sketches from {c.external.path}"))
        result["metrics"]["external_int8"] = _brief(m_ext)
    result["rows"] = rows
    result["passed"] = all(r["passed"] for r in rows)
    result["command"] = " ".join(sys.argv)
    write_gates(out_dir, result)
    result["out_dir"] = out_dir
    return result


def _brief(m):
    return dict(top1=m["top1"], worst_class=m["worst_class"], num_examples=m["num_examples"],
                per_class={k: v["accuracy"] for k, v in m["per_class"].items()})


def table_markdown(rows) -> str:
    lines = ["| gate | threshold | measured | result | detail |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['gate']} | {r['threshold']} | {r['measured']} | {'pass' if r['passed'] else 'FAIL'} "
                     f"| {r['detail']} |")
    return "\n".join(lines)


def write_gates(out_dir, result):
    with open(os.path.join(out_dir, "gates.json"), "w") as f:
        json.dump(result, f, indent=2)
    verdict = "all gates pass" if result["passed"] else \
        "FAILED: " + ", ".join(r["gate"] for r in result["rows"] if not r["passed"])
    text = (f"# Ship gates: {os.path.basename(result['tflite'])}\n\n{verdict}\n\n{table_markdown(result['rows'])}\n\n"
            f"Float run: `{result['float_workdir']}`; split: {result['split']}; "
            f"TFLite io: {result['io_dtype']}.\n\nCommand: `{result['command']}`\n")
    with open(os.path.join(out_dir, "gates.md"), "w") as f:
        f.write(text)
