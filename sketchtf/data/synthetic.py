"""The offline default data set: procedural stroke sketches, no files needed.

Twelve visually distinct classes drawn the way people doodle them: several
strokes in a plausible order, shaky lines (smooth low-frequency noise plus a
little jitter), overshoots, uneven proportions, random placement on a 256 px
canvas (Quick Draw's simplified frame). Deterministic per (seed, split, index):
a record's drawing depends only on those, so the train and test splits never
share a drawing and adding classes does not change existing ones.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Iterator

import numpy as np

from sketchtf.data.records import Sketch

_SHAPES: dict[str, Callable] = {}


def _shape(name):
    def deco(fn):
        _SHAPES[name] = fn
        return fn
    return deco


def _line(p, q, n=12):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.asarray(p, float) * (1 - t) + np.asarray(q, float) * t


def _poly(pts, closed=True, n=10):
    pts = list(pts) + ([pts[0]] if closed else [])
    return np.concatenate([_line(pts[i], pts[i + 1], n)[(1 if i else 0):] for i in range(len(pts) - 1)])


def _arc(cx, cy, rx, ry, a0, a1, n=40):
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


@_shape("circle")
def _circle(r):
    a0 = r.uniform(0, 2 * math.pi)
    return [_arc(0, 0, 1, r.uniform(0.8, 1.2), a0, a0 + 2 * math.pi + r.uniform(0, 0.4))]


@_shape("square")
def _square(r):
    h = r.uniform(0.75, 1.25)
    return [_poly([(-1, -h), (1, -h), (1, h), (-1, h)])]


@_shape("triangle")
def _triangle(r):
    return [_poly([(r.uniform(-0.3, 0.3), -1), (1, 0.9), (-1, 0.9)])]


@_shape("star")
def _star(r):
    k, rot = 5, r.uniform(0, 2 * math.pi / 5)
    pts = [(math.cos(rot + i * 4 * math.pi / k), math.sin(rot + i * 4 * math.pi / k)) for i in range(k)]
    return [_poly(pts)]


@_shape("house")
def _house(r):
    w, roof = r.uniform(0.7, 1.0), r.uniform(0.5, 0.9)
    body = _poly([(-w, 0), (w, 0), (w, 1), (-w, 1)])
    top = _poly([(-w - 0.1, 0), (0, -roof), (w + 0.1, 0)], closed=False)
    dx = r.uniform(-0.4, 0.2)
    door = _poly([(dx, 1), (dx, 0.5), (dx + 0.25, 0.5), (dx + 0.25, 1)], closed=False)
    return [body, top, door]


@_shape("sun")
def _sun(r):
    rad, n = r.uniform(0.35, 0.5), int(r.integers(6, 11))
    out = [_arc(0, 0, rad, rad, 0, 2 * math.pi + 0.2)]
    for i in range(n):
        a = 2 * math.pi * i / n + r.uniform(-0.15, 0.15)
        out.append(_line((rad * 1.3 * math.cos(a), rad * 1.3 * math.sin(a)), (math.cos(a), math.sin(a)), 5))
    return out


@_shape("zigzag")
def _zigzag(r):
    n = int(r.integers(4, 8))
    amp = r.uniform(0.3, 0.7)
    return [_poly([(-1 + 2 * i / n, amp * (1 if i % 2 else -1)) for i in range(n + 1)], closed=False)]


@_shape("spiral")
def _spiral(r):
    turns = r.uniform(2.0, 3.5)
    a = np.linspace(0, 2 * math.pi * turns, 120)
    rad = a / a[-1]
    return [np.stack([rad * np.cos(a), rad * np.sin(a)], 1)]


@_shape("heart")
def _heart(r):
    t = np.linspace(0, 2 * math.pi, 80)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [np.stack([x, y], 1) / 16.0]


@_shape("arrow")
def _arrow(r):
    head = r.uniform(0.3, 0.5)
    return [_line((-1, 0), (1, 0), 20), _poly([(1 - head, -head), (1, 0), (1 - head, head)], closed=False)]


@_shape("cloud")
def _cloud(r):
    # A row of bumps over a flat base, drawn as one closed stroke.
    n = int(r.integers(3, 6))
    xs = np.linspace(-1, 1, n + 1)
    bumps = [_arc((xs[i] + xs[i + 1]) / 2, 0, (xs[i + 1] - xs[i]) / 2, r.uniform(0.3, 0.6),
                  math.pi, 2 * math.pi, 14) for i in range(n)]
    top = np.concatenate(bumps)
    base = _line(top[-1], top[0], 12) + [0, 0.05]
    return [np.concatenate([top, base])]


@_shape("ladder")
def _ladder(r):
    w, n = r.uniform(0.35, 0.6), int(r.integers(3, 7))
    out = [_line((-w, -1), (-w, 1), 20), _line((w, -1), (w, 1), 20)]
    for i in range(n):
        y = -0.8 + 1.6 * i / max(n - 1, 1)
        out.append(_line((-w, y), (w, y), 6))
    return out


CLASSES = tuple(sorted(_SHAPES))


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}/{split}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _smooth_noise(r, n, scale):
    """Low-frequency wander: a few random sinusoids along the stroke."""
    t = np.linspace(0, 1, n)
    out = np.zeros((n, 2))
    for _ in range(3):
        f, ph = r.uniform(0.5, 3.0), r.uniform(0, 2 * math.pi, 2)
        out += np.stack([np.sin(2 * math.pi * f * t + ph[0]), np.sin(2 * math.pi * f * t + ph[1])], 1)
    return out * scale / 3.0


def draw(label: str, r: np.random.Generator) -> list:
    """One hand-drawn-looking sketch of `label` on a 256 px canvas."""
    strokes = _SHAPES[label](r)
    ang = r.uniform(-0.35, 0.35)
    sx, sy = r.uniform(0.75, 1.25, 2)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    size, centre = r.uniform(60, 110), r.uniform(100, 156, 2)
    if r.random() < 0.5:
        r.shuffle(strokes)  # people do not always draw parts in one order
    out = []
    for s in strokes:
        s = (s * [sx, sy]) @ rot.T
        s = s + _smooth_noise(r, len(s), r.uniform(0.02, 0.08)) + r.normal(0, 0.01, s.shape)
        s = s * size + centre
        # Subsample unevenly, as a simplifier would, but keep both ends.
        keep = np.sort(np.unique(np.concatenate([[0, len(s) - 1], r.choice(len(s), max(2, len(s) // 3))])))
        out.append(np.clip(s[keep], 0, 255).astype(np.float32))
    return out


def generate(num_per_class: int, *, split: str = "train", seed: int = 0,
             classes=CLASSES) -> Iterator[Sketch]:
    """Yields num_per_class sketches of each class, interleaved by class."""
    unknown = set(classes) - set(_SHAPES)
    if unknown:
        raise ValueError(f"unknown synthetic classes {sorted(unknown)}; known: {list(CLASSES)}")
    for i in range(num_per_class):
        for label in classes:
            r = _rng(seed, f"{split}/{label}", i)
            yield Sketch(label=label, id=f"synthetic/{split}/{label}/{i}", strokes=draw(label, r))
