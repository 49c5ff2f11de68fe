"""A scan, photo or canvas export of a drawing -> what the renderer would have drawn.

Users send images that are not Quick Draw renders: TU-Berlin style scans (thin
anti-aliased dark lines on white, 150-1111 px, under 1% ink), phone photos of
paper (grey, unevenly lit, off-centre), canvas exports with thick lines.
Resizing such a page to 64 px erases thin lines and keeps the drawing small
and off-centre. `to_training_look` brings an image to the training renders'
conventions, in standard TF ops (it runs inside the exported SavedModel):

1. ink polarity: render.light_page, the readers' rule -> ink high on 0;
2. paper level: a block-wise background estimate (the median of 8 x 8 blocks
   of a 64 px copy, grey-opened over 3 x 3 blocks, so thick lines are not
   taken for paper and wide shadows are) is subtracted, which
   also takes out uneven light, and so is a noise floor (4 x the median
   absolute deviation); a typical line centre is scaled to 1;
3. line width: estimated as 2 * area / boundary of the ink mask, then brought
   to the training width (RenderSettings.line_width at render_size, in the
   crop's pixels) by grey-level dilation or erosion in octagon steps (square, cross);
4. framing: cropped to the ink's bounding box, squared and padded by the
   training margin (render.normalize's geometry), resized with antialiasing
   to render_size and centre-cropped to the model's size.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from sketchtf.data import render

INK_THRESHOLD = 0.3      # of the normalized ink level: what counts as ink for the box and width
_MAX_SIDE = 1024         # bigger pages are downsized first (phone photos are 3-12 MP)
_MAX_STEPS = 48          # at most this many dilation / erosion steps


def _fit_max_side(img):
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    scale = tf.minimum(1.0, _MAX_SIDE / tf.cast(tf.maximum(h, w), tf.float32))
    size = tf.cast(tf.round(tf.cast(tf.stack([h, w]), tf.float32) * scale), tf.int32)
    return tf.image.resize(img, tf.maximum(size, 1), antialias=True)


def paper_to_zero(img):
    """[H, W, 1] ink-high image -> paper at 0, strongest ink at 1 (uneven light removed)."""
    small = tf.image.resize(img[None], [64, 64], antialias=True)
    blocks = tf.image.extract_patches(small, [1, 8, 8, 1], [1, 8, 8, 1], [1, 1, 1, 1], "VALID")  # [1, 8, 8, 64]
    background = tf.sort(blocks, axis=-1)[..., 32:33]                       # block medians, [1, 8, 8, 1]
    # A thick canvas line can cover a whole block, whose median is then ink: a grey
    # opening (3 x 3 min, then 3 x 3 max) of the medians takes out what is under
    # 3 blocks wide (lines) and keeps wider areas (a shadow, a lit half) as paper.
    background = tf.nn.max_pool2d(-tf.nn.max_pool2d(-background, 3, 1, "SAME"), 3, 1, "SAME")
    background = tf.image.resize(background, tf.shape(img)[:2], method="bilinear")[0]
    diff = img - background
    # Sensor noise and paper texture: 4 x the median absolute deviation of a
    # strided sample (mostly paper; no averaging, which would hide the noise).
    sample = tf.reshape(tf.abs(diff[::4, ::4]), [-1])
    noise = tf.sort(sample)[tf.size(sample) // 2]
    ink = tf.nn.relu(diff - 4.0 * noise)
    # Scale so a typical line centre is 1, as in the renders: the 75th percentile
    # of the clearly inked pixels (thin anti-aliased lines never reach the page's
    # one darkest crossing, which the maximum would be).
    peak = tf.reduce_max(ink)
    strong = tf.sort(tf.boolean_mask(ink, ink > 0.2 * peak))
    level = tf.cond(tf.size(strong) > 0, lambda: tf.gather(strong, (3 * (tf.size(strong) - 1)) // 4),
                    lambda: tf.constant(1.0))                # a blank page stays blank
    return tf.clip_by_value(ink / tf.maximum(level, 1e-3), 0.0, 1.0)


def line_width(ink):
    """Estimated stroke width in pixels of an [H, W, 1] ink image (0 when blank)."""
    mask = tf.cast(ink > INK_THRESHOLD, tf.float32)
    erode = lambda k: -tf.nn.max_pool2d(-mask[None], k, 1, "SAME")[0]
    square, cross = erode(3), tf.minimum(erode([3, 1]), erode([1, 3]))
    # A line of width w >= 2 and length L: area w L, boundary 2 L. Boundary pixels
    # with an 8-neighbour outside count a 45-degree edge sqrt(2) times too often,
    # with a 4-neighbour outside 1/sqrt(2) times: their mean is within 6% at any angle.
    area = tf.reduce_sum(mask)
    boundary = area - (tf.reduce_sum(square) + tf.reduce_sum(cross)) / 2.0
    # Width 1 has no interior.
    width = tf.where(tf.reduce_sum(square) > 0.02 * area, 2.0 * area / tf.maximum(boundary, 1.0), 1.0)
    return tf.where(area > 0, width, 0.0)


def _morph(ink, steps):
    """steps > 0: dilate, < 0: erode, each step moving a line's width by about
    2 px. Steps alternate a 3 x 3 square and a 4-neighbour cross (an octagon,
    close to a disk): squares alone change a 45-degree line's width by 2.8 px a
    step and a straight one's by 2, so thinning thick lines broke diagonals."""
    def body(i, x):
        pool = lambda t, k: tf.nn.max_pool2d(t[None], k, 1, "SAME")[0]
        sign = tf.where(steps > 0, 1.0, -1.0)  # erosion is dilation of -x
        y = sign * x
        grown = tf.cond(i % 2 == 0, lambda: pool(y, [3, 3]), lambda: tf.maximum(pool(y, [3, 1]), pool(y, [1, 3])))
        return i + 1, sign * grown
    _, out = tf.while_loop(lambda i, _: i < tf.abs(steps), body, [tf.constant(0), ink])
    return out


def ink_box(ink):
    """(top, left, bottom, right) of the ink, exclusive ends; the whole image when blank."""
    hit = ink[..., 0] > INK_THRESHOLD
    rows = tf.where(tf.reduce_any(hit, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(hit, axis=0))[:, 0]
    whole = tf.cast(tf.stack([0, 0, tf.shape(ink)[0], tf.shape(ink)[1]]), tf.int64)
    return tf.cond(tf.equal(tf.size(rows), 0), lambda: whole,
                   lambda: tf.stack([tf.reduce_min(rows), tf.reduce_min(cols),
                                     tf.reduce_max(rows) + 1, tf.reduce_max(cols) + 1]))


def frame(ink, box, draw: render.RenderSettings):
    """Square crop around `box` with the training margin, at render_size."""
    box = tf.cast(box, tf.float32)
    centre = (box[:2] + box[2:]) / 2.0
    side = tf.maximum(tf.reduce_max(box[2:] - box[:2]), 1.0) / (1.0 - 2.0 * draw.margin)
    start = tf.cast(tf.round(centre - side / 2.0), tf.int32)
    side_px = tf.cast(tf.round(side), tf.int32)
    h, w = tf.shape(ink)[0], tf.shape(ink)[1]
    # Pad so the square fits, however close to an edge the drawing is.
    pad_top, pad_left = tf.maximum(-start[0], 0), tf.maximum(-start[1], 0)
    pad_bottom = tf.maximum(start[0] + side_px - h, 0)
    pad_right = tf.maximum(start[1] + side_px - w, 0)
    padded = tf.pad(ink, [[pad_top, pad_bottom], [pad_left, pad_right], [0, 0]])
    crop = tf.slice(padded, [start[0] + pad_top, start[1] + pad_left, 0], [side_px, side_px, 1])
    return tf.image.resize(crop, [draw.render_size, draw.render_size], antialias=True)


def to_training_look(image, draw: render.RenderSettings):
    """One decoded image [H, W, 1] float in [0, 1] (any polarity) -> [size, size, 1]."""
    img = _fit_max_side(tf.convert_to_tensor(image, tf.float32))
    img = tf.where(render.light_page(img), 1.0 - img, img)
    ink = paper_to_zero(img)
    box = ink_box(ink)
    side = tf.cast(tf.reduce_max(box[2:] - box[:2]), tf.float32) / (1.0 - 2.0 * draw.margin)
    target = draw.line_width * side / draw.render_size       # training width, in this image's pixels
    gap = (target - line_width(ink)) / 2.0                   # each step moves the width by about 2 px
    # Thicken to the nearest step; thin only by whole steps, never below the target.
    steps = tf.cast(tf.where(gap >= 0, tf.round(gap), -tf.floor(-gap)), tf.int32)
    ink = tf.clip_by_value(_morph(ink, tf.clip_by_value(steps, -_MAX_STEPS, _MAX_STEPS)), 0.0, 1.0)
    out = frame(ink, ink_box(ink), draw)
    if draw.render_size > draw.size:
        off = (draw.render_size - draw.size) // 2
        out = out[off:off + draw.size, off:off + draw.size]
    return tf.ensure_shape(out, [draw.size, draw.size, 1])


def paper_page(strokes, *, canvas=1111, width=2, out=150, scale=0.7, shift=(0, 0), paper=255, ink=0,
               light_ramp=0.0, noise=0.0, seed=0):
    """A drawing as a scan or photo of paper, for evaluating (and testing) the
    image path: drawn with PIL (not the project's renderer) on a `canvas` px page
    with `width` px lines, the drawing's box `scale` of the page and moved by
    `shift`, downsized with Lanczos to `out` px (the TU-Berlin PNG release:
    1111 px, thin lines, 150 px). paper/ink are grey levels (0-255);
    light_ramp adds uneven light (a left-to-right gradient of that size) and
    noise gaussian sensor noise, both in [0, 1] units. Returns float32 [out, out]."""
    from PIL import Image, ImageDraw
    pts = np.concatenate([np.asarray(s, float).reshape(-1, 2) for s in strokes])
    lo, hi = pts.min(0), pts.max(0)
    f = scale * canvas / max(float((hi - lo).max()), 1.0)
    im = Image.new("L", (canvas, canvas), int(paper))
    d = ImageDraw.Draw(im)
    off = canvas * (1 - scale) / 2
    for s in strokes:
        q = [((x - lo[0]) * f + off + shift[0], (y - lo[1]) * f + off + shift[1]) for x, y in np.asarray(s)]
        if len(q) > 1:
            d.line(q, fill=int(ink), width=int(width), joint="curve")
        else:
            d.point(q[0], fill=int(ink))
    img = np.asarray(im.resize((out, out), Image.Resampling.LANCZOS), np.float32) / 255
    if light_ramp:
        img = img + np.linspace(-light_ramp / 2, light_ramp / 2, out, dtype=np.float32)[None, :]
    if noise:
        img = img + np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)
