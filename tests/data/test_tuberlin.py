import collections
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sketchtf.data import tuberlin as tb
from sketchtf.data.records import SkipCounter, SketchDataError

SVG_NS = "http://www.w3.org/2000/svg"


def _svg(body, root_attrs=""):
    return f'<?xml version="1.0"?>\n<svg xmlns="{SVG_NS}" viewBox="0 0 800 800" {root_attrs}>{body}</svg>'


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L1 1"/><text>&lol9;</text></svg>
"""


# ---------------------------------------------------------------- real SVGs

def test_real_svg_sample(shared):
    root = shared("tu_berlin_svg_sample")
    recs = list(tb.read_tuberlin_svg(root))
    assert len(recs) == 15
    assert collections.Counter(r.label for r in recs) == {"airplane": 5, "alarm clock": 5, "angel": 5}
    assert [r.id for r in recs[:5]] == [f"airplane/{i}" for i in range(1, 6)]
    for r in recs:
        f = root / f"{r.id}.svg"
        n_paths = sum(1 for e in ET.parse(f).iter(f"{{{SVG_NS}}}path"))  # trusted test data
        assert len(r.strokes) == n_paths > 0
        pts = np.concatenate(r.strokes)
        assert pts.dtype == np.float32
        assert pts.min() >= -5 and pts.max() <= 805
        # The group transform was applied: TU-Berlin centres each sketch and
        # scales it to fill the canvas, so it spans most of it.
        assert (pts.max(0) - pts.min(0)).max() > 400
    only = list(tb.read_tuberlin_svg(root, classes=["angel"], samples_per_curve=2))
    assert [r.label for r in only] == ["angel"] * 5
    # Fewer samples per curve, same strokes.
    assert [len(r.strokes) for r in only] == [len(r.strokes) for r in recs[10:]]
    assert only[0].num_points < recs[10].num_points
    files = [root / "angel" / "161.svg", root / "airplane" / "2.svg"]
    assert [r.id for r in tb.read_tuberlin_svg(files)] == ["angel/161", "airplane/2"]


def test_real_svg_first_point_matches_transform(shared):
    f = shared("tu_berlin_svg_sample", "airplane", "1.svg")
    strokes = tb.parse_svg_strokes(f)
    # airplane/1: transform="translate(87.52,135.4065) scale(1.6233) translate(0,-60)",
    # first path starts at M167 268.
    expect = (87.52 + 1.6233 * 167, 135.4065 + 1.6233 * (268 - 60))
    np.testing.assert_allclose(strokes[0][0], expect, rtol=1e-6)


# ---------------------------------------------------------------- path data and transforms

def test_path_commands():
    lines = tb.path_to_polylines("M0 0 10 0 l 0 10 h -10 z m 20 20 L 30 20 V 0 v 5 H 5 M 7 7 M 1 1 Z")
    got = [p.tolist() for p in lines]
    assert got == [
        [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
        [[20, 20], [30, 20], [30, 0], [30, 5], [5, 5]],
        [[1, 1]],  # "M 1 1 Z" is a dot; the bare "M 7 7" draws nothing
    ]


def test_cubic_flattening():
    (p,) = tb.path_to_polylines("M0 0 C 0 10 10 10 10 0 c 0 -10 10 -10 10 0", samples_per_curve=4)
    assert len(p) == 1 + 2 * 4
    np.testing.assert_allclose(p[4], [10, 0])
    np.testing.assert_allclose(p[8], [20, 0])
    np.testing.assert_allclose(p[2], [5, 7.5])  # B(1/2) = (p0 + 3p1 + 3p2 + p3) / 8
    np.testing.assert_allclose(p[6], [15, -7.5])
    (q,) = tb.path_to_polylines("M1e1,-.5-2.5.5", samples_per_curve=1)  # compact number syntax
    np.testing.assert_allclose(q, [[10, -0.5], [-2.5, 0.5]])


def test_transforms_compose(tmp_path):
    body = ('<g transform="translate(100, 50)"><g transform="scale(2 3)">'
            '<path d="M1 1 L2 2" transform="rotate(90)"/></g>'
            '<path d="M0 0" /><path d="M1 0 L1 1" transform="matrix(1 0 0 1 5 6) skewX(45)"/></g>'
            '<defs><path d="M9 9 L9 10"/></defs><path d="M3 4 L5 6"/>')
    strokes = tb.parse_svg_strokes(_write(tmp_path / "t.svg", _svg(body)))
    assert len(strokes) == 3
    # rotate(90): (x, y) -> (-y, x); then scale(2, 3); then translate(100, 50).
    np.testing.assert_allclose(strokes[0], [[100 - 2, 50 + 3], [100 - 4, 50 + 6]], atol=1e-5)
    # skewX(45): x += y; then +(5, 6); then +(100, 50).
    np.testing.assert_allclose(strokes[1], [[106, 56], [107, 57]], atol=1e-5)
    np.testing.assert_allclose(strokes[2], [[3, 4], [5, 6]])
    m = tb.parse_transform("rotate(90 1 1)")
    np.testing.assert_allclose(m @ [1, 1, 1], [1, 1, 1], atol=1e-12)
    np.testing.assert_allclose(m @ [2, 1, 1], [1, 2, 1], atol=1e-12)


# ---------------------------------------------------------------- bad SVGs

BAD_SVGS = [
    ("notsvg.svg", "<html><body>hello</body></html>", "root element is <html>"),
    ("text.svg", "just some text\n", "not well-formed XML"),
    ("bomb.svg", BOMB, "EntitiesForbidden"),
    ("arc.svg", _svg('<path id="7" d="M0 0 A 5 5 0 0 1 10 10"/>'), "unsupported path command 'A'"),
    ("odd.svg", _svg('<path d="M0 0 C 1 2 3"/>'), "multiple of 6"),
    ("start.svg", _svg('<path d="L 1 2"/>'), "must start with a move-to"),
    ("tf.svg", _svg('<g transform="spin(3)"><path d="M0 0 L1 1"/></g>'), "unsupported transform"),
    ("nan.svg", _svg('<g transform="scale(1e400)"><path d="M0 0 L1 1"/></g>'), "non-finite"),
    ("empty.svg", _svg('<g/>'), "empty drawing"),
]


@pytest.mark.parametrize("name,text,message", BAD_SVGS)
def test_bad_svg(tmp_path, name, text, message):
    f = _write(tmp_path / name, text)
    t0 = time.perf_counter()
    with pytest.raises(SketchDataError, match=message) as ei:
        tb.parse_svg_strokes(f)
    assert time.perf_counter() - t0 < 2.0
    assert str(ei.value).startswith(str(f))


def test_svg_errors_name_line_and_path(tmp_path):
    f = _write(tmp_path / "x.svg", '<svg xmlns="http://www.w3.org/2000/svg">\n<path d="M0 0"\n</svg>')
    with pytest.raises(SketchDataError) as ei:
        tb.parse_svg_strokes(f)
    assert ei.value.where == 3
    f = _write(tmp_path / "y.svg", _svg('<path d="M0 0 L1 1"/><path id="s1" d="M0 0 Q1 1 2 2"/>'))
    with pytest.raises(SketchDataError, match=r"y.svg:<path> #1: id='s1': unsupported"):
        tb.parse_svg_strokes(f)


def test_oversized_svg_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "MAX_SVG_BYTES", 100)
    f = _write(tmp_path / "big.svg", _svg('<path d="M0 0 L1 1"/>' * 10))
    with pytest.raises(SketchDataError, match="SVG limit"):
        tb.parse_svg_strokes(f)


def test_read_svg_skip_bad(tmp_path):
    for i in (1, 2):
        _write(tmp_path / "cls" / f"{i}.svg", _svg(f'<path d="M0 0 L{i} {i}"/>'))
    _write(tmp_path / "cls" / "3.svg", BOMB)
    _write(tmp_path / "cls" / "10.svg", "<html/>")
    with pytest.raises(SketchDataError, match="3.svg"):
        list(tb.read_tuberlin_svg(tmp_path))
    sk = SkipCounter()
    recs = list(tb.read_tuberlin_svg(tmp_path, skip_bad=True, skipped=sk))
    assert [r.id for r in recs] == ["cls/1", "cls/2"]
    assert [e.source.rsplit("/", 1)[1] for e in sk.errors] == ["3.svg", "10.svg"]


# ---------------------------------------------------------------- PNG folders

def test_read_tuberlin_png(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            im = Image.new("L", (40, 40), 255)
            ImageDraw.Draw(im).line([(5, 5 + i), (35, 30)], fill=0, width=3)
            im.save(tmp_path / cls / f"{i}.png")
    recs = list(tb.read_tuberlin_png(tmp_path, split="all", size=20))
    assert len(recs) == 10 and {r.label for r in recs} == {"a", "b"}
    img = recs[0].image
    assert img.shape == (20, 20) and img.dtype == np.uint8
    assert img[0, -1] == 0 and img.max() > 200  # white paper -> 0, black ink -> ~255
    train = list(tb.read_tuberlin_png(tmp_path))
    test = list(tb.read_tuberlin_png(tmp_path, split="test"))
    assert (len(train), len(test)) == (8, 2)


# ---------------------------------------------------------------- point-list npz

def test_points_npz_real(shared):
    root = shared("tu_berlin_octopus_points_npz")
    recs = list(tb.read_tuberlin_points_npz(root, label="octopus", samples_per_curve=4))
    assert len(recs) == 80
    assert recs[0].id == "octopus/11201" and recs[-1].id == "octopus/11280"
    with np.load(root / "11201.npz") as z:
        raw = [z[f"arr_{i}"] for i in range(len(z.files))]
    strokes = recs[0].strokes
    assert len(strokes) == len(raw)
    for s, p in zip(strokes, raw):
        if len(p) >= 4 and (len(p) - 1) % 3 == 0:
            # Every segment end point (start + each third point) lies on the polyline.
            assert len(s) == 1 + 4 * (len(p) - 1) // 3
            np.testing.assert_allclose(s[::4], p[::3], atol=1e-3)
        else:
            np.testing.assert_allclose(s, p, atol=1e-3)
    pts = np.concatenate([np.concatenate(r.strokes) for r in recs])
    assert pts.min() > -50 and pts.max() < 850  # raw path space, about 0..800
    default = next(tb.read_tuberlin_points_npz([root / "11202.npz"]))
    assert default.label == root.name


def test_points_npz_bad(tmp_path):
    good = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], float)
    np.savez(tmp_path / "ok.npz", good, good[:2])
    np.savez(tmp_path / "gap.npz", arr_0=good, arr_2=good)
    np.savez(tmp_path / "shape.npz", good, np.zeros((3, 3)))
    np.savez(tmp_path / "nan.npz", np.array([[0, np.nan]]))
    np.savez(tmp_path / "key.npz", strokes=good)
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    cases = {"gap": r"gap.npz:arr_1: missing key", "shape": r"shape.npz:arr_1: expected numeric",
             "nan": r"nan.npz:arr_0: non-finite", "key": r"key.npz:strokes: unexpected key",
             "trunc": r"trunc.npz: unreadable .npz"}
    for name, message in cases.items():
        with pytest.raises(SketchDataError, match=message):
            list(tb.read_tuberlin_points_npz([tmp_path / f"{name}.npz"]))
    sk = SkipCounter()
    recs = list(tb.read_tuberlin_points_npz(tmp_path, label="x", skip_bad=True, skipped=sk))
    assert [r.id for r in recs] == ["x/ok"] and len(sk) == len(cases)
    assert [len(s) for s in recs[0].strokes] == [1 + 8, 2]
