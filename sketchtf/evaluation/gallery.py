"""Pictures of real sketches through the renderer and each augmentation.

  python -m sketchtf.evaluation.gallery --out_dir=docs [--data_dir=../shared/data]

Writes
  rendering.png     real Quick Draw (simplified and raw) and TU-Berlin SVG
                    sketches rendered at 28, 64 and 128 px (small sizes upscaled
                    nearest-neighbour so every cell is the same size), two
                    sketches per row, then the 6-channel stroke-order stack of
                    one sketch;
  augmentation.png  one sketch per row; columns: the original, each
                    augmentation of sketchtf.data.augment alone (fixed seeds),
                    and one sample of the full training pipeline.
Tiles show the model's input as it is: ink 1 (white) on 0 (black).

Everything goes through the project's own code (readers, render.normalize /
render.render, augment.*, pipeline.make_dataset, report.image_grid), so the
pictures show exactly what training sees.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

import sketchtf  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
import tensorflow as tf

from sketchtf.config import data_config, shared_data_dir
from sketchtf.data import augment as aug
from sketchtf.data import pipeline, render
from sketchtf.data.quickdraw import read_ndjson
from sketchtf.data.records import Sketch
from sketchtf.data.tuberlin import read_tuberlin_svg
from sketchtf.evaluation.report import image_grid, save_png

QUICKDRAW_CLASSES = ("sun", "The Eiffel Tower", "hamburger", "key")
RAW_CLASS = "angel"
TUBERLIN_CLASSES = ("airplane", "alarm clock", "angel")
SIZES = (28, 64, 128)
STACK_LABELS = ("1st third", "2nd third", "3rd third", "1st+2nd", "2nd+3rd", "all strokes")
# Sketch-A-Net's crop: render at 256, train on a random 225 x 225 window.
CROP = (225, 256)
DROP_FRACTION = 0.3  # stroke drop is off by default (0.0); shown at this rate


@dataclasses.dataclass
class Example:
    name: str      # short display name, e.g. "TU angel"
    source: str    # file it came from
    sketch: Sketch


def _need(path: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: the gallery draws the real sketches of the shared data folder; "
            "pass --data_dir (or set SKETCHTF_DATA) to the folder holding quickdraw_10class_ndjson/, "
            "quickdraw_raw_ndjson/ and tu_berlin_svg_sample/")
    return path


def load_examples(data_root, *, quickdraw: Sequence[str] = QUICKDRAW_CLASSES,
                  raw: Optional[str] = RAW_CLASS,
                  tuberlin: Sequence[str] = TUBERLIN_CLASSES) -> list[Example]:
    """The first drawing of each named class: Quick Draw simplified
    (quickdraw_10class_ndjson/test), one Quick Draw raw-format drawing
    (quickdraw_raw_ndjson, first recognized one), TU-Berlin SVGs."""
    root = str(data_root)
    out = []
    if quickdraw:
        folder = _need(os.path.join(root, "quickdraw_10class_ndjson", "test"))
        for rec in read_ndjson(folder, classes=list(quickdraw), limit_per_class=1, with_times=False):
            out.append(Example(rec.label.removeprefix("The "), folder, rec))
        # read_ndjson reads classes sorted; keep the order asked for.
        out.sort(key=lambda e: list(quickdraw).index(e.sketch.label))
    if raw:
        path = _need(os.path.join(root, "quickdraw_raw_ndjson", f"{raw}.ndjson"))
        rec = next(read_ndjson(path, recognized_only=True, limit_per_class=1, with_times=True), None)
        if rec is None:
            raise ValueError(f"{path}: no recognized drawing to show")
        out.append(Example(f"raw {raw}", path, rec))
    if tuberlin:
        folder = _need(os.path.join(root, "tu_berlin_svg_sample"))
        seen = set()
        for rec in read_tuberlin_svg(folder, classes=list(tuberlin)):
            if rec.label not in seen:
                seen.add(rec.label)
                out.append(Example(f"TU {rec.label}", os.path.join(folder, rec.id + ".svg"), rec))
    return out


def render_sketches(sketches: Sequence[Sketch], size: int, *, channels: int = 1) -> np.ndarray:
    """[B, size, size, channels] float32 through the pipeline's own calls
    (normalize, then one batched render) with the default data config's margin
    and line width (scaled with size, as the pipeline does)."""
    draw = render.RenderSettings.from_config(data_config(image_size=size, channels=channels))
    points, ids, lengths = render.padded_batch([s.strokes for s in sketches])
    unit = render.normalize(points, lengths, draw.margin)
    return render.render(unit, ids, lengths, size=size, line_width=draw.line_width, channels=channels).numpy()


def upscale_nearest(images: np.ndarray, size: int) -> np.ndarray:
    """[N, h, w(, C)] -> [N, size, size(, C)] by nearest neighbour (display only:
    every source pixel stays a visible block)."""
    h, w = images.shape[1:3]
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return images[:, rows][:, :, cols]


def rendering_tiles(examples: Sequence[Example], sizes: Sequence[int] = SIZES, display: int = 128,
                    stack_example: int = -1):
    """(tiles [N, display, display] float32, labels, ncols) for rendering.png.

    Each example at every size (two examples per row), then the 6 channels of
    the stroke-order stack of examples[stack_example] at `display` px.
    """
    if not examples:
        raise ValueError("rendering_tiles: no examples")
    sketches = [e.sketch for e in examples]
    per_size = {s: upscale_nearest(render_sketches(sketches, s)[..., 0], display) for s in sizes}
    tiles, labels = [], []
    for i, e in enumerate(examples):
        for s in sizes:
            tiles.append(per_size[s][i])
            labels.append(f"{e.name} {s}")  # px; "px" would cut long names
    ncols = 2 * len(sizes)
    while len(tiles) % ncols:  # an odd count: blank cells end the row
        tiles.append(np.zeros((display, display), np.float32))
        labels.append("")
    stack = render_sketches([sketches[stack_example]], display, channels=6)[0]
    for c, name in enumerate(STACK_LABELS):
        tiles.append(stack[..., c])
        labels.append(name)
    return np.stack(tiles), labels, max(ncols, len(STACK_LABELS))


def _seed(a: int, b: int) -> tf.Tensor:
    """A stateless seed (shape [2]) as augment.py takes it."""
    return tf.constant([a, b], tf.int64)


def _stroke_variant(unit, ids, seed, size: int, **only):
    """augment_strokes with every stroke augmentation off except `only`
    (width fixed at the eval width unless width_px is given)."""
    cfg = data_config()
    neutral = dict(wobble_sigma_px=0.0, width_px=(cfg.line_width_px, cfg.line_width_px), rotate_deg=0.0,
                   scale=(1.0, 1.0), translate=0.0, hflip=0.0, drop_fraction=0.0)
    pts, sids, width = aug.augment_strokes(unit, ids, seed, size, dict(neutral, **only))
    n = tf.shape(pts)[0:1]
    return render.render(pts[None], sids[None], n, size=size, line_width=width)[0].numpy(), float(width)


def _morph_pick(image, seed_base: int):
    """A dilated and an eroded copy from augment_images(morph_p=1): the seed
    decides which, so try seeds in order and keep the first of each kind."""
    n = 16
    batch = np.repeat(image[None], n, axis=0)
    seeds = tf.stack([_seed(seed_base, k) for k in range(n)])
    out = aug.augment_images(batch, seeds, dict(morph_p=1.0)).numpy()
    ink, base = out.sum(axis=(1, 2, 3)), image.sum()
    dilated = out[int(np.argmax(ink > base))] if np.any(ink > base) else None
    eroded = out[int(np.argmax(ink < base))] if np.any(ink < base) else None
    if dilated is None or eroded is None:
        raise RuntimeError(f"augment_images(morph_p=1) gave no {'dilation' if dilated is None else 'erosion'} "
                           f"in {n} seeds")
    return dilated, eroded


def _crop_offset(full: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """Where the crop came from (for the label); the crop is an exact copy."""
    k = crop.shape[0]
    best, where = np.inf, (0, 0)
    for t in range(full.shape[0] - k + 1):
        for l in range(full.shape[1] - k + 1):
            err = np.abs(full[t:t + k, l:l + k] - crop).max()
            if err < best:
                best, where = err, (t, l)
    return where


AUGMENTATION_COLUMNS = ("original", "wobble", "width", "rot/scale/shift", "hflip", "stroke drop",
                        "dilate", "erode", "SaN flip+rot", "crop", "train pipeline")


def _pipeline_samples(sketches: Sequence[Sketch], size: int, seed: int) -> np.ndarray:
    """One training-pipeline sample of each sketch (all augmentations at the
    default config), in the given order."""
    recs = [Sketch(label=f"row{i}", id=f"row{i}", strokes=s.strokes) for i, s in enumerate(sketches)]
    cfg = data_config(image_size=size)
    ds, _ = pipeline.make_dataset(cfg, "train", batch_size=len(recs), training=True, seed=seed,
                                  records=recs, class_names=[r.label for r in recs], with_index=True)
    # Training streams shuffle a full epoch; the first batch holds each record once.
    images, _, index = next(iter(ds))
    out = np.zeros((len(recs),) + tuple(images.shape[1:]), np.float32)
    out[index.numpy()] = images.numpy()
    return out


def augmentation_tiles(examples: Sequence[Example], *, size: int = 128, seed: int = 0,
                       crop: tuple[int, int] = CROP):
    """(tiles [N * 11, size, size] float32, labels, ncols) for augmentation.png:
    per example, the columns of AUGMENTATION_COLUMNS, each with a fixed seed."""
    if not examples:
        raise ValueError("augmentation_tiles: no examples")
    cfg = data_config()
    sketches = [e.sketch for e in examples]
    points, ids, lengths = render.padded_batch([s.strokes for s in sketches])
    unit_all = render.normalize(points, lengths, cfg.margin).numpy()
    originals = render_sketches(sketches, size)
    crop_size, crop_from = crop
    big = render_sketches(sketches, crop_from)
    trained = _pipeline_samples(sketches, size, seed)
    tiles, labels = [], []
    for r, e in enumerate(examples):
        unit, sid = unit_all[r, :lengths[r]], ids[r, :lengths[r]]
        row = [(originals[r], e.name)]
        img, _ = _stroke_variant(unit, sid, _seed(seed, 16 * r + 1), size,
                                 wobble_sigma_px=aug.STROKE_DEFAULTS["wobble_sigma_px"])
        row.append((img, f"wobble {aug.STROKE_DEFAULTS['wobble_sigma_px']:g}px"))
        img, width = _stroke_variant(unit, sid, _seed(seed, 16 * r + 2), size, width_px=aug.STROKE_DEFAULTS["width_px"])
        row.append((img, f"width {width * 128 / size:.1f}px"))
        img, _ = _stroke_variant(unit, sid, _seed(seed, 16 * r + 3), size, rotate_deg=aug.STROKE_DEFAULTS["rotate_deg"],
                                 scale=aug.STROKE_DEFAULTS["scale"], translate=aug.STROKE_DEFAULTS["translate"])
        row.append((img, "rot/scale/shift"))
        img, _ = _stroke_variant(unit, sid, _seed(seed, 16 * r + 4), size, hflip=1.0)
        row.append((img, "hflip"))
        img, _ = _stroke_variant(unit, sid, _seed(seed, 16 * r + 5), size, drop_fraction=DROP_FRACTION)
        row.append((img, f"stroke drop {DROP_FRACTION:g}"))
        dilated, eroded = _morph_pick(originals[r], seed * 1000 + r)
        row += [(dilated, "dilate 1px"), (eroded, "erode 1px")]
        san = dict(aug.SKETCH_A_NET_IMAGE, flip_p=1.0, rotate_p=1.0)
        img = aug.augment_images(originals[r][None], _seed(seed, 16 * r + 6)[None], san).numpy()[0]
        row.append((img, f"SaN flip+rot<={san['rotate_deg']:g}deg"))
        cropped = aug.augment_images(big[r][None], _seed(seed, 16 * r + 7)[None], dict(morph_p=0.0),
                                     crop=crop_size).numpy()[0]
        t, l = _crop_offset(big[r, ..., 0], cropped[..., 0])
        shown = tf.image.resize(cropped[None], [size, size], method="area").numpy()[0]
        row.append((shown, f"crop {crop_size} at {t},{l}"))
        row.append((trained[r], "train pipeline"))
        for img, text in row:
            tiles.append(np.clip(img[..., 0], 0.0, 1.0))
            labels.append(text)
    return np.stack(tiles), labels, len(AUGMENTATION_COLUMNS)


def write_gallery(out_dir, data_root=None) -> list:
    """Writes rendering.png and augmentation.png into out_dir; returns their paths."""
    root = data_root or shared_data_dir()
    if root is None:
        raise FileNotFoundError("no shared data folder found; pass --data_dir or set SKETCHTF_DATA")
    examples = load_examples(root)
    tiles, labels, ncols = rendering_tiles(examples, stack_example=len(examples) - 1)
    paths = [save_png(os.path.join(out_dir, "rendering.png"), image_grid(tiles, ncols, labels))]
    pick = [e for e in examples if e.name in ("Eiffel Tower", "hamburger", f"raw {RAW_CLASS}", "TU alarm clock")]
    tiles, labels, ncols = augmentation_tiles(pick)
    paths.append(save_png(os.path.join(out_dir, "augmentation.png"), image_grid(tiles, ncols, labels)))
    return paths


def main(argv):
    del argv
    from absl import flags
    for p in write_gallery(flags.FLAGS.out_dir, flags.FLAGS.data_dir or None):
        print(p)


if __name__ == "__main__":
    from absl import app, flags
    flags.DEFINE_string("out_dir", "docs", "Where rendering.png and augmentation.png go.")
    flags.DEFINE_string("data_dir", "", "The shared data folder (default: $SKETCHTF_DATA or ../shared/data).")
    app.run(main)
