"""Fuzzing the readers: whatever the bytes, only SketchDataError may escape, and
with skip_bad every record is either yielded or counted."""
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketchtf.data import quickdraw as qd
from sketchtf.data import tuberlin as tb
from sketchtf.data.records import SkipCounter, SketchDataError

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _nonblank_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


def _check_ndjson(path, data: bytes):
    path.write_bytes(data)
    try:
        for r in qd.read_ndjson(path):
            assert r.strokes and all(s.dtype == np.float32 for s in r.strokes)
    except SketchDataError as e:
        assert str(path) in str(e)
    sk = SkipCounter()
    recs = list(qd.read_ndjson(path, skip_bad=True, skipped=sk))
    assert len(recs) + len(sk) == _nonblank_lines(data)


@FUZZ
@given(st.binary(max_size=400))
def test_ndjson_random_bytes(scratch, data):
    _check_ndjson(scratch / "bytes.ndjson", data)


_coords = st.lists(st.integers(0, 255), min_size=1, max_size=6)
_stroke = _coords.flatmap(lambda xs: st.tuples(st.just(xs), st.lists(
    st.integers(0, 255), min_size=len(xs), max_size=len(xs))).map(list))
_valid_line = st.lists(_stroke, min_size=1, max_size=4).map(
    lambda d: json.dumps({"word": "cat", "key_id": "1", "drawing": d}).encode())
_mutation = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10 ** 6),
                      st.binary(min_size=1, max_size=3))


def _mutate(line: bytes, edits) -> bytes:
    b = bytearray(line)
    for kind, pos, chunk in edits:
        i = pos % (len(b) + 1)
        if kind == "insert":
            b[i:i] = chunk
        elif b and kind == "delete":
            del b[i % len(b): i % len(b) + len(chunk)]
        elif b:
            b[i % len(b)] = chunk[0]
    return bytes(b)


@FUZZ
@given(st.lists(st.tuples(_valid_line, st.lists(_mutation, max_size=4)), min_size=1, max_size=5))
def test_ndjson_mutated_lines(scratch, lines):
    data = b"\n".join(_mutate(line, edits) for line, edits in lines) + b"\n"
    _check_ndjson(scratch / "mutated.ndjson", data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 30, 10 ** 30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20)


@FUZZ
@given(st.lists(_json, max_size=3), _json)
def test_ndjson_random_structures(scratch, drawing, word):
    objs = [{"drawing": drawing}, {"word": word, "drawing": drawing, "key_id": word},
            {"drawing": [[drawing, drawing]]}, {"drawing": [[[1, 2], drawing, drawing]]}]
    _check_ndjson(scratch / "structures.ndjson", b"\n".join(json.dumps(o).encode() for o in objs))


SVG_OK = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 800 800">'
          b'<g transform="translate(1,2) scale(2)"><path d="M10 10 C 20 20 30 30 40 40 L 5 5 z"/>'
          b'<path d="m1 1 h 3 v 4"/></g></svg>')


def _check_svg(path, data: bytes):
    path.write_bytes(data)
    try:
        strokes = tb.parse_svg_strokes(path, samples_per_curve=3)
        assert strokes and all(np.isfinite(s).all() for s in strokes)
    except SketchDataError as e:
        assert str(path) in str(e)


@FUZZ
@given(st.binary(max_size=400))
def test_svg_random_bytes(scratch, data):
    _check_svg(scratch / "bytes.svg", data)


@FUZZ
@given(st.lists(_mutation, min_size=1, max_size=6))
def test_svg_mutated(scratch, edits):
    _check_svg(scratch / "mutated.svg", _mutate(SVG_OK, edits))


_path_text = st.text(alphabet="MmLlCcHhVvZzAQs0123456789.-+eE, \t", max_size=80)


@FUZZ
@given(_path_text, st.text(alphabet="translatescalerotatematrixskewXY(0123456789.-, )", max_size=50))
def test_svg_random_path_and_transform(scratch, d, transform):
    body = f'<g transform="{transform}"><path d="{d}"/></g>'.encode()
    _check_svg(scratch / "path.svg", SVG_OK.replace(b"</svg>", body + b"</svg>"))


def _npz_bytes() -> bytes:
    arr = np.empty(3, dtype=object)
    for i in range(3):
        arr[i] = np.array([[1, 2, 0], [3, 4, 1], [i, -i, 1]], np.int16)
    buf = io.BytesIO()
    np.savez(buf, train=arr, valid=arr, test=arr)
    return buf.getvalue()


NPZ_OK = _npz_bytes()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),
                 st.integers(0, len(NPZ_OK)).map(lambda n: NPZ_OK[:n])))
def test_npz_random_and_truncated(scratch, data):
    path = scratch / "x.npz"
    path.write_bytes(data)
    sk = SkipCounter()
    list(qd.read_sketchrnn_npz(path, skip_bad=True, skipped=sk))
    list(tb.read_tuberlin_points_npz([path], label="x", skip_bad=True, skipped=sk))
    for read in (lambda: list(qd.read_sketchrnn_npz(path)),
                 lambda: list(tb.read_tuberlin_points_npz([path], label="x"))):
        try:
            read()
        except SketchDataError as e:
            assert str(path) in str(e)


def _points_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, np.arange(20.0).reshape(10, 2), np.ones((2, 2)))
    return buf.getvalue()


POINTS_OK = _points_npz_bytes()


@FUZZ
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_points_npz_mutated(scratch, edits):
    # Mutated zips go only to the pickle-free reader: unpickling mutated bytes
    # is exactly what read_sketchrnn_npz documents as unsafe.
    path = scratch / "m.npz"
    path.write_bytes(_mutate(POINTS_OK, edits))
    try:
        for r in tb.read_tuberlin_points_npz([path], label="x"):
            assert r.strokes
    except SketchDataError as e:
        assert str(path) in str(e)
