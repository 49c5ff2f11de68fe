"""Seed E: a linear head (arg "mlp": one 256-unit hidden layer) on a frozen backbone's
cached pooled features, AdamW + one-cycle. The data section comes from the backbone's
workdir (same data, size, rendering; features of the un-augmented view).

  python -m sketchtf.training.features --config=configs/frozen_linear.py \
      --backbone_workdir=runs/efficientnet_b4 --workdir=runs/b4_frozen_linear
"""
import ml_collections


def get_config(arg=None):
    args = set((arg or "").split(","))
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.backbone_workdir = ""     # or --backbone_workdir
    c.cache_dir = ""            # "" = <workdir>/feature_cache
    c.feature_batch_size = 128
    c.head = ml_collections.ConfigDict(dict(hidden=256 if "mlp" in args else 0, dropout=0.0))
    # Seed E: OneCycle + AdamW beat cosine / Adam; weight decay did not help much (kept small).
    c.train = ml_collections.ConfigDict(dict(
        epochs=30, batch_size=256, steps_per_epoch=0, optimizer="adamw", lr=3e-3, schedule="onecycle",
        warmup_frac=0.3, weight_decay=1e-4, momentum=0.9, clipnorm=0.0, decay_steps=1000, decay_rate=0.96,
        verbose=2))
    if "smoke" in args:
        c.train.epochs = 20
        c.train.batch_size = 32
        c.train.lr = 1e-2
    return c
