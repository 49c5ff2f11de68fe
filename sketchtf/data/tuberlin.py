"""TU-Berlin sketch readers: original SVGs (stroke order kept), PNG folders,
and the per-stroke point-list `.npz` derivative.

SVGs are parsed with defusedxml, so entity tricks (billion laughs) and external
references are refused, and files above MAX_SVG_BYTES are refused before
parsing. Coordinates are in the root element's user space (TU-Berlin: the
800x800 viewBox) after every enclosing transform.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Iterable, Iterator, Optional, Sequence, Union

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np

from sketchtf.data.image_folder import list_classes, read_image_folder
from sketchtf.data.quickdraw import npz_array, open_npz
from sketchtf.data.records import (
    SkipCounter, Sketch, SketchDataError, handle_bad, validate_strokes)

PathLike = Union[str, os.PathLike]

# TU-Berlin SVGs are ~10 KB; this bounds memory and parse time on hostile input.
MAX_SVG_BYTES = 16 * 1024 * 1024
# Elements whose contents are not drawn where they stand.
_NOT_DRAWN = frozenset({"defs", "symbol", "clipPath", "mask", "pattern", "marker",
                        "metadata", "title", "desc", "style", "script"})

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(rf"([A-Za-z])|({_NUM})|[\s,]+")
_NUM_RE = re.compile(_NUM)
_TRANSFORM = re.compile(r"[\s,]*([A-Za-z]+)\s*\(([^()]*)\)[\s,]*")
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "Z": 0}


# ----------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------

def cubic_chain(start: np.ndarray, ctrl: np.ndarray, samples: int) -> np.ndarray:
    """Points of consecutive cubic Béziers, `samples` per segment, start excluded.

    start: (2,); ctrl: (k, 3, 2) = control 1, control 2, end of each segment,
    each segment starting where the previous one ended.
    """
    ctrl = np.asarray(ctrl, dtype=np.float64).reshape(-1, 3, 2)
    if len(ctrl) == 0:
        return np.zeros((0, 2))
    p0 = np.concatenate([np.asarray(start, np.float64)[None], ctrl[:-1, 2]])
    t = (np.arange(1, samples + 1) / samples)[None, :, None]
    u = 1.0 - t
    pts = (u ** 3 * p0[:, None] + 3 * u * u * t * ctrl[:, None, 0]
           + 3 * u * t * t * ctrl[:, None, 1] + t ** 3 * ctrl[:, None, 2])
    return pts.reshape(-1, 2)


def _path_commands(d: str):
    """Tokenizes path data into (command letter, [numbers]) groups."""
    groups = []
    pos = 0
    while pos < len(d):
        m = _PATH_TOKEN.match(d, pos)
        if m is None:
            raise ValueError(f"unexpected character {d[pos]!r} at offset {pos} of path data")
        pos = m.end()
        if m.group(1):
            letter = m.group(1)
            if letter.upper() not in _ARITY:
                raise ValueError(f"unsupported path command {letter!r} (supported: M L H V C Z)")
            groups.append((letter, []))
        elif m.group(2):
            if not groups:
                raise ValueError("path data must start with a command (M/m)")
            groups[-1][1].append(float(m.group(2)))
    for letter, nums in groups:
        arity = _ARITY[letter.upper()]
        if arity == 0 and nums:
            raise ValueError(f"{letter!r} takes no numbers, got {len(nums)}")
        if arity and (not nums or len(nums) % arity):
            raise ValueError(f"{letter!r} needs a multiple of {arity} numbers, got {len(nums)}")
    return groups


def path_to_polylines(d: str, samples_per_curve: int = 8) -> list[np.ndarray]:
    """SVG path data -> one float64 (n, 2) polyline per drawn subpath.

    Supports M/m, L/l, H/h, V/v, C/c, Z/z with implicit repeats (extra pairs
    after M are line-tos). Cubics are flattened to `samples_per_curve` points
    per segment. A subpath that is only a move-to draws nothing and is dropped.
    Raises ValueError on malformed data.
    """
    out: list[np.ndarray] = []
    pts: Optional[list] = None  # pieces of the open subpath; None when none is open
    drew = False
    cur = np.zeros(2)
    start = np.zeros(2)

    def close_subpath():
        if pts is not None and drew:
            out.append(np.concatenate(pts))

    groups = _path_commands(d)
    if groups and groups[0][0] not in "Mm":
        raise ValueError(f"path data must start with a move-to (M/m), not {groups[0][0]!r}")
    with np.errstate(all="ignore"):  # overflowing input becomes inf; validated later
        for letter, nums in groups:
            cmd, rel = letter.upper(), letter.islower()
            a = np.asarray(nums, dtype=np.float64)
            if cmd == "M":
                pairs = a.reshape(-1, 2)
                close_subpath()
                cur = pairs[0] + cur if rel else pairs[0]
                start = cur
                pts, drew = [cur[None]], False
                if len(pairs) == 1:
                    continue
                cmd, a = "L", pairs[1:].reshape(-1)
            if pts is None:
                # After Z the next subpath starts at the closed one's start.
                pts, drew = [start[None]], False
            if cmd == "Z":
                if not np.array_equal(cur, start):
                    pts.append(start[None])
                drew = True
                close_subpath()
                pts, cur = None, start
                continue
            if cmd == "L":
                new = a.reshape(-1, 2)
                new = cur + np.cumsum(new, axis=0) if rel else new
            elif cmd == "H":
                xs = cur[0] + np.cumsum(a) if rel else a
                new = np.stack([xs, np.full_like(xs, cur[1])], axis=1)
            elif cmd == "V":
                ys = cur[1] + np.cumsum(a) if rel else a
                new = np.stack([np.full_like(ys, cur[0]), ys], axis=1)
            else:  # C
                c = a.reshape(-1, 3, 2)
                if rel:
                    # Each segment is relative to the end of the previous one.
                    ends = cur + np.cumsum(c[:, 2], axis=0)
                    seg_start = np.concatenate([cur[None], ends[:-1]])
                    c = c + seg_start[:, None]
                new = cubic_chain(cur, c, samples_per_curve)
                cur = c[-1, 2]
                pts.append(new)
                drew = True
                continue
            pts.append(new)
            cur = new[-1]
            drew = True
    close_subpath()
    return out


def _numbers(text: str) -> list[float]:
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    for p in parts:
        if not _NUM_RE.fullmatch(p):
            raise ValueError(f"not a number: {p!r}")
    return [float(p) for p in parts]


def parse_transform(text: Optional[str]) -> np.ndarray:
    """SVG transform list -> 3x3 matrix (applied right to left to points).

    Supports matrix, translate, scale, rotate (with optional centre), skewX,
    skewY. Raises ValueError on anything else.
    """
    m = np.eye(3)
    if not text or not text.strip():
        return m
    pos = 0
    while pos < len(text):
        mt = _TRANSFORM.match(text, pos)
        if mt is None:
            raise ValueError(f"bad transform {text!r:.80} at offset {pos}")
        pos = mt.end()
        name, v = mt.group(1), _numbers(mt.group(2))
        n = len(v)
        if name == "matrix" and n == 6:
            t = np.array([[v[0], v[2], v[4]], [v[1], v[3], v[5]], [0, 0, 1]])
        elif name == "translate" and n in (1, 2):
            t = np.array([[1, 0, v[0]], [0, 1, v[1] if n == 2 else 0.0], [0, 0, 1]])
        elif name == "scale" and n in (1, 2):
            t = np.diag([v[0], v[1] if n == 2 else v[0], 1.0])
        elif name == "rotate" and n in (1, 3):
            a = np.deg2rad(v[0])
            t = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
            if n == 3:
                shift = np.array([[1, 0, v[1]], [0, 1, v[2]], [0, 0, 1]])
                back = np.array([[1, 0, -v[1]], [0, 1, -v[2]], [0, 0, 1]])
                t = shift @ t @ back
        elif name == "skewX" and n == 1:
            t = np.array([[1, np.tan(np.deg2rad(v[0])), 0], [0, 1, 0], [0, 0, 1]])
        elif name == "skewY" and n == 1:
            t = np.array([[1, 0, 0], [np.tan(np.deg2rad(v[0])), 1, 0], [0, 0, 1]])
        else:
            raise ValueError(f"unsupported transform {name}({mt.group(2).strip()})")
        with np.errstate(all="ignore"):
            m = m @ t
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):  # non-finite results are rejected by validate_strokes
        return pts @ m[:2, :2].T + m[:2, 2]


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


# ----------------------------------------------------------------------------
# SVG
# ----------------------------------------------------------------------------

def parse_svg_strokes(path: PathLike, *, samples_per_curve: int = 8) -> list[np.ndarray]:
    """One SVG file -> float32 (n, 2) strokes in document order.

    Each drawn subpath of each <path> is one stroke (TU-Berlin: one path, one
    subpath per stroke). Every enclosing transform (nested <g>, the path's own)
    is applied. Raises SketchDataError naming the file and the XML line or the
    path element.
    """
    if samples_per_curve < 1:
        raise ValueError(f"samples_per_curve must be >= 1, got {samples_per_curve}")
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_SVG_BYTES:
        raise SketchDataError(path, None, f"{size} bytes is over the {MAX_SVG_BYTES}-byte SVG limit")
    with open(path, "rb") as f:
        data = f.read()
    try:
        root = DET.fromstring(data)
    except defusedxml.DefusedXmlException as e:
        raise SketchDataError(path, None, f"unsafe XML refused ({type(e).__name__}): {e}") from None
    except ET.ParseError as e:
        raise SketchDataError(path, e.position[0], f"not well-formed XML: {e}") from None
    except (ValueError, LookupError, UnicodeError, RecursionError) as e:
        raise SketchDataError(path, None, f"unparsable XML: {type(e).__name__}: {e}") from None
    if _local(root.tag) != "svg":
        raise SketchDataError(path, None, f"root element is <{_local(root.tag) or root.tag}>, not <svg>")

    strokes: list[np.ndarray] = []
    n_path = 0
    # Explicit stack (document order): deep nesting cannot hit Python's recursion limit.
    stack = [(root, np.eye(3))]
    while stack:
        elem, parent = stack.pop()
        tag = _local(elem.tag)
        if tag in _NOT_DRAWN:
            continue
        where = f"<{tag}> #{n_path}" if tag == "path" else f"<{tag}>"
        try:
            with np.errstate(all="ignore"):  # inf/NaN are rejected by validate_strokes
                m = parent @ parse_transform(elem.get("transform"))
        except ValueError as e:
            raise SketchDataError(path, where, str(e)) from None
        if tag == "path":
            n_path += 1
            try:
                lines = path_to_polylines(elem.get("d") or "", samples_per_curve)
            except ValueError as e:
                pid = elem.get("id")
                raise SketchDataError(path, where, (f"id={pid!r}: " if pid else "") + str(e)) from None
            strokes.extend(_apply(m, p) for p in lines)
        stack.extend((child, m) for child in reversed(list(elem)))
    return validate_strokes(strokes, path, None)


def _natural(name: str):
    stem = os.path.splitext(name)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _class_tree(root_or_files, suffix: str, classes: Optional[Iterable[str]]) -> list[tuple[str, str]]:
    """[(class, file)]: root/<class>/*<suffix> (sorted, numeric ids in number
    order), or the given files with their parent folder as class."""
    keep = None if classes is None else set(classes)
    if isinstance(root_or_files, (str, os.PathLike)) and os.path.isdir(root_or_files):
        root = os.fspath(root_or_files)
        names = list_classes(root)
        if keep is not None:
            missing = sorted(keep - set(names))
            if missing:
                raise SketchDataError(root, None, f"no folder for classes {missing}")
            names = sorted(keep)
        out = []
        for c in names:
            folder = os.path.join(root, c)
            files = sorted((n for n in os.listdir(folder)
                            if n.lower().endswith(suffix) and not n.startswith(".")), key=_natural)
            out.extend((c, os.path.join(folder, n)) for n in files)
        return out
    files = [root_or_files] if isinstance(root_or_files, (str, os.PathLike)) else root_or_files
    out = [(os.path.basename(os.path.dirname(os.path.abspath(f))), os.fspath(f)) for f in files]
    return [(c, f) for c, f in out if keep is None or c in keep]


def read_tuberlin_svg(root_or_files: Union[PathLike, Sequence[PathLike]], *,
                      classes: Optional[Iterable[str]] = None, samples_per_curve: int = 8,
                      skip_bad: bool = False, skipped: Optional[SkipCounter] = None
                      ) -> Iterator[Sketch]:
    """root/<class>/<id>.svg (or a list of such files) -> stroke records.

    label = folder name, id = "<class>/<stem>". A bad file is one bad record.
    """
    for cls, f in _class_tree(root_or_files, ".svg", classes):
        try:
            strokes = parse_svg_strokes(f, samples_per_curve=samples_per_curve)
        except SketchDataError as err:
            handle_bad(err, skip_bad, skipped)
            continue
        yield Sketch(label=cls, id=f"{cls}/{os.path.splitext(os.path.basename(f))[0]}",
                     strokes=strokes)


def read_tuberlin_png(root: PathLike, *, split: str = "train", test_fraction: float = 0.2,
                      seed: int = 0, size: Union[int, tuple[int, int], None] = None,
                      classes: Optional[Iterable[str]] = None,
                      extensions: Sequence[str] = (".png",), skip_bad: bool = False,
                      skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """TU-Berlin PNG folders (root/<class>/<id>.png, black ink on white) ->
    image records (ink 255 on 0); split as read_image_folder."""
    return read_image_folder(root, split=split, test_fraction=test_fraction, seed=seed,
                             ink="dark", size=size, extensions=extensions, classes=classes,
                             skip_bad=skip_bad, skipped=skipped)


# ----------------------------------------------------------------------------
# point-list npz (JoeyPoel/Sketch-RNN's TU-Berlin conversion)
# ----------------------------------------------------------------------------

_ARR_KEY = re.compile(r"arr_(\d+)")


def points_to_polyline(points: np.ndarray, samples_per_curve: int = 8) -> np.ndarray:
    """One stroke of the point-list format -> polyline.

    The points are the raw path's start point followed by each segment's
    control and end points. With 1 + 3k points (k >= 1) they are read as k
    cubic segments and flattened (`samples_per_curve` points each); otherwise
    (a straight "M x y L x y" path gives 2) as a polyline through the points.
    A 4-point stroke made of 3 line segments cannot be told apart from a cubic;
    TU-Berlin strokes are cubics.
    """
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    if n >= 4 and (n - 1) % 3 == 0:
        return np.concatenate([p[:1], cubic_chain(p[0], p[1:].reshape(-1, 3, 2), samples_per_curve)])
    return p


def _points_files(root_or_files, label, classes):
    if isinstance(root_or_files, (str, os.PathLike)) and os.path.isdir(root_or_files):
        root = os.fspath(root_or_files)
        direct = sorted((n for n in os.listdir(root) if n.endswith(".npz") and not n.startswith(".")),
                        key=_natural)
        if direct:  # a single class folder
            cls = label or os.path.basename(os.path.abspath(root))
            return [(cls, os.path.join(root, n)) for n in direct]
        return [(label or c, f) for c, f in _class_tree(root, ".npz", classes)]
    return [(label or c, f) for c, f in _class_tree(root_or_files, ".npz", None)]


def read_tuberlin_points_npz(root_or_files: Union[PathLike, Sequence[PathLike]], *,
                             label: Optional[str] = None, classes: Optional[Iterable[str]] = None,
                             samples_per_curve: int = 8, skip_bad: bool = False,
                             skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """The `tu_berlin_octopus_points_npz` format: one `.npz` per sketch with
    keys arr_0..arr_{k-1}, a float (m, 2) array per stroke in drawing order (see
    points_to_polyline). Loaded without pickle.

    root_or_files: a folder of .npz files (label = `label` or the folder name),
    a root of class folders (label = folder name; `classes` picks them), or
    files (label = `label` or the parent folder name). Coordinates are the raw
    SVG path space (the group transform was not applied by the converter).
    id = "<label>/<stem>".
    """
    for cls, f in _points_files(root_or_files, label, classes):
        try:
            strokes = _read_points(os.fspath(f), samples_per_curve)
        except SketchDataError as err:
            handle_bad(err, skip_bad, skipped)
            continue
        yield Sketch(label=cls, id=f"{cls}/{os.path.splitext(os.path.basename(f))[0]}",
                     strokes=strokes)


def _read_points(path: str, samples_per_curve: int) -> list[np.ndarray]:
    with open_npz(path, allow_pickle=False) as data:
        keys = {}
        for k in data.files:
            m = _ARR_KEY.fullmatch(k)
            if m is None:
                raise SketchDataError(path, k, "unexpected key (expected arr_0, arr_1, ...)")
            keys[int(m.group(1))] = k
        if sorted(keys) != list(range(len(keys))):
            gap = min(set(range(len(keys))) - set(keys))
            raise SketchDataError(path, f"arr_{gap}", "missing key (stroke keys must be arr_0..arr_k)")
        strokes = []
        for i in range(len(keys)):
            a = npz_array(data, path, keys[i])
            if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0 or a.dtype.kind not in "iuf":
                raise SketchDataError(path, keys[i],
                                      f"expected numeric (m>=1, 2) points, got {a.dtype} {a.shape}")
            if not np.all(np.isfinite(a)):
                raise SketchDataError(path, keys[i], "non-finite coordinate (NaN/inf)")
            strokes.append(points_to_polyline(a, samples_per_curve))
    return validate_strokes(strokes, path, None)
