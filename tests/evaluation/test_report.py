import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from sketchtf.evaluation import metrics as M
from sketchtf.evaluation import report as R

# Same hand example as test_metrics: class "circle" (2) is never predicted.
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])
PREDS = np.array([0, 0, 1, 1, 1, 0, 0, 1])
NAMES = ["airplane", "bicycle", "circle"]


@pytest.fixture
def hand_metrics():
    return M.classification_metrics(LABELS, np.eye(3)[PREDS] * 0.8 + 0.1, NAMES)


def test_write_report_files_hold_the_numbers(tmp_path, hand_metrics):
    extra = {"params": 933_123, "epochs": 3, "wall_time_s": 12.5,
             "command": "python -m sketchtf.train --config=configs/x.py", "workdir": pathlib.Path("runs/x")}
    json_path, md_path = R.write_report(tmp_path / "run", hand_metrics, title="SketchNet test", extra=extra)
    assert json_path == tmp_path / "run" / "metrics.json" and md_path.name == "report.md"

    text = json_path.read_text()
    assert text.startswith('{\n  "')  # indent 2
    back = json.loads(text)
    assert back["extra"] == {**extra, "workdir": "runs/x"}
    del back["extra"]
    assert back == hand_metrics

    md = md_path.read_text()
    assert md.startswith("# SketchNet test\n")
    assert "| top-1 accuracy | 50.00% |" in md
    assert "| top-3 accuracy | 100.00% |" in md
    assert f"| macro precision | {100 / 3:.2f}% |" in md
    assert f"| macro recall | {400 / 9:.2f}% |" in md
    assert f"| macro F1 | {800 / 21:.2f}% |" in md
    assert "| examples | 8 |" in md
    assert "| worst class | circle (0.00%) |" in md
    assert "| params | 933,123 |" in md
    assert "| command | `python -m sketchtf.train --config=configs/x.py` |" in md
    assert "| wall_time_s | 12.5 |" in md
    # Per-class table: worst accuracy first.
    pos = [md.index(f"| {n} | ") for n in ("circle", "airplane", "bicycle")]
    assert pos == sorted(pos)
    assert "| circle | 0.00% | 0.00% | 0.00% | 0.00% | 2 |" in md
    # Confusion table rows (true) with short names, diagonal bold.
    assert "| true \\ predicted | airplane | bicycle | circle |" in md
    assert "| airplane | **2** | 1 | 0 |" in md
    assert "| circle | 1 | 1 | **0** |" in md
    assert "| circle | airplane | 1 |" in md  # most confused pairs


def test_write_report_rejects_bad_metrics_and_extra(tmp_path, hand_metrics):
    bad = dict(hand_metrics)
    del bad["macro_f1"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['macro_f1'\]"):
        R.write_report(tmp_path, bad, title="x")
    bad = dict(hand_metrics, per_class={k: v for k, v in hand_metrics["per_class"].items() if k != "bicycle"})
    with pytest.raises(ValueError, match="no entry for class 'bicycle'"):
        R.write_report(tmp_path, bad, title="x")
    with pytest.raises(TypeError, match=r"metrics\['extra'\]\['model'\]: cannot write object"):
        R.write_report(tmp_path, hand_metrics, title="x", extra={"model": object()})
    with pytest.raises(ValueError, match="nan is not valid JSON"):
        R.write_report(tmp_path, hand_metrics, title="x", extra={"loss": float("nan")})
    assert not (tmp_path / "metrics.json").exists()


def test_markdown_handles_long_and_many_class_names():
    names = [f"very_long_class_name_{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    m = M.classification_metrics(rng.integers(0, 40, 200), rng.random((200, 40)), names)
    assert "40 classes: too many" in R.confusion_table_markdown(m)
    short = R.short_names(["apple|pie", "aircraft_carrier", "aircraft_engine", "cat"], width=8)
    assert short == ["apple|p…", "aircraf…~1", "aircraf…~2", "cat"]
    table = R.confusion_table_markdown(M.classification_metrics([0, 1, 2, 3], np.eye(4), ["apple|pie", "b", "c", "d"]))
    assert "| apple\\|p… |" in table  # pipe escaped, table stays well formed
    assert all(line.count(" | ") >= 4 for line in table.splitlines()[2:])


def test_per_class_table_markdown_for_tensorboard(hand_metrics):
    t = R.per_class_table_markdown(hand_metrics)
    lines = t.splitlines()
    assert lines[0] == "| class | accuracy | precision | recall | F1 | support |"
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| circle |")


def test_confusion_matrix_figure_is_an_rgb_image_with_content():
    cm = M.confusion_matrix(LABELS, PREDS, 3)
    img = R.confusion_matrix_figure(cm, NAMES)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] >= 300 and img.shape[1] >= 300
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # not blank
    # The heat map uses the colormap's dark blue for cells near 1 (a perfect class).
    perfect = R.confusion_matrix_figure(np.diag([5, 5, 5]), NAMES)
    assert np.any((perfect[..., 2] > 80) & (perfect[..., 0] < 30))
    assert not np.array_equal(perfect, img)
    counts = R.confusion_matrix_figure(cm, NAMES, normalize=False)
    assert counts.dtype == np.uint8 and counts.shape[2] == 3
    with pytest.raises(ValueError, match="but 2 class_names"):
        R.confusion_matrix_figure(cm, NAMES[:2])


def test_confusion_matrix_figure_many_classes():
    rng = np.random.default_rng(0)
    img = R.confusion_matrix_figure(rng.integers(0, 9, (100, 100)), [f"c{i}" for i in range(100)])
    assert img.dtype == np.uint8 and img.shape[2] == 3 and max(img.shape[:2]) <= 1400


def test_image_grid_layout_and_labels():
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 8, 8)).astype(np.float32)
    g = R.image_grid(imgs, ncols=3, pad=2)
    assert g.dtype == np.uint8 and g.shape == (2 * (8 + 2) + 2, 3 * (8 + 2) + 2, 3)
    # Tile 4 (row 1, col 1) holds image 4, grey in all three channels.
    tile = g[2 + 10:2 + 10 + 8, 2 + 10:2 + 10 + 8]
    np.testing.assert_array_equal(tile[..., 0], np.round(imgs[4] * 255).astype(np.uint8))
    np.testing.assert_array_equal(tile[..., 0], tile[..., 2])
    assert np.all(g[0:2] == 128) and np.all(g[-10:, -10:] == 128)  # padding and the empty 6th cell

    u8 = (rng.random((2, 40, 40, 3)) * 255).astype(np.uint8)
    g = R.image_grid(u8, ncols=4, labels=["cat", "airplane"], pad=0)
    assert g.shape[1] == 2 * 40 and g.shape[0] > 40  # ncols clamps to N; label strip added
    np.testing.assert_array_equal(g[:40, :40], u8[0])
    strip = g[40:, :40]
    assert strip.min() < 100 and np.mean(strip == 255) > 0.5  # dark text on a white strip

    inv = R.image_grid(np.zeros((1, 4, 4, 1), np.float32), ncols=1, pad=0, invert=True)
    assert np.all(inv == 255)


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        R.image_grid(np.full((1, 4, 4), 2.0), ncols=1)
    with pytest.raises(ValueError, match="6-channel"):
        R.image_grid(np.zeros((1, 4, 4, 6), np.float32), ncols=1)
    with pytest.raises(ValueError, match="1 given for 2 images"):
        R.image_grid(np.zeros((2, 4, 4), np.float32), ncols=1, labels=["a"])
    with pytest.raises(ValueError, match="ncols"):
        R.image_grid(np.zeros((2, 4, 4), np.float32), ncols=0)


def test_save_png_round_trip(tmp_path):
    a = (np.arange(6 * 7 * 3) % 256).astype(np.uint8).reshape(6, 7, 3)
    p = R.save_png(tmp_path / "sub" / "grid.png", a)
    np.testing.assert_array_equal(np.asarray(Image.open(p)), a)
    g = R.save_png(tmp_path / "gray.png", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4, 1))
    back = np.asarray(Image.open(g))
    assert back.shape == (3, 4) and back[0, 0] == 0 and back[-1, -1] == 255
    with pytest.raises(ValueError, match="gray2.png"):
        R.save_png(tmp_path / "gray2.png", np.zeros((2, 3, 5), np.uint8))
