import numpy as np
import pytest
import tensorflow as tf

from sketchtf.data import augment, render

SEED = tf.constant([3, 4], tf.int64)


def sketch():
    strokes = [np.stack([np.linspace(0.2, 0.8, 20), np.full(20, 0.5)], 1),
               np.array([[0.3, 0.2], [0.3, 0.3]]), np.array([[0.7, 0.2], [0.7, 0.25]])]
    return render.strokes_to_arrays(strokes)


def test_stroke_augmentation_is_a_pure_function_of_the_seed():
    pts, ids = sketch()
    a = augment.augment_strokes(pts, ids, SEED, 128)
    b = augment.augment_strokes(pts, ids, SEED, 128)
    c = augment.augment_strokes(pts, ids, tf.constant([3, 5], tf.int64), 128)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())
    assert 3.0 <= float(a[2]) <= 8.0  # width at 128 px
    assert 6.0 <= float(augment.augment_strokes(pts, ids, SEED, 256)[2]) <= 16.0


def test_wobble_moves_points_along_the_normal_and_restarts_per_stroke():
    pts, ids = sketch()
    out = augment.wobble(pts, ids, SEED, sigma=0.01).numpy()
    first = ids == 0  # a horizontal stroke: its normal is vertical
    np.testing.assert_allclose(out[first, 0], pts[first, 0], atol=1e-6)
    dy = out[first, 1] - pts[first, 1]
    assert np.abs(dy).max() > 0.005
    # cumulative: successive offsets are a random walk (correlated), not iid noise
    assert np.corrcoef(dy[:-1], dy[1:])[0, 1] > 0.5
    np.testing.assert_array_equal(augment.wobble(pts, ids, SEED, sigma=0.0).numpy(), pts)


def test_affine_identity_and_flip():
    pts, _ = sketch()
    same = augment.affine(pts, SEED, 0.0, (1.0, 1.0), 0.0, 0.0).numpy()
    np.testing.assert_allclose(same, pts, atol=1e-6)
    flipped = augment.affine(pts, SEED, 0.0, (1.0, 1.0), 0.0, 1.0).numpy()
    np.testing.assert_allclose(flipped[:, 0], 1.0 - pts[:, 0], atol=1e-6)


def test_drop_strokes_keeps_the_longest_and_renumbers():
    pts, ids = sketch()
    for k in range(20):
        p, s = augment.drop_strokes(pts, ids, tf.constant([k, 0], tf.int64), 0.9, 1.0, 1.0)
        s = s.numpy()
        assert 0 in s and (s == 0).sum() == 20  # the long stroke always stays
        assert list(np.unique(s)) == list(range(s.max() + 1))
        assert len(p) == len(s)


def test_image_augmentation_batch():
    img = np.zeros((2, 32, 32, 1), np.float32)
    img[:, 10:20, 15] = 1.0
    seeds = tf.constant([[1, 2], [3, 4]], tf.int64)
    always_dilate = augment.augment_images(img, seeds, dict(morph_p=1.0))
    ink = always_dilate.numpy().sum(axis=(1, 2, 3))
    assert np.all((ink > img.sum((1, 2, 3))) | (ink < img.sum((1, 2, 3))))
    flipped = augment.augment_images(img, seeds, dict(morph_p=0.0, flip_p=1.0)).numpy()
    np.testing.assert_array_equal(flipped, img[:, :, ::-1])
    rot = augment.augment_images(img, seeds, dict(morph_p=0.0, rotate_p=1.0, rotate_deg=5.0)).numpy()
    assert rot.shape == img.shape and not np.allclose(rot, img) and rot.sum() == pytest.approx(img.sum(), rel=0.1)
    crop = augment.augment_images(img, seeds, dict(morph_p=0.0), crop=24).numpy()
    assert crop.shape == (2, 24, 24, 1) and crop.sum() == pytest.approx(img.sum())  # crop is an exact copy


def test_center_crop_and_ten_views():
    img = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)
    np.testing.assert_array_equal(augment.center_crop(img, 4).numpy(), img[:, 2:6, 2:6])
    views = augment.ten_views(img, 6).numpy()
    assert views.shape == (10, 2, 6, 6, 1)
    np.testing.assert_array_equal(views[0], img[:, :6, :6])
    np.testing.assert_array_equal(views[5], img[:, :6, :6][:, :, ::-1])


@pytest.mark.parametrize("size", [32, 128])
def test_morph_is_a_3x3_max_scaled_by_canvas_size(size):
    rng = np.random.default_rng(0)
    img = (rng.random((8, size, size, 1)) > 0.9).astype(np.float32)
    seeds = tf.constant([[k, 7] for k in range(8)], tf.int64)
    out = augment.augment_images(img, seeds, dict(morph_p=1.0)).numpy()
    dil = tf.nn.max_pool2d(img, 3, 1, "SAME").numpy()
    ero = -tf.nn.max_pool2d(-img, 3, 1, "SAME").numpy()
    s = min(1.0, size / 128)
    for k in range(8):  # each image is either the scaled dilation or the scaled erosion
        cands = [img[k] + s * (dil[k] - img[k]), img[k] + s * (ero[k] - img[k])]
        assert min(np.abs(out[k] - c).max() for c in cands) < 1e-6
    if size == 32:  # a 1 px line keeps ink after erosion on a small canvas
        line = np.zeros((1, size, size, 1), np.float32)
        line[0, 5:25, 10] = 1.0
        for k in range(8):
            o = augment.augment_images(line, tf.constant([[k, 1]], tf.int64), dict(morph_p=1.0)).numpy()
            assert o.sum() > 0.5 * line.sum()
