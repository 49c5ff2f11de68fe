import collections
import json
import os

import numpy as np
import pytest

from sketchtf.data import quickdraw as qd
from sketchtf.data.records import SkipCounter, SketchDataError


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _line(drawing, **extra):
    return json.dumps({"word": "cat", "key_id": extra.pop("key_id", "k"), "drawing": drawing, **extra})


GOOD = [[[0, 10, 20], [0, 5, 0]], [[3], [4]]]


# ---------------------------------------------------------------- real data: ndjson

def test_10class_train_and_test(shared):
    root = shared("quickdraw_10class_ndjson")
    train = list(qd.read_ndjson(root / "train"))
    counts = collections.Counter(r.label for r in train)
    assert len(counts) == 10 and set(counts.values()) == {1000}
    assert "The Eiffel Tower" in counts
    assert all(r.times is None and r.image is None for r in train)
    strokes = [s for r in train for s in r.strokes]
    assert all(s.dtype == np.float32 and s.ndim == 2 and s.shape[1] == 2 and len(s) for s in strokes)
    pts = np.concatenate(strokes)
    assert pts.min() >= 0 and pts.max() <= 255
    assert len({r.id for r in train}) == len(train)
    assert len(list(qd.read_ndjson(root / "test"))) == 494


def test_list_classes_and_class_filter(shared):
    d = shared("quickdraw_10class_ndjson", "train")
    names = qd.list_ndjson_classes(d)
    assert names == sorted(names) and len(names) == 10 and "The Eiffel Tower" in names
    recs = list(qd.read_ndjson(d, classes=["The Eiffel Tower", "sun"], limit_per_class=7))
    assert collections.Counter(r.label for r in recs) == {"The Eiffel Tower": 7, "sun": 7}
    with pytest.raises(SketchDataError, match="did you mean 'The Eiffel Tower'"):
        list(qd.read_ndjson(d, classes=["the Eiffel Tower"]))


def test_simplified_recognized_only_counts_drops(shared):
    d = shared("quickdraw_simplified_ndjson")
    files = [d / f"{c}.ndjson" for c in ("cat", "alarm clock", "The Eiffel Tower", "octopus")]
    # Independent count of the flag straight from the JSON.
    flags = [json.loads(line)["recognized"] for f in files for line in f.read_text().splitlines()]
    assert len(flags) == 25 * len(files)
    every = list(qd.read_ndjson(files))
    assert len(every) == len(flags)
    sk = SkipCounter()
    kept = list(qd.read_ndjson(files, recognized_only=True, skipped=sk))
    assert len(sk) == 0
    assert sk.filtered["unrecognized"] == flags.count(False) > 0
    assert len(kept) == flags.count(True)
    assert "left out (unrecognized)" in sk.report()


def test_simplified_whole_folder(shared):
    d = shared("quickdraw_simplified_ndjson")
    sk = SkipCounter()
    recs = list(qd.read_ndjson(d, recognized_only=True, with_times=False, skipped=sk))
    # README: 344 classes x 25, 680 of them recognized: false.
    assert len(recs) + sk.filtered["unrecognized"] == 344 * 25
    assert sk.filtered["unrecognized"] == 680 and len(sk) == 0


def test_raw_times(shared):
    recs = list(qd.read_ndjson(shared("quickdraw_raw_ndjson", "cat.ndjson")))
    assert len(recs) == 25  # README: cat 25 raw drawings
    for r in recs:
        assert r.times is not None and len(r.times) == len(r.strokes)
        for s, t in zip(r.strokes, r.times):
            assert t.dtype == np.float32 and len(t) == len(s)
            assert np.all(np.diff(t) >= 0)
    assert all(r.times is None for r in qd.read_ndjson(
        shared("quickdraw_raw_ndjson", "cat.ndjson"), with_times=False))


def test_paired_raw_and_simplified(shared):
    raw = {r.id: r for r in qd.read_ndjson(shared("quickdraw_raw_ndjson", "cat.ndjson"))}
    simp = {r.id: r for r in qd.read_ndjson(shared("quickdraw_simplified_ndjson", "cat.ndjson"))}
    common = sorted(set(raw) & set(simp))
    assert common
    for k in common:
        a, b = raw[k], simp[k]
        assert a.label == b.label == "cat"
        assert a.times is not None and b.times is None
        # Simplified is scaled into 0..255 and RDP-thinned: never more points.
        assert np.concatenate(b.strokes).max() <= 255
        assert b.num_points <= a.num_points


def test_fallback_label_and_id(tmp_path):
    p = _write(tmp_path / "dog.ndjson", ["", json.dumps({"drawing": GOOD}), "   "])
    (r,) = qd.read_ndjson(p)
    assert (r.label, r.id) == ("dog", "dog.ndjson:2")
    np.testing.assert_array_equal(r.strokes[0], [[0, 0], [10, 5], [20, 0]])


def test_limit_per_class_stops_early(tmp_path):
    # A bad line past the limit is never reached when the file is one class.
    p = _write(tmp_path / "cat.ndjson", [_line(GOOD, key_id=str(i)) for i in range(3)] + ["{bad"])
    assert [r.id for r in qd.read_ndjson(p, limit_per_class=3)] == ["0", "1", "2"]
    with pytest.raises(SketchDataError):
        list(qd.read_ndjson(p, limit_per_class=4))


def test_file_classes_filter_counts(tmp_path):
    p = _write(tmp_path / "mixed.ndjson", [_line(GOOD), _line(GOOD, word="dog"), _line(GOOD)])
    sk = SkipCounter()
    assert [r.label for r in qd.read_ndjson(p, classes=["cat"], skipped=sk)] == ["cat", "cat"]
    assert sk.filtered["other_class"] == 1


# ---------------------------------------------------------------- bad ndjson

BAD_CASES = [
    ("{not json", "malformed JSON"),
    (json.dumps({"word": "cat"}), "missing 'drawing'"),
    ('{"word": "cat", "drawing": [[[0, NaN], [1, 2]]]}', "non-finite"),
    (_line([]), "empty drawing"),
    (_line([[[0, 1, 2], [0, 1]]]), "3 xs but 2 ys"),
    (_line([[[0, "1"], [0, 1]]]), "expected numbers"),
    (_line([[0, 1], [0, 1]]), "expected a list of numbers"),
    (_line([[[0, 1]]]), "expected [xs, ys]"),
    (_line([[[0, 1e300], [0, 1]]]), "coordinate beyond"),
    (_line([[[0, 10 ** 400], [0, 1]]]), "number too large"),
    (_line([[[0, True], [0, 1]]]), "expected numbers"),
    (_line([[[0, 1], [0, 1], [0]]]), "1 times for 2 points"),
    (_line([[[0], [0], [0]], [[1], [1]]]), "strokes mix"),
    ("[1, 2]", "expected a JSON object"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
]


@pytest.mark.parametrize("bad,message", BAD_CASES)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    p = _write(tmp_path / "cat.ndjson", [_line(GOOD), _line(GOOD), bad, _line(GOOD)])
    with pytest.raises(SketchDataError) as ei:
        list(qd.read_ndjson(p))
    assert str(ei.value).startswith(f"{p}:3: ") and message in str(ei.value)
    assert ei.value.where == 3


def test_skip_bad_counts_every_bad_line(tmp_path):
    lines = []
    for bad, _ in BAD_CASES:
        lines += [_line(GOOD, key_id=f"good{len(lines)}"), bad]
    p = _write(tmp_path / "cat.ndjson", lines)
    sk = SkipCounter()
    recs = list(qd.read_ndjson(p, skip_bad=True, skipped=sk))
    assert [r.id for r in recs] == [f"good{2 * i}" for i in range(len(BAD_CASES))]
    assert len(sk) == len(BAD_CASES)
    assert [e.where for e in sk.errors] == list(range(2, 2 * len(BAD_CASES) + 1, 2))
    for err, (_, message) in zip(sk.errors, BAD_CASES):
        assert message in str(err)


def test_too_long_line_is_rejected_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(qd, "MAX_LINE_BYTES", 200)
    long = _line([[list(range(100)), list(range(100))]])
    assert len(long) > 200
    p = _write(tmp_path / "cat.ndjson", [_line(GOOD, key_id="a"), long, _line(GOOD, key_id="b")])
    with pytest.raises(SketchDataError, match=r"cat.ndjson:2: line longer than 200 bytes"):
        list(qd.read_ndjson(p))
    sk = SkipCounter()
    assert [r.id for r in qd.read_ndjson(p, skip_bad=True, skipped=sk)] == ["a", "b"]
    assert len(sk) == 1


def test_not_utf8(tmp_path):
    p = tmp_path / "cat.ndjson"
    p.write_bytes(_line(GOOD).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(SketchDataError, match=r":2: not UTF-8"):
        list(qd.read_ndjson(p))


# ---------------------------------------------------------------- sketch-rnn npz

def test_sketchrnn_sheep_counts_and_roundtrip(shared):
    path = shared("sketchrnn_aaron_sheep", "aaron_sheep.npz")
    with np.load(path, encoding="latin1", allow_pickle=True) as z:
        raw = {k: z[k] for k in ("train", "valid", "test")}
    for split, n in (("valid", 300), ("test", 300)):
        recs = list(qd.read_sketchrnn_npz(path, split))
        assert len(recs) == n
        assert recs[5].label == "aaron_sheep" and recs[5].id == f"aaron_sheep/{split}/5"
        for r, s3 in zip(recs, raw[split]):
            back = qd.strokes_to_stroke3(r.strokes)
            assert back.shape == s3.shape and np.array_equal(back, s3)
    train = qd.read_sketchrnn_npz(path, label="sheep")
    first = next(train)
    assert first.label == "sheep"
    assert 1 + sum(1 for _ in train) == 7400
    # Strokes = cumulative sums split at pen lifts.
    s3 = raw["train"][0]
    assert len(first.strokes) == int(s3[:, 2].sum())
    np.testing.assert_array_equal(np.concatenate(first.strokes), np.cumsum(s3[:, :2], axis=0))


def test_stroke3_conversions():
    s3 = np.array([[5, 5, 0], [1, 0, 1], [2, 2, 0], [0, 3, 0]], np.int16)
    strokes = qd.stroke3_to_strokes(s3)
    assert [s.tolist() for s in strokes] == [[[5, 5], [6, 5]], [[8, 7], [8, 10]]]
    assert all(s.dtype == np.float32 for s in strokes)
    # The trailing stroke gets its lift on the way back.
    np.testing.assert_array_equal(qd.strokes_to_stroke3(strokes)[:, 2], [0, 1, 0, 1])
    rng = np.random.default_rng(0)
    ints = [rng.integers(-300, 300, size=(n, 2)).astype(np.float32) for n in (1, 4, 9)]
    for a, b in zip(qd.stroke3_to_strokes(qd.strokes_to_stroke3(ints)), ints):
        np.testing.assert_array_equal(a, b)
    floats = [rng.normal(size=(6, 2)) * 100 for _ in range(3)]
    for a, b in zip(qd.stroke3_to_strokes(qd.strokes_to_stroke3(floats)), floats):
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert qd.strokes_to_stroke3([]).shape == (0, 3)
    with pytest.raises(ValueError):
        qd.stroke3_to_strokes(np.zeros((3, 2)))


def _sheep_like(path, drawings):
    arr = np.empty(len(drawings), dtype=object)
    for i, d in enumerate(drawings):
        arr[i] = d
    np.savez(path, train=arr, valid=arr[:1], test=arr[:1])
    return path


def test_sketchrnn_bad_inputs(tmp_path):
    good = np.array([[1, 2, 0], [3, 4, 1]], np.int16)
    p = _sheep_like(tmp_path / "s.npz", [good, np.array([[1, 2, 7]], np.int16),
                                         np.array([[np.nan, 0, 1]]), np.zeros((2, 2)), good])
    with pytest.raises(SketchDataError, match=r"s.npz:train\[1\]: pen_lifted"):
        list(qd.read_sketchrnn_npz(p))
    sk = SkipCounter()
    recs = list(qd.read_sketchrnn_npz(p, skip_bad=True, skipped=sk))
    assert [r.id for r in recs] == ["s/train/0", "s/train/4"]
    assert [e.where for e in sk.errors] == ["train[1]", "train[2]", "train[3]"]
    with pytest.raises(SketchDataError, match=r"s.npz:validation: missing key"):
        list(qd.read_sketchrnn_npz(p, "validation"))


def test_sketchrnn_truncated_and_not_zip(tmp_path, shared):
    data = shared("sketchrnn_aaron_sheep", "aaron_sheep.npz").read_bytes()
    for cut in (len(data) // 2, 100, len(data) - 30):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(SketchDataError) as ei:
            list(qd.read_sketchrnn_npz(p))
        assert str(p) in str(ei.value)
        sk = SkipCounter()
        assert list(qd.read_sketchrnn_npz(p, skip_bad=True, skipped=sk)) == [] and len(sk) == 1


def test_sketchrnn_pickle_is_never_unpickled(tmp_path, monkeypatch):
    # Needs no shared data: a pickle posing as .npz is refused before any load.
    import pickle
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a pickle was unpickled"))
    p = tmp_path / "pickle.npz"
    p.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(SketchDataError, match="no zip header"):
        list(qd.read_sketchrnn_npz(p))


# ---------------------------------------------------------------- bitmaps

def test_bitmaps_real(shared):
    d = shared("quickdraw_bitmap_6class")
    recs = list(qd.read_bitmap_npy(d))
    counts = collections.Counter(r.label for r in recs)
    assert counts == {c: 3000 for c in ("apple", "bicycle", "cat", "diamond", "eye", "fish")}
    imgs = np.stack([r.image for r in recs[::50]])
    assert imgs.dtype == np.uint8 and imgs.shape[1:] == (28, 28)
    assert (imgs == 0).mean() > 0.6 and imgs.max() == 255  # ink 255 on a mostly 0 background
    ref = np.load(d / "cat.npy")
    cats = [r for r in recs if r.label == "cat"]
    np.testing.assert_array_equal(cats[17].image, ref[17].reshape(28, 28))
    assert cats[17].id == "cat/17"


def test_bitmaps_filter_limit_and_shapes(tmp_path, shared):
    d = shared("quickdraw_bitmap_6class")
    recs = list(qd.read_bitmap_npy(d, classes=["eye", "fish"], limit_per_class=4))
    assert [r.id for r in recs] == [f"{c}/{i}" for c in ("eye", "fish") for i in range(4)]
    flat = np.arange(2 * 784, dtype=np.uint16).astype(np.uint8).reshape(2, 784)
    np.save(tmp_path / "full_numpy_bitmap_sun.npy", flat)
    (a, b) = qd.read_bitmap_npy(tmp_path / "full_numpy_bitmap_sun.npy")
    assert a.label == "sun"
    np.testing.assert_array_equal(b.image, flat[1].reshape(28, 28))


def test_bitmaps_bad_files(tmp_path):
    good = np.zeros((3, 784), np.uint8)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "float.npy", good.astype(np.float32))
    np.save(tmp_path / "size.npy", np.zeros((3, 700), np.uint8))
    raw = (tmp_path / "good.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(raw[: len(raw) - 500])
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    for name, message in (("float", "expected uint8"), ("size", r"is not \(N, 784\)"),
                          ("trunc", "unreadable .npy"), ("junk", "unreadable .npy")):
        with pytest.raises(SketchDataError, match=message) as ei:
            list(qd.read_bitmap_npy(tmp_path / f"{name}.npy"))
        assert str(ei.value).startswith(str(tmp_path / f"{name}.npy"))
    sk = SkipCounter()
    recs = list(qd.read_bitmap_npy(tmp_path, skip_bad=True, skipped=sk))
    assert [r.id for r in recs] == ["good/0", "good/1", "good/2"]
    assert sorted(os.path.basename(e.source) for e in sk.errors) == [
        "float.npy", "junk.npy", "size.npy", "trunc.npy"]
