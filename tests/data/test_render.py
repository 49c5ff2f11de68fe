import numpy as np
import pytest
import tensorflow as tf

from sketchtf.data import render


def reference(points, ids, size, width, margin=0.06):
    """Brute-force numpy rendering: every pixel against every segment."""
    p = np.asarray(points, np.float64)
    lo, hi = p.min(0), p.max(0)
    scale = (1 - 2 * margin) / max((hi - lo).max(), 1e-6)
    q = ((p - (lo + hi) / 2) * scale + 0.5) * size
    segs = [(q[i - 1] if i and ids[i - 1] == ids[i] else q[i], q[i]) for i in range(len(q))]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    best = np.full((size, size), np.inf)
    for a, b in segs:
        d = b - a
        l2 = d @ d
        t = np.zeros_like(xx) if l2 == 0 else np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / l2, 0, 1)
        best = np.minimum(best, (xx - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2)
    return np.clip(width / 2 + 0.5 - np.sqrt(best), 0, 1)


def random_sketch(rng, n_strokes, max_pts):
    strokes = [rng.uniform(0, 255, (rng.integers(1, max_pts), 2)) for _ in range(n_strokes)]
    return render.strokes_to_arrays(strokes)


@pytest.mark.parametrize("size,width", [(28, 1.5), (64, 3.0), (100, 5.0)])
def test_matches_brute_force_reference(size, width):
    rng = np.random.default_rng(size)
    for _ in range(3):
        pts, ids = random_sketch(rng, rng.integers(1, 6), 12)
        got = render.render_one(pts, ids, size=size, line_width=width).numpy()[..., 0]
        np.testing.assert_allclose(got, reference(pts, ids, size, width), atol=2e-3)


@pytest.mark.parametrize("budget_chunk", [1, 7, 64])
def test_many_points_takes_chunked_path_and_still_matches(monkeypatch, budget_chunk):
    # A dense spiral puts ~100+ segments in the busiest 16 px tile; shrinking the
    # element budget to `budget_chunk` segments per pass makes the while-loop run
    # many chunks, and every chunk must count (a loop that stopped after the
    # first, or skipped a slice, leaves pixels uninked).
    t = np.linspace(0, 40 * np.pi, 900)
    pts = np.stack([128 + 100 * np.cos(t) * t / t[-1], 128 + 100 * np.sin(t) * t / t[-1]], 1).astype(np.float32)
    ids = np.zeros(len(pts), np.int32)
    size, tiles = 96, -(-96 // render._TILE)
    monkeypatch.setattr(render, "_MAX_ELEMENTS", budget_chunk * tiles * tiles * render._TILE ** 2)
    got = render.render_one(pts, ids, size=size, line_width=2.0).numpy()[..., 0]
    np.testing.assert_allclose(got, reference(pts, ids, size, 2.0), atol=2e-3)


def test_the_chunk_budget_changes_the_loop():
    # What the test above relies on: at the default budget a 96 px sketch takes
    # one pass, so without the patch it would not exercise the loop at all.
    tiles = -(-96 // render._TILE)
    assert render._MAX_ELEMENTS // (tiles * tiles * render._TILE ** 2) > 900


def _page(border_values, ink=0.0, size=32):
    img = np.full((size, size), border_values[0], np.float32)
    ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    vals = np.resize(np.asarray(border_values, np.float32), ring.size)
    img[0], img[-1] = vals[:size], vals[size:2 * size]
    img[:, 0], img[:, -1] = vals[2 * size:3 * size], vals[3 * size:]
    img[8:24, 15:17] = ink  # a stroke
    return img


def test_light_page_rule():
    assert bool(render.light_page(_page([1.0], ink=0.0)))           # black on white paper
    assert not bool(render.light_page(_page([0.0], ink=1.0)))       # Quick Draw: white on black
    assert bool(render.light_page(_page([0.45], ink=0.1)))          # grey photographed paper
    assert not bool(render.light_page(_page([0.45], ink=0.95)))     # chalk on a grey board
    assert bool(render.light_page(np.full((8, 8), 0.98, np.float32)))   # a blank page is paper
    assert not bool(render.light_page(np.zeros((8, 8), np.float32)))    # a blank canvas is not
    assert bool(render.light_page((_page([1.0]) * 255).astype(np.uint8)[..., None]))  # uint8 [H, W, 1]
    # A border 60% light paper (0.6) and 40% shadow (0.0): the old serving rule
    # (border mean 0.36 <= 0.5) kept it, the old folder rule (most border pixels
    # light) inverted it. The one rule inverts: the paper is the border's median.
    assert bool(render.light_page(_page([0.6, 0.6, 0.6, 0.0, 0.0], ink=0.0)))


def test_batch_padding_does_not_change_a_sketch():
    rng = np.random.default_rng(1)
    a = random_sketch(rng, 3, 10)
    b = random_sketch(rng, 2, 30)
    n = max(len(a[0]), len(b[0]))
    pts = np.zeros((2, n, 2), np.float32)
    ids = np.zeros((2, n), np.int32)
    for i, (p, s) in enumerate((a, b)):
        pts[i, :len(p)], ids[i, :len(p)] = p, s
    lengths = np.array([len(a[0]), len(b[0])], np.int32)
    batch = render.render(render.normalize(pts, lengths), ids, lengths, size=48).numpy()
    for i, (p, s) in enumerate((a, b)):
        np.testing.assert_allclose(batch[i], render.render_one(p, s, size=48).numpy(), atol=1e-5)


def test_aspect_ratio_kept_and_centred():
    # A horizontal line spans the width minus margins and sits on the middle row.
    pts = np.array([[10, 50], [210, 50]], np.float32)
    img = render.render_one(pts, np.zeros(2, np.int32), size=64, line_width=2.0).numpy()[..., 0]
    cols = np.where(img.max(0) > 0.5)[0]
    rows = np.where(img.max(1) > 0.5)[0]
    assert cols.min() <= 6 and cols.max() >= 57
    assert set(rows) <= {30, 31, 32, 33}


def test_single_point_is_a_dot_and_ink_is_in_unit_range():
    img = render.render_one(np.array([[5.0, 5.0]]), np.array([0]), size=32, line_width=4.0).numpy()
    assert img.shape == (32, 32, 1)
    assert 0.0 <= img.min() and img.max() == pytest.approx(1.0)
    assert 8 <= (img > 0.5).sum() <= 25  # about pi * 2^2


def test_stroke_order_stack_channels():
    strokes = [np.array([[0, 0], [100, 0]]), np.array([[0, 50], [100, 50]]), np.array([[0, 100], [100, 100]])]
    pts, ids = render.strokes_to_arrays(strokes)
    img = render.render_one(pts, ids, size=64, channels=6, line_width=3.0).numpy()
    g1, g2, g3, u12, u23, whole = (img[..., k] for k in range(6))
    for g in (g1, g2, g3):
        assert g.max() > 0.7  # each third is drawn
    assert np.abs(g1 * g2).max() == 0  # thirds are disjoint here
    np.testing.assert_allclose(u12, np.maximum(g1, g2))
    np.testing.assert_allclose(u23, np.maximum(g2, g3))
    np.testing.assert_allclose(whole, np.maximum(np.maximum(g1, g2), g3))
    np.testing.assert_allclose(whole, render.render_one(pts, ids, size=64, line_width=3.0).numpy()[..., 0], atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        render.render_one(pts, ids, size=64, channels=3)


def test_works_in_tf_function_and_tf_data():
    rng = np.random.default_rng(2)
    pts, ids = random_sketch(rng, 2, 8)
    eager = render.render_one(pts, ids, size=32).numpy()
    fn = tf.function(lambda p, i: render.render_one(p, i, size=32),
                     input_signature=[tf.TensorSpec([None, 2]), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(fn(pts, ids).numpy(), eager, atol=1e-6)
    ds = tf.data.Dataset.from_tensors((pts, ids)).map(lambda p, i: render.render_one(p, i, size=32))
    np.testing.assert_allclose(next(iter(ds)).numpy(), eager, atol=1e-6)
