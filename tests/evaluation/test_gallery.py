import numpy as np
import pytest

from sketchtf.evaluation import gallery


@pytest.fixture
def examples(shared):
    root = shared()  # skips without ../shared/data
    for sub in ("quickdraw_10class_ndjson", "quickdraw_raw_ndjson", "tu_berlin_svg_sample"):
        shared(sub)
    return gallery.load_examples(root, quickdraw=("key",), raw="sun", tuberlin=("airplane",))


def test_loads_one_sketch_of_each_source(examples):
    assert [e.name for e in examples] == ["key", "raw sun", "TU airplane"]
    assert [e.sketch.label for e in examples] == ["key", "sun", "airplane"]
    assert examples[1].sketch.times is not None  # the raw format keeps its timing


def test_rendering_tiles_shapes_and_ink(examples):
    tiles, labels, ncols = gallery.rendering_tiles(examples, sizes=(16, 32), display=32)
    # 3 sketches x 2 sizes, padded to rows of 4, then the 6 stroke-order channels.
    assert tiles.shape == (8 + 6, 32, 32) and len(labels) == 14 and ncols == 6
    assert labels[:4] == ["key 16", "key 32", "raw sun 16", "raw sun 32"]
    drawn = np.r_[0:6, 8:14]
    ink = tiles[drawn].mean(axis=(1, 2))
    assert np.all(ink > 0.01) and np.all(ink < 0.6)  # sketches, not blank or solid
    assert np.all(tiles[6:8] == 0)  # the padding cells
    # the 16 px render is shown nearest-neighbour: 2x2 blocks of equal pixels
    np.testing.assert_array_equal(tiles[0][::2, ::2], tiles[0][1::2, 1::2])
    stack = tiles[8:]
    np.testing.assert_allclose(stack[5], np.maximum(np.maximum(stack[0], stack[1]), stack[2]), atol=1e-6)


def test_augmentation_tiles_shapes_and_differences(examples):
    tiles, labels, ncols = gallery.augmentation_tiles(examples[:1], size=32, crop=(28, 32))
    assert ncols == len(gallery.AUGMENTATION_COLUMNS) and tiles.shape == (ncols, 32, 32)
    col = {name: k for k, name in enumerate(gallery.AUGMENTATION_COLUMNS)}
    # A 1 px erosion wipes out the 1 px lines of a 32 px render; every other tile has ink.
    assert all(tiles[k].max() > 0.5 for k in range(ncols) if k != col["erode"])
    original = tiles[0]
    # every augmentation changes the picture
    for k in range(1, ncols):
        assert not np.allclose(tiles[k], original, atol=1e-3), labels[k]
    assert tiles[col["dilate"]].sum() > original.sum() > tiles[col["erode"]].sum()
    assert labels[col["crop"]].startswith("crop 28 at ")


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="quickdraw_10class_ndjson"):
        gallery.load_examples(tmp_path)
