import numpy as np
import pytest

from sketchtf.config import data_config
from sketchtf.data import pipeline


def small(**kw):
    return data_config(**dict(dict(source="synthetic", image_size=32, synthetic_per_class=4,
                                   synthetic_test_per_class=2), **kw))


def first(ds):
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


def test_synthetic_train_batches_are_deterministic_and_augmented():
    cfg = small()
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=8, training=True, seed=3)
    assert info.num_examples == 4 * len(info.class_names) and info.steps_per_epoch == -(-info.num_examples // 8)
    x1, y1 = first(ds)
    x2, y2 = first(pipeline.make_dataset(cfg, "train", batch_size=8, training=True, seed=3)[0])
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (8, 32, 32, 1) and x1.dtype == np.float32 and 0 <= x1.min() and x1.max() <= 1
    x3, _ = first(pipeline.make_dataset(cfg, "train", batch_size=8, training=True, seed=4)[0])
    assert not np.array_equal(x1, x3)


def test_eval_split_is_unaugmented_ordered_and_uses_train_vocabulary():
    cfg = small()
    _, info = pipeline.make_dataset(cfg, "train", batch_size=8, training=True)
    ds, tinfo = pipeline.make_dataset(cfg, "test", batch_size=5, training=False, class_names=info.class_names)
    batches = list(ds)
    assert sum(len(y) for _, y in batches) == tinfo.num_examples == 2 * len(info.class_names)
    again = list(pipeline.make_dataset(cfg, "test", batch_size=5, training=False, class_names=info.class_names)[0])
    np.testing.assert_array_equal(batches[0][0].numpy(), again[0][0].numpy())


def test_crop_and_stroke_order_channels():
    cfg = small(image_size=28, render_size=32, channels=6)
    x, _ = first(pipeline.make_dataset(cfg, "train", batch_size=4, training=True)[0])
    assert x.shape == (4, 28, 28, 6)
    np.testing.assert_allclose(x[..., 5], np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2]), atol=1e-6)
    x, _ = first(pipeline.make_dataset(cfg, "test", batch_size=4, training=False)[0])
    assert x.shape == (4, 28, 28, 6)


def test_missing_path_error_says_how_to_fix():
    cfg = data_config(source="quickdraw_ndjson", path="/nonexistent/qd")
    with pytest.raises(FileNotFoundError, match="data.path"):
        pipeline.make_dataset(cfg, "train", batch_size=2, training=True)
    with pytest.raises(ValueError, match="data.source"):
        pipeline.make_dataset(data_config(source="nope"), "train", batch_size=2, training=True)


def test_render_size_smaller_than_image_size_is_rejected():
    with pytest.raises(ValueError, match="render_size"):
        pipeline.make_dataset(small(render_size=16), "train", batch_size=2, training=True)


def test_quickdraw_ndjson_train_test_folders(shared):
    root = shared("quickdraw_10class_ndjson")
    cfg = data_config(source="quickdraw_ndjson", path=str(root), image_size=64, limit_per_class=5)
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=10, training=True)
    assert len(info.class_names) == 10 and info.num_examples == 50
    assert first(ds)[0].shape == (10, 64, 64, 1)
    ds, tinfo = pipeline.make_dataset(cfg, "test", batch_size=10, training=False, class_names=info.class_names)
    assert tinfo.num_examples == 50


def test_bitmap_images_are_resized_and_split(shared):
    root = shared("quickdraw_bitmap_6class")
    cfg = data_config(source="bitmap_npy", path=str(root), image_size=32, limit_per_class=20)
    ds, info = pipeline.make_dataset(cfg, "train", batch_size=16, training=True)
    _, tinfo = pipeline.make_dataset(cfg, "test", batch_size=16, training=False, class_names=info.class_names)
    assert info.kind == "images" and info.num_examples + tinfo.num_examples == 120
    x, _ = first(ds)
    assert x.shape == (16, 32, 32, 1) and x.max() > 0.5
    with pytest.raises(ValueError, match="stroke records"):
        pipeline.make_dataset(data_config(source="bitmap_npy", path=str(root), channels=6, limit_per_class=2),
                              "train", batch_size=2, training=True)
