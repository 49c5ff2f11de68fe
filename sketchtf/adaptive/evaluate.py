"""Fit the size policies on the holdout and compare everything on the test
split: fixed sizes, REINFORCE selector (stroke statistics, and with the low-res
pass), confidence cascade, and the oracle (cheapest size that is right).

All comparisons read one table of per-size outputs ([A, N, K] probabilities
from the eval pipeline), so every method is scored on identical renders.
"""
from __future__ import annotations

import json
import os

import numpy as np

from sketchtf.adaptive import multires
from sketchtf.adaptive import policy as P
from sketchtf.data import render


def size_flops(model, sizes, channels=1) -> list:
    """FLOPs per sketch of `model` at each size (sketchtf.evaluation.profile.model_flops)."""
    from sketchtf.evaluation.profile import model_flops
    return [int(model_flops(model, (s, s, channels))) for s in sizes]


def holdout_tables(model, data_cfg, records, class_names, sizes, batch_size=128):
    """(probs [A, N, K], labels [N], stroke features [N, 7]) for a record set."""
    probs, labels = multires.size_probabilities(model, data_cfg, records, class_names, sizes, batch_size)
    feats = P.record_features(records, render.RenderSettings.from_config(data_cfg).margin)
    return probs, labels, feats


def _correct(probs, labels):
    return (np.argmax(probs, -1) == labels[None]).astype(np.float64).T  # [N, A]


def selector_inputs(probs, feats, lowres):
    return np.concatenate([feats, P.lowres_features(probs[0]).numpy()], 1) if lowres else feats


def fit_selector(probs, labels, feats, size_costs, lam, lowres, sel_cfg, seed=0):
    correct = _correct(probs, labels)
    return P.train_selector(selector_inputs(probs, feats, lowres), correct, P.action_costs(size_costs, lowres), lam,
                            hidden=int(sel_cfg.get("hidden", 16)), steps=int(sel_cfg.get("steps", 1500)),
                            batch_size=int(sel_cfg.get("batch_size", 256)), lr=float(sel_cfg.get("lr", 0.01)),
                            entropy=float(sel_cfg.get("entropy", 0.01)), seed=seed, lowres=lowres)


def objective(correct, cost, cost_max, lam):
    return float(np.mean(correct) - lam * np.mean(cost) / cost_max)


def fit_policies(probs, labels, feats, size_costs, ad, seed=0) -> dict:
    """Trains both selectors and tunes the cascade at ad.lambda_flops on the
    holdout; the default is whichever has the higher holdout objective."""
    lam = float(ad.lambda_flops)
    cmax = float(max(size_costs))
    out = {"lambda_flops": lam, "size_costs": [int(c) for c in size_costs]}
    scores = {}
    for name, lowres in (("selector", False), ("selector_lowres", True)):
        if name == "selector_lowres" and not ad.get("try_lowres", True):
            continue
        sel = fit_selector(probs, labels, feats, size_costs, lam, lowres, ad.selector, seed)
        _, corr, cost = P.selector_outcome(sel, selector_inputs(probs, feats, lowres), probs, labels, size_costs)
        scores[name] = objective(corr, cost, cmax, lam)
        out[name] = dict(kind="selector", selector=sel.to_dict(), holdout_objective=scores[name],
                         holdout_top1=float(np.mean(corr)), holdout_flops=float(np.mean(cost)))
    tuned = P.tune_cascade(probs, labels, size_costs, lam)
    _, pred, cost = P.cascade_decide(probs, tuned["chain"], tuned["threshold"], size_costs)
    scores["cascade"] = tuned["objective"]
    out["cascade"] = dict(kind="cascade", chain=tuned["chain"], threshold=tuned["threshold"],
                          holdout_objective=tuned["objective"], holdout_top1=float(np.mean(pred == labels)),
                          holdout_flops=float(np.mean(cost)))
    out["default"] = max(scores, key=scores.get)
    return out


def evaluate_policies(probs, labels, feats, size_costs, sizes, policies) -> list:
    """Rows {method, top1, mean_flops, flops_vs_max, size_share} on a test table."""
    cmax = float(max(size_costs))
    rows = []

    def row(method, correct, cost, used):
        share = {int(s): round(float(np.mean(used == k)), 4) for k, s in enumerate(sizes)}
        rows.append(dict(method=method, top1=round(100 * float(np.mean(correct)), 2),
                         mean_flops=float(np.mean(cost)), flops_vs_max=round(float(np.mean(cost)) / cmax, 4),
                         size_share=share))
    n = len(labels)
    for k, s in enumerate(sizes):
        row(f"fixed {s}", np.argmax(probs[k], -1) == labels, np.full(n, size_costs[k]), np.full(n, k))
    for name in ("selector", "selector_lowres"):
        if name in policies:
            sel = P.Selector.from_dict(policies[name]["selector"])
            used, corr, cost = P.selector_outcome(sel, selector_inputs(probs, feats, sel.lowres), probs, labels,
                                                  size_costs)
            row(name, corr, cost, used)
    c = policies["cascade"]
    used, pred, cost = P.cascade_decide(probs, c["chain"], c["threshold"], size_costs)
    row("cascade", pred == labels, cost, used)
    # Oracle: the cheapest size that is right (the largest when none is): an upper bound.
    correct = _correct(probs, labels)
    first = np.where(correct.any(1), np.argmax(correct > 0, 1), len(sizes) - 1)
    row("oracle (bound)", correct[np.arange(n), first], np.asarray(size_costs)[first], first)
    return rows


def lambda_sweep(hold, test, size_costs, sizes, ad, lambdas, seed=0) -> list:
    """Fits every policy at each lambda on the holdout, scores it on test."""
    out = []
    for lam in lambdas:
        ad2 = ad.copy_and_resolve_references()
        ad2.lambda_flops = float(lam)
        pol = fit_policies(*hold, size_costs, ad2, seed)
        for r in evaluate_policies(*test, size_costs, sizes, pol):
            if not r["method"].startswith(("fixed", "oracle")):
                out.append(dict(r, lambda_flops=float(lam)))
    return out


def save_json(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    return path
