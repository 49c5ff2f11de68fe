"""Frozen-feature training: feature cache (reuse, invalidation), head training,
assembly (backbone + head == one model), workdir export."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sketchtf import workdir as run_folder
from sketchtf.training import features as F
from sketchtf.training import trainer
from sketchtf.models import build_model
from sketchtf.models import frozen_mlp as FM

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "configs"))
import frozen_linear  # noqa: E402
import sketchnet_qd10  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def backbone_wd(tmp_path_factory):
    """A SketchNet trained for a few seconds on synthetic sketches (12 classes),
    chosen on a valid split big enough to score a head on (the qd10 recipe's 10%
    of 12 per class would be 9 drawings)."""
    c = sketchnet_qd10.get_config("smoke")
    c.data.synthetic_per_class = 16
    c.data.valid_fraction = 0.25
    c.data.synthetic_test_per_class = 6
    c.train.epochs = 3
    # 27 steps in all: a constant lr learns useful features; one-cycle (the 128 px
    # recipe's) would spend them warming up.
    c.train.update(optimizer="adam", lr=1e-3, schedule="constant")
    c.train.verbose = 0
    wd = tmp_path_factory.mktemp("backbone")
    trainer.train_and_evaluate(c, str(wd))
    return str(wd)


@pytest.fixture(scope="module")
def frozen_run(backbone_wd, tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("frozen"))
    r = F.train_frozen(frozen_linear.get_config("smoke"), backbone_wd, wd, log=lambda s: None)
    return dict(wd=wd, result=r)


def _images(backbone_wd, n=8):
    _, config, names = run_folder.load_trained_model(backbone_wd)
    from sketchtf.data import pipeline
    ds, _ = pipeline.make_dataset(config.data, "valid", batch_size=n, training=False, class_names=names)
    return next(iter(ds))[0]


def test_cache_built_once_then_reused(backbone_wd, frozen_run, tmp_path):
    e = frozen_run["result"]["extra"]
    assert e["features_from_cache"] is False and e["features_train_wall_s"] > 0
    assert e["features_train_cpu_s"] > 0 and e["head_fit_cpu_s"] > 0
    # The head trains on train and is scored on the backbone's eval split (valid), carved
    # from the 16 train drawings per class by the key_id hash.
    _, config, names = run_folder.load_trained_model(backbone_wd)
    from sketchtf.data import pipeline
    count = lambda split: pipeline.make_dataset(config.data, split, batch_size=64, training=False,
                                                class_names=names)[1].num_examples
    assert config.eval_split == "valid"
    assert e["train_examples"] == count("train") and e["eval_examples"] == count("valid")
    assert e["train_examples"] + e["eval_examples"] == 12 * 16 and e["eval_examples"] >= 30
    cache = os.path.join(frozen_run["wd"], "feature_cache")
    files = sorted(os.listdir(cache))
    assert [f.split("-")[0] for f in files] == ["train", "valid"]
    # a second run with the same backbone reads the same files, builds nothing
    c = frozen_linear.get_config("smoke")
    c.cache_dir = cache
    c.train.epochs = 1
    r2 = F.train_frozen(c, backbone_wd, str(tmp_path / "again"), log=lambda s: None)
    assert r2["extra"]["features_from_cache"] is True
    assert sorted(os.listdir(cache)) == files
    # cached rows are the un-augmented features, in drawing-index order
    backbone, config, names = run_folder.load_trained_model(backbone_wd)
    fs = F.cached_features(FM.feature_model(backbone), config.data, "valid", names, cache)
    assert not fs.built
    x = _images(backbone_wd)
    np.testing.assert_allclose(FM.feature_model(backbone)(x, training=False).numpy(), fs.features[:8],
                               rtol=1e-4, atol=1e-4)


def test_cache_invalidated_when_backbone_weights_change(backbone_wd, tmp_path):
    backbone, config, names = run_folder.load_trained_model(backbone_wd)
    fmodel = FM.feature_model(backbone)
    cache = str(tmp_path / "cache")
    first = F.cached_features(fmodel, config.data, "test", names, cache, log=lambda s: None)
    assert first.built
    assert not F.cached_features(fmodel, config.data, "test", names, cache).built
    # the classifier is not part of the features: changing it keeps the cache
    clf = FM.classifier_layer(backbone)
    clf.kernel.assign(clf.kernel + 1.0)
    assert not F.cached_features(fmodel, config.data, "test", names, cache).built
    conv = backbone.get_layer("block1_conv")
    conv.kernel.assign(conv.kernel * 1.5)
    second = F.cached_features(fmodel, config.data, "test", names, cache, log=lambda s: None)
    assert second.built and second.path != first.path
    assert not os.path.exists(first.path)  # the stale file is gone
    assert not np.allclose(first.features, second.features)
    # a fresh load of the (unchanged) checkpoint maps back to the original key
    restored, _, _ = run_folder.load_trained_model(backbone_wd)
    assert F.cache_key(FM.feature_model(restored), config.data, "test", names) in first.path


def test_head_trains_above_chance(frozen_run):
    r = frozen_run["result"]
    chance = 1 / 12
    assert r["top1"] > 3 * chance, r["top1"]
    assert r["extra"]["feature_dim"] == 128  # SketchNet's fc layer feeds its logits
    assert r["extra"]["head_params"] == 128 * 12 + 12
    assert r["extra"]["head"] == "linear"


def test_assembled_model_equals_backbone_plus_head(backbone_wd):
    backbone, config, names = run_folder.load_trained_model(backbone_wd)
    fmodel = FM.feature_model(backbone)
    x = _images(backbone_wd)
    feats = fmodel(x, training=False)
    for hidden in (0, 16):
        head = FM.build_head(feats.shape[-1], len(names), hidden=hidden)
        head.set_weights([np.random.default_rng(1).normal(0, 0.1, w.shape).astype(np.float32)
                          for w in head.get_weights()])
        want = head(feats, training=False).numpy()
        model = FM.assemble(backbone, head)
        assert (model is backbone) == (hidden == 0)
        np.testing.assert_allclose(model(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)


def test_sketchanet_is_cut_before_its_1x1_classifier():
    m = build_model("sketchanet", num_classes=5, input_shape=(88, 88, 1))
    assert FM.classifier_layer(m).name == "L8"
    x = tf.random.uniform((2, 88, 88, 1))
    feats = FM.feature_model(m)(x)
    assert feats.shape == (2, 512)
    head = FM.build_head(512, 5)
    head.set_weights([w + 0.05 for w in head.get_weights()])
    np.testing.assert_allclose(FM.assemble(m, head)(x).numpy(), head(feats).numpy(), rtol=1e-4, atol=1e-4)


def test_workdir_reloads_and_exports(backbone_wd, frozen_run, tmp_path):
    wd = frozen_run["wd"]
    cfg = json.loads(pathlib.Path(wd, "config.json").read_text())
    assert cfg["model"]["name"] == "sketchnet" and cfg["frozen"]["backbone_workdir"] == backbone_wd
    model, wconfig, names = run_folder.load_trained_model(wd)
    x = _images(backbone_wd)
    # the reloaded model scores the eval split as the head did (metrics.json)
    from sketchtf.data import pipeline
    from sketchtf.evaluation.scoring import predict_scores
    ds, _ = pipeline.make_dataset(wconfig.data, wconfig.get("eval_split", "test"), batch_size=64, training=False,
                                  class_names=names)
    saved = json.loads(pathlib.Path(wd, "metrics.json").read_text())
    assert predict_scores(model, ds, names)[0]["top1"] == pytest.approx(saved["top1"], abs=1e-6)
    backbone, config, _ = run_folder.load_trained_model(backbone_wd)
    assert not np.allclose(model(x, training=False).numpy(), backbone(x, training=False).numpy())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "sketchtf.export", f"--workdir={wd}",
                        f"--export_dir={tmp_path / 'exp'}"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = tf.saved_model.load(str(tmp_path / "exp" / "sketchnet" / "1"))
    from sketchtf.data import synthetic
    from sketchtf.ship.export import strokes_to_request
    sketches = [s.strokes for s in list(synthetic.generate(1, split="test"))[:3]]
    strokes, lengths = strokes_to_request(sketches)
    out = loaded.signatures["predict_strokes"](strokes=tf.constant(strokes), lengths=tf.constant(lengths))
    from sketchtf.ship.export import ServingModule
    module = ServingModule(model, names, config.data)  # held: its tf.function keeps only a weak reference
    want = module.predict_strokes(tf.constant(strokes), tf.constant(lengths))
    np.testing.assert_allclose(out["probabilities"].numpy(), want["probabilities"].numpy(), rtol=1e-4, atol=1e-5)


def test_mlp_head_workdir_restores_by_name(backbone_wd, frozen_run, tmp_path):
    c = frozen_linear.get_config("smoke,mlp")
    c.head.hidden = 16
    c.cache_dir = os.path.join(frozen_run["wd"], "feature_cache")
    c.train.epochs = 3
    wd = str(tmp_path / "mlp")
    r = F.train_frozen(c, backbone_wd, wd, log=lambda s: None)
    assert r["extra"]["head"] == "mlp 16" and r["extra"]["features_from_cache"]
    model, config, names = run_folder.load_trained_model(wd)  # builds "frozen_mlp" by name
    assert config.model.name == "frozen_mlp"
    backbone, bconfig, _ = run_folder.load_trained_model(backbone_wd)
    fs = F.cached_features(FM.feature_model(backbone), bconfig.data, "valid", names, c.cache_dir)
    x = _images(backbone_wd)
    logits = model(x, training=False).numpy()
    # same predictions as metrics.json's top-1 came from: argmax over the eval features
    head = model.get_layer("head")
    np.testing.assert_allclose(head(fs.features[:8]).numpy(), logits, rtol=1e-4, atol=1e-4)


def test_compare_prints_both_wall_times(frozen_run, backbone_wd):
    text = F.compare(frozen_run["wd"], backbone_wd)
    fro = json.loads(pathlib.Path(frozen_run["wd"], "metrics.json").read_text())["extra"]["fit_wall_s"]
    fin = json.loads(pathlib.Path(backbone_wd, "metrics.json").read_text())["extra"]["fit_wall_s"]
    assert f"| {fro:.1f} |" in text and f"| {fin:.1f} |" in text
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        F.compare(frozen_run["wd"], "/nonexistent")
