"""TFDS builders: prepared from small local copies of real data, compared with the readers."""
import itertools
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from sketchtf.data import tfds_builders as tb
from sketchtf.data.quickdraw import read_ndjson
from sketchtf.data.records import Sketch, SketchDataError
from sketchtf.data.shards import assign_split
from sketchtf.data.tuberlin import read_tuberlin_png, read_tuberlin_svg

QD_CLASSES = ["The Eiffel Tower", "cloud", "key"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fails the test if anything in Python tries to reach another machine."""
    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

    def loopback_only(host):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {host}")

    def connect(self, addr):
        if isinstance(addr, tuple):
            loopback_only(addr[0])
        return real_connect(self, addr)

    def getaddrinfo(host, *a, **k):
        loopback_only(host)
        return real_gai(host, *a, **k)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _head(src, dst, n):
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.writelines(itertools.islice(f, n))


@pytest.fixture
def qd_split_dir(shared, tmp_path):
    """20 train + 6 test lines of 3 real classes, in train/ and test/ subfolders."""
    src = shared("quickdraw_10class_ndjson")
    for split, n in (("train", 20), ("test", 6)):
        for c in QD_CLASSES:
            _head(src / split / f"{c}.ndjson", tmp_path / "qd" / split / f"{c}.ndjson", n)
    return tmp_path / "qd"


def _prepare(name, data_dir, manual_dir, config=None):
    builder = tfds.builder(name, data_dir=str(data_dir), config=config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return builder


def _examples(builder, split):
    names = builder.info.features["label"].names
    return [tb.example_to_sketch(ex, names) for ex in tfds.as_numpy(builder.as_dataset(split=split))]


def _assert_same(got: list, want: list):
    """Same records (by id), same label, bit-identical strokes and times."""
    by_id = {s.id: s for s in want}
    assert sorted(s.id for s in got) == sorted(by_id) and len(by_id) == len(want)
    for g in got:
        w = by_id[g.id]
        assert g.label == w.label
        assert len(g.strokes) == len(w.strokes)
        for a, b in zip(g.strokes, w.strokes):
            assert a.dtype == np.float32 and np.array_equal(a, b)
        if w.times is None:
            assert g.times is None
        else:
            assert all(np.array_equal(a, b) for a, b in zip(g.times, w.times, strict=True))


def test_example_round_trip_is_lossless():
    rng = np.random.default_rng(0)
    strokes = [rng.normal(size=(n, 2)).astype(np.float32) for n in (1, 5, 2)]
    times = [np.arange(len(s), dtype=np.float32) * 7 for s in strokes]
    s = Sketch(label="b", id="x1", strokes=strokes, times=times)
    ex = tb.sketch_to_example(s)
    assert ex["points"].shape == (8, 2) and ex["stroke_ids"].tolist() == [0, 1, 1, 1, 1, 1, 2, 2]
    back = tb.example_to_sketch({**ex, "label": 1, "id": b"x1"}, ["a", "b"])
    _assert_same([back], [s])
    ragged = tb.ragged_strokes({"points": ex["points"], "stroke_ids": ex["stroke_ids"]})
    assert [r.shape[0] for r in ragged] == [1, 5, 2]
    assert np.array_equal(ragged[1].numpy(), strokes[1])
    no_times = tb.sketch_to_example(Sketch(label="a", id="y", strokes=strokes))
    assert no_times["times"].shape == (0,)


def test_quickdraw_train_test_folders(qd_split_dir, tmp_path):
    b = _prepare(tb.NDJSON_NAME, tmp_path / "tfds", qd_split_dir)
    assert b.info.features["label"].names == QD_CLASSES
    assert b.info.splits["train"].num_examples == 60 and b.info.splits["test"].num_examples == 18
    for split in ("train", "test"):
        _assert_same(_examples(b, split), list(read_ndjson(qd_split_dir / split)))
    # A fresh builder on the same data_dir loads the prepared data, names included.
    again = tfds.builder(tb.NDJSON_NAME, data_dir=str(tmp_path / "tfds"))
    assert again.info.features["label"].names == QD_CLASSES
    labels = [int(ex["label"]) for ex in tfds.as_numpy(again.as_dataset(split="test"))]
    assert sorted(labels) == [0] * 6 + [1] * 6 + [2] * 6


def test_quickdraw_split_folder_may_lack_a_class(qd_split_dir, tmp_path):
    (qd_split_dir / "test" / "key.ndjson").unlink()
    b = _prepare(tb.NDJSON_NAME, tmp_path / "tfds", qd_split_dir)
    assert b.info.features["label"].names == QD_CLASSES
    assert b.info.splits["test"].num_examples == 12
    _assert_same(_examples(b, "test"), list(read_ndjson(qd_split_dir / "test")))


def test_quickdraw_flat_dir_gets_the_key_hash_split(qd_split_dir, tmp_path):
    flat = qd_split_dir / "train"  # 20 a class, no subfolders
    cfg = tb.QuickDrawNdjsonConfig(name="with_valid", valid_fraction=0.2)
    b = _prepare(tb.NDJSON_NAME, tmp_path / "tfds", flat, cfg)
    parts = {s: _examples(b, s) for s in ("train", "valid", "test")}
    everything = list(read_ndjson(flat))
    _assert_same(parts["train"] + parts["valid"] + parts["test"], everything)
    # The split of sketchtf.prepare and the in-memory pipeline: a hash of the key alone.
    for split, got in parts.items():
        assert got and all(assign_split(s.id, test_fraction=0.2, valid_fraction=0.2) == split for s in got)
    # Another config seed gives another split (so the split is not accidental).
    other = _prepare(tb.NDJSON_NAME, tmp_path / "tfds2", flat,
                     tb.QuickDrawNdjsonConfig(name="seed1", seed=1))
    assert {s.id for s in _examples(other, "test")} != {s.id for s in parts["test"]}


def test_quickdraw_raw_keeps_times_and_picks_classes(shared, tmp_path):
    src = shared("quickdraw_raw_ndjson")
    for c in ("cat", "sun", "tree"):
        _head(src / f"{c}.ndjson", tmp_path / "raw" / f"{c}.ndjson", 5)
    cfg = tb.QuickDrawNdjsonConfig(name="cat_sun", classes=("sun", "cat"), test_fraction=0.4)
    b = _prepare(tb.NDJSON_NAME, tmp_path / "tfds", tmp_path / "raw", cfg)
    assert b.info.features["label"].names == ["cat", "sun"]
    got = _examples(b, "train") + _examples(b, "test")
    assert [assign_split(s.id, test_fraction=0.4) for s in _examples(b, "test")] == ["test"] * len(_examples(b, "test"))
    want = list(read_ndjson(tmp_path / "raw", classes=["cat", "sun"]))
    assert all(s.times is not None for s in want)
    _assert_same(got, want)


def test_quickdraw_missing_class_is_a_clear_error(qd_split_dir, tmp_path):
    with pytest.raises(SketchDataError, match=r"no ndjson file for classes \['nope'\]"):
        _prepare(tb.NDJSON_NAME, tmp_path / "tfds", qd_split_dir / "train",
                 tb.QuickDrawNdjsonConfig(name="bad", classes=("cloud", "nope")))


def test_tfds_load(qd_split_dir, tmp_path):
    ds, info = tfds.load(tb.NDJSON_NAME, split="test", data_dir=str(tmp_path / "tfds"),
                         with_info=True, download_and_prepare_kwargs={
                             "download_config": tfds.download.DownloadConfig(manual_dir=str(qd_split_dir))})
    ex = next(iter(ds))
    assert ex["points"].dtype == "float32" and ex["points"].shape[1] == 2
    assert ex["stroke_ids"].dtype == "int32"
    assert info.splits["test"].num_examples == 18


def test_tu_berlin_svg(shared, tmp_path):
    root = shared("tu_berlin_svg_sample")
    b = _prepare(tb.TUBERLIN_NAME, tmp_path / "tfds", root)
    assert b.info.features["label"].names == ["airplane", "alarm clock", "angel"]
    train, test = _examples(b, "train"), _examples(b, "test")
    assert len(train) + len(test) == 15 and test
    assert all(assign_split(s.id, test_fraction=0.2) == "test" for s in test)
    _assert_same(train + test, list(read_tuberlin_svg(root)))


@pytest.fixture
def png_root(tmp_path):
    """TU-Berlin style PNGs: black strokes on white, 2 classes x 5."""
    rng = np.random.default_rng(1)
    for c in ("apple", "bell"):
        (tmp_path / "png" / c).mkdir(parents=True)
        for i in range(5):
            im = Image.new("L", (40, 30), 255)
            ImageDraw.Draw(im).line([tuple(p) for p in rng.integers(0, 30, (4, 2)).tolist()], fill=0, width=2)
            im.save(tmp_path / "png" / c / f"{i + 1}.png")
    return tmp_path  # holds png/, like the extracted sketches_png.zip


def test_tu_berlin_png(png_root, tmp_path):
    b = _prepare(tb.TUBERLIN_PNG_NAME, tmp_path / "tfds", png_root)
    names = b.info.features["label"].names
    assert names == ["apple", "bell"]
    for split in ("train", "test"):
        got = {ex["id"].decode(): ex for ex in tfds.as_numpy(b.as_dataset(split=split))}
        want = list(read_tuberlin_png(png_root / "png", split=split))
        assert sorted(got) == sorted(s.id for s in want) and len(want) == (8 if split == "train" else 2)
        for s in want:
            ex = got[s.id]
            assert names[ex["label"]] == s.label
            assert ex["image"].shape == (30, 40, 1) and np.array_equal(ex["image"][..., 0], s.image)
            assert s.image.max() == 255 and s.image[0, 0] == 0  # ink 255 on background 0


def test_tu_berlin_png_resized(png_root, tmp_path):
    cfg = tb.TuBerlinPngConfig(name="s16", size=16)
    b = _prepare(tb.TUBERLIN_PNG_NAME, tmp_path / "tfds", png_root / "png", cfg)
    got = {ex["id"].decode(): ex["image"] for ex in tfds.as_numpy(b.as_dataset(split="test"))}
    want = {s.id: s.image for s in read_tuberlin_png(png_root / "png", split="test", size=16)}
    assert sorted(got) == sorted(want)
    for k, img in got.items():
        assert img.shape == (16, 16, 1) and np.array_equal(img[..., 0], want[k])
