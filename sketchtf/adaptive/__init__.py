"""Adaptive canvas size (issue 8 item 2, seed B): one any-size recognizer,
a per-sketch size policy (REINFORCE selector or confidence cascade), and one
SavedModel that picks the size in-graph.

    python -m sketchtf.adaptive train    --config=configs/adaptive_qd10.py --workdir=runs/adaptive
    python -m sketchtf.adaptive policy   --workdir=runs/adaptive     # holdout -> policy.json
    python -m sketchtf.adaptive evaluate --workdir=runs/adaptive     # test table -> adaptive_eval.json
    python -m sketchtf.adaptive export   --workdir=runs/adaptive --export_dir=exported

Modules: multires (model, per-batch random-size data, training), policy
(stroke features, Selector + REINFORCE, cascade), evaluate (fit/compare on
precomputed per-size outputs), serving (AdaptiveServingModule, export).
"""
import ml_collections

from sketchtf.adaptive.multires import (MODEL_NAME, check_sizes, multires_dataset,  # noqa: F401
                                        split_holdout, train_multires)


def adaptive_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the `adaptive` config section."""
    c = ml_collections.ConfigDict(dict(
        sizes=(32, 64, 96, 128),
        size_weights=(),          # () = uniform over sizes per training batch
        holdout_fraction=0.1,     # train records kept out of training, for the policies
        lambda_flops=0.05,        # reward = correct - lambda * FLOPs / FLOPs(max size)
        try_lowres=True,          # also fit the selector that sees the smallest size's answer
        selector=dict(hidden=16, steps=1500, batch_size=256, lr=0.01, entropy=0.01),
    ))
    c.update(overrides)
    return c
