"""The one renderer: strokes -> anti-aliased images, in TF ops.

Training, evaluation and the exported SavedModel all draw through `render`, so a
sketch looks the same everywhere (seed D: train and serve with one renderer).

Stroke tensors (batched, padded):
  points     float32 [B, P, 2]  (x, y), x right, y down, any units
  stroke_ids int32   [B, P]     stroke index of each point, non-decreasing from 0
  lengths    int32   [B]        number of valid points; the rest is padding
Each point i draws the segment from point i-1 to i when both are in the same
stroke, otherwise a dot at point i, so one-point strokes are drawn as dots.

Two coordinate steps, kept apart so augmentation can move a sketch after it is
fitted: `normalize` maps each sketch into the unit canvas [0, 1]^2 (fit the
bounding box with a margin, aspect ratio kept, centred); `render` draws unit
canvas points onto a size x size grid.

Ink convention: float32 in [0, 1], ink = 1 on background 0 (Quick Draw bitmap
convention; PNG readers invert black-on-white to match).

Sketch-A-Net's stroke-order stack (channels=6): strokes are split in drawing
order into thirds g1, g2, g3 and drawn as [g1, g2, g3, g1|g2, g2|g3, all].
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

# Bounds the [B, H*W, chunk] distance tensor so memory stays flat however many
# points a sketch has (raw Quick Draw strokes can have hundreds).
_MAX_ELEMENTS = 1 << 23
_BIG = 1e12
_TILE = 16


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """How a data config draws a sketch; the training pipeline and the exported
    SavedModel both read this one object, so serving draws what training drew."""
    size: int            # the model's input (data.image_size)
    render_size: int     # drawn at this size, then centre-cropped to `size` (data.render_size)
    channels: int        # 1, or 6 for the stroke-order stack
    margin: float        # unit-canvas margin around the sketch's box (data.margin)
    line_width: float    # pixels at render_size (data.line_width_px is given at 128 px)

    @classmethod
    def from_config(cls, cfg) -> "RenderSettings":
        get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
        size = int(get("image_size", 128))
        render_size = int(get("render_size", 0) or size)
        if render_size < size:
            raise ValueError(f"data.render_size={render_size} must be >= data.image_size={size} (it is cropped to it)")
        return cls(size=size, render_size=render_size, channels=int(get("channels", 1)),
                   margin=float(get("margin", 0.06)),
                   line_width=float(get("line_width_px", 4.0)) * render_size / 128.0)


def light_page(image):
    """THE ink-polarity rule, used by the image readers and the serving signature:
    True when `image` ([H, W] or [H, W, 1], uint8 or float in [0, 1]) is dark ink
    on light paper, and so must be inverted to the ink = 1 convention. The border
    is taken as paper: light when its median is above the midpoint of the
    image's darkest and lightest values (or above 0.5, whichever is lower: a
    blank light page has no midpoint to speak of), so grey photographed paper
    under dark ink counts as light, chalk on a grey board does not, and a
    border with some dark pixels (a line touching the edge, a shadow) does not
    flip the decision."""
    img = tf.convert_to_tensor(image)
    img = tf.image.convert_image_dtype(img, tf.float32) if img.dtype == tf.uint8 else tf.cast(img, tf.float32)
    if img.shape.rank == 3:
        img = img[..., 0]
    border = tf.concat([img[0], img[-1], img[:, 0], img[:, -1]], 0)
    median = tf.sort(border)[tf.size(border) // 2]
    return median > tf.minimum((tf.reduce_min(img) + tf.reduce_max(img)) / 2, 0.5)


def normalize(points, lengths, margin: float = 0.06):
    """Fits each sketch into [margin, 1 - margin]^2, centred, aspect ratio kept."""
    points = tf.convert_to_tensor(points, tf.float32)
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    valid = tf.sequence_mask(lengths, tf.shape(points)[1])[..., None]
    lo = tf.reduce_min(tf.where(valid, points, _BIG), axis=1, keepdims=True)
    hi = tf.reduce_max(tf.where(valid, points, -_BIG), axis=1, keepdims=True)
    extent = tf.reduce_max(hi - lo, axis=-1, keepdims=True)
    # A single dot (zero extent) is centred rather than divided by zero.
    scale = (1.0 - 2.0 * margin) / tf.maximum(extent, 1e-6)
    centre = (lo + hi) / 2.0
    out = (points - centre) * scale + 0.5
    return tf.where(valid, out, 0.0)


def _segments(points, stroke_ids, lengths):
    """Per point: segment start A (= the point itself when it starts a stroke)."""
    prev = tf.concat([points[:, :1], points[:, :-1]], axis=1)
    prev_id = tf.concat([stroke_ids[:, :1] - 1, stroke_ids[:, :-1]], axis=1)
    same = tf.equal(prev_id, stroke_ids)[..., None]
    a = tf.where(same, prev, points)
    valid = tf.sequence_mask(lengths, tf.shape(points)[1])
    return a, points, valid


def _min_sq_dist(a, b, valid, groups, num_groups, size, reach):
    """Min squared distance in pixels from every pixel centre to the segments.

    a, b: [B, S, 2] pixel coords; valid: [B, S]; groups: [B, S] int in
    [0, num_groups); reach: [B] pixels beyond which ink is 0 (so farther
    segments need not be measured). Returns [B, num_groups, size, size].

    The canvas is cut into 16 px tiles and each tile measures only the K
    segments whose reach-expanded box overlaps it (K = the most any tile needs),
    which is several times less work than every pixel against every segment.
    """
    ts = _TILE
    nt = -(-size // ts)
    bsz, s_total = tf.shape(a)[0], tf.shape(a)[1]
    lo = tf.minimum(a, b) - reach[:, None, None]
    hi = tf.maximum(a, b) + reach[:, None, None]
    edges = tf.range(nt, dtype=tf.float32) * ts
    # [B, S, nt] overlap of the segment box with tile columns / rows.
    in_x = (lo[..., 0:1] < edges + ts) & (hi[..., 0:1] > edges)
    in_y = (lo[..., 1:2] < edges + ts) & (hi[..., 1:2] > edges)
    hit = in_y[:, :, :, None] & in_x[:, :, None, :] & valid[:, :, None, None]
    hit = tf.reshape(tf.transpose(hit, [0, 2, 3, 1]), [bsz, nt * nt, s_total])
    k = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(hit, tf.int32), -1)), 1)
    score = tf.cast(hit, tf.float32)
    _, idx = tf.math.top_k(score, k=k, sorted=False)  # [B, T, K]
    picked = tf.gather(hit, idx, batch_dims=2)

    def take(x):  # [B, S, ...] -> [B, T, K, ...]
        return tf.gather(x, idx, batch_dims=1)

    ta, td = take(a), take(b - a)
    tgroup = take(groups)
    # Pixel centres of every tile, [T, ts] per axis.
    local = tf.range(ts, dtype=tf.float32) + 0.5
    ty = tf.repeat(edges, nt)[:, None] + local
    tx = tf.tile(edges, [nt])[:, None] + local
    chunk = tf.maximum(1, _MAX_ELEMENTS // (nt * nt * ts * ts * tf.maximum(bsz, 1)))

    def body(start, best):
        end = tf.minimum(start + chunk, k)
        ca, d = ta[:, :, start:end], td[:, :, start:end]
        len2 = tf.reduce_sum(d * d, axis=-1)
        inv = tf.where(len2 > 0, 1.0 / tf.maximum(len2, 1e-12), 0.0)
        # Separable: u[b, t, w, k] = px - ax, v[b, t, h, k] = py - ay.
        u = tx[None, :, :, None] - ca[:, :, None, :, 0]
        v = ty[None, :, :, None] - ca[:, :, None, :, 1]
        dot = (v * d[:, :, None, :, 1])[:, :, :, None, :] + (u * d[:, :, None, :, 0])[:, :, None, :, :]
        t = tf.clip_by_value(dot * inv[:, :, None, None, :], 0.0, 1.0)
        ex = u[:, :, None, :, :] - t * d[:, :, None, None, :, 0]
        ey = v[:, :, :, None, :] - t * d[:, :, None, None, :, 1]
        d2 = ex * ex + ey * ey  # [B, T, ts, ts, k]
        cpick = picked[:, :, start:end]
        out = []
        for g in range(num_groups):
            m = cpick if num_groups == 1 else cpick & tf.equal(tgroup[:, :, start:end], g)
            out.append(tf.reduce_min(tf.where(m[:, :, None, None, :], d2, _BIG), axis=-1))
        return end, tf.minimum(best, tf.stack(out, axis=1))

    init = tf.fill([bsz, num_groups, nt * nt, ts, ts], tf.constant(_BIG, tf.float32))
    _, best = tf.while_loop(lambda s, _: s < k, body, [tf.constant(0), init])
    # [B, G, T, ts, ts] -> [B, G, H, W]
    best = tf.reshape(best, [bsz, num_groups, nt, nt, ts, ts])
    best = tf.reshape(tf.transpose(best, [0, 1, 2, 4, 3, 5]), [bsz, num_groups, nt * ts, nt * ts])
    return best[:, :, :size, :size]


def render(points, stroke_ids, lengths, *, size: int, line_width=None, channels: int = 1):
    """Draws unit-canvas strokes onto [B, size, size, channels] float32 images.

    line_width: pixels at this size, a scalar or [B] (augmentation varies it per
    sketch); default 4 px at 128 px (the middle of the augmentation range), scaled with size. Edges are anti-aliased
    by coverage of a one-pixel box filter: ink = clip(w/2 + 0.5 - distance, 0, 1).
    """
    if channels not in (1, 6):
        raise ValueError(f"channels must be 1 or 6 (stroke-order stack), got {channels}")
    points = tf.convert_to_tensor(points, tf.float32)
    stroke_ids = tf.convert_to_tensor(stroke_ids, tf.int32)
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    if line_width is None:
        line_width = 4.0 * size / 128.0
    width = tf.reshape(tf.cast(line_width, tf.float32), [-1, 1, 1, 1])
    a, b, valid = _segments(points * size, stroke_ids, lengths)
    if channels == 1:
        groups, num_groups = tf.zeros_like(stroke_ids), 1
    else:
        masked_ids = tf.where(valid, stroke_ids, 0)
        n_strokes = tf.reduce_max(masked_ids, axis=1, keepdims=True) + 1
        groups = tf.minimum((3 * stroke_ids) // n_strokes, 2)
        num_groups = 3
    reach = tf.reshape(width, [-1]) / 2.0 + 1.0
    reach = tf.broadcast_to(reach, tf.shape(lengths))
    d2 = _min_sq_dist(a, b, valid, groups, num_groups, size, reach)
    ink = tf.clip_by_value(width / 2.0 + 0.5 - tf.sqrt(d2), 0.0, 1.0)  # [B, G, H, W]
    if channels == 6:
        g1, g2, g3 = ink[:, 0], ink[:, 1], ink[:, 2]
        ink = tf.stack([g1, g2, g3, tf.maximum(g1, g2), tf.maximum(g2, g3),
                        tf.maximum(tf.maximum(g1, g2), g3)], axis=1)
    return tf.transpose(ink, [0, 2, 3, 1])


def render_one(points, stroke_ids, *, size: int, line_width=None, channels: int = 1, margin: float = 0.06):
    """Convenience for one sketch: points [N, 2], stroke_ids [N] -> [size, size, C]."""
    points = tf.convert_to_tensor(points, tf.float32)[None]
    lengths = tf.shape(points)[1:2]
    unit = normalize(points, lengths, margin)
    return render(unit, tf.convert_to_tensor(stroke_ids, tf.int32)[None], lengths,
                  size=size, line_width=line_width, channels=channels)[0]


def strokes_to_arrays(strokes):
    """list of (n_i, 2) arrays -> (points [N, 2] float32, stroke_ids [N] int32)."""
    import numpy as np
    pts = np.concatenate([np.asarray(s, np.float32).reshape(-1, 2) for s in strokes], axis=0)
    ids = np.concatenate([np.full(len(s), k, np.int32) for k, s in enumerate(strokes)])
    return pts, ids


def padded_batch(sketches):
    """Stroke lists (one per sketch) -> padded (points [B, P, 2], stroke_ids [B, P],
    lengths [B]), the batch layout `normalize` and `render` take."""
    import numpy as np
    arrays = [strokes_to_arrays(s) for s in sketches]
    lengths = np.array([len(p) for p, _ in arrays], np.int32)
    points = np.zeros((len(arrays), lengths.max(), 2), np.float32)
    ids = np.zeros((len(arrays), lengths.max()), np.int32)
    for i, (p, s) in enumerate(arrays):
        points[i, :len(p)], ids[i, :len(p)] = p, s
    return points, ids, lengths
