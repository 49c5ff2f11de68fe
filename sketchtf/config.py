"""The one config system: ml_collections ConfigDicts built by configs/*.py.

Experiment files (big_vision style) define `get_config(arg=None)` and build on
the defaults here; `--config=configs/x.py:smoke` picks a variant and
`--config.train.epochs=3` overrides a field. Library code takes the ConfigDict
(or its sub-dicts); only entry points read flags.
"""
from __future__ import annotations

import json
import os
import pathlib

import ml_collections


def shared_data_dir() -> pathlib.Path | None:
    """The real-data folder: $SKETCHTF_DATA, else ../shared/data near the project."""
    env = os.environ.get("SKETCHTF_DATA")
    if env:
        return pathlib.Path(env)
    here = pathlib.Path(__file__).resolve().parent.parent
    for base in (pathlib.Path.cwd(), here):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def data_path(name: str) -> str:
    """Path of a folder under the shared data dir ('' when absent, so a config
    still loads and the pipeline's error names the missing path)."""
    root = shared_data_dir()
    return str(root / name) if root is not None else ""


def data_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults for the `data` section (see sketchtf/data/pipeline.py)."""
    c = ml_collections.ConfigDict(dict(
        source="synthetic",        # see pipeline.SOURCES
        path="",                   # file or folder; root/train + root/test used when present
        classes=(),                # () = all, sorted; else this order
        limit_per_class=0,         # 0 = no limit
        recognized_only=False,
        skip_bad=False,            # count and report bad records instead of failing
        split_seed=0,
        test_fraction=0.2,         # sources without a test split of their own: hash of the key
        valid_fraction=0.0,        # carved from train by the same hash (prepare and in memory)
        keep_times=False,          # raw Quick Draw point times into prepared shards
        shuffle_buffer=20000,      # training shuffle buffer (records); memory stays bounded
        interleave=16,             # shards read at once
        class_balance="none",      # none | uniform | sqrt: resample classes (shards' manifest counts)
        verify_shards="size",      # size | sha256 | none: check shards against manifest.json on open
        synthetic_per_class=200,
        synthetic_test_per_class=50,
        synthetic_seed=0,
        image_size=128,            # model input
        render_size=0,             # 0 = image_size; larger = random crop (Sketch-A-Net: 256 -> 225)
        channels=1,                # 1, or 6 for Sketch-A-Net's stroke-order stack
        line_width_px=4.0,         # at 128 px, scaled with size (eval and serving; inside stroke_aug.width_px)
        margin=0.06,
        augment=True,
        stroke_aug=dict(wobble_sigma_px=1.2, width_px=(3.0, 8.0), rotate_deg=10.0, scale=(0.85, 1.1),
                        translate=0.06, hflip=0.5, drop_fraction=0.0, drop_order_a=1.0, drop_length_b=1.0),
        image_aug=dict(morph_p=0.3, flip_p=0.0, rotate_p=0.0, rotate_deg=5.0),
        num_parallel_calls=0,      # 0 = AUTOTUNE
    ))
    c.update(overrides)
    return c


def sibling_config(config_file: str, name: str, arg=None) -> ml_collections.ConfigDict:
    """get_config(arg) of another configs/*.py beside `config_file`, so a variant
    (e.g. binary Sketch-A-Net) builds on its base recipe instead of copying it."""
    import importlib.util
    path = pathlib.Path(config_file).resolve().with_name(name)
    spec = importlib.util.spec_from_file_location(f"_sketchtf_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the resolved config into the workdir (config.json)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    with open(os.path.join(workdir, "config.json")) as f:
        return ml_collections.ConfigDict(json.load(f))


def experiment(model: str, *, data=None, model_kwargs=None, **train) -> ml_collections.ConfigDict:
    """A full experiment config: data, model, train, eval, export sections."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.eval_split = "test"
    c.jit_compile = False
    # tf.distribute and precision (sketchtf/training/distribute.py, docs/distribute.md)
    c.strategy = "default"          # default | mirrored | multi_worker (TF_CONFIG) | tpu
    c.tpu_address = ""              # TPUClusterResolver address for strategy=tpu
    c.mixed_precision = ""          # "" (float32) | mixed_float16 | mixed_bfloat16
    c.lr_scaling = "linear"         # train.lr x replicas ("none": as given); batch_size is per replica
    c.sync_batchnorm = False        # BatchNorm statistics over the global batch (all replicas)
    c.data = data if data is not None else data_config()
    c.model = ml_collections.ConfigDict(dict(name=model, weights="", init_from="", init_by_name=False, kwargs=dict(model_kwargs or {})))
    c.train = ml_collections.ConfigDict(dict(
        epochs=10, batch_size=64, steps_per_epoch=0, optimizer="adam", lr=1e-3, schedule="constant",
        decay_steps=1000, decay_rate=0.96, warmup_frac=0.0, weight_decay=1e-4, momentum=0.9,
        clipnorm=0.0, label_smoothing=0.0, backup_every="epoch",
        verbose=-1,               # Keras fit: 0 silent, 1 bar, 2 a line per epoch, -1 bar on a terminal else 2
        # Chosen on eval_split, which must then be "valid" (test is scored once, by evaluate):
        keep_best=False,          # the run's model is its best epoch by select_on (checkpoints/best/)
        early_stop_patience=0,    # stop after this many evaluations without a better select_on (0: off)
        select_on="val_top1"))    # the logged val_* value (higher is better) those two choose on
    c.train.update(train)
    c.eval = ml_collections.ConfigDict(dict(batch_size=128, every=1, ten_view=False))
    c.export = ml_collections.ConfigDict(dict(model_name=model, version=1, top_k=3))
    return c


def quickdraw10(**overrides) -> ml_collections.ConfigDict:
    """Data section for ../shared/data/quickdraw_10class_ndjson (train/ and test/)."""
    return data_config(**dict(dict(source="quickdraw_ndjson", path=data_path("quickdraw_10class_ndjson")),
                              **overrides))


def smoke(c: ml_collections.ConfigDict, image_size: int = 32) -> ml_collections.ConfigDict:
    """Shrinks an experiment to seconds on CPU: a few synthetic sketches, one epoch."""
    c.data.source = "synthetic"
    c.data.path = ""
    c.data.synthetic_per_class = 4
    c.data.synthetic_test_per_class = 2
    c.data.image_size = image_size
    c.data.render_size = 0
    c.train.epochs = 1
    c.train.batch_size = 16
    c.eval.batch_size = 32
    c.train.verbose = 2
    return c
