"""The one record type every reader yields, and the errors readers raise.

Coordinate convention: x to the right, y down (screen / Quick Draw / SVG), any
units; the renderer normalizes each sketch to the canvas.
Ink convention (images): float in [0, 1] or uint8, ink = 1 (255) on background
0, as Quick Draw's numpy bitmaps. Readers of black-on-white images invert.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import numpy as np


class SketchDataError(ValueError):
    """Bad input. The message names the file and the line, key or field."""

    def __init__(self, source: str, where: str | int | None, message: str):
        self.source, self.where = str(source), where
        loc = f"{source}" if where is None else f"{source}:{where}"
        super().__init__(f"{loc}: {message}")


# Coordinates beyond this are treated as corrupt (Quick Draw raw canvases are a
# few thousand px at most); it also keeps the renderer's float math finite.
MAX_ABS_COORD = 1e6


@dataclasses.dataclass
class Sketch:
    """One drawing. Exactly one of `strokes` / `image` is set.

    strokes: list of float32 arrays (n_i, 2) of absolute (x, y), in drawing order.
    times:   optional list of float32 arrays (n_i,), ms since the first point.
    image:   uint8 (H, W), ink 255 on 0 (for bitmap / PNG sources).
    label:   class name; `id`: stable id within its source (file:line, key_id).
    """
    label: str
    id: str
    strokes: Optional[list] = None
    times: Optional[list] = None
    image: Optional[np.ndarray] = None

    @property
    def num_points(self) -> int:
        return int(sum(len(s) for s in self.strokes)) if self.strokes else 0


def validate_strokes(strokes: Sequence[np.ndarray], source: str, where) -> list:
    """Checks strokes; returns float32 (n, 2) arrays. Raises SketchDataError."""
    out = []
    if len(strokes) == 0:
        raise SketchDataError(source, where, "empty drawing (no strokes)")
    for k, s in enumerate(strokes):
        a = np.asarray(s, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
            raise SketchDataError(source, where, f"stroke {k}: expected (n>=1, 2) points, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise SketchDataError(source, where, f"stroke {k}: non-finite coordinate (NaN/inf)")
        if np.abs(a).max() > MAX_ABS_COORD:
            raise SketchDataError(source, where, f"stroke {k}: coordinate beyond +-{MAX_ABS_COORD:g}")
        out.append(a.astype(np.float32))
    return out


class SkipCounter:
    """Counts records skipped with skip_bad=True, so no drop is silent.

    `filtered` counts good records a reader left out on request (e.g.
    recognized_only -> filtered["unrecognized"]), by reason; they are not
    errors and do not count in len().
    """

    def __init__(self):
        self.errors: list[SketchDataError] = []
        self.filtered: collections.Counter = collections.Counter()

    def add(self, err: SketchDataError):
        self.errors.append(err)

    def add_filtered(self, reason: str, n: int = 1):
        self.filtered[reason] += n

    def __len__(self):
        return len(self.errors)

    def report(self) -> str:
        if not self.errors:
            text = "0 bad records skipped"
        else:
            head = "\n  ".join(str(e) for e in self.errors[:5])
            more = f"\n  ... and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
            text = f"{len(self.errors)} bad records skipped:\n  {head}{more}"
        if self.filtered:
            text += "\n" + ", ".join(f"{n} left out ({r})" for r, n in sorted(self.filtered.items()))
        return text


def handle_bad(err: SketchDataError, skip_bad: bool, skipped: Optional[SkipCounter]):
    """Readers call this per bad record: raise it, or count it when skip_bad."""
    if not skip_bad:
        raise err
    if skipped is None:
        raise ValueError("skip_bad=True needs a SkipCounter so skips are reported") from err
    skipped.add(err)
