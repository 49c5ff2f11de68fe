"""Shard records, the key-hash split, prepare (local + Beam) and streaming from shards."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import require_module
from sketchtf.config import data_config
from sketchtf.data import pipeline, prepare, shards
from sketchtf.data.quickdraw import ndjson_chunks, read_ndjson, read_ndjson_chunk
from sketchtf.data.records import Sketch, SketchDataError


def _qd_line(word, key, strokes):
    return json.dumps({"word": word, "key_id": key, "recognized": True,
                       "drawing": [[list(map(int, s[:, 0])), list(map(int, s[:, 1]))] for s in strokes]})


def _write_corpus(root, per_class, classes=("cat", "dog", "sun"), seed=0):
    """Quick Draw-shaped ndjson, one file a class; class sizes differ (imbalanced)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for k, c in enumerate(classes):
        with open(os.path.join(root, f"{c}.ndjson"), "w") as f:
            for i in range(per_class * (k + 1)):
                strokes = [rng.integers(0, 255, size=(int(rng.integers(2, 9)), 2)) for _ in range(int(rng.integers(1, 4)))]
                f.write(_qd_line(c, f"{c}-{i}", strokes) + "\n")
    return str(root)


def _cfg(path, **kw):
    return data_config(**{**dict(source="quickdraw_ndjson", path=path, image_size=32, test_fraction=0.2,
                                 valid_fraction=0.1), **kw})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _write_corpus(tmp_path_factory.mktemp("qd"), per_class=40)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards"))
    prepare.run_local(_cfg(corpus), out, workers=1, train_shards=4)
    return out


# ----------------------------------------------------------------------------- records and split

def test_encode_decode_round_trip_int16_float_times_and_images():
    ints = Sketch("cat", "k1", strokes=[np.array([[0, 1], [255, 3]], np.float32), np.array([[7, 8]], np.float32)])
    floats = Sketch("cat", "k2", strokes=[np.array([[0.5, 1.25], [-3e4, 40000]], np.float32)],
                    times=[np.array([0, 17], np.float32)])
    img = Sketch("cat", "k3", image=np.arange(12, dtype=np.uint8).reshape(3, 4))
    for s in (ints, floats):
        raw = shards.encode(s)
        back = shards.decode(raw)
        assert (back.label, back.id) == (s.label, s.id)
        assert [b.tolist() for b in back.strokes] == [a.tolist() for a in s.strokes]
        _, pts, ids = shards.parse_strokes(tf.constant(raw))
        np.testing.assert_array_equal(pts.numpy(), np.concatenate(s.strokes))
        np.testing.assert_array_equal(ids.numpy(), np.concatenate([[k] * len(a) for k, a in enumerate(s.strokes)]))
    ex = tf.train.Example.FromString(shards.encode(ints)).features.feature
    assert ex["points_i16"].bytes_list.value[0] and not ex["points_f32"].bytes_list.value[0]
    assert shards.decode(shards.encode(floats)).times[0].tolist() == [0, 17]
    np.testing.assert_array_equal(shards.decode(shards.encode(img)).image, img.image)
    np.testing.assert_array_equal(shards.parse_image(tf.constant(shards.encode(img)))[1].numpy(), img.image)


def test_encoding_is_deterministic_across_calls():
    s = Sketch("cat", "k", strokes=[np.array([[1, 2]], np.float32)], times=[np.array([0], np.float32)])
    assert len({shards.encode(s) for _ in range(5)}) == 1


def test_split_is_a_function_of_the_key_alone():
    keys = [f"key-{i}" for i in range(20000)]
    kw = dict(seed=0, test_fraction=0.1, valid_fraction=0.05)
    first = {k: shards.assign_split(k, **kw) for k in keys}
    # More drawings (new classes, new files) leave every old drawing where it was.
    more = {k: shards.assign_split(k, **kw) for k in keys + [f"new-{i}" for i in range(5000)]}
    assert all(more[k] == v for k, v in first.items())
    frac = {s: sum(v == s for v in first.values()) / len(keys) for s in shards.SPLITS}
    assert abs(frac["test"] - 0.1) < 0.01 and abs(frac["valid"] - 0.05) < 0.01
    # A source's own test split stays; valid is carved from its train by the same hash.
    assert shards.assign_split("x", fixed="test", valid_fraction=1.0) == "test"
    carved = [shards.assign_split(k, fixed="train", valid_fraction=0.05) for k in keys]
    assert 0.04 < carved.count("valid") / len(keys) < 0.06 and "test" not in carved


# ----------------------------------------------------------------------------- big ndjson files

def test_chunked_reading_equals_whole_file_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "cat.ndjson"
    lines = [_qd_line("cat", f"k{i}", [np.array([[i % 200, 1], [3, 4]])]) for i in range(300)]
    lines[250] = '{"word": "cat", "drawing": [[[1, 2], [3]]]}'  # bad: 2 xs, 1 y
    path.write_text("\n".join(lines) + "\n")
    chunks = ndjson_chunks(path, 2000)
    assert len(chunks) > 5 and chunks[0][0] == 0 and chunks[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    with pytest.raises(SketchDataError, match=r"cat.ndjson:251: stroke 0: 2 xs but 1 ys"):
        for start, end, first in chunks:
            list(read_ndjson_chunk(path, start, end, first))
    lines[250] = _qd_line("cat", "k250", [np.array([[1, 1]])])
    path.write_text("\n".join(lines) + "\n")
    got = [r.id for s, e, f in ndjson_chunks(path, 2000) for r in read_ndjson_chunk(path, s, e, f)]
    assert got == [r.id for r in read_ndjson(path)] and len(got) == 300


# ----------------------------------------------------------------------------- prepare

def test_prepare_writes_shards_and_a_manifest_that_counts_them(prepared, corpus):
    m = shards.read_manifest(prepared)
    assert m["kind"] == "strokes" and m["vocabulary"] == ["cat", "dog", "sun"]
    assert [len(m["splits"][s]["shards"]) for s in shards.SPLITS] == [4, 1, 1]
    total = sum(m["splits"][s]["records"] for s in shards.SPLITS)
    assert total == 40 + 80 + 120
    for split in shards.SPLITS:
        keys = [r.id for r in shards.iter_records(prepared, split)]
        assert len(keys) == m["splits"][split]["records"]
        assert all(shards.assign_split(k, test_fraction=0.2, valid_fraction=0.1) == split for k in keys)
        assert sum(m["splits"][split]["counts"].values()) == len(keys)
        for sh in m["splits"][split]["shards"]:
            assert shards.sha256_file(os.path.join(prepared, sh["file"])) == sh["sha256"]
    assert [s["path"] for s in m["sources"]] == sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
    assert m["options"]["valid_fraction"] == 0.1 and m["version"]


def test_prepare_is_the_same_on_any_number_of_workers_and_chunks(prepared, corpus, tmp_path):
    out = str(tmp_path / "two")
    prepare.run_local(_cfg(corpus), out, workers=2, train_shards=4, chunk_bytes=1500)
    for name in sorted(os.listdir(prepared)):
        with open(os.path.join(prepared, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name


def test_beam_direct_runner_gives_byte_equal_shards_and_manifest(prepared, corpus, tmp_path):
    require_module("apache_beam", "beam")
    from sketchtf.data.beam_prepare import run_beam
    out = str(tmp_path / "beam")
    run_beam(_cfg(corpus), out, train_shards=4, chunk_bytes=1500)
    assert sorted(os.listdir(out)) == sorted(os.listdir(prepared))
    for name in os.listdir(prepared):
        with open(os.path.join(prepared, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name


def test_prepare_counts_bad_lines_with_skip_bad_and_fails_without(corpus, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(corpus, src)
    with open(src / "dog.ndjson", "a") as f:
        f.write('{"word": "dog", "drawing": "nope"}\n')
    with pytest.raises(SketchDataError, match=r"dog.ndjson:81: 'drawing'"):
        prepare.run_local(_cfg(str(src)), str(tmp_path / "a"), workers=1)
    m = prepare.run_local(_cfg(str(src), skip_bad=True), str(tmp_path / "b"), workers=1)
    assert m["skipped"]["errors"] == 1 and "dog.ndjson:81" in m["skipped"]["first_errors"][0]


def test_prepare_other_sources(tmp_path):
    m = prepare.run_local(data_config(source="synthetic", synthetic_per_class=3, synthetic_test_per_class=1,
                                      valid_fraction=0.3), str(tmp_path / "syn"), workers=1)
    assert m["splits"]["test"]["records"] == 12 and m["splits"]["train"]["records"] + \
        m["splits"]["valid"]["records"] == 36
    folder = tmp_path / "imgs"
    from PIL import Image
    for c in ("a", "b"):
        os.makedirs(folder / c)
        for i in range(5):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / c / f"{i}.png")
    m = prepare.run_local(data_config(source="image_folder", path=str(folder)), str(tmp_path / "img"), workers=1)
    assert m["kind"] == "images" and sum(s["records"] for s in m["splits"].values()) == 10


# ----------------------------------------------------------------------------- streaming

def _images(cfg, split, class_names):
    ds, info = pipeline.make_dataset(cfg, split, batch_size=16, training=False, class_names=class_names)
    out = [(x.tobytes(), int(y)) for xb, yb in ds.as_numpy_iterator() for x, y in zip(xb, yb)]
    return sorted(out), info


def test_shards_give_the_same_eval_inputs_as_the_source(corpus, prepared):
    cfg, scfg = _cfg(corpus), _cfg(prepared, source="shards")
    names = pipeline.vocabulary(cfg, pipeline.load_records(cfg, "train"))
    for split in shards.SPLITS:
        mem, _ = _images(cfg, split, names)
        shd, info = _images(scfg, split, None)
        assert info.class_names == names and mem == shd and len(mem) > 0


def test_training_stream_is_bounded_and_resumes_at_its_position(prepared):
    cfg = _cfg(prepared, source="shards", shuffle_buffer=50)
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=8, training=True, seed=3, with_index=True)
    assert info.num_examples == shards.read_manifest(prepared)["splits"]["train"]["records"]
    first = [b for _, b in zip(range(info.steps_per_epoch), ds.as_numpy_iterator())]
    # One epoch (ceil(n/8) batches from a fresh iterator) holds every drawing
    # once, up to the stream's mixing across the epoch boundary.
    seen = np.concatenate([b[2] for b in first])
    assert len(set(seen.tolist())) >= info.num_examples * 0.8
    again, _ = pipeline.make_dataset(cfg, "train", batch_size=8, training=True, seed=3, with_index=True, start=5 * 8)
    for a, b in zip(first[5:], again.as_numpy_iterator()):
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[0], b[0])  # same augmentation draws, too


def test_two_workers_read_disjoint_shards_whose_union_is_the_epoch(prepared):
    cfg = _cfg(prepared, source="shards")
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=4, training=False, with_index=True)
    full = np.concatenate([b[2] for b in ds.as_numpy_iterator()])
    parts = []
    for w in range(2):  # what trainer.build_data gives each worker under multi_worker
        wds, _ = pipeline.make_dataset(_cfg(prepared, source="shards", shuffle_buffer=16), "train", batch_size=4,
                                       training=True, with_index=True, worker=(w, 2))
        assert wds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
        steps = sum(sh["records"] for sh in shards.read_manifest(prepared)["splits"]["train"]["shards"][w::2])
        idx = np.concatenate([b[2] for _, b in zip(range(-(-steps // 4) * 3), wds.as_numpy_iterator())])
        parts.append(set(idx.tolist()))
        assert len(parts[-1]) == steps  # three epochs of its own shards, nothing else
    assert not parts[0] & parts[1]
    assert sorted(parts[0] | parts[1]) == sorted(full.tolist()) == list(range(info.num_examples))
    with pytest.raises(shards.ShardError, match="4 shards cannot feed 5 workers"):
        pipeline.make_dataset(cfg, "train", batch_size=4, training=True, worker=(0, 5))


def test_class_balance_uniform_evens_out_imbalanced_classes(prepared):
    cfg = _cfg(prepared, source="shards", class_balance="uniform", shuffle_buffer=200)
    ds, _ = pipeline.make_dataset(cfg, "train", batch_size=50, training=True, seed=0)
    labels = np.concatenate([b[1] for _, b in zip(range(30), ds.as_numpy_iterator())])
    share = np.bincount(labels, minlength=3) / len(labels)
    assert np.all(np.abs(share - 1 / 3) < 0.06), share
    plain, _ = pipeline.make_dataset(_cfg(prepared, source="shards"), "train", batch_size=50, training=True)
    labels = np.concatenate([b[1] for _, b in zip(range(30), plain.as_numpy_iterator())])
    assert np.bincount(labels, minlength=3)[2] > 2 * np.bincount(labels, minlength=3)[0]  # 120 vs 40 a class


def test_class_subset_from_shards(prepared):
    cfg = _cfg(prepared, source="shards", classes=("sun", "cat"))
    ds, info = pipeline.make_dataset(cfg, "test", batch_size=64, training=False)
    labels = np.concatenate([b[1] for b in ds.as_numpy_iterator()])
    counts = shards.read_manifest(prepared)["splits"]["test"]["counts"]
    assert info.class_names == ["sun", "cat"] and len(labels) == counts["sun"] + counts["cat"] == info.num_examples


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def damaged(prepared, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(prepared, out)
    return out


def test_missing_and_truncated_shards_fail_at_open_naming_the_file(damaged):
    cfg = _cfg(damaged, source="shards")
    victim = os.path.join(damaged, shards.shard_name("train", 1, 4))
    with open(victim, "rb") as f:
        data = f.read()
    with open(victim, "wb") as f:
        f.write(data[:-7])
    with pytest.raises(shards.ShardError, match=r"train-00001-of-00004.tfrecord: .*bytes but manifest.json says"):
        pipeline.make_dataset(cfg, "train", batch_size=8, training=True)
    os.remove(victim)
    with pytest.raises(shards.ShardError, match=r"train-00001-of-00004.tfrecord: shard listed in manifest.json is missing"):
        pipeline.make_dataset(cfg, "train", batch_size=8, training=True)


def test_corrupt_shard_names_the_file_and_record(damaged):
    cfg = _cfg(damaged, source="shards")
    victim = os.path.join(damaged, shards.shard_name("test", 0, 1))
    with open(victim, "r+b") as f:  # same size, one byte flipped inside a later record
        f.seek(os.path.getsize(victim) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    ds, _ = pipeline.make_dataset(cfg, "test", batch_size=4, training=False)
    with pytest.raises(shards.ShardError, match=r"test-00000-of-00001.tfrecord:record \d+: corrupt shard") as e:
        with pipeline.explain_data_errors(cfg):
            for _ in ds:
                pass
    assert int(str(e.value).split("record ")[1].split(":")[0]) > 0
    with pytest.raises(shards.ShardError, match="sha256 differs"):
        shards.split_files(damaged, shards.read_manifest(damaged), "test", verify="sha256")


def test_not_a_prepared_folder(tmp_path):
    with pytest.raises(shards.ShardError, match="no manifest.json"):
        pipeline.make_dataset(_cfg(str(tmp_path), source="shards"), "train", batch_size=2, training=True)


def test_quickdraw_10class_from_shards_scores_the_same_test_inputs(shared, tmp_path):
    """Same drawings, same rendering: any model scores the same on test from
    shards as from the ndjson files (only the order differs)."""
    from sketchtf.config import quickdraw10
    cfg = quickdraw10(image_size=32)
    cfg.path = str(shared("quickdraw_10class_ndjson"))
    m = prepare.run_local(cfg, str(tmp_path / "qd10"), workers=1)
    assert m["splits"]["test"]["records"] == 494 and m["splits"]["train"]["records"] == 10000
    scfg = quickdraw10(image_size=32, source="shards", path=str(tmp_path / "qd10"))
    names = pipeline.vocabulary(cfg, pipeline.load_records(cfg, "train"))
    assert _images(cfg, "test", names)[0] == _images(scfg, "test", None)[0]


def test_verify_command_checks_every_shard(damaged):
    import subprocess
    import sys
    run = [sys.executable, "-m", "sketchtf.prepare", f"--verify={damaged}"]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "every shard matches manifest.json" in ok.stdout, ok.stderr[-2000:]
    victim = os.path.join(damaged, shards.shard_name("valid", 0, 1))
    with open(victim, "r+b") as f:
        f.seek(30)
        f.write(b"\x00\x01\x02")
    bad = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "valid-00000-of-00001.tfrecord: sha256 differs" in bad.stderr + bad.stdout


def test_all_345_quickdraw_classes_are_known():
    from sketchtf.data.download import quickdraw_classes
    names = quickdraw_classes()
    assert len(names) == len(set(names)) == 345 and {"zigzag", "The Eiffel Tower", "alarm clock"} <= set(names)
