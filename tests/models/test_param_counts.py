"""docs/models.md publishes parameter counts: every 10-class row must be what the zoo builds."""
import pathlib
import re

import numpy as np
import pytest

from sketchtf.models import build_model

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "models.md"


def ten_class_rows():
    rows, name, kwargs = [], None, {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not re.fullmatch(r"\d+x\d+x\d+", cells[2]):
            continue
        if cells[1]:
            m = re.fullmatch(r"(\w+)(?: `remove_layers=\(([\d, ]+)\)`)?", cells[1])
            name = m.group(1)
            kwargs = {"remove_layers": tuple(int(v) for v in m.group(2).split(","))} if m.group(2) else {}
        if cells[3] == "10":
            shape = tuple(int(v) for v in cells[2].split("x"))
            rows.append(pytest.param(name, kwargs, shape, int(cells[4].replace(",", "")),
                                     int(cells[5].replace(",", "")), id=f"{name}{list(kwargs.values()) or ''}"))
    return rows


ROWS = ten_class_rows()


def test_the_table_was_read():
    assert len(ROWS) == 9  # 7 registry models + 2 MobileNetV2 variants


@pytest.mark.parametrize("name,kwargs,shape,total,trainable", ROWS)
def test_published_count(name, kwargs, shape, total, trainable):
    m = build_model(name, num_classes=10, input_shape=shape, **kwargs)
    assert m.count_params() == total
    assert int(sum(np.prod(w.shape) for w in m.trainable_weights)) == trainable
