"""Quick, Draw! readers: ndjson strokes, sketch-rnn stroke-3 .npz, numpy bitmaps.

All readers are generators of `Sketch` records. A bad record raises
SketchDataError naming the file and the 1-based line (ndjson) or key (npz/npy);
with skip_bad=True it is counted in the SkipCounter instead and reading goes on.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from sketchtf.data.records import (
    SkipCounter, Sketch, SketchDataError, handle_bad, validate_strokes)

PathLike = Union[str, os.PathLike]
Source = Union[PathLike, Sequence[PathLike]]

# A line longer than this is rejected without being held in memory whole (the
# longest line of the 9,570 raw drawings in ../shared is 37 KB).
MAX_LINE_BYTES = 16 * 1024 * 1024
_DRAIN_CHUNK = 1 << 20

# Kaggle / tutorial copies of Google's bitmaps are often named like this.
_BITMAP_PREFIX = "full_numpy_bitmap_"
BITMAP_SIDE = 28


def _stem(path: PathLike) -> str:
    name = os.path.basename(os.fspath(path))
    return name.rsplit(".", 1)[0] if "." in name else name


def _as_list(source: Source) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        return [os.fspath(source)]
    return [os.fspath(p) for p in source]


def _class_files(source: Source, suffix: str, classes: Optional[Iterable[str]],
                 name_of=_stem) -> tuple[list[str], bool]:
    """Files to read, sorted by class; and whether they came from a directory.

    For a directory, `classes` picks the files `<class><suffix>`; a missing one
    is an error (a typo would otherwise silently shrink the data set).
    """
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        directory = os.fspath(source)
        found = {name_of(n): os.path.join(directory, n) for n in os.listdir(directory)
                 if n.endswith(suffix) and not n.startswith(".")}
        if classes is None:
            return [found[c] for c in sorted(found)], True
        files = []
        for c in sorted(set(classes)):
            if c not in found:
                near = [k for k in found if k.lower() == c.lower()]
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise SketchDataError(directory, None, f"no file for class {c!r}{hint}")
            files.append(found[c])
        return files, True
    return _as_list(source), False


def list_ndjson_classes(directory: PathLike) -> list[str]:
    """Sorted class names: the stems of the `.ndjson` files in `directory`."""
    return sorted(_stem(n) for n in os.listdir(directory)
                  if n.endswith(".ndjson") and not n.startswith("."))


# ----------------------------------------------------------------------------
# ndjson
# ----------------------------------------------------------------------------

def _iter_lines(f, path: str, first_lineno: int = 1, end: Optional[int] = None):
    """Yields (lineno, bytes or SketchDataError) with bounded memory per line.

    Reads from f's position; with `end`, stops before a line starting at or
    after byte `end` (a chunk of a big file; first_lineno numbers its lines)."""
    lineno = first_lineno - 1
    limit = MAX_LINE_BYTES
    while True:
        if end is not None and f.tell() >= end:
            return
        line = f.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) > limit and not line.endswith(b"\n"):
            # Drain the rest of the line in chunks so the next line is read whole.
            while True:
                chunk = f.readline(_DRAIN_CHUNK)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield lineno, SketchDataError(path, lineno, f"line longer than {limit} bytes")
            continue
        yield lineno, line


def _numbers(v, path, lineno, what) -> np.ndarray:
    # JSON gives int/float/str/bool/None/list/dict; only int and float are coordinates
    # (numpy would happily turn "3" or True into a number).
    if not isinstance(v, list):
        raise SketchDataError(path, lineno, f"{what}: expected a list of numbers, got {type(v).__name__}")
    for x in v:
        if type(x) is not int and type(x) is not float:
            raise SketchDataError(path, lineno, f"{what}: expected numbers, got {type(x).__name__} {x!r:.40}")
    try:
        return np.asarray(v, dtype=np.float64)
    except OverflowError:
        raise SketchDataError(path, lineno, f"{what}: number too large") from None


def _parse_drawing(drawing, path, lineno, with_times):
    """Google's `drawing`: per stroke [xs, ys] (simplified) or [xs, ys, ts] (raw)."""
    if not isinstance(drawing, list):
        raise SketchDataError(path, lineno,
                              f"'drawing': expected a list of strokes, got {type(drawing).__name__}")
    strokes, times, timed = [], [], None
    for k, s in enumerate(drawing):
        if not isinstance(s, list) or len(s) not in (2, 3):
            shape = f"a list of {len(s)}" if isinstance(s, list) else type(s).__name__
            raise SketchDataError(path, lineno, f"stroke {k}: expected [xs, ys] or [xs, ys, ts], got {shape}")
        if timed is None:
            timed = len(s) == 3
        elif timed != (len(s) == 3):
            raise SketchDataError(path, lineno, f"stroke {k}: strokes mix [xs, ys] and [xs, ys, ts]")
        xs = _numbers(s[0], path, lineno, f"stroke {k} xs")
        ys = _numbers(s[1], path, lineno, f"stroke {k} ys")
        if len(xs) != len(ys):
            raise SketchDataError(path, lineno, f"stroke {k}: {len(xs)} xs but {len(ys)} ys")
        strokes.append(np.stack([xs, ys], axis=1) if len(xs) else np.zeros((0, 2)))
        if timed:
            ts = _numbers(s[2], path, lineno, f"stroke {k} ts")
            if len(ts) != len(xs):
                raise SketchDataError(path, lineno, f"stroke {k}: {len(ts)} times for {len(xs)} points")
            if not np.all(np.isfinite(ts)):
                raise SketchDataError(path, lineno, f"stroke {k}: non-finite time")
            times.append(ts.astype(np.float32))
    strokes = validate_strokes(strokes, path, lineno)
    return strokes, (times if timed and with_times else None)


def read_ndjson(source: Source, *, classes: Optional[Iterable[str]] = None,
                recognized_only: bool = False, with_times: bool = True,
                limit_per_class: Optional[int] = None, skip_bad: bool = False,
                skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """Streams Google Quick Draw ndjson (simplified or raw) as stroke records.

    source: a directory of `<class>.ndjson` files (read in sorted class order),
      a file, or a list of files (read in the given order).
    classes: for a directory, the files `<class>.ndjson` to read (Google's
      spelling, e.g. "The Eiffel Tower"; a missing one is an error); for files,
      keep records whose label is in `classes`, the rest are counted in
      skipped.filtered["other_class"].
    recognized_only: leave out `"recognized": false` drawings (a missing flag
      counts as recognized); each is counted in skipped.filtered["unrecognized"]
      when a SkipCounter is given. Filtered lines are not validated.
    with_times: keep raw-format times (ms, float32, one array per stroke).
    limit_per_class: at most this many records per label. A file named after
      its class stops being read once that class is full (Google's layout: one
      class a file), so a small limit does not parse a whole 100 MB file.

    Strokes are float32 (n, 2) absolute (x, y). label = `word` (else the file
    stem), id = `key_id` (else "<file name>:<line>"). Blank lines are ignored.
    """
    files, from_dir = _class_files(source, ".ndjson", classes)
    keep = None if (classes is None or from_dir) else set(classes)
    counts: dict[str, int] = {}
    for path in files:
        stem = _stem(path)
        if limit_per_class is not None and counts.get(stem, 0) >= limit_per_class:
            continue
        with open(path, "rb") as f:
            labels_here = set()
            for lineno, line in _iter_lines(f, path):
                try:
                    if isinstance(line, SketchDataError):
                        raise line
                    if not line.strip():
                        continue
                    rec = _parse_line(line, path, lineno, stem, recognized_only, keep,
                                      with_times, skipped)
                except SketchDataError as err:
                    handle_bad(err, skip_bad, skipped)
                    continue
                if rec is None:
                    continue
                n = counts.get(rec.label, 0)
                if limit_per_class is not None and n >= limit_per_class:
                    continue
                counts[rec.label] = n + 1
                labels_here.add(rec.label)
                yield rec
                if (limit_per_class is not None and n + 1 >= limit_per_class
                        and labels_here == {stem}):
                    break  # one-class file, class full: the rest is not read


def ndjson_chunks(path: PathLike, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """Splits one ndjson file at line ends into (start, end, first_line) byte
    ranges of about chunk_bytes, so several processes can read a multi-GB file.

    One streaming pass counts the lines before each cut (error messages keep
    their real line numbers); a file within one chunk is not read at all."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size <= chunk_bytes:
        return [(0, size, 1)]
    cuts, lines, pos, target = [(0, 1)], 0, 0, chunk_bytes
    with open(path, "rb") as f:
        while True:
            block = f.read(_DRAIN_CHUNK * 16)
            if not block:
                break
            while target < pos + len(block):
                nl = block.find(b"\n", max(0, target - pos))
                if nl < 0:
                    break  # the line goes on in the next block
                lines_here = lines + block.count(b"\n", 0, nl + 1)
                if pos + nl + 1 < size:
                    cuts.append((pos + nl + 1, lines_here + 1))
                target = pos + nl + 1 + chunk_bytes
            lines += block.count(b"\n")
            pos += len(block)
    ends = [c[0] for c in cuts[1:]] + [size]
    return [(start, end, first) for (start, first), end in zip(cuts, ends)]


def read_ndjson_chunk(path: PathLike, start: int = 0, end: Optional[int] = None, first_line: int = 1, *,
                      classes: Optional[Iterable[str]] = None, recognized_only: bool = False,
                      with_times: bool = True, skip_bad: bool = False,
                      skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """Stroke records of the lines in bytes [start, end) of one ndjson file
    (a range from ndjson_chunks); as read_ndjson otherwise, `classes` keeping
    only those labels (the rest counted in skipped.filtered["other_class"])."""
    path = os.fspath(path)
    keep = None if classes is None else set(classes)
    with open(path, "rb") as f:
        f.seek(start)
        for lineno, line in _iter_lines(f, path, first_line, end):
            try:
                if isinstance(line, SketchDataError):
                    raise line
                if not line.strip():
                    continue
                rec = _parse_line(line, path, lineno, _stem(path), recognized_only, keep, with_times, skipped)
            except SketchDataError as err:
                handle_bad(err, skip_bad, skipped)
                continue
            if rec is not None:
                yield rec


def _parse_line(line: bytes, path, lineno, stem, recognized_only, keep, with_times,
                skipped) -> Optional[Sketch]:
    try:
        obj = json.loads(line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
    except UnicodeDecodeError as e:
        raise SketchDataError(path, lineno, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise SketchDataError(path, lineno, "malformed JSON: nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError, and int digit-limit errors
        raise SketchDataError(path, lineno, f"malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise SketchDataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    if recognized_only and obj.get("recognized", True) is False:
        if skipped is not None:
            skipped.add_filtered("unrecognized")
        return None
    label = obj.get("word", stem)
    if not isinstance(label, str) or not label:
        raise SketchDataError(path, lineno, f"'word': expected a non-empty string, got {label!r:.40}")
    if keep is not None and label not in keep:
        if skipped is not None:
            skipped.add_filtered("other_class")
        return None
    if "drawing" not in obj:
        raise SketchDataError(path, lineno, "missing 'drawing'")
    key = obj.get("key_id")
    if key is None:
        rid = f"{os.path.basename(path)}:{lineno}"
    elif isinstance(key, (str, int)) and not isinstance(key, bool):
        rid = str(key)
    else:
        raise SketchDataError(path, lineno,
                              f"'key_id': expected a string or integer, got {type(key).__name__}")
    strokes, times = _parse_drawing(obj["drawing"], path, lineno, with_times)
    return Sketch(label=label, id=rid, strokes=strokes, times=times)


# ----------------------------------------------------------------------------
# sketch-rnn stroke-3
# ----------------------------------------------------------------------------

def stroke3_to_strokes(s3: np.ndarray) -> list[np.ndarray]:
    """Stroke-3 rows (dx, dy, pen_lifted) -> absolute float32 (n, 2) strokes.

    Offsets are summed from the origin (0, 0); a stroke ends after each row with
    pen_lifted = 1 (rows after the last lift form a final stroke).
    """
    s3 = np.asarray(s3)
    if s3.ndim != 2 or s3.shape[1] != 3:
        raise ValueError(f"stroke-3 must be (n, 3), got shape {s3.shape}")
    xy = np.cumsum(s3[:, :2].astype(np.float64), axis=0)
    ends = np.flatnonzero(s3[:, 2] != 0) + 1
    return [p.astype(np.float32) for p in np.split(xy, ends) if len(p)]


def strokes_to_stroke3(strokes: Sequence[np.ndarray]) -> np.ndarray:
    """Absolute strokes -> float32 stroke-3 (dx, dy, pen_lifted); inverse of
    stroke3_to_strokes. The first row is relative to (0, 0); pen_lifted = 1 on
    the last point of each stroke. Exact for integer coordinates below 2**24."""
    pts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    pts = [p for p in pts if len(p)]
    if not pts:
        return np.zeros((0, 3), np.float32)
    xy = np.concatenate(pts)
    out = np.zeros((len(xy), 3), np.float64)
    out[:, :2] = np.diff(xy, axis=0, prepend=np.zeros((1, 2)))
    out[np.cumsum([len(p) for p in pts]) - 1, 2] = 1
    return out.astype(np.float32)


def open_npz(path: str, allow_pickle: bool):
    """Opens an .npz (use as a context manager).

    A non-zip, truncated or corrupt file -> SketchDataError naming it.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
    # Checked first: np.load on arbitrary bytes with allow_pickle would unpickle them.
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise SketchDataError(path, None, "not an .npz file (no zip header)")
    try:
        data = np.load(path, encoding="latin1", allow_pickle=allow_pickle)
    # Reading a damaged zip directory raises assorted types (BadZipFile, EOFError,
    # NotImplementedError for odd compression, ...).
    except Exception as e:  # noqa: BLE001
        raise SketchDataError(path, None, f"unreadable .npz: {type(e).__name__}: {e}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise SketchDataError(path, None, "not an .npz archive")
    return data


def _declared_size_ok(data, key: str) -> Optional[str]:
    """None, or why the member's .npy header cannot be right.

    numpy allocates an npz member's array from its header before reading the
    data, so a corrupt header could ask for terabytes; compare with the bytes
    the zip entry actually holds.
    """
    names = data.zip.namelist()
    name = key + ".npy" if key + ".npy" in names else key
    info = data.zip.getinfo(name)
    with data.zip.open(info) as m:
        version = np.lib.format.read_magic(m)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            return None  # other versions: numpy's own checks apply
        shape, _, dtype = read_header(m)
    if dtype.hasobject:
        return None  # pickled; its size is not in the header
    need = math.prod(shape) * dtype.itemsize
    if need > info.file_size:
        return f"header declares {shape} {dtype} ({need} bytes) but the entry holds {info.file_size}"
    return None


def npz_array(data, path: str, key: str) -> np.ndarray:
    """data[key], with corrupt members as SketchDataError naming file and key."""
    if key not in data.files:
        raise SketchDataError(path, key, f"missing key (has {sorted(data.files)})")
    try:
        bad = _declared_size_ok(data, key)
        if bad:
            raise SketchDataError(path, key, f"corrupt array: {bad}")
        return data[key]
    except SketchDataError:
        raise
    # Members are decompressed (and, with pickle, unpickled) here: corrupt bytes
    # surface as any of these.
    except Exception as e:  # noqa: BLE001
        raise SketchDataError(path, key, f"corrupt array: {type(e).__name__}: {e}") from None


def read_sketchrnn_npz(path: PathLike, split: str = "train", *, label: Optional[str] = None,
                       skip_bad: bool = False, skipped: Optional[SkipCounter] = None
                       ) -> Iterator[Sketch]:
    """Reads one split of a sketch-rnn `.npz` (keys train/valid/test, object
    arrays of (n, 3) int16 stroke-3 rows) as stroke records.

    The object arrays are pickled, so the file is loaded with allow_pickle=True:
    never read an untrusted .npz with this (unpickling can run code). The split
    is loaded whole (pickled arrays cannot be memory-mapped).
    label defaults to the file stem; ids are "<stem>/<split>/<i>".
    """
    path = os.fspath(path)
    stem = _stem(path)
    label = stem if label is None else label
    try:
        with open_npz(path, allow_pickle=True) as data:
            arr = npz_array(data, path, split)
    except SketchDataError as err:
        handle_bad(err, skip_bad, skipped)
        return
    if arr.ndim == 0:
        err = SketchDataError(path, split, f"expected an array of drawings, got a scalar {arr.dtype}")
        handle_bad(err, skip_bad, skipped)
        return
    for i in range(len(arr)):
        where = f"{split}[{i}]"
        try:
            s3 = np.asarray(arr[i])
            if s3.ndim != 2 or s3.shape[1] != 3 or s3.dtype.kind not in "iuf":
                raise SketchDataError(path, where, f"expected numeric (n, 3) stroke-3, got {s3.dtype} {s3.shape}")
            pen = s3[:, 2]
            if not np.all((pen == 0) | (pen == 1)):
                raise SketchDataError(path, where, "pen_lifted column must be 0 or 1")
            if not np.all(np.isfinite(s3[:, :2])):
                raise SketchDataError(path, where, "non-finite offset (NaN/inf)")
            strokes = validate_strokes(stroke3_to_strokes(s3), path, where)
        except SketchDataError as err:
            handle_bad(err, skip_bad, skipped)
            continue
        yield Sketch(label=label, id=f"{stem}/{split}/{i}", strokes=strokes)


# ----------------------------------------------------------------------------
# numpy bitmaps
# ----------------------------------------------------------------------------

def _bitmap_class(name: str) -> str:
    stem = _stem(name)
    return stem[len(_BITMAP_PREFIX):] if stem.startswith(_BITMAP_PREFIX) else stem


def _open_bitmaps(path: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # bad header, truncated data, pickled
        raise SketchDataError(path, None, f"unreadable .npy: {e}") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise SketchDataError(path, None, "not a .npy array (an .npz archive?)")
    if arr.dtype != np.uint8:
        raise SketchDataError(path, None, f"expected uint8 bitmaps, got {arr.dtype}")
    if arr.ndim < 2 or math.prod(arr.shape[1:]) != BITMAP_SIDE * BITMAP_SIDE:
        raise SketchDataError(path, None,
                              f"shape {arr.shape} is not (N, 784), (N, 1, 784) or (N, 28, 28)")
    return arr


def read_bitmap_npy(source: Source, *, classes: Optional[Iterable[str]] = None,
                    limit_per_class: Optional[int] = None, skip_bad: bool = False,
                    skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """Streams Quick Draw 28x28 numpy bitmaps as image records (uint8 (28, 28),
    ink 255 on 0, as Google stores them). Files are memory-mapped.

    source: a directory of `<class>.npy` (a `full_numpy_bitmap_` prefix is
    dropped from the class name), a file or a list of files. For files,
    `classes` keeps only the files whose class is listed. limit_per_class takes
    the first rows of each class. ids are "<class>/<row>".
    A truncated or corrupt file, a wrong dtype or a row size other than 784 is
    one bad record naming the file.
    """
    files, from_dir = _class_files(source, ".npy", classes, name_of=_bitmap_class)
    keep = None if (classes is None or from_dir) else set(classes)
    counts: dict[str, int] = {}
    for path in files:
        label = _bitmap_class(path)
        if keep is not None and label not in keep:
            continue
        room = None if limit_per_class is None else limit_per_class - counts.get(label, 0)
        if room is not None and room <= 0:
            continue
        try:
            arr = _open_bitmaps(path)
        except SketchDataError as err:
            handle_bad(err, skip_bad, skipped)
            continue
        n = len(arr) if room is None else min(len(arr), room)
        counts[label] = counts.get(label, 0) + n
        for i in range(n):
            img = np.array(arr[i], dtype=np.uint8).reshape(BITMAP_SIDE, BITMAP_SIDE)
            yield Sketch(label=label, id=f"{label}/{i}", image=img)
