"""Classification metrics: the one place accuracy, top-k, P/R/F1 and confusion live.

Plain numpy, no TensorFlow and no sklearn, so evaluation, reports, tests and the
benchmarks all count the same way.

Conventions (every function follows them):
- labels: int [N], class ids in [0, K).
- scores: float [N, K], probabilities *or* logits. Only the ranking of a row is
  used by accuracy / top-k / the confusion matrix, and softmax keeps it, so either
  works; `vote` is the one place that needs probabilities (see its docstring).
- Ranking ties are broken by class index, lower index first, i.e. the order of a
  stable argsort of -scores. argmax (first maximum) agrees with it, so
  top-1 == top_k_accuracy(k=1) == accuracy always.
- Confusion matrix: rows = true class, columns = predicted class.
- Zero division is 0 (sklearn's zero_division=0): a class never predicted has
  precision 0, a class with no examples has recall (= per-class accuracy) 0, and
  F1 is 0 when precision + recall is 0.
- Macro averages are the unweighted mean over classes, as the knowledge-
  distillation paper (seed A) reports them. The classes averaged are those that
  occur among the true labels or the predictions (sklearn's default label set):
  a class absent from both carries no evidence either way and is left out, so an
  evaluation subset that lacks a class is not penalized for it. The count used is
  reported as `macro_num_classes`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "softmax", "accuracy", "top_k_accuracy", "confusion_matrix",
    "precision_recall_f1", "per_class_accuracy", "worst_class",
    "classification_metrics", "vote", "MetricsAccumulator",
]


def softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (max subtracted first); float64 out."""
    x = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("softmax: logits contain NaN or inf")
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------
# Input checks: every public function goes through these, so a shape or range
# mistake fails with a message that names the argument.

def _labels(labels, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected int class ids of shape [N], got shape {a.shape}"
                         + (" (one-hot? pass argmax)" if a.ndim == 2 else ""))
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
            raise ValueError(f"{name}: expected integer class ids, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        bad = int(np.argmax(a < 0))
        raise ValueError(f"{name}[{bad}] = {a[bad]}: class ids must be >= 0")
    if num_classes is not None and a.size and a.max() >= num_classes:
        bad = int(np.argmax(a >= num_classes))
        raise ValueError(f"{name}[{bad}] = {a[bad]}: class ids must be < num_classes={num_classes}")
    return a


def _scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"{name}: expected [N, K] probabilities or logits, got shape {s.shape}")
    if s.shape[1] == 0:
        raise ValueError(f"{name}: K = 0 classes")
    if not np.all(np.isfinite(s)):
        row = int(np.argmax(~np.all(np.isfinite(s), axis=1)))
        raise ValueError(f"{name}[{row}]: contains NaN or inf (diverged model?)")
    return s


def _labels_scores(labels, scores):
    s = _scores(scores)
    y = _labels(labels, s.shape[1])
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} examples but scores has {s.shape[0]}")
    return y, s


def _check_cm(cm) -> np.ndarray:
    c = np.asarray(cm)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix: expected square [K, K], got shape {c.shape}")
    if np.any(c < 0):
        raise ValueError("confusion matrix: negative count")
    return c.astype(np.int64)


def _ratio(num, den) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (the module's zero-division rule)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


# ---------------------------------------------------------------------------
# Accuracy and top-k

def _rank_of_label(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """0-based position of the true class in a stable argsort of -scores.

    Counted directly (classes scoring higher, plus equal-scoring classes with a
    lower index) rather than sorting: O(N*K) and the same answer.
    """
    n = np.arange(scores.shape[0])
    s_true = scores[n, labels][:, None]
    higher = np.sum(scores > s_true, axis=1)
    tied_before = np.sum((scores == s_true) & (np.arange(scores.shape[1])[None, :] < labels[:, None]), axis=1)
    return higher + tied_before


def top_k_accuracy(labels, scores, k: int = 5) -> float:
    """Fraction of examples whose true class is within the top k of its row.

    Ties: the top k are the first k of a stable argsort of -scores, so when
    scores tie across the k-th place, lower class ids get in first and the true
    class counts as a hit only if it is among those k. A constant row therefore
    ranks classes 0..k-1 first; it is never credited to every class.
    Raises ValueError when k < 1 or k > K (top-5 of a 3-class problem is
    meaningless, not 100%).
    """
    y, s = _labels_scores(labels, scores)
    k = _check_k(k, s.shape[1])
    if y.size == 0:
        raise ValueError("top_k_accuracy: no examples")
    return float(np.mean(_rank_of_label(y, s) < k))


def _check_k(k, num_classes: int) -> int:
    if isinstance(k, bool) or int(k) != k:
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > num_classes:
        raise ValueError(f"top-{k} accuracy needs at least {k} classes; scores have only {num_classes}")
    return k


def accuracy(labels, scores_or_preds) -> float:
    """Top-1 accuracy. Accepts predicted ids [N] or scores [N, K] (argmax taken)."""
    p = np.asarray(scores_or_preds)
    if p.ndim == 2:
        y, s = _labels_scores(labels, p)
        pred = np.argmax(s, axis=1)
    else:
        y = _labels(labels)
        pred = _labels(p, name="preds")
        if pred.shape != y.shape:
            raise ValueError(f"labels has {y.shape[0]} examples but preds has {pred.shape[0]}")
    if y.size == 0:
        raise ValueError("accuracy: no examples")
    return float(np.mean(pred == y))


# ---------------------------------------------------------------------------
# Confusion matrix and what derives from it

def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """int64 [K, K]; cm[i, j] = number of examples of true class i predicted as j."""
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    y = _labels(labels, num_classes)
    p = _labels(preds, num_classes, name="preds")
    if p.shape != y.shape:
        raise ValueError(f"labels has {y.shape[0]} examples but preds has {p.shape[0]}")
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes) \
        .reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
    """cm[i, i] / (examples of class i), i.e. per-class recall; 0 for a class with no examples."""
    c = _check_cm(cm)
    return _ratio(np.diag(c), c.sum(axis=1))


def precision_recall_f1(cm) -> dict:
    """Per-class and macro precision, recall, F1 from a confusion matrix.

    Returns {"precision", "recall", "f1", "support": arrays [K],
             "macro_precision", "macro_recall", "macro_f1": floats,
             "macro_num_classes": int}.
    Zero-division rule and the set of classes the macro mean runs over: see the
    module docstring (never predicted -> precision 0; macro over classes seen in
    the labels or the predictions).
    """
    c = _check_cm(cm)
    tp = np.diag(c).astype(np.float64)
    support = c.sum(axis=1)
    predicted = c.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    seen = (support > 0) | (predicted > 0)
    if not seen.any():
        raise ValueError("confusion matrix is all zeros: no examples")
    return {
        "precision": precision, "recall": recall, "f1": f1, "support": support,
        "macro_precision": float(precision[seen].mean()),
        "macro_recall": float(recall[seen].mean()),
        "macro_f1": float(f1[seen].mean()),
        "macro_num_classes": int(seen.sum()),
    }


def worst_class(cm) -> tuple[int, float]:
    """(class id, accuracy) of the lowest per-class accuracy among classes with examples.

    Classes without examples are skipped (their 0 is a convention, not a
    measurement). Ties go to the lower class id. Seed D's ship gate reads this.
    """
    c = _check_cm(cm)
    acc = per_class_accuracy(c)
    has = c.sum(axis=1) > 0
    if not has.any():
        raise ValueError("confusion matrix is all zeros: no examples")
    idx = int(np.flatnonzero(has)[np.argmin(acc[has])])
    return idx, float(acc[idx])


# ---------------------------------------------------------------------------
# Test-time augmentation

def vote(view_scores, method: str = "majority", *, from_logits: bool = False) -> np.ndarray:
    """Combines V views of N examples, [V, N, K] -> scores [N, K].

    method="mean": the mean of the views' probabilities.
    method="majority": each view votes for its argmax; the class with the most
      votes wins, ties between vote counts are broken by the probabilities
      summed over views, and a tie in those by the lower class id. The scores
      returned are (votes + 0.5 * mean_prob) / (V + 0.5): the vote term moves in
      steps of 1 and the tie-break term stays within [0, 0.5], so it can reorder
      classes with equal votes but never overturn a vote. argmax of the result
      is the majority prediction, classes without votes are ranked by their
      mean probability (so top-5 stays meaningful), and each row sums to 1.

    view_scores are probabilities unless from_logits=True (then softmax is
    applied per view). Probabilities are checked (in [0, 1], rows summing to 1)
    because logits would let the tie-break term outweigh a vote.
    """
    v = np.asarray(view_scores, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"view_scores: expected [V, N, K], got shape {v.shape}")
    if v.shape[0] == 0 or v.shape[2] == 0:
        raise ValueError(f"view_scores: need V >= 1 views and K >= 1 classes, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("view_scores: contains NaN or inf")
    if from_logits:
        probs = softmax(v, axis=-1)
    else:
        if v.size and (v.min() < -1e-6 or v.max() > 1 + 1e-6):
            raise ValueError("view_scores: values outside [0, 1]; pass from_logits=True for logits")
        sums = v.sum(axis=-1)
        if v.size and np.max(np.abs(sums - 1)) > 1e-3:
            raise ValueError(f"view_scores: rows must sum to 1 (found {sums.flat[np.argmax(np.abs(sums - 1))]:.4g}); "
                             "pass from_logits=True for logits")
        probs = np.clip(v, 0.0, 1.0)
    mean_prob = probs.mean(axis=0)
    if method == "mean":
        return mean_prob
    if method != "majority":
        raise ValueError(f"vote: method must be 'majority' or 'mean', got {method!r}")
    num_views, n, k = v.shape
    winners = np.argmax(probs, axis=-1)  # [V, N]
    votes = np.zeros((n, k))
    np.add.at(votes, (np.broadcast_to(np.arange(n), winners.shape), winners), 1.0)
    return (votes + 0.5 * mean_prob) / (num_views + 0.5)


# ---------------------------------------------------------------------------
# The metrics dict (metrics.json) and its streaming form

class MetricsAccumulator:
    """Collects (labels, scores) batch by batch; `result()` is classification_metrics.

    Keeps only a [K, K] confusion matrix and a top-k hit count, so a tf.data
    evaluation never has to hold all scores or images at once.
    """

    def __init__(self, class_names: Sequence[str], top_k: int = 5):
        names = [str(n) for n in class_names]
        if not names:
            raise ValueError("class_names is empty")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"class_names: duplicate name {dup!r}")
        self.class_names = names
        self.num_classes = len(names)
        # top5 falls back to top-K for fewer than 5 classes; the k is reported.
        self.k = _check_k(min(int(top_k), self.num_classes), self.num_classes)
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.topk_hits = 0
        self.num_examples = 0

    def update(self, labels, scores) -> "MetricsAccumulator":
        y, s = _labels_scores(labels, scores)
        if s.shape[1] != self.num_classes:
            raise ValueError(f"scores have {s.shape[1]} classes but class_names has {self.num_classes}")
        self.cm += confusion_matrix(y, np.argmax(s, axis=1), self.num_classes)
        self.topk_hits += int(np.sum(_rank_of_label(y, s) < self.k))
        self.num_examples += int(y.size)
        return self

    def result(self) -> dict:
        """The JSON-serializable metrics dict (see classification_metrics)."""
        if self.num_examples == 0:
            raise ValueError("no examples were added to the metrics accumulator")
        prf = precision_recall_f1(self.cm)
        acc = per_class_accuracy(self.cm)
        w_idx, w_acc = worst_class(self.cm)
        per_class = {
            name: {"accuracy": float(acc[i]), "precision": float(prf["precision"][i]),
                   "recall": float(prf["recall"][i]), "f1": float(prf["f1"][i]),
                   "support": int(prf["support"][i])}
            for i, name in enumerate(self.class_names)
        }
        out = {
            "num_examples": self.num_examples,
            "top1": float(np.trace(self.cm) / self.num_examples),
            "top5": self.topk_hits / self.num_examples,
            "top5_k": self.k,
            "macro_precision": prf["macro_precision"],
            "macro_recall": prf["macro_recall"],
            "macro_f1": prf["macro_f1"],
            "macro_num_classes": prf["macro_num_classes"],
            "worst_class": {"name": self.class_names[w_idx], "accuracy": w_acc},
            "per_class": per_class,
            "confusion": self.cm.tolist(),
            "class_names": list(self.class_names),
        }
        return out


def classification_metrics(labels, scores, class_names: Sequence[str], top_k: int = 5) -> dict:
    """Everything metrics.json holds, as plain Python types (json.dumps-able).

    Keys: num_examples, top1, top5 (top-k with k = min(top_k, K); the k used is
    `top5_k`), macro_precision, macro_recall, macro_f1, macro_num_classes,
    worst_class {name, accuracy}, per_class {name: {accuracy, precision,
    recall, f1, support}}, confusion (list of lists, rows = true), class_names.
    Values are fractions in [0, 1], not percent.
    """
    return MetricsAccumulator(class_names, top_k).update(labels, scores).result()


def per_class_loss_pts(reference_metrics, metrics) -> dict:
    """{class: (reference - other) accuracy in points} of two classification_metrics
    results on the same drawings; positive = the other model (e.g. INT8 vs float) is worse."""
    return {c: 100.0 * (reference_metrics["per_class"][c]["accuracy"] - metrics["per_class"][c]["accuracy"])
            for c in reference_metrics["per_class"]}
