"""INT8 for the students: TFMOT quantization-aware training (QAT), static
post-training quantization (PTQ), and TFLite conversion.

  python -m sketchtf.quantize --config=configs/qat_sketchnet_qd10.py --workdir=runs/qat_sketchnet

The config's `quantize` section drives it:
  mode            "qat": fine-tune a quantize_model() copy of the float model, then
                  convert; "ptq": convert the float model with a calibration set
  float_workdir   trained float run (its last checkpoint and vocabulary)
  io_dtype        "int8" | "uint8" | "float32": TFLite input/output type (the
                  graph inside is INT8 in every case)
  float_head      PTQ only (with io_dtype "float32"): the classifier, the model's
                  last Dense, stays float, so the logits are not put on an int8
                  grid (see to_tflite)
  representative_size, worst_boost, probe_per_class: PTQ calibration set (below)
  freeze_bn, distill  fine-tune with BatchNorm frozen / against the float model's logits
  select          "gate": keep the fine-tune epoch that best meets the per-class
                  ship gate on valid (GateScore) as the Keras QAT model scores it;
                  "gate_tflite": as its INT8 TFLite conversion scores it (what
                  ships); "": train.keep_best decides
Output in the workdir: the usual training files (QAT), and tflite/ with
float.tflite (train-vs-inference gate), ptq_int8.tflite, qat_int8.tflite (QAT)
and quantize.json (layer annotations, calibration counts, file sizes).

Layers TFMOT's default 8-bit scheme does not know: `keras.layers.Rescaling`
(MobileNetV2's [0, 1] -> [-1, 1] input map; also inside resnet50 and
efficientnet_b4). It has no weights, so it is annotated with
OutputQuantizeConfig: its output gets a fake-quant (range learned in QAT) and it
converts to INT8 MUL + ADD. Everything else in sketchnet and the MobileNetV2
family (Conv2D-BN-ReLU, DepthwiseConv2D, Add, ReLU6, pooling, Dense) is in the
default registry.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

from sketchtf import workdir as run_folder
from sketchtf.evaluation.metrics import per_class_loss_pts
from sketchtf.keras import keras

IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}


def _tfmot():
    import tensorflow_model_optimization as tfmot
    return tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="sketchtf")
class OutputQuantizeConfig(_tfmot().QuantizeConfig):
    """QuantizeConfig for weightless layers outside TFMOT's registry: quantize the
    output only, so the converter knows its range and keeps the op in INT8."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        q = _tfmot().quantizers
        return [q.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# Layer types the default 8-bit registry rejects, with how we handle them and why.
ANNOTATED = {
    keras.layers.Rescaling: ("OutputQuantizeConfig",
                             "not in TFMOT's default 8-bit registry; weightless affine map, output range "
                             "learned by a fake-quant, converts to INT8 MUL + ADD"),
}


def annotation_plan(model) -> list:
    """[{layer, type, handling, why}] for the layers that need more than
    quantize_model's defaults (BatchNormalization after a conv is not listed:
    TFMOT folds it into the conv)."""
    plan = []
    for layer in model.layers:
        special = next((v for k, v in ANNOTATED.items() if isinstance(layer, k)), None)
        if special:
            plan.append(dict(layer=layer.name, type=type(layer).__name__, handling=special[0], why=special[1]))
    return plan


def unsupported_layers(model) -> list:
    """'name (Type)' of layers neither TFMOT's default registry nor ANNOTATED
    covers. BatchNormalization right after a conv/dense is fine: TFMOT folds it."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import \
        default_8bit_quantize_registry as reg
    registry = reg.Default8BitQuantizeRegistry()  # what quantize_model() checks layers against
    foldable = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    bad = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or registry.supports(layer) or \
                any(isinstance(layer, k) for k in ANNOTATED):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            inbound = layer._inbound_nodes[0].inbound_layers if layer._inbound_nodes else []
            if isinstance(inbound, foldable):
                continue
        bad.append(f"{layer.name} ({type(layer).__name__})")
    return bad


def qat_model(model):
    """The QAT (fake-quant) twin of a functional float model, weights copied.

    Layers in ANNOTATED get their QuantizeConfig; the rest TFMOT's defaults
    (quantize_model's behaviour). The float model is not modified."""
    Q = _tfmot()
    plan = {p["layer"] for p in annotation_plan(model)}
    bad = unsupported_layers(model)
    if bad:
        raise ValueError(f"{model.name}: TFMOT's 8-bit scheme cannot quantize {bad}; give their types a "
                         f"QuantizeConfig in sketchtf.ship.quantize.ANNOTATED")

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        clone = layer.__class__.from_config(layer.get_config())
        if layer.name in plan:
            return Q.quantize_annotate_layer(clone, quantize_config=OutputQuantizeConfig())
        return Q.quantize_annotate_layer(clone)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    try:
        with Q.quantize_scope({"OutputQuantizeConfig": OutputQuantizeConfig}):
            return Q.quantize_apply(annotated)
    except RuntimeError as e:  # TFMOT names the layer it cannot quantize
        raise ValueError(f"{model.name}: {e} (add its type to sketchtf.ship.quantize.ANNOTATED)") from None


def freeze_batch_norm(qat) -> int:
    """Puts the QAT model's BatchNormalization layers in inference mode (moving
    statistics, gamma/beta frozen) for the fine-tune, the usual QAT practice:
    batch statistics of fake-quantized activations drift from the float run's,
    and the converter folds the moving ones into the INT8 weights. Returns how
    many layers were frozen."""
    n = 0
    for layer in qat.layers:
        inner = getattr(layer, "layer", layer)  # TFMOT wraps each layer
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False  # BN's own switch to moving statistics
            # QuantizeWrapperV2.build copies the weights its QuantizeConfig names
            # (gamma/beta) into its own trainable list: move them out too.
            own = {id(v) for v in inner.weights}
            moved = [v for v in layer._trainable_weights if id(v) in own]
            layer._trainable_weights = [v for v in layer._trainable_weights if id(v) not in own]
            layer._non_trainable_weights.extend(moved)
            n += 1
    return n


def _representative(images, limit=None):
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or not len(x):
        raise ValueError(f"representative images must be a non-empty [N, H, W, C] array, got shape {x.shape}")
    x = x[:limit] if limit else x

    def gen():
        for i in range(len(x)):
            yield [x[i:i + 1]]
    return gen


def to_tflite(model, representative_ds=None, io_dtype: str = "int8", float_head: bool = False) -> bytes:
    """Fully INT8 TFLite flatbuffer (TFLITE_BUILTINS_INT8 only).

    representative_ds: float images [N, H, W, C] (calibration for PTQ; for a QAT
    model it only calibrates the input, the fake-quants give every other range).
    io_dtype: "int8" | "uint8" | "float32" input and output type.
    float_head: PTQ of a float model only, io_dtype "float32": everything INT8
    but the last op (the classifier), which TF's selective quantization
    (tf.lite.experimental.QuantizationDebugger, denylisted_nodes) leaves float.
    Why: a fully INT8 classifier writes its logits on the output's int8 grid
    (SketchNet's span ~50, a 0.2 step), and a drawing whose top two logits land
    on the same step goes to the lower class index. Every valid drawing the
    128 px SketchNet's PTQ file classed apart from the float model (4 of 1,022)
    was such a tie; with the float head, none (docs/results.md)."""
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {sorted(IO_DTYPES)}, got {io_dtype!r}")
    if representative_ds is None:
        raise ValueError("full INT8 conversion needs representative images (the converter calibrates the input)")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative(representative_ds)
    if float_head:
        return _float_head_tflite(model, conv, representative_ds, io_dtype)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = IO_DTYPES[io_dtype]
    conv.inference_output_type = IO_DTYPES[io_dtype]
    return conv.convert()


def _float_head_tflite(model, conv, representative_ds, io_dtype) -> bytes:
    if io_dtype != "float32":
        raise ValueError(f"float_head files take and return float32 (the classifier's float output is not "
                         f"re-quantized); set io_dtype='float32', got {io_dtype!r}")
    if any(type(layer).__name__.startswith("Quantize") for layer in model.layers):
        raise ValueError("float_head is for PTQ of a float model; a QAT model's conversion takes its "
                         "ranges from the fake-quants and cannot leave one op float this way")
    if not isinstance(model.layers[-1], keras.layers.Dense):
        raise ValueError(f"float_head: {model.name}'s last layer is {type(model.layers[-1]).__name__}, "
                         f"not the classifier Dense")
    from sketchtf.ship.tflite_runner import TFLiteClassifier
    # The node to leave float is named by its output tensor: the model's output.
    head = TFLiteClassifier(float_tflite(model))._out["name"]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=_representative(representative_ds[:8]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[head]))
    return debugger.get_nondebug_quantized_model()


def float_tflite(model) -> bytes:
    """Plain float32 TFLite (no optimizations): the train-vs-inference reference."""
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


# ---------------------------------------------------------------------------
# PTQ calibration set: the float model's worst classes over-represented (seed D)

def calibration_counts(per_class_accuracy, total: int, worst_boost: float = 2.0) -> np.ndarray:
    """Images per class: share 1 + worst_boost * err_c / max_err (a perfect class
    gets 1 share, the worst 1 + worst_boost), summing to `total`."""
    acc = np.asarray(per_class_accuracy, np.float64)
    err = 1.0 - acc
    w = 1.0 + float(worst_boost) * (err / err.max() if err.max() > 0 else np.zeros_like(err))
    counts = np.floor(total * w / w.sum()).astype(int)
    counts[np.argsort(-w)[:total - counts.sum()]] += 1  # hand out the rounding remainder, worst first
    return counts


def calibration_images(model, data_cfg, class_names, *, total=1010, worst_boost=2.0, probe_per_class=100,
                       seed=0, batch_size=128):
    """(images [N, H, W, C], info dict) for PTQ, drawn from the TRAIN split
    without augmentation (the test split stays for the gates): the float model's
    per-class accuracy on a probe of `probe_per_class` train sketches a class sets
    how many of each class are taken."""
    from sketchtf.data import pipeline
    rng = np.random.default_rng(seed)
    records = pipeline.load_records(data_cfg, "train")
    by_class = {c: [] for c in class_names}
    for r in records:
        if r.label in by_class:
            by_class[r.label].append(r)
    empty = [c for c, rs in by_class.items() if not rs]
    if empty:
        raise ValueError(f"calibration: no train records for classes {empty} in {data_cfg.get('path') or data_cfg.source}")
    probe = []
    for c in class_names:
        rs = by_class[c]
        idx = rng.permutation(len(rs))
        by_class[c] = [rs[i] for i in idx]
        probe.extend(by_class[c][:probe_per_class])
    images, labels = _images(data_cfg, probe, class_names, batch_size)
    step = tf.function(lambda x: model(x, training=False))
    preds = np.concatenate([np.argmax(step(images[i:i + batch_size]).numpy(), 1)
                            for i in range(0, len(images), batch_size)])
    k = len(class_names)
    acc = np.array([np.mean(preds[labels == c] == c) for c in range(k)])
    counts = calibration_counts(acc, total, worst_boost)
    chosen = []
    for c, name in enumerate(class_names):
        rs = by_class[name]
        chosen.extend(rs[i % len(rs)] for i in range(counts[c]))  # reuse sketches if a class is short
    cal, _ = _images(data_cfg, chosen, class_names, batch_size)
    info = dict(probe_accuracy={n: round(float(a), 4) for n, a in zip(class_names, acc)},
                counts={n: int(c) for n, c in zip(class_names, counts)}, total=int(counts.sum()),
                worst_boost=float(worst_boost), split="train", augment=False)
    return cal[rng.permutation(len(cal))], info


def _images(data_cfg, records, class_names, batch_size):
    from sketchtf.data import pipeline
    ds, _ = pipeline.make_dataset(data_cfg, "train", batch_size=batch_size, training=False,
                                  records=records, class_names=class_names)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------
# The QAT / PTQ job

def quantize_defaults():
    import ml_collections
    # distill: fine-tune against the float model's own logits (alpha weighs the labels, as in
    # sketchtf.distill); freeze_bn: BatchNormalization in inference mode during the fine-tune.
    # select: "gate" keeps the fine-tune epoch GateScore prefers on valid (the per-class gate's
    # own measure, then top-1) as the Keras QAT model scores it; "gate_tflite" as the INT8 TFLite
    # file that epoch converts to scores it (what ships; a conversion per evaluated epoch);
    # "" leaves it to train.keep_best / select_on (default: last epoch).
    return ml_collections.ConfigDict(dict(mode="qat", float_workdir="", io_dtype="int8", freeze_bn=False,
                                          distill=False, distill_alpha=0.0, distill_temperature=1.0,
                                          select="", float_head=False,
                                          representative_size=1010, worst_boost=2.0, probe_per_class=100))


def _write(path, content: bytes) -> int:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
    return len(content)


def load_float(config):
    """Float model from quantize.float_workdir, built from THIS config's model section."""
    from sketchtf.training.trainer import init_from_workdir, make_model
    fw = config.quantize.get("float_workdir", "")
    if not fw:
        raise ValueError("config.quantize.float_workdir is empty: point it at a trained float run")
    fc, class_names = run_folder.read_run(fw)
    for key, mine, theirs in (("model.name", config.model.name, fc.model.name),
                              ("data.image_size", int(config.data.image_size), int(fc.data.image_size)),
                              ("data.channels", int(config.data.channels), int(fc.data.channels)),
                              # another split would fine-tune on drawings the float run held out
                              ("data.valid_fraction", float(config.data.get("valid_fraction", 0.0)),
                               float(fc.data.get("valid_fraction", 0.0)))):
        if mine != theirs:
            raise ValueError(f"config {key}={mine!r} but quantize.float_workdir={fw} was trained with {theirs!r} "
                             f"(see {os.path.join(fw, 'config.json')})")
    model = make_model(config, len(class_names))
    init_from_workdir(model, fw)
    return model, class_names


def load_qat_model(workdir):
    """The fine-tuned QAT Keras model of a `mode="qat"` workdir: (model, config, class_names)."""
    config, class_names = run_folder.read_run(workdir)
    q = qat_model(run_folder.build_config_model(config, len(class_names)))
    tf.train.Checkpoint(model=q).restore(run_folder.latest_checkpoint(workdir)).expect_partial()
    return q, config, class_names


class GateScore(keras.callbacks.Callback):
    """Logs, each evaluated epoch, how far the fine-tuned model is from the ship
    gate's per-class rule on the eval split (valid): val_max_class_loss_pts =
    max over classes of (float - QAT) accuracy in points, and val_gate_score =
    top-1 / 10 - max(0, that loss): a loss of 0.1 pt in any class outweighs any
    top-1 difference, and among epochs losing no class the higher top-1 wins. With
    train.select_on="val_gate_score" the kept epoch is the one the gate would
    choose. `evaluator` is set by trainer.standard_callbacks.

    tflite_scores (optional): a function returning the metrics of the model as
    it would ship (its INT8 TFLite conversion) on the same split; the score and
    class loss are then that file's (the conversion can move drawings the
    fake-quant Keras model classifies right), with val_tflite_top1 and, for
    comparison, val_keras_max_class_loss_pts logged too."""

    def __init__(self, float_scores, tflite_scores=None):
        super().__init__()
        self.float_scores = float_scores
        self.tflite_scores = tflite_scores
        self.evaluator = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "val_top1" not in logs:  # the evaluator did not run this epoch
            return
        scores = self.evaluator.last
        if self.tflite_scores is not None:  # the Keras model's class loss stays logged beside the file's
            logs["val_keras_max_class_loss_pts"] = max(per_class_loss_pts(self.float_scores, scores).values())
            scores = self.tflite_scores()
            logs["val_tflite_top1"] = float(scores["top1"])
        loss = max(per_class_loss_pts(self.float_scores, scores).values())
        logs.update(val_max_class_loss_pts=loss, val_gate_score=float(scores["top1"]) / 10.0 - max(0.0, loss))


def _tflite_scorer(qm, cal, io_dtype, eval_ds, class_names):
    """GateScore's tflite_scores: the metrics on eval_ds of qm's INT8 TFLite
    conversion, as it is at the call."""
    from sketchtf.ship.tflite_runner import TFLiteClassifier, predict_scores_tflite

    def scores():
        return predict_scores_tflite(TFLiteClassifier(to_tflite(qm, cal, io_dtype)), eval_ds, class_names)[0]
    return scores


def _qat_fit_model(qm, float_model, q, config, steps, strategy):
    """What the QAT fine-tune fits: the QAT model on the labels, or (quantize.distill)
    a Distiller whose teacher is the float model itself, so that the fine-tune
    learns to reproduce the float model's predictions, class by class, instead
    of re-fitting the labels (which moves drawings between classes: the
    per-class gate measures exactly that drift). Returns (fit_model, extra)."""
    from sketchtf.training import trainer
    extra = dict(float_workdir=q.float_workdir)
    if not q.distill:
        trainer.compile_model(qm, config, steps)
        return None, extra
    from sketchtf.training.distill import Distiller
    distiller = Distiller(qm, float_model)
    distiller.compile(optimizer=trainer.build_optimizer(config, steps, strategy),
                      metrics=trainer.train_metrics(),
                      alpha=float(q.distill_alpha), temperature=float(q.distill_temperature))
    extra.update(distill_alpha=float(q.distill_alpha), distill_temperature=float(q.distill_temperature))
    return distiller, extra


def quantize_and_export(config, workdir) -> dict:
    """Runs config.quantize (QAT fine-tune or PTQ) and writes the TFLite files.

    Returns the summary also written to workdir/tflite/quantize.json."""
    from sketchtf.training import trainer
    q = quantize_defaults()
    q.update(dict(config.get("quantize", {})))
    if q.mode not in ("qat", "ptq"):
        raise ValueError(f"config.quantize.mode must be 'qat' or 'ptq', got {q.mode!r}")
    if q.float_head and q.mode != "ptq":
        raise ValueError("config.quantize.float_head needs mode='ptq' (a QAT model converts from its fake-quants "
                         "and cannot leave the classifier float)")
    if q.select not in ("", "gate", "gate_tflite"):
        raise ValueError(f"config.quantize.select must be '', 'gate' or 'gate_tflite', got {q.select!r}")
    if q.select:  # keep_best on the gate's measure; _selection_callbacks refuses eval_split test
        config.train.keep_best, config.train.select_on = True, "val_gate_score"
    config.quantize = q
    strategy = trainer.start_run(config, workdir)  # the same setup as train: strategy, seed, precision
    os.makedirs(os.path.join(workdir, "tflite"), exist_ok=True)
    with trainer.run_scope(config):
        float_model, class_names = load_float(config)
    trainer.record_run(config, workdir, class_names, strategy)
    out = dict(mode=q.mode, float_workdir=q.float_workdir, io_dtype=q.io_dtype, model=config.model.name,
               annotations=annotation_plan(float_model), files={}, sizes={})

    cal, cal_info = calibration_images(float_model, config.data, class_names, total=int(q.representative_size),
                                       worst_boost=float(q.worst_boost), probe_per_class=int(q.probe_per_class),
                                       seed=int(config.get("seed", 0)))
    out["calibration"] = cal_info
    files = {"float": float_tflite(float_model),
             "ptq_int8": to_tflite(float_model, cal, q.io_dtype, float_head=bool(q.float_head))}
    out["float_head"] = bool(q.float_head)

    if q.mode == "qat":
        train_ds, info, eval_ds, einfo = trainer.build_data(config, strategy=strategy, workdir=workdir)
        if list(info.class_names) != list(class_names):
            raise ValueError(f"data classes {info.class_names} differ from {q.float_workdir}'s {class_names}")
        with trainer.run_scope(config):
            qm = qat_model(float_model)
            if q.freeze_bn:
                out["frozen_batch_norm"] = freeze_batch_norm(qm)
            steps = int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)
            fit_model, extra = _qat_fit_model(qm, float_model, q, config, steps, strategy)
            metric_cbs = []
            if q.select:
                from sketchtf.evaluation.scoring import predict_scores
                float_scores, _ = predict_scores(float_model, eval_ds, class_names)
                tflite_scores = (_tflite_scorer(qm, cal, q.io_dtype, eval_ds, class_names)
                                 if q.select == "gate_tflite" else None)
                metric_cbs.append(GateScore(float_scores, tflite_scores))
                extra.update(select=q.select, float_eval_top1=float_scores["top1"])
            result = trainer.fit_and_report(qm, config, workdir, train_ds, info, eval_ds, einfo,
                                            title=f"QAT {config.model.name} on {config.data.source}",
                                            fit_model=fit_model, extra=extra, metric_callbacks=metric_cbs)
        out["qat_keras_top1"] = result["top1"]
        files["qat_int8"] = to_tflite(qm, cal, q.io_dtype)

    for name, content in files.items():
        path = os.path.join(workdir, "tflite", f"{name}.tflite")
        out["sizes"][name] = _write(path, content)
        out["files"][name] = path
    out["command"] = " ".join(sys.argv)
    with open(os.path.join(workdir, "tflite", "quantize.json"), "w") as f:
        json.dump(out, f, indent=2)
    return out
