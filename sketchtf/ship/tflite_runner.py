"""Run a .tflite classifier with ai-edge-litert's Interpreter (tf.lite.Interpreter
is deprecated), hiding input quantization and output dequantization.

    runner = TFLiteClassifier("runs/qat/tflite/qat_int8.tflite", num_threads=1)
    logits = runner.predict(images)        # float32 [B, K], whatever the file's io types
    result, loss = predict_scores_tflite(runner, dataset, class_names)

Images follow the package convention (float32 [B, H, W, C] in [0, 1], ink = 1);
for an int8/uint8 input the runner quantizes them with the file's own scale and
zero point, exactly as an app on a phone would, and dequantizes the logits.
"""
from __future__ import annotations

import os

import numpy as np

from sketchtf.evaluation import metrics as M


def _interpreter_cls():
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter


class TFLiteClassifier:
    """One .tflite image classifier (one input, one output of logits)."""

    def __init__(self, model, num_threads: int = 1):
        """model: a path or the flatbuffer bytes."""
        if isinstance(model, (bytes, bytearray)):
            self.path, content = "<bytes>", bytes(model)
        else:
            self.path = os.fspath(model)
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"no TFLite file at {self.path}")
            with open(self.path, "rb") as f:
                content = f.read()
        self.size_bytes = len(content)
        try:
            self.interpreter = _interpreter_cls()(model_content=content, num_threads=int(num_threads))
        except ValueError as e:
            raise ValueError(f"{self.path}: not a TFLite model: {e}") from None
        ins, outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"{self.path}: expected 1 input and 1 output, got {len(ins)} and {len(outs)}")
        self._in, self._out = ins[0], outs[0]
        self.input_shape = tuple(int(d) for d in self._in["shape"][1:])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._batch = None
        self._resize(1)

    @property
    def quantized_io(self) -> bool:
        return self.input_dtype != np.float32

    def _resize(self, batch: int):
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [batch, *self.input_shape])
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
            self._batch = batch

    def quantize_input(self, images) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if not self.quantized_io:
            return x
        scale, zero = self._in["quantization"]
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, raw) -> np.ndarray:
        if self.output_dtype == np.float32:
            return np.asarray(raw, np.float32)
        scale, zero = self._out["quantization"]
        return (np.asarray(raw, np.float32) - zero) * scale

    def predict(self, images, max_batch: int = 64) -> np.ndarray:
        """float images [B, H, W, C] -> float32 logits [B, K]."""
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.path}: images must be [B, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(x.shape)}")
        outs = []
        for start in range(0, len(x), max_batch):
            chunk = x[start:start + max_batch]
            self._resize(len(chunk))
            self.interpreter.set_tensor(self._in["index"], self.quantize_input(chunk))
            self.interpreter.invoke()
            outs.append(self.dequantize_output(self.interpreter.get_tensor(self._out["index"])))
        return np.concatenate(outs, 0) if outs else np.zeros((0, 0), np.float32)

    def predict_one(self, image) -> np.ndarray:
        """One image [H, W, C] -> logits [K]; batch-1 path an app takes (for latency)."""
        self._resize(1)
        self.interpreter.set_tensor(self._in["index"], self.quantize_input(np.asarray(image)[None]))
        self.interpreter.invoke()
        return self.dequantize_output(self.interpreter.get_tensor(self._out["index"]))[0]

    def op_names(self) -> list:
        """Sorted op types in the graph (e.g. to check a model is fully INT8)."""
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})


def predict_scores_tflite(runner: TFLiteClassifier, dataset, class_names, top_k: int = 5):
    """As callbacks.predict_scores, for a TFLite model: (metrics dict, mean loss)."""
    acc = M.MetricsAccumulator(class_names, top_k=top_k)
    losses = []
    for batch in dataset:
        x, y = np.asarray(batch[0]), np.asarray(batch[1])
        logits = runner.predict(x)
        if logits.shape[1] != len(class_names):
            raise ValueError(f"{runner.path}: {logits.shape[1]} outputs but {len(class_names)} classes")
        p = M.softmax(logits)
        losses.append(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
        acc.update(y, logits)
    return acc.result(), float(np.mean(np.concatenate(losses)))


def evaluate_tflite(workdir, tflite_path, split="test", num_threads=1):
    """Metrics of a .tflite classifier on `split` of workdir's data config: the
    same images from the same pipeline and renderer as the Keras checkpoint.
    Writes <workdir>/eval_<split>_<file name>/."""
    import sys

    from sketchtf.data import pipeline
    from sketchtf.evaluation import report
    from sketchtf.workdir import read_run
    config, class_names = read_run(workdir)
    runner = TFLiteClassifier(tflite_path, num_threads=num_threads)
    expected = (int(config.data.image_size), int(config.data.image_size), int(config.data.get("channels", 1)))
    if runner.input_shape != expected:
        raise ValueError(f"{tflite_path} takes {runner.input_shape} images but {workdir}/config.json "
                         f"renders {expected}")
    ds, _ = pipeline.make_dataset(config.data, split, batch_size=int(config.eval.get("batch_size", 64)),
                                  training=False, class_names=class_names)
    result, loss = predict_scores_tflite(runner, ds, class_names)
    name = os.path.splitext(os.path.basename(tflite_path))[0]
    out = os.path.join(workdir, f"eval_{split}_{name}")
    report.write_report(out, result, title=f"{name}.tflite ({config.model.name}) on {split}",
                        extra=dict(tflite=os.path.abspath(tflite_path), size_bytes=runner.size_bytes,
                                   io_dtype=str(runner.input_dtype), eval_loss=round(loss, 4),
                                   command=" ".join(sys.argv)))
    return result, out
