"""What an evaluation leaves behind: metrics.json, report.md, and images for TensorBoard.

Everything here is a pure function of a metrics dict (sketchtf.evaluation.metrics.
classification_metrics) or of numpy arrays: no TensorFlow, no global matplotlib
state (figures are drawn on their own Agg canvas, never through pyplot), so it
runs headless, in tests, and inside Keras callbacks alike.

TensorBoard use:
    tf.summary.image("confusion", confusion_matrix_figure(cm, names)[None], step)
    tf.summary.text("per_class", per_class_table_markdown(metrics), step)
    tf.summary.image("samples", image_grid(batch, ncols=8, labels=names)[None], step)
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "write_report", "report_markdown", "per_class_table_markdown",
    "confusion_table_markdown", "short_names", "confusion_matrix_figure",
    "image_grid", "save_png",
]

_REQUIRED = ("num_examples", "top1", "top5", "macro_precision", "macro_recall", "macro_f1",
             "per_class", "confusion", "class_names")
_PER_CLASS_FIELDS = ("accuracy", "precision", "recall", "f1", "support")

# Beyond this many classes a markdown confusion table is unreadable (TU-Berlin has
# 250); report.md then lists the most confused pairs and leaves the full matrix
# to metrics.json and the TensorBoard image.
MAX_MARKDOWN_CONFUSION = 30


# ---------------------------------------------------------------------------
# Checks and formatting helpers

def _check_metrics(metrics: Mapping) -> None:
    """Raises ValueError naming the key when metrics is not classification_metrics-shaped."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics: expected a dict, got {type(metrics).__name__}")
    missing = [k for k in _REQUIRED if k not in metrics]
    if missing:
        raise ValueError(f"metrics: missing key(s) {missing} (expected the dict of "
                         "sketchtf.evaluation.metrics.classification_metrics)")
    names = list(metrics["class_names"])
    k = len(names)
    cm = np.asarray(metrics["confusion"])
    if cm.shape != (k, k):
        raise ValueError(f"metrics['confusion']: shape {cm.shape} does not match {k} class_names")
    for name in names:
        row = metrics["per_class"].get(name)
        if row is None:
            raise ValueError(f"metrics['per_class']: no entry for class {name!r}")
        lack = [f for f in _PER_CLASS_FIELDS if f not in row]
        if lack:
            raise ValueError(f"metrics['per_class'][{name!r}]: missing {lack}")


def _pct(x) -> str:
    return f"{100.0 * float(x):.2f}%"


def _md(text) -> str:
    """Cell text safe inside a markdown table row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fmt_value(key: str, v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if "command" in key.lower():
        return "`" + str(v).replace("`", "'").replace("\n", " ") + "`"
    return _md(v)


def _jsonable(value, where: str):
    """Plain JSON types from numpy scalars/arrays and paths; a clear error otherwise."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{where}: {f} is not valid JSON")
        return f
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where}: cannot write {type(value).__name__} to JSON")


def _write_atomic(path: pathlib.Path, text: str) -> None:
    # A run killed mid-write (the crash-resume scenario) leaves the old file, not half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------
# Markdown

def short_names(names: Sequence[str], width: int = 8) -> list[str]:
    """Names cut to `width` characters, made unique with a ~index suffix where cuts collide."""
    cut = [str(n) if len(str(n)) <= width else str(n)[:width - 1] + "…" for n in names]
    counts = {c: cut.count(c) for c in cut}
    return [c if counts[c] == 1 else f"{c}~{i}" for i, c in enumerate(cut)]


def per_class_table_markdown(metrics: Mapping) -> str:
    """Per-class markdown table, worst accuracy first (for report.md and tf.summary.text).

    Classes without test examples go last, marked: their zeros are a convention.
    """
    _check_metrics(metrics)
    rows = [(name, metrics["per_class"][name]) for name in metrics["class_names"]]
    rows.sort(key=lambda r: (r[1]["support"] == 0, r[1]["accuracy"]))
    lines = ["| class | accuracy | precision | recall | F1 | support |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        acc = _pct(r["accuracy"]) if r["support"] else "n/a (no examples)"
        lines.append(f"| {_md(name)} | {acc} | {_pct(r['precision'])} | {_pct(r['recall'])} "
                     f"| {_pct(r['f1'])} | {int(r['support'])} |")
    return "\n".join(lines)


def _confused_pairs(metrics: Mapping, limit: int) -> list[tuple[str, str, int]]:
    names = list(metrics["class_names"])
    cm = np.asarray(metrics["confusion"], dtype=np.int64).copy()
    np.fill_diagonal(cm, 0)
    flat = np.argsort(-cm, axis=None, kind="stable")[:limit]
    pairs = [(names[i // len(names)], names[i % len(names)], int(cm.flat[i])) for i in flat]
    return [p for p in pairs if p[2] > 0]


def confusion_table_markdown(metrics: Mapping, max_classes: int = MAX_MARKDOWN_CONFUSION) -> str:
    """Confusion matrix as a markdown table (rows = true, columns = predicted), short names.

    With more than `max_classes` classes, a note pointing to metrics.json instead.
    """
    _check_metrics(metrics)
    names = list(metrics["class_names"])
    if len(names) > max_classes:
        return (f"{len(names)} classes: too many for a readable table; the full matrix is "
                "`confusion` in metrics.json (rows = true, columns = predicted).")
    short = [_md(s) for s in short_names(names)]
    cm = np.asarray(metrics["confusion"], dtype=np.int64)
    lines = ["| true \\ predicted | " + " | ".join(short) + " |",
             "|---|" + "---:|" * len(names)]
    for i, s in enumerate(short):
        cells = [f"**{v}**" if i == j else str(v) for j, v in enumerate(cm[i])]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(metrics: Mapping, *, title: str, extra: Mapping | None = None) -> str:
    """The text of report.md (see write_report)."""
    _check_metrics(metrics)
    k = metrics.get("top5_k", 5)
    head = [
        f"# {title}", "",
        "| metric | value |", "|---|---:|",
        f"| top-1 accuracy | {_pct(metrics['top1'])} |",
        f"| top-{k} accuracy | {_pct(metrics['top5'])} |",
        f"| macro precision | {_pct(metrics['macro_precision'])} |",
        f"| macro recall | {_pct(metrics['macro_recall'])} |",
        f"| macro F1 | {_pct(metrics['macro_f1'])} |",
        f"| examples | {int(metrics['num_examples']):,} |",
    ]
    if "worst_class" in metrics:
        w = metrics["worst_class"]
        head.append(f"| worst class | {_md(w['name'])} ({_pct(w['accuracy'])}) |")
    parts = ["\n".join(head),
             "Macro = unweighted mean over classes; a class never predicted has precision 0."]
    if extra:
        rows = ["## Run", "", "| key | value |", "|---|---|"]
        rows += [f"| {_md(key)} | {_fmt_value(str(key), v)} |" for key, v in extra.items()]
        parts.append("\n".join(rows))
    parts.append("## Per class (worst accuracy first)\n\n" + per_class_table_markdown(metrics))
    parts.append("## Confusion matrix (rows = true, columns = predicted)\n\n"
                 + confusion_table_markdown(metrics))
    pairs = _confused_pairs(metrics, 10)
    if pairs:
        rows = ["## Most confused pairs", "", "| true | predicted as | count |", "|---|---|---:|"]
        rows += [f"| {_md(t)} | {_md(p)} | {c} |" for t, p, c in pairs]
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"


def write_report(workdir, metrics: Mapping, *, title: str,
                 extra: Mapping | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes <workdir>/metrics.json (indent 2) and <workdir>/report.md; returns both paths.

    metrics.json is `metrics` itself, plus `extra` (params, epochs, wall time,
    command, ...) under the key "extra" when given, so a results table can be
    built from the JSON alone. Both files are replaced atomically.
    """
    _check_metrics(metrics)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    payload = dict(metrics)
    if extra:
        payload["extra"] = {**dict(payload.get("extra") or {}), **dict(extra)}
    payload = _jsonable(payload, "metrics")
    json_path, md_path = workdir / "metrics.json", workdir / "report.md"
    _write_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    _write_atomic(md_path, report_markdown(metrics, title=title, extra=payload.get("extra")))
    return json_path, md_path


# ---------------------------------------------------------------------------
# Images

def confusion_matrix_figure(cm, class_names: Sequence[str], normalize: bool = True,
                            *, title: str | None = None) -> np.ndarray:
    """Confusion matrix heat map as uint8 RGB [H, W, 3] (add a batch dim for tf.summary.image).

    normalize=True divides each row by its true-class count (rows without
    examples stay 0), so the diagonal reads as per-class accuracy. Cell values
    are printed up to 15 classes, tick labels up to 60.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = np.asarray(cm, dtype=np.float64)
    names = [str(n) for n in class_names]
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix: expected square [K, K], got shape {c.shape}")
    if c.shape[0] != len(names):
        raise ValueError(f"confusion matrix is {c.shape[0]}x{c.shape[0]} but {len(names)} class_names")
    k = len(names)
    if normalize:
        rows = c.sum(axis=1, keepdims=True)
        c = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
    side = float(np.clip(1.5 + 0.45 * k, 4.0, 12.0))  # inches; 100 dpi -> 400..1200 px
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(float(c.max()), 1.0)
    im = ax.imshow(c, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion (row-normalized)" if normalize else "confusion (counts)"))
    if k <= 60:
        short = short_names(names, 12)
        ax.set_xticks(range(k), short, rotation=90, fontsize=max(4, 10 - k // 10))
        ax.set_yticks(range(k), short, fontsize=max(4, 10 - k // 10))
    if k <= 15:
        for i in range(k):
            for j in range(k):
                text = f"{c[i, j]:.2f}" if normalize else f"{int(c[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if c[i, j] > 0.6 * vmax else "black")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: expected float in [0, 1] or uint8, got dtype {a.dtype}")
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"{what}: float values must lie in [0, 1] (got min {np.nanmin(a):.4g}, "
                         f"max {np.nanmax(a):.4g}); scale or clip first")
    return np.round(a * 255.0).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def image_grid(images, ncols: int, labels: Sequence[str] | None = None, *,
               pad: int = 2, invert: bool = False) -> np.ndarray:
    """Tiles N images into one uint8 RGB [H', W', 3], with optional text under each tile.

    images: [N, H, W] or [N, H, W, C] with C in {1, 3}; float in [0, 1] or uint8.
    invert=True draws ink dark on light (sketches here are ink 1 on 0).
    Tiles are separated by `pad` px of mid-grey so both ink conventions stay
    distinguishable; label text is cut to the tile width.
    """
    from PIL import Image, ImageDraw

    a = np.asarray(images)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"images: expected [N, H, W] or [N, H, W, 1|3], got shape {np.asarray(images).shape}"
                         " (for 6-channel stroke-order input pick channels first)")
    n, h, w, _ = a.shape
    if n == 0:
        raise ValueError("images: empty batch")
    if isinstance(ncols, bool) or int(ncols) != ncols or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: {len(labels)} given for {n} images")
    a = _to_uint8(a, "images")
    if invert:
        a = 255 - a
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    font_px = int(np.clip(w // 6, 8, 14))
    label_h = font_px + 4 if labels is not None else 0
    cell_h, cell_w = h + label_h, w
    grid = np.full((nrows * (cell_h + pad) + pad, ncols * (cell_w + pad) + pad, 3), 128, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y0, x0 = pad + r * (cell_h + pad), pad + col * (cell_w + pad)
        grid[y0:y0 + h, x0:x0 + w] = a[i]
        if labels is not None:
            grid[y0 + h:y0 + cell_h, x0:x0 + w] = 255
    if labels is not None:
        img = Image.fromarray(grid)
        draw = ImageDraw.Draw(img)
        font = _font(font_px)
        for i, text in enumerate(labels):
            if text is None:
                continue
            text = str(text)
            while text and draw.textlength(text, font=font) > w - 2:
                text = text[:-1]
            r, col = divmod(i, ncols)
            draw.text((pad + col * (cell_w + pad) + 1, pad + r * (cell_h + pad) + h + 1),
                      text, fill=(0, 0, 0), font=font)
        grid = np.asarray(img)
    return grid


def save_png(path, array) -> pathlib.Path:
    """Writes uint8 (or float in [0, 1]) [H, W], [H, W, 1|3|4] as PNG; creates parent dirs."""
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(f"save_png {path}: expected [H, W] or [H, W, 1|3|4], got shape {np.asarray(array).shape}")
    a = _to_uint8(a, f"save_png {path}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="PNG")
    return path
