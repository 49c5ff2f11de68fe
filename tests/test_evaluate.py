import numpy as np

from sketchtf import evaluate
from sketchtf.config import experiment, smoke
from sketchtf.data import synthetic
from sketchtf.models import build_model


def test_ten_view_vote_covers_every_test_sketch():
    c = smoke(experiment("sketchanet"), image_size=88)
    c.data.render_size = 96
    classes = list(synthetic.CLASSES)
    model = build_model("sketchanet", num_classes=len(classes), input_shape=(88, 88, 1))
    m = evaluate.evaluate_ten_view(model, c, classes)
    assert m["num_examples"] == 2 * len(classes)
    assert 0.0 <= m["top1"] <= m["top5"] <= 1.0
    assert np.asarray(m["confusion"]).sum() == m["num_examples"]


def test_ten_view_needs_a_larger_render():
    import pytest
    c = smoke(experiment("sketchanet"), image_size=88)
    with pytest.raises(ValueError, match="render_size"):
        evaluate.evaluate_ten_view(None, c, list(synthetic.CLASSES))
