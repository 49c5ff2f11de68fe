"""SavedModel export for TF Serving: `<base>/<model_name>/<version>/`.

Signatures (method name tensorflow/serving/predict):
  serving_default   image_bytes: string [B]   encoded PNG/JPEG/GIF/BMP, any size:
                    a scan, photo or canvas export, brought to the training
                    renders' look in-graph (sketchtf/data/scans.py: ink
                    polarity, paper level, line width, crop to the ink's box
                    with the training margin)
  predict_strokes   strokes: float32 [B, P, 3]  rows (x, y, stroke_index), any
                    units, x right / y down; stroke_index non-decreasing from 0;
                    lengths: int32 [B]  valid rows per sketch (the rest padding)
Both return: probabilities [B, K], top_k_ids int32 [B, k], top_k_names string
[B, k] (the vocabulary is inside the model), top_k_probabilities [B, k].

Strokes are drawn by sketchtf.data.render, the very renderer used in training,
with the training config's size, margin and line width, so serving sees what
the model saw. The SavedModel holds only standard TF ops: it loads with plain
`tf.saved_model.load` and runs in stock TF Serving.

  python -m sketchtf.export --workdir=runs/sketchnet --export_dir=exported
"""
from __future__ import annotations

import os

import tensorflow as tf

from sketchtf.data import augment, render, scans


class ServingModule(tf.Module):
    def __init__(self, model, class_names, data_cfg, top_k=3):
        super().__init__()
        self.model = model
        self.class_names = tf.constant(list(class_names))
        self.top_k = min(int(top_k), len(class_names))
        self.draw = render.RenderSettings.from_config(data_cfg)
        self.size, self.channels = self.draw.size, self.draw.channels

    def _outputs(self, images):
        probs = tf.nn.softmax(tf.cast(self.model(images, training=False), tf.float32), axis=-1)
        top_p, top_i = tf.math.top_k(probs, k=self.top_k)
        return dict(probabilities=probs, top_k_ids=top_i, top_k_names=tf.gather(self.class_names, top_i),
                    top_k_probabilities=top_p)

    def render_strokes(self, strokes, lengths):
        points = strokes[..., :2]
        ids = tf.cast(tf.round(strokes[..., 2]), tf.int32)
        d = self.draw
        unit = render.normalize(points, lengths, d.margin)
        images = render.render(unit, ids, lengths, size=d.render_size, line_width=d.line_width, channels=d.channels)
        return augment.center_crop(images, d.size) if d.render_size > d.size else images

    def decode_images(self, image_bytes):
        def one(b):
            img = tf.image.convert_image_dtype(tf.io.decode_image(b, channels=1, expand_animations=False), tf.float32)
            return scans.to_training_look(img, self.draw)  # polarity, paper, line width, framing
        return tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([self.size, self.size, 1], tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(self, image_bytes):
        if self.channels != 1:
            raise ValueError("image input needs a 1-channel model; use predict_strokes for the stroke-order stack")
        return self._outputs(self.decode_images(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32, name="strokes"),
                                  tf.TensorSpec([None], tf.int32, name="lengths")])
    def predict_strokes(self, strokes, lengths):
        tf.debugging.assert_less_equal(lengths, tf.shape(strokes)[1], "lengths exceed the padded stroke length")
        tf.debugging.assert_positive(lengths, "every sketch needs at least one point")
        return self._outputs(self.render_strokes(strokes, lengths))


def export_saved_model(model, class_names, data_cfg, export_base, model_name, version=1, top_k=3) -> str:
    """Writes the SavedModel under export_base/model_name/version; returns that path.

    The version folder is written next to it first and renamed into place, so
    TF Serving (which polls the base folder) never sees a half-written version.
    """
    module = ServingModule(model, class_names, data_cfg, top_k)
    signatures = {"predict_strokes": module.predict_strokes.get_concrete_function()}
    if module.channels == 1:
        signatures["serving_default"] = module.serve_images.get_concrete_function()
    else:
        signatures["serving_default"] = module.predict_strokes.get_concrete_function()
    final = os.path.join(export_base, model_name, str(int(version)))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists: bump --version (TF Serving versions are immutable)")
    tmp = final + ".tmp"
    tf.saved_model.save(module, tmp, signatures=signatures)
    os.replace(tmp, final)
    return final


def strokes_to_request(sketches):
    """list of stroke lists -> (strokes [B, P, 3] float32, lengths [B] int32) padded."""
    import numpy as np
    rows = []
    for strokes in sketches:
        pts, ids = render.strokes_to_arrays(strokes)
        rows.append(np.concatenate([pts, ids[:, None].astype(np.float32)], 1))
    p = max(len(r) for r in rows)
    out = np.zeros((len(rows), p, 3), np.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, np.array([len(r) for r in rows], np.int32)
