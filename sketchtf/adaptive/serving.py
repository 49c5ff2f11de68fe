"""One SavedModel for the adaptive recognizer: `predict_strokes` picks each
sketch's canvas size in-graph, renders it there and classifies it.

Per size the module holds a sketchtf.ship.export.ServingModule around the same
any-size model (its render_strokes and _outputs are the served renderer and
outputs). A batch is partitioned by chosen size; each non-empty group runs
under a tf.cond, and the groups are stitched back in request order.

Outputs: the ServingModule ones (probabilities, top_k_ids, top_k_names,
top_k_probabilities) plus canvas_size int32 [B] (the size whose answer is
returned) and flops int64 [B] (FLOPs spent on that sketch: every size tried by
the cascade, the low-res pass plus the chosen size for the selector, plus the
selector's own).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from sketchtf.adaptive import multires
from sketchtf.adaptive.policy import Selector, action_costs, lowres_features, stroke_features
from sketchtf.ship.export import ServingModule


class AdaptiveServingModule(tf.Module):
    """policy: {"kind": "selector", "selector": Selector.to_dict()} or
    {"kind": "cascade", "chain": [size index...], "threshold": t}."""

    def __init__(self, model, class_names, data_cfg, sizes, size_costs, policy, top_k=3):
        super().__init__()
        self.sizes = list(multires.check_sizes(sizes))
        if len(size_costs) != len(self.sizes):
            raise ValueError(f"size_costs has {len(size_costs)} entries for {len(self.sizes)} sizes")
        self.per_size = [ServingModule(model, class_names, multires.size_config(data_cfg, s), top_k)
                         for s in self.sizes]
        self.margin = self.per_size[0].draw.margin
        self.kind = policy["kind"]
        self.size_costs = [int(c) for c in size_costs]
        if self.kind == "selector":
            self.selector = Selector.from_dict(policy["selector"])
            if int(self.selector.w2.shape[1]) != len(self.sizes):
                raise ValueError(f"selector has {self.selector.w2.shape[1]} actions for {len(self.sizes)} sizes")
            self.action_flops = tf.constant(
                np.round(action_costs(self.size_costs, self.selector.lowres)).astype(np.int64) + self.selector.flops())
        elif self.kind == "cascade":
            self.chain = [int(k) for k in policy["chain"]]
            if not self.chain or any(not 0 <= k < len(self.sizes) for k in self.chain):
                raise ValueError(f"cascade chain {self.chain} does not index sizes {self.sizes}")
            self.threshold = float(policy["threshold"])
        else:
            raise ValueError(f"policy kind must be 'selector' or 'cascade', got {self.kind!r}")

    def _run(self, k, strokes, lengths, idx):
        """ServingModule outputs at size k for the sketches `idx` (skipped when empty)."""
        sm = self.per_size[k]
        kk = sm.top_k

        def run():
            return sm._outputs(sm.render_strokes(tf.gather(strokes, idx), tf.gather(lengths, idx)))

        def empty():
            n = int(sm.class_names.shape[0])
            return dict(probabilities=tf.zeros([0, n]), top_k_ids=tf.zeros([0, kk], tf.int32),
                        top_k_names=tf.fill([0, kk], ""), top_k_probabilities=tf.zeros([0, kk]))
        return tf.cond(tf.size(idx) > 0, run, empty)

    @staticmethod
    def _stitch(indices, outs):
        return {key: tf.dynamic_stitch(indices, [o[key] for o in outs]) for key in outs[0]}

    def _select(self, strokes, lengths):
        b = tf.shape(strokes)[0]
        feats = stroke_features(strokes, lengths, self.margin)
        everyone = tf.range(b)
        low = None
        if self.selector.lowres:
            low = self._run(0, strokes, lengths, everyone)
            feats = tf.concat([feats, lowres_features(low["probabilities"])], 1)
        choice = self.selector.choose(feats)
        parts = tf.dynamic_partition(everyone, choice, len(self.sizes))
        outs = [tf.nest.map_structure(lambda t, p=parts[0]: tf.gather(t, p), low) if (k == 0 and low is not None)
                else self._run(k, strokes, lengths, parts[k]) for k in range(len(self.sizes))]
        out = self._stitch(parts, outs)
        out["canvas_size"] = tf.gather(tf.constant(self.sizes, tf.int32), choice)
        out["flops"] = tf.gather(self.action_flops, choice)
        return out

    def _cascade(self, strokes, lengths):
        active = tf.range(tf.shape(strokes)[0])
        spent = tf.constant(0, tf.int64)
        indices, outs = [], []
        for j, k in enumerate(self.chain):
            out = self._run(k, strokes, lengths, active)
            spent += self.size_costs[k]
            if j == len(self.chain) - 1:
                stop = tf.ones_like(active, tf.bool)
            else:
                stop = tf.reduce_max(out["probabilities"], -1) >= self.threshold
            done = tf.boolean_mask(active, stop)
            part = {key: tf.boolean_mask(v, stop) for key, v in out.items()}
            part["canvas_size"] = tf.fill(tf.shape(done), self.sizes[k])
            part["flops"] = tf.fill(tf.shape(done), spent)
            indices.append(done)
            outs.append(part)
            active = tf.boolean_mask(active, tf.logical_not(stop))
        return self._stitch(indices, outs)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32, name="strokes"),
                                  tf.TensorSpec([None], tf.int32, name="lengths")])
    def predict_strokes(self, strokes, lengths):
        tf.debugging.assert_less_equal(lengths, tf.shape(strokes)[1], "lengths exceed the padded stroke length")
        tf.debugging.assert_positive(lengths, "every sketch needs at least one point")
        return self._select(strokes, lengths) if self.kind == "selector" else self._cascade(strokes, lengths)


def export_adaptive(model, class_names, data_cfg, sizes, size_costs, policy, export_base, model_name,
                    version=1, top_k=3) -> str:
    """Builds the AdaptiveServingModule and saves it (save_module); returns the path."""
    module = AdaptiveServingModule(model, class_names, data_cfg, sizes, size_costs, policy, top_k)
    return save_module(module, export_base, model_name, version)


def save_module(module, export_base, model_name, version=1) -> str:
    """Writes export_base/model_name/version (TF Serving layout, written beside
    and renamed into place like sketchtf.ship.export); predict_strokes is also
    serving_default."""
    fn = module.predict_strokes.get_concrete_function()
    final = os.path.join(export_base, model_name, str(int(version)))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists: bump --version (TF Serving versions are immutable)")
    tmp = final + ".tmp"
    tf.saved_model.save(module, tmp, signatures={"predict_strokes": fn, "serving_default": fn})
    os.replace(tmp, final)
    return final
