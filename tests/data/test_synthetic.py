import numpy as np

from sketchtf.data import synthetic
from sketchtf.data.records import validate_strokes


def test_classes_records_and_determinism():
    assert len(synthetic.CLASSES) >= 10
    a = list(synthetic.generate(3, seed=7))
    b = list(synthetic.generate(3, seed=7))
    assert len(a) == 3 * len(synthetic.CLASSES)
    assert {r.label for r in a} == set(synthetic.CLASSES)
    for r, s in zip(a, b):
        assert r.id == s.id and r.label == s.label
        for p, q in zip(r.strokes, s.strokes):
            np.testing.assert_array_equal(p, q)
        validate_strokes(r.strokes, "synthetic", r.id)
        pts = np.concatenate(r.strokes)
        assert pts.min() >= 0 and pts.max() <= 255


def test_splits_and_seeds_differ_and_drawings_vary():
    train = list(synthetic.generate(2, split="train"))
    test = list(synthetic.generate(2, split="test"))
    other = list(synthetic.generate(2, split="train", seed=1))
    for x, y in ((train, test), (train, other)):
        assert not np.allclose(np.concatenate(x[0].strokes)[:2], np.concatenate(y[0].strokes)[:2])
    circles = [r for r in synthetic.generate(5) if r.label == "circle"]
    assert len({len(np.concatenate(r.strokes)) for r in circles} | {float(r.strokes[0][0, 0]) for r in circles}) > 1


def test_unknown_class_is_rejected():
    import pytest
    with pytest.raises(ValueError, match="unknown synthetic classes"):
        list(synthetic.generate(1, classes=("unicorn",)))
