import json

import numpy as np
import pytest

from sketchtf.evaluation import metrics as M

# Hand example, 3 classes; class 2 ("c") is never predicted.
#   true:  a a a b b b c c
#   pred:  a a b b b a a b
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])
PREDS = np.array([0, 0, 1, 1, 1, 0, 0, 1])
NAMES = ["a", "b", "c"]


def _scores_for(preds, k):
    """Scores whose argmax is `preds`; second place is (pred + 1) % k."""
    s = np.full((len(preds), k), 0.05)
    s[np.arange(len(preds)), preds] = 0.7
    s[np.arange(len(preds)), (preds + 1) % k] = 0.2
    return s / s.sum(axis=1, keepdims=True)


def test_hand_computed_precision_recall_f1_with_never_predicted_class():
    cm = M.confusion_matrix(LABELS, PREDS, 3)
    # rows = true, cols = predicted, counted by hand from the table above.
    np.testing.assert_array_equal(cm, [[2, 1, 0], [1, 2, 0], [1, 1, 0]])
    r = M.precision_recall_f1(cm)
    # a: TP 2, predicted 4, support 3. b: the same. c: never predicted -> P = 0, R = 0/2.
    p_a, r_a = 2 / 4, 2 / 3
    f1_a = 2 * p_a * r_a / (p_a + r_a)  # = 4/7
    np.testing.assert_allclose(r["precision"], [p_a, p_a, 0.0])
    np.testing.assert_allclose(r["recall"], [r_a, r_a, 0.0])
    np.testing.assert_allclose(r["f1"], [f1_a, f1_a, 0.0])
    np.testing.assert_array_equal(r["support"], [3, 3, 2])
    assert r["macro_precision"] == pytest.approx(1 / 3)
    assert r["macro_recall"] == pytest.approx(4 / 9)
    assert r["macro_f1"] == pytest.approx(8 / 21)
    assert r["macro_num_classes"] == 3
    np.testing.assert_allclose(M.per_class_accuracy(cm), [2 / 3, 2 / 3, 0.0])
    assert M.worst_class(cm) == (2, 0.0)
    assert M.accuracy(LABELS, PREDS) == 0.5


def test_macro_skips_class_absent_from_labels_and_predictions():
    # A 4th class that occurs nowhere does not change the macro numbers...
    cm4 = M.confusion_matrix(LABELS, PREDS, 4)
    r3, r4 = M.precision_recall_f1(cm4[:3, :3]), M.precision_recall_f1(cm4)
    for key in ("macro_precision", "macro_recall", "macro_f1"):
        assert r4[key] == pytest.approx(r3[key])
    assert r4["macro_num_classes"] == 3
    # ...and is not the worst class (no examples, no evidence).
    assert M.worst_class(cm4) == (2, 0.0)
    # A class only ever predicted (false positives) does count: P = R = F1 = 0 for it.
    cm = M.confusion_matrix([0, 0, 1], [0, 2, 1], 3)
    r = M.precision_recall_f1(cm)
    assert r["macro_num_classes"] == 3
    assert r["macro_precision"] == pytest.approx((1 + 1 + 0) / 3)


def test_confusion_orientation_rows_true_cols_predicted():
    cm = M.confusion_matrix([0, 0, 1], [2, 2, 0], 3)
    assert cm[0, 2] == 2 and cm[1, 0] == 1 and cm.sum() == 3
    assert cm[2, 0] == 0


def test_top_k_hand_cases_and_tie_rule():
    s = np.array([[0.1, 0.6, 0.3],
                  [0.5, 0.2, 0.3],
                  [0.2, 0.2, 0.6]])
    y = np.array([2, 1, 1])
    assert M.top_k_accuracy(y, s, k=1) == 0.0
    # k=2: row 0 hits (label 2 is 2nd); row 1 misses (label 1 is 3rd); row 2 misses:
    # label 1 ties class 0 for 2nd place and the lower id, 0, takes it.
    assert M.top_k_accuracy(y, s, k=2) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(y, s, k=3) == 1.0
    # Ties: stable order, lower class id first. Row [0.5, 0.5, 0]: class 0 takes top-1.
    tie = np.array([[0.5, 0.5, 0.0]])
    assert M.top_k_accuracy([0], tie, k=1) == 1.0
    assert M.top_k_accuracy([1], tie, k=1) == 0.0
    assert M.top_k_accuracy([1], tie, k=2) == 1.0
    # A constant row is not a hit for every class.
    flat = np.ones((3, 3)) / 3
    assert M.top_k_accuracy([0, 1, 2], flat, k=1) == pytest.approx(1 / 3)


def test_top_k_matches_stable_argsort_reference_on_tie_heavy_data():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, size=(300, 7)).astype(float)  # many ties
    y = rng.integers(0, 7, size=300)
    order = np.argsort(-s, axis=1, kind="stable")
    for k in (1, 2, 5, 7):
        ref = np.mean([y[i] in order[i, :k] for i in range(len(y))])
        assert M.top_k_accuracy(y, s, k=k) == pytest.approx(ref)
    assert M.accuracy(y, s) == M.top_k_accuracy(y, s, k=1)


def test_top_k_rejects_k_beyond_classes_and_nonpositive_k():
    s = np.eye(3)
    with pytest.raises(ValueError, match="top-5 accuracy needs at least 5 classes; scores have only 3"):
        M.top_k_accuracy([0, 1, 2], s, k=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.top_k_accuracy([0, 1, 2], s, k=0)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"labels\[1\] = 3: class ids must be < num_classes=3"):
        M.top_k_accuracy([0, 3], np.eye(3)[:2], k=1)
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
        M.confusion_matrix([-1], [0], 2)
    with pytest.raises(ValueError, match="one-hot"):
        M.accuracy(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="2 examples but scores has 3"):
        M.top_k_accuracy([0, 1], np.eye(3), k=1)
    bad = np.eye(3)
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"scores\[1\]: contains NaN"):
        M.classification_metrics([0, 1, 2], bad, NAMES)
    with pytest.raises(ValueError, match="duplicate name 'a'"):
        M.classification_metrics([0], np.eye(2)[:1], ["a", "a"])
    with pytest.raises(ValueError, match="scores have 3 classes but class_names has 2"):
        M.classification_metrics([0], np.eye(3)[:1], ["a", "b"])
    with pytest.raises(ValueError, match="no examples"):
        M.MetricsAccumulator(NAMES).result()


def test_softmax_is_stable_and_normalized():
    p = M.softmax(np.array([[1000.0, 1001.0, 999.0], [-1e4, 0.0, 0.0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    e = np.exp([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(p[0], e / e.sum())
    np.testing.assert_allclose(p[1], [0.0, 0.5, 0.5], atol=1e-12)


def test_vote_majority_tie_broken_by_summed_probabilities():
    # 4 views, 1 example: two views vote class 0, two vote class 1 -> tie on votes;
    # class 1's summed probability is higher (0.5+0.5+0.9+0.9 vs 0.5+0.6+...), so class 1 wins.
    views = np.array([[[0.50, 0.45, 0.05]],
                      [[0.55, 0.40, 0.05]],
                      [[0.05, 0.90, 0.05]],
                      [[0.05, 0.90, 0.05]]])
    s = M.vote(views, "majority")
    assert s.shape == (1, 3)
    assert np.argmax(s[0]) == 1
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    # Mirror the strong views onto class 0 and the tie goes the other way.
    assert np.argmax(M.vote(views[:, :, [1, 0, 2]], "majority")[0]) == 0


def test_vote_majority_never_overturned_by_probability_mass():
    # 3 weak votes for class 0 beat 1 confident vote for class 2, although
    # class 2 has the higher mean probability (mean voting picks class 2).
    views = np.array([[[0.40, 0.35, 0.25]]] * 3 + [[[0.0, 0.0, 1.0]]])
    assert np.argmax(M.vote(views, "mean")[0]) == 2
    s = M.vote(views, "majority")[0]
    assert np.argmax(s) == 0
    # Classes without votes are ranked by mean probability: class 1 (0.2625) is last,
    # class 2 second (1 vote): top-k over the voted scores stays meaningful.
    assert list(np.argsort(-s, kind="stable")) == [0, 2, 1]
    assert M.top_k_accuracy([2], s[None], k=2) == 1.0


def test_vote_mean_and_logits_and_errors():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 6, 5))
    probs = M.softmax(logits)
    np.testing.assert_allclose(M.vote(probs, "mean"), probs.mean(axis=0))
    np.testing.assert_allclose(M.vote(logits, "mean", from_logits=True), probs.mean(axis=0))
    np.testing.assert_allclose(M.vote(logits, "majority", from_logits=True), M.vote(probs, "majority"))
    with pytest.raises(ValueError, match="from_logits=True"):
        M.vote(logits, "majority")
    with pytest.raises(ValueError, match="method must be"):
        M.vote(probs, "median")
    with pytest.raises(ValueError, match=r"\[V, N, K\]"):
        M.vote(probs[0], "mean")
    # Single view: majority keeps that view's ranking.
    one = M.vote(probs[:1], "majority")
    np.testing.assert_array_equal(np.argsort(-one, axis=1, kind="stable"),
                                  np.argsort(-probs[0], axis=1, kind="stable"))


def test_classification_metrics_dict_hand_example_and_json_round_trip():
    m = M.classification_metrics(LABELS, _scores_for(PREDS, 3), NAMES)
    assert m["num_examples"] == 8
    assert m["top1"] == 0.5
    # k falls back to K=3 for 3 classes: every label is within the top 3.
    assert m["top5_k"] == 3 and m["top5"] == 1.0
    assert m["macro_f1"] == pytest.approx(8 / 21)
    assert m["per_class"]["c"] == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["a"]["precision"] == 0.5
    assert m["confusion"] == [[2, 1, 0], [1, 2, 0], [1, 1, 0]]
    assert m["worst_class"] == {"name": "c", "accuracy": 0.0}
    assert m["class_names"] == NAMES
    back = json.loads(json.dumps(m))
    assert back == m
    # Logits give the same dict as probabilities (only the ranking is used).
    assert M.classification_metrics(LABELS, np.log(_scores_for(PREDS, 3)) * 3.0, NAMES) == m


def test_top5_with_ten_classes():
    rng = np.random.default_rng(2)
    s = rng.random((50, 10))
    y = rng.integers(0, 10, 50)
    m = M.classification_metrics(y, s, [f"c{i}" for i in range(10)])
    assert m["top5_k"] == 5
    assert m["top5"] == pytest.approx(M.top_k_accuracy(y, s, k=5))


def test_accumulator_equals_one_shot():
    rng = np.random.default_rng(3)
    n, k = 257, 7
    y = rng.integers(0, k, n)
    s = rng.normal(size=(n, k)).round(1)  # rounding adds ties
    names = [f"class_{i}" for i in range(k)]
    acc = M.MetricsAccumulator(names)
    for lo, hi in [(0, 1), (1, 64), (64, 64), (64, 200), (200, n)]:
        acc.update(y[lo:hi], s[lo:hi])
    assert acc.result() == M.classification_metrics(y, s, names)


def test_per_class_loss_sign():
    f = {"per_class": {"a": {"accuracy": 0.9}, "b": {"accuracy": 0.5}}}
    q = {"per_class": {"a": {"accuracy": 0.85}, "b": {"accuracy": 0.6}}}
    loss = M.per_class_loss_pts(f, q)
    assert loss["a"] == pytest.approx(5.0) and loss["b"] == pytest.approx(-10.0)
