"""Scans, photos and canvas exports brought to the training renders' look (data/scans.py)."""
import numpy as np
import pytest
import tensorflow as tf

from sketchtf.config import data_config
from sketchtf.data import render, scans, synthetic

DRAW = render.RenderSettings.from_config(data_config(image_size=64))


page = scans.paper_page


def rendered(strokes):
    pts, ids = render.strokes_to_arrays(strokes)
    unit = render.normalize(pts[None], [len(pts)], DRAW.margin)
    return render.render(unit, ids[None], [len(pts)], size=DRAW.size, line_width=DRAW.line_width).numpy()[0, ..., 0]


def look(img):
    return scans.to_training_look(tf.constant(img[..., None]), DRAW).numpy()[..., 0]


def naive(img):  # what serving_default did before: invert and resize the whole page
    return tf.image.resize(1.0 - img[..., None], [DRAW.size, DRAW.size], antialias=True).numpy()[..., 0]


def near(a, b):
    """Share of a's ink pixels (> 0.5) with ink of b (> 0.3) within 1 px: the
    same drawing at the same place and size, tolerant of a 1 px shift."""
    grown = tf.nn.max_pool2d(tf.constant((b > 0.3)[None, ..., None], tf.float32), 3, 1, "SAME").numpy()[0, ..., 0]
    return float(grown[a > 0.5].mean()) if (a > 0.5).any() else 0.0


SKETCHES = [s.strokes for s in list(synthetic.generate(1, split="test"))[:6]]


@pytest.mark.parametrize("i", range(len(SKETCHES)))
def test_thin_line_scan_looks_like_the_render(i):
    want = rendered(SKETCHES[i])
    scan = page(SKETCHES[i])
    got = look(scan)
    # every rendered line is there and nothing else: recall and precision within 1 px
    assert near(want, got) > 0.9 and near(got, want) > 0.9, (near(want, got), near(got, want))
    assert near(want, naive(scan)) < 0.5  # resizing the page loses the thin lines


def test_photo_of_grey_unevenly_lit_off_centre_paper():
    strokes = SKETCHES[0]
    want = rendered(strokes)
    photo = page(strokes, canvas=800, width=3, out=400, scale=0.4, shift=(180, -120), paper=150, ink=40,
                 light_ramp=0.35, noise=0.02)  # grey paper, light falling off across it, sensor noise
    got = look(photo)
    assert near(want, got) > 0.85 and near(got, want) > 0.85, (near(want, got), near(got, want))
    assert (got > 0.3).mean() < 2 * (want > 0.3).mean()  # the paper is not ink


def test_thick_canvas_lines_are_thinned_to_the_training_width():
    strokes = SKETCHES[1]
    thick = page(strokes, canvas=600, width=40, out=600, scale=0.8)
    ink = scans.paper_to_zero(tf.constant(1.0 - thick[..., None]))
    assert float(scans.line_width(ink)) > 25
    got = look(thick)
    want = rendered(strokes)
    assert abs((got > 0.5).mean() - (want > 0.5).mean()) < 0.5 * (want > 0.5).mean()
    assert near(want, got) > 0.85


def test_thick_lines_are_not_taken_for_paper():
    # A 40 px line covers whole blocks of the paper estimate: their medians are ink.
    thick = page([np.array([[0, 0], [100, 100], [200, 0]]), np.array([[0, 150], [200, 150]])],
                 canvas=600, width=40, out=600, scale=0.8)
    ink = scans.paper_to_zero(tf.constant(1.0 - thick[..., None])).numpy()[..., 0]
    assert (ink[thick < 0.5] > 0.3).mean() > 0.98  # the lines stay filled, not hollow outlines


@pytest.mark.parametrize("width", [6, 10, 16])
def test_line_width_estimate_at_45_degrees(width):
    y, x = np.mgrid[:240, :240]
    band = (np.abs(x - y) / np.sqrt(2) <= width / 2) & (x > 20) & (x < 220)
    got = float(scans.line_width(tf.constant(band[..., None].astype(np.float32))))
    assert abs(got - width) <= 0.15 * width, got


@pytest.mark.parametrize("width", [1, 3, 6, 10])
def test_line_width_estimate(width):
    img = np.zeros((200, 200, 1), np.float32)
    img[20:180, 50:50 + width] = 1.0             # a vertical bar
    img[100:100 + width, 60:190] = 1.0            # and a horizontal one
    assert abs(float(scans.line_width(tf.constant(img))) - width) <= max(1.0, 0.2 * width)


def test_blank_page_stays_blank():
    for value in (1.0, 0.0, 0.6):
        out = look(np.full((120, 90), value, np.float32))
        assert out.shape == (64, 64) and np.isfinite(out).all() and out.max() < 0.05


def test_drawing_touching_the_edge_is_framed_with_the_margin():
    img = np.zeros((100, 100, 1), np.float32)
    img[0:40, 0:3] = 1.0                          # a stroke at the top-left corner
    out = scans.to_training_look(tf.constant(img), DRAW).numpy()[..., 0]
    rows = np.flatnonzero((out > 0.3).any(1))
    margin_px = DRAW.margin * DRAW.size
    assert rows.min() >= margin_px - 2 and rows.max() <= DRAW.size - margin_px + 2
