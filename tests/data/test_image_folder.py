import numpy as np
import pytest
from PIL import Image, ImageDraw

from sketchtf.data import image_folder as imf
from sketchtf.data.records import SkipCounter, SketchDataError


def _files(cls, n):
    return [f"{cls}_{i:03d}.png" for i in range(n)]


# ---------------------------------------------------------------- split_files

def test_split_sizes_and_partition():
    files = {"a": _files("a", 10), "b": _files("b", 15), "c": _files("c", 1), "d": []}
    parts = imf.split_files(files)
    assert {c: (len(p["train"]), len(p["test"])) for c, p in parts.items()} == {
        "a": (8, 2), "b": (12, 3), "c": (1, 0), "d": (0, 0)}
    for c, p in parts.items():
        assert sorted(p["train"] + p["test"]) == sorted(files[c])
        assert p["train"] == sorted(p["train"]) and p["test"] == sorted(p["test"])
    half = imf.split_files({"a": _files("a", 5)}, test_fraction=0.5)
    assert len(half["a"]["test"]) == 3  # 2.5 rounds up
    with pytest.raises(ValueError):
        imf.split_files(files, test_fraction=1.5)


def test_split_deterministic_and_seeded():
    files = {"a": _files("a", 50), "b": _files("b", 50)}
    one = imf.split_files(files, seed=3)
    assert one == imf.split_files({k: list(reversed(v)) for k, v in files.items()}, seed=3)
    other = imf.split_files(files, seed=4)
    assert one["a"]["test"] != other["a"]["test"]
    # Stratification uses the class too: equal file names split differently per class.
    same = imf.split_files({"x": _files("f", 50), "y": _files("f", 50)})
    assert same["x"]["test"] != same["y"]["test"]


def test_split_other_classes_do_not_matter():
    base = {"a": _files("a", 30), "b": _files("b", 30)}
    grown = {"a": _files("a", 30), "b": _files("b", 90), "new": _files("n", 7)}
    before, after = imf.split_files(base, seed=1), imf.split_files(grown, seed=1)
    assert after["a"] == before["a"]
    # Only base names count, so where the files live does not change the split.
    moved = {"a": [f"/elsewhere/deep/{f}" for f in base["a"]]}
    got = imf.split_files(moved, seed=1)["a"]
    assert [f.rsplit("/", 1)[1] for f in got["test"]] == before["a"]["test"]


# ---------------------------------------------------------------- read_image_folder

def _make_folder(root, n=10, size=32, classes=("circle", "line")):
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            im = Image.new("L", (size, size), 255)  # dark strokes on white paper
            d = ImageDraw.Draw(im)
            if k == 0:
                d.ellipse([4, 4, 4 + 10 + i, 4 + 10 + i], outline=0, width=2)
            else:
                d.line([(2, 2 + i), (size - 3, size - 3)], fill=0, width=2)
            im.save(root / cls / f"{i}.png")
    (root / ".hidden").mkdir()
    (root / "circle" / "notes.txt").write_text("not an image")


def test_read_folder_inverts_and_splits(tmp_path):
    _make_folder(tmp_path)
    assert imf.list_classes(tmp_path) == ["circle", "line"]
    train = list(imf.read_image_folder(tmp_path))
    test = list(imf.read_image_folder(tmp_path, split="test"))
    every = list(imf.read_image_folder(tmp_path, split="all"))
    assert (len(train), len(test), len(every)) == (16, 4, 20)
    assert sorted(r.id for r in train + test) == sorted(r.id for r in every)
    assert [r.id for r in train] == [r.id for r in imf.read_image_folder(tmp_path)]
    parts = imf.split_files({c: [f"{i}.png" for i in range(10)] for c in ("circle", "line")})
    assert [r.id for r in test] == [f"{c}/{f}" for c in ("circle", "line") for f in parts[c]["test"]]
    src = np.asarray(Image.open(tmp_path / every[0].id))
    for r in every:
        assert r.image.dtype == np.uint8 and r.image.shape == (32, 32)
        assert r.image[0, -1] == 0  # white paper -> background 0
        assert r.image.max() == 255  # black ink -> 255
    np.testing.assert_array_equal(every[0].image, 255 - src)
    for ink in ("dark", "auto"):
        got = next(imf.read_image_folder(tmp_path, split="all", ink=ink)).image
        np.testing.assert_array_equal(got, every[0].image)
    light = next(imf.read_image_folder(tmp_path, split="all", ink="light")).image
    np.testing.assert_array_equal(light, src)


def test_auto_keeps_light_ink_and_resizes(tmp_path):
    (tmp_path / "k").mkdir()
    im = Image.new("L", (64, 48), 0)
    ImageDraw.Draw(im).line([(0, 24), (63, 24)], fill=255, width=6)
    im.save(tmp_path / "k" / "x.png")
    (r,) = imf.read_image_folder(tmp_path, split="all", ink="auto", size=(12, 16))
    assert r.image.shape == (12, 16)
    assert r.image[0, 0] == 0 and r.image[6, 8] > 200
    (sq,) = imf.read_image_folder(tmp_path, split="all", size=8)
    assert sq.image.shape == (8, 8)
    with pytest.raises(ValueError):
        list(imf.read_image_folder(tmp_path, size=0))
    with pytest.raises(ValueError):
        list(imf.read_image_folder(tmp_path, ink="pink"))


def test_transparent_background_and_jpg(tmp_path):
    (tmp_path / "k").mkdir()
    im = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # transparent "black" paper
    ImageDraw.Draw(im).line([(0, 10), (19, 10)], fill=(0, 0, 0, 255), width=2)
    im.save(tmp_path / "k" / "a.png")
    Image.new("RGB", (20, 20), (250, 250, 250)).save(tmp_path / "k" / "b.JPG")
    a, b = imf.read_image_folder(tmp_path, split="all")
    assert a.image[0, 0] == 0 and a.image[10, 5] == 255
    assert b.id == "k/b.JPG" and b.image.max() < 20


def test_classes_filter(tmp_path):
    _make_folder(tmp_path, n=3)
    assert {r.label for r in imf.read_image_folder(tmp_path, split="all", classes=["line"])} == {"line"}
    with pytest.raises(SketchDataError, match="no folder for classes"):
        list(imf.read_image_folder(tmp_path, classes=["square"]))


def test_bad_images(tmp_path, monkeypatch):
    _make_folder(tmp_path, n=3)
    (tmp_path / "line" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    good = (tmp_path / "line" / "0.png").read_bytes()
    (tmp_path / "line" / "8.png").write_bytes(good[: len(good) // 2])
    for name in ("9.png", "8.png"):
        with pytest.raises(SketchDataError, match="unreadable image") as ei:
            imf.load_image(tmp_path / "line" / name)
        assert ei.value.source == str(tmp_path / "line" / name)
    with pytest.raises(SketchDataError):
        list(imf.read_image_folder(tmp_path, split="all"))
    sk = SkipCounter()
    recs = list(imf.read_image_folder(tmp_path, split="all", skip_bad=True, skipped=sk))
    assert len(recs) == 6 and len(sk) == 2
    assert sorted(e.source.rsplit("/", 1)[1] for e in sk.errors) == ["8.png", "9.png"]
    # Decompression bombs: anything over PIL's pixel limit is refused before decoding.
    # (PIL itself only warns below twice its limit.)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 32 - 1)
    with pytest.raises(SketchDataError, match="pixel limit"), \
            pytest.warns(Image.DecompressionBombWarning):
        imf.load_image(tmp_path / "circle" / "0.png")
