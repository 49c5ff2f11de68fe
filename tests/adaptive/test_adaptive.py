"""Adaptive canvas size: any-size model, multi-size data, REINFORCE selector,
cascade, and the one-SavedModel export (fresh-process round trip)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sketchtf.adaptive import multires
from sketchtf.adaptive import policy as P
from sketchtf.adaptive.serving import AdaptiveServingModule, save_module
from sketchtf.config import data_config
from sketchtf.data import synthetic
from sketchtf.ship.export import strokes_to_request
from sketchtf.keras import keras
from sketchtf.models.sketchnet import sketchnet_gp

CLASSES = list(synthetic.CLASSES)
SIZES = (32, 48, 64)


def tiny_model():
    keras.utils.set_random_seed(0)
    return sketchnet_gp(num_classes=len(CLASSES), input_shape=(32, 32, 1), filters=(4, 8, 8, 8),
                                 bottleneck=8, dense=8)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def sketches():
    return list(synthetic.generate(1, split="test"))[:8]


def test_one_model_runs_at_every_size(model):
    for s in (32, 48, 64, 96):
        out = model(tf.zeros([2, s, s, 1]), training=False)
        assert out.shape == (2, len(CLASSES))
    with pytest.raises(ValueError, match="too small"):
        sketchnet_gp(num_classes=3, input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="multiple of 16"):
        multires.check_sizes([32, 40])


def test_multires_stream_draws_each_batch_natively_at_one_of_the_sizes():
    cfg = data_config(source="synthetic", synthetic_per_class=2)
    records = list(synthetic.generate(2, split="train"))
    ds, info = multires.multires_dataset(cfg, (32, 64), records=records, class_names=CLASSES, batch_size=4, seed=1)
    seen = set()
    for x, y in ds.take(12):
        assert x.shape[1] == x.shape[2] and x.shape[0] == 4 == y.shape[0]
        seen.add(int(x.shape[1]))
    assert seen == {32, 64}
    assert info.num_examples == len(records)


def test_holdout_split_is_stratified_disjoint_and_stable():
    records = list(synthetic.generate(10, split="train"))
    tr, ho = multires.split_holdout(records, 0.2, seed=0)
    assert len(tr) + len(ho) == len(records) and not {r.id for r in tr} & {r.id for r in ho}
    assert {r.label for r in ho} == set(CLASSES) and all(sum(r.label == c for r in ho) == 2 for c in CLASSES)
    assert [r.id for r in multires.split_holdout(records, 0.2, seed=0)[1]] == [r.id for r in ho]


def test_stroke_features_on_a_hand_countable_sketch():
    # Two strokes: an L (2 segments of length 1) and a dot; bbox 1 x 1.
    strokes = [np.array([[0, 0], [0, 1], [1, 1]], np.float32), np.array([[1, 0]], np.float32)]
    s, ln = strokes_to_request([strokes])
    f = dict(zip(P.STROKE_FEATURES, P.stroke_features(s, ln, margin=0.0).numpy()[0]))
    assert f["log_points"] == pytest.approx(np.log1p(4))
    assert f["log_strokes"] == pytest.approx(np.log1p(2))
    assert f["aspect"] == pytest.approx(1.0)
    assert f["log_ink_length"] == pytest.approx(np.log1p(2.0), rel=1e-5)
    assert f["mean_turn"] == pytest.approx(1.0)  # a right angle: 1 - cos 90
    assert f["short_stroke_frac"] == pytest.approx(0.5)  # the dot


def _prob(sel, feats):
    return tf.nn.softmax(sel.logits(feats)).numpy().mean(0)


@pytest.mark.parametrize("correct_row, towards", [((1, 1, 1, 1), 0), ((0, 0, 0, 1), 3)])
def test_policy_gradient_moves_towards_cheapest_correct_size(correct_row, towards):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(256, 5)).astype(np.float32)
    costs = np.array([1.0, 4.0, 9.0, 16.0])
    rewards = P.reward_table(np.tile(correct_row, (256, 1)), costs, lam=0.3)
    sel = P.Selector(5, 4, hidden=8, seed=0)
    before = _prob(sel, feats)
    opt = tf.optimizers.Adam(0.05)
    for t in range(10):
        P.reinforce_step(sel, opt, feats, rewards, tf.constant([0, t], tf.int64))
    after = _prob(sel, feats)
    assert after[towards] > before[towards] + 0.05, (before, after)
    others = [k for k in range(4) if k != towards]
    assert after[others].sum() < before[others].sum()


def test_cascade_escalates_only_unsure_sketches_and_sums_costs():
    # 3 sketches x 3 sizes x 2 classes; label 0 everywhere.
    probs = np.array([[[0.95, 0.05], [0.6, 0.4], [0.3, 0.7]],     # size 0
                      [[0.9, 0.1], [0.85, 0.15], [0.55, 0.45]],   # size 1
                      [[0.9, 0.1], [0.9, 0.1], [0.8, 0.2]]])      # size 2
    costs = [1, 4, 16]
    used, pred, cost = P.cascade_decide(probs, [0, 1, 2], 0.8, costs)
    assert used.tolist() == [0, 1, 2] and pred.tolist() == [0, 0, 0] and cost.tolist() == [1, 5, 21]
    used, pred, cost = P.cascade_decide(probs, [0, 2], 0.8, costs)
    assert used.tolist() == [0, 2, 2] and cost.tolist() == [1, 17, 17]
    best = P.tune_cascade(probs, np.zeros(3, int), costs, lam=0.01, thresholds=[0.5, 0.8])
    _, pred, _ = P.cascade_decide(probs, best["chain"], best["threshold"], costs)
    # The cheapest all-correct plan is 0 -> 1 at 0.8 (at 0.5 sketch 3 stops, wrong, at size 0).
    assert (pred == 0).all() and best["chain"] == [0, 1] and best["threshold"] == 0.8


def _split_selector(feats):
    """A hand-set selector: size 1 when log_points is above the median, else size 0."""
    sel = P.Selector(len(P.STROKE_FEATURES), len(SIZES), hidden=2, mean=np.median(feats, 0),
                     std=np.ones(feats.shape[1]))
    w1 = np.zeros((feats.shape[1], 2), np.float32)
    w1[0] = [1.0, -1.0]
    sel.w1.assign(w1)
    sel.w2.assign(np.array([[-1, 1, 0], [1, -1, 0]], np.float32) * 10)
    sel.b2.assign(np.array([0, 0, -100], np.float32))
    return sel


def _serve_in_fresh_process(path, strokes, lengths, tmp_path):
    np.save(tmp_path / "s.npy", strokes)
    np.save(tmp_path / "l.npy", lengths)
    code = f"""
import numpy as np, tensorflow as tf, sys
f = tf.saved_model.load({path!r}).signatures['predict_strokes']
out = f(strokes=tf.constant(np.load({str(tmp_path / 's.npy')!r})), lengths=tf.constant(np.load({str(tmp_path / 'l.npy')!r})))
assert 'sketchtf' not in sys.modules
np.savez({str(tmp_path / 'out.npz')!r}, **{{k: v.numpy().astype('S') if v.dtype == tf.string else v.numpy() for k, v in out.items()}})
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(np.load(tmp_path / "out.npz"))


def test_selector_saved_model_round_trip_equals_in_process(model, sketches, tmp_path):
    cfg = data_config(source="synthetic", image_size=64)
    strokes, lengths = strokes_to_request([s.strokes for s in sketches])
    feats = P.stroke_features(strokes, lengths).numpy()
    sel = _split_selector(feats)
    costs = [100, 400, 900]
    policy = dict(kind="selector", selector=sel.to_dict())
    module = AdaptiveServingModule(model, CLASSES, cfg, SIZES, costs, policy)
    local = {k: v.numpy() for k, v in module.predict_strokes(tf.constant(strokes), tf.constant(lengths)).items()}
    choice = sel.choose(feats).numpy()
    assert set(choice.tolist()) == {0, 1}  # both groups exercised
    np.testing.assert_array_equal(local["canvas_size"], np.array(SIZES)[choice])
    np.testing.assert_array_equal(local["flops"], np.array(costs)[choice] + sel.flops())
    # Each sketch's answer is the model at its chosen size through the eval pipeline's renderer.
    probs, _ = multires.size_probabilities(model, cfg, sketches, CLASSES, SIZES[:2])
    np.testing.assert_allclose(local["probabilities"], probs[choice, np.arange(len(sketches))], atol=1e-5)
    path = save_module(module, str(tmp_path / "exp"), "ad")  # the module traced above
    served = _serve_in_fresh_process(path, strokes, lengths, tmp_path)
    assert set(served) >= {"probabilities", "top_k_ids", "top_k_names", "top_k_probabilities", "canvas_size",
                           "flops"}
    for k in local:
        if local[k].dtype.kind in "fc":
            np.testing.assert_allclose(served[k], local[k], atol=1e-6)
        else:
            np.testing.assert_array_equal(served[k], local[k].astype(served[k].dtype))


def test_cascade_in_graph_matches_numpy_cascade(model, sketches):
    cfg = data_config(source="synthetic", image_size=64)
    strokes, lengths = strokes_to_request([s.strokes for s in sketches])
    probs, _ = multires.size_probabilities(model, cfg, sketches, CLASSES, SIZES)
    # A threshold between the smallest size's confidences, so some sketches escalate.
    conf = np.sort(probs[0].max(-1))
    thr = float((conf[3] + conf[4]) / 2)
    costs = [100, 400, 900]
    module = AdaptiveServingModule(model, CLASSES, cfg, SIZES, costs, dict(kind="cascade", chain=[0, 2],
                                                                            threshold=thr))
    out = module.predict_strokes(tf.constant(strokes), tf.constant(lengths))
    used, pred, cost = P.cascade_decide(probs, [0, 2], thr, costs)
    assert set(used.tolist()) == {0, 2}
    np.testing.assert_array_equal(out["canvas_size"].numpy(), np.array(SIZES)[used])
    np.testing.assert_array_equal(out["top_k_ids"].numpy()[:, 0], pred)
    np.testing.assert_array_equal(out["flops"].numpy(), cost)


def test_fit_policies_learns_a_separable_split():
    from sketchtf.adaptive import adaptive_config
    from sketchtf.adaptive import evaluate as E
    rng = np.random.default_rng(0)
    n, k = 64, 3
    labels = rng.integers(0, k, n)
    # Small size right on half the sketches, the large size always right.
    probs = np.full((2, n, k), 0.1)
    probs[1, np.arange(n), labels] = 0.8
    small_right = np.arange(n) % 2 == 0
    probs[0, np.arange(n), np.where(small_right, labels, (labels + 1) % k)] = 0.8
    feats = rng.normal(size=(n, 7)).astype(np.float32)
    feats[:, 0] = small_right  # a stroke statistic that tells them apart
    ad = adaptive_config(sizes=(32, 64), lambda_flops=0.2, selector=dict(steps=300, lr=0.05))
    pol = E.fit_policies(probs, labels, feats, [1000, 4000], ad)
    # Only the stroke statistic tells which sketches 32 px gets right: the stats
    # selector (about 1 - 0.2 * 2500/4000 = 0.875) beats any policy blind to it
    # (all at 64 px: 0.8), and the default is the best holdout objective.
    objectives = {m: pol[m]["holdout_objective"] for m in ("selector", "selector_lowres", "cascade")}
    assert pol["default"] == max(objectives, key=objectives.get) == "selector", objectives
    json.dumps(pol)  # serializable as policy.json
    rows = {r["method"]: r for r in E.evaluate_policies(probs, labels, feats, [1000, 4000], (32, 64), pol)}
    assert rows["fixed 64"]["top1"] == 100.0 and rows["fixed 32"]["top1"] == 50.0
    assert rows["oracle (bound)"]["mean_flops"] == pytest.approx(2500)
    # The stats selector learns the split: all right at the oracle's FLOPs plus its own MLP's.
    sel = P.Selector.from_dict(pol["selector"]["selector"])
    assert rows["selector"]["top1"] == 100.0
    assert rows["selector"]["mean_flops"] == pytest.approx(2500 + sel.flops())
