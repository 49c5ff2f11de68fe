"""Which canvas size for which sketch: cheap stroke statistics, a tiny policy
trained by REINFORCE (seed B's selector), and the confidence cascade it is
compared with.

Costs are FLOPs per sketch. Rewards follow seed B: r = correct - lambda * cost /
cost_max, so lambda trades one point of accuracy against a fraction of the
largest canvas' FLOPs.

With `lowres=True` the selector also sees the recognizer's answer at the
smallest size (max probability, top-1 minus top-2, entropy): that pass is always
paid, and picking the smallest size then costs nothing more.
"""
from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from sketchtf.data import render

STROKE_FEATURES = ("log_points", "log_strokes", "aspect", "log_ink_length", "log_mean_segment",
                   "mean_turn", "short_stroke_frac")
LOWRES_FEATURES = ("lowres_max_prob", "lowres_margin", "lowres_entropy")
SHORT_STROKE = 0.05  # unit-canvas length under which a stroke counts as a small detail


def stroke_features(strokes, lengths, margin: float = 0.06):
    """[B, P, 3] strokes (x, y, stroke index; padded) + lengths [B] -> [B, 7]
    float32 statistics in STROKE_FEATURES order. Plain TF ops: training and the
    exported SavedModel compute them with this one function."""
    strokes = tf.convert_to_tensor(strokes, tf.float32)
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    b, p = tf.shape(strokes)[0], tf.shape(strokes)[1]
    points = strokes[..., :2]
    ids = tf.cast(tf.round(strokes[..., 2]), tf.int32)
    valid = tf.sequence_mask(lengths, p)
    ids = tf.where(valid, ids, 0)
    n_strokes = tf.cast(tf.reduce_max(ids, axis=1) + 1, tf.float32)
    n_points = tf.cast(lengths, tf.float32)
    big = 1e12
    lo = tf.reduce_min(tf.where(valid[..., None], points, big), axis=1)
    hi = tf.reduce_max(tf.where(valid[..., None], points, -big), axis=1)
    ext = tf.maximum(hi - lo, 0.0)
    aspect = tf.reduce_min(ext, -1) / tf.maximum(tf.reduce_max(ext, -1), 1e-6)
    unit = render.normalize(points, lengths, margin)
    # Segment i joins point i-1 and i when both valid and in one stroke.
    seg = unit[:, 1:] - unit[:, :-1]
    joined = tf.equal(ids[:, 1:], ids[:, :-1]) & valid[:, 1:]
    seg_len = tf.where(joined, tf.norm(seg, axis=-1), 0.0)
    ink = tf.reduce_sum(seg_len, 1)
    n_seg = tf.reduce_sum(tf.cast(joined, tf.float32), 1)
    mean_seg = ink / tf.maximum(n_seg, 1.0)
    # Turning: 1 - cos of the angle between consecutive segments of a stroke.
    both = joined[:, 1:] & joined[:, :-1] & (seg_len[:, 1:] > 0) & (seg_len[:, :-1] > 0)
    cos = tf.reduce_sum(seg[:, 1:] * seg[:, :-1], -1) / tf.maximum(seg_len[:, 1:] * seg_len[:, :-1], 1e-12)
    turn = tf.reduce_sum(tf.where(both, 1.0 - cos, 0.0), 1) / tf.maximum(
        tf.reduce_sum(tf.cast(both, tf.float32), 1), 1.0)
    # Per-stroke ink length: segment ids offset per sketch so one segment_sum covers the batch.
    seg_ids = tf.reshape(ids[:, 1:] + tf.range(b)[:, None] * p, [-1])
    per_stroke = tf.math.unsorted_segment_sum(tf.reshape(seg_len, [-1]), seg_ids, b * p)
    stroke_exists = tf.sequence_mask(tf.cast(n_strokes, tf.int32), p)
    short = tf.reduce_sum(tf.cast(stroke_exists & (tf.reshape(per_stroke, [b, p]) < SHORT_STROKE), tf.float32), 1)
    return tf.stack([tf.math.log1p(n_points), tf.math.log1p(n_strokes), aspect, tf.math.log1p(ink),
                     tf.math.log(mean_seg + 1e-3), turn, short / n_strokes], axis=1)


def lowres_features(probs):
    """[B, K] probabilities at the smallest size -> [B, 3] (LOWRES_FEATURES)."""
    probs = tf.convert_to_tensor(probs, tf.float32)
    top2 = tf.math.top_k(probs, k=2).values
    ent = -tf.reduce_sum(probs * tf.math.log(tf.maximum(probs, 1e-12)), -1)
    return tf.stack([top2[:, 0], top2[:, 0] - top2[:, 1], ent], axis=1)


def record_features(records, margin: float = 0.06, batch: int = 256) -> np.ndarray:
    """stroke_features of Sketch records, [N, 7] numpy."""
    from sketchtf.ship.export import strokes_to_request
    out = []
    for i in range(0, len(records), batch):
        strokes, lengths = strokes_to_request([r.strokes for r in records[i:i + batch]])
        out.append(stroke_features(strokes, lengths, margin).numpy())
    return np.concatenate(out).astype(np.float32)


class Selector(tf.Module):
    """features -> standardize -> Dense(hidden, relu) -> logits over sizes, plus
    a linear value head (REINFORCE baseline) on the standardized features."""

    def __init__(self, num_features, num_actions, hidden=16, seed=0, mean=None, std=None, lowres=False,
                 name="selector"):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        f, h, a = int(num_features), int(hidden), int(num_actions)
        self.lowres = bool(lowres)
        self.mean = tf.Variable(np.zeros(f, np.float32) if mean is None else np.asarray(mean, np.float32),
                                trainable=False, name="mean")
        self.std = tf.Variable(np.ones(f, np.float32) if std is None else np.asarray(std, np.float32),
                               trainable=False, name="std")
        self.w1 = tf.Variable(rng.normal(0, np.sqrt(2.0 / f), (f, h)).astype(np.float32), name="w1")
        self.b1 = tf.Variable(np.zeros(h, np.float32), name="b1")
        self.w2 = tf.Variable(rng.normal(0, 0.01, (h, a)).astype(np.float32), name="w2")
        self.b2 = tf.Variable(np.zeros(a, np.float32), name="b2")
        self.wv = tf.Variable(np.zeros((f, 1), np.float32), name="wv")
        self.bv = tf.Variable(np.zeros(1, np.float32), name="bv")

    @property
    def policy_variables(self):
        return [self.w1, self.b1, self.w2, self.b2]

    @property
    def value_variables(self):
        return [self.wv, self.bv]

    def _z(self, features):
        return (tf.convert_to_tensor(features, tf.float32) - self.mean) / self.std

    def logits(self, features):
        return tf.nn.relu(self._z(features) @ self.w1 + self.b1) @ self.w2 + self.b2

    def value(self, features):
        return (self._z(features) @ self.wv + self.bv)[:, 0]

    def choose(self, features):
        """Greedy size index per sketch (int32 [B])."""
        return tf.argmax(self.logits(features), axis=-1, output_type=tf.int32)

    def flops(self) -> int:
        """Per sketch: standardize (2/feature) + two dense layers (2 per MAC + bias)."""
        f, h = self.w1.shape
        a = self.w2.shape[1]
        return int(2 * f + 2 * f * h + h + 2 * h * a + a)

    def to_dict(self) -> dict:
        return dict(lowres=self.lowres, **{v: getattr(self, v).numpy().tolist()
                                           for v in ("mean", "std", "w1", "b1", "w2", "b2", "wv", "bv")})

    @classmethod
    def from_dict(cls, d):
        w1, w2 = np.asarray(d["w1"], np.float32), np.asarray(d["w2"], np.float32)
        s = cls(w1.shape[0], w2.shape[1], hidden=w1.shape[1], mean=d["mean"], std=d["std"], lowres=d["lowres"])
        for v in ("w1", "b1", "w2", "b2", "wv", "bv"):
            getattr(s, v).assign(np.asarray(d[v], np.float32))
        return s


def action_costs(size_costs, lowres: bool) -> np.ndarray:
    """FLOPs of choosing each size; with the low-res pass its cost comes first."""
    c = np.asarray(size_costs, np.float64)
    return np.concatenate([[c[0]], c[0] + c[1:]]) if lowres else c


def reward_table(correct, costs, lam, cost_max=None) -> np.ndarray:
    """[N, A] reward of every action: correct - lam * cost / cost_max (seed B)."""
    costs = np.asarray(costs, np.float64)
    cmax = float(cost_max if cost_max is not None else costs.max())
    return (np.asarray(correct, np.float64) - lam * costs[None] / cmax).astype(np.float32)


def reinforce_step(selector, optimizer, features, rewards, seed, entropy=0.01):
    """One REINFORCE-with-baseline update on a batch.

    Samples one size per sketch from the policy, reads its reward from the
    [B, A] table, and ascends (r - V(x)) * log pi(a|x) + entropy bonus; the
    value head regresses r. Returns tensors (mean sampled reward, policy loss);
    runs eagerly or inside a tf.function."""
    features = tf.convert_to_tensor(features, tf.float32)
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    with tf.GradientTape() as tape:
        logits = selector.logits(features)
        logp = tf.nn.log_softmax(logits, -1)
        a = tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]
        r = tf.gather(rewards, a, batch_dims=1)
        v = selector.value(features)
        adv = tf.stop_gradient(r - v)
        ent = -tf.reduce_sum(tf.exp(logp) * logp, -1)
        pg = -tf.reduce_mean(adv * tf.gather(logp, a, batch_dims=1))
        loss = pg - entropy * tf.reduce_mean(ent) + 0.5 * tf.reduce_mean(tf.square(r - v))
    variables = selector.policy_variables + selector.value_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return tf.reduce_mean(r), pg


def train_selector(features, correct, costs, lam, *, hidden=16, steps=1500, batch_size=256, lr=0.01,
                   entropy=0.01, seed=0, lowres=False) -> Selector:
    """Fits a Selector by REINFORCE on (features [N, F], correct [N, A] 0/1,
    action costs [A]). Adam on plain tf.Variables (no Keras state to export)."""
    features = np.asarray(features, np.float32)
    rewards = reward_table(correct, costs, lam)
    n = len(features)
    if n == 0:
        raise ValueError("train_selector: no examples")
    mean, std = features.mean(0), features.std(0) + 1e-6
    sel = Selector(features.shape[1], rewards.shape[1], hidden=hidden, seed=seed, mean=mean, std=std, lowres=lowres)
    opt = tf.optimizers.Adam(lr)
    rng = np.random.default_rng(seed)
    step = tf.function(lambda f, r, s: reinforce_step(sel, opt, f, r, s, entropy))
    for t in range(int(steps)):
        idx = rng.integers(0, n, min(batch_size, n))
        step(features[idx], rewards[idx], tf.constant([seed, t], tf.int64))
    return sel


def selector_outcome(selector, features, probs, labels, size_costs):
    """Greedy selector on precomputed per-size outputs: (choice [N], correct [N], cost [N])."""
    choice = selector.choose(features).numpy()
    pred = np.argmax(probs[choice, np.arange(len(labels))], -1)
    cost = action_costs(size_costs, selector.lowres)[choice] + selector.flops()
    return choice, (pred == labels).astype(np.float64), cost


def cascade_decide(probs, chain, threshold, size_costs):
    """Confidence cascade on precomputed outputs: try chain[0] (a size index),
    stop when max prob >= threshold, else escalate; the last stage always stops.

    probs [A, N, K]. Returns (size index used [N], predicted class [N], FLOPs [N]
    = sum of every size tried)."""
    chain = [int(k) for k in chain]
    if not chain:
        raise ValueError("cascade chain is empty")
    n = probs.shape[1]
    used = np.full(n, -1)
    cost = np.zeros(n)
    active = np.ones(n, bool)
    for j, k in enumerate(chain):
        cost[active] += size_costs[k]
        stop = active & ((probs[k].max(-1) >= threshold) | (j == len(chain) - 1))
        used[stop] = k
        active &= ~stop
    pred = np.argmax(probs[used, np.arange(n)], -1)
    return used, pred, cost


def tune_cascade(probs, labels, size_costs, lam, thresholds=None):
    """Chain (increasing sizes) and threshold maximizing mean(correct) - lam *
    mean(cost) / cost_max on this data. Returns dict(chain, threshold, objective)."""
    a = probs.shape[0]
    thresholds = np.linspace(0.3, 0.999, 71) if thresholds is None else thresholds
    cmax = float(np.max(size_costs))
    best = None
    for r in range(1, a + 1):
        for chain in itertools.combinations(range(a), r):
            for t in (thresholds if r > 1 else [1.0]):
                _, pred, cost = cascade_decide(probs, chain, t, size_costs)
                obj = float(np.mean(pred == labels) - lam * np.mean(cost) / cmax)
                if best is None or obj > best["objective"] + 1e-12:
                    best = dict(chain=list(chain), threshold=float(t), objective=obj)
    return best
