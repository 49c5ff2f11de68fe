"""SavedModel export: TF Serving layout, signatures, fresh-process load, REST JSON."""
import base64
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sketchtf.ship import export, serving_json
from sketchtf.config import data_config
from sketchtf.data import pipeline, synthetic
from sketchtf.models import build_model

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = data_config(source="synthetic", image_size=SIZE)
    classes = list(synthetic.CLASSES)
    model = build_model("sketchnet", num_classes=len(classes), input_shape=(SIZE, SIZE, 1))
    base = tmp_path_factory.mktemp("export")
    path = export.export_saved_model(model, classes, cfg, str(base), "sk", version=3, top_k=3)
    sketches = list(synthetic.generate(1, split="test"))[:4]
    return dict(model=model, cfg=cfg, classes=classes, base=base, path=path, sketches=sketches)


def test_tf_serving_layout_and_version_is_immutable(exported):
    assert exported["path"] == os.path.join(str(exported["base"]), "sk", "3")
    assert os.path.exists(os.path.join(exported["path"], "saved_model.pb"))
    with pytest.raises(FileExistsError, match="version"):
        export.export_saved_model(exported["model"], exported["classes"], exported["cfg"],
                                  str(exported["base"]), "sk", version=3)


def test_saved_model_cli_lists_both_signatures(exported):
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    out = subprocess.run([str(cli), "show", "--dir", exported["path"], "--all"],
                         capture_output=True, text=True, timeout=120).stdout
    for sig in ("serving_default", "predict_strokes"):
        assert f"signature_def['{sig}']" in out
    assert out.count("Method name is: tensorflow/serving/predict") >= 2
    for name in ("image_bytes", "strokes", "lengths", "top_k_names", "probabilities"):
        assert f"['{name}']" in out


def test_served_predictions_equal_model_predict_in_a_fresh_process(exported, tmp_path):
    strokes, lengths = export.strokes_to_request([s.strokes for s in exported["sketches"]])
    np.save(tmp_path / "strokes.npy", strokes)
    np.save(tmp_path / "lengths.npy", lengths)
    # No sketchtf import in the child: the SavedModel must stand alone.
    code = f"""
import numpy as np, tensorflow as tf, json, sys
m = tf.saved_model.load({exported['path']!r})
f = m.signatures['predict_strokes']
out = f(strokes=tf.constant(np.load({str(tmp_path / 'strokes.npy')!r})), lengths=tf.constant(np.load({str(tmp_path / 'lengths.npy')!r})))
assert 'sketchtf' not in sys.modules
np.save({str(tmp_path / 'probs.npy')!r}, out['probabilities'].numpy())
print(json.dumps([[n.decode() for n in row] for row in out['top_k_names'].numpy()]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-2000:]
    served = np.load(tmp_path / "probs.npy")
    # The same sketches through the training pipeline's eval path + model.predict.
    ds, _ = pipeline.make_dataset(exported["cfg"], "test", batch_size=4, training=False,
                                  records=exported["sketches"], class_names=exported["classes"])
    images = next(iter(ds))[0]
    expected = tf.nn.softmax(exported["model"].predict(images, verbose=0)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    names = json.loads(r.stdout.strip().splitlines()[-1])
    assert names[0][0] == exported["classes"][int(np.argmax(expected[0]))]


def png_bytes(img01, dark_on_light=True):
    a = (255 * (1 - img01 if dark_on_light else img01)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_rest_request_bodies_map_onto_signature_inputs(exported):
    loaded = tf.saved_model.load(exported["path"])
    ds, _ = pipeline.make_dataset(exported["cfg"], "test", batch_size=4, training=False,
                                  records=exported["sketches"], class_names=exported["classes"])
    images = next(iter(ds))[0].numpy()[..., 0]
    # Row form with b64 PNGs (black on white, as a canvas exports them).
    body = {"instances": [{"b64": base64.b64encode(png_bytes(im)).decode()} for im in images]}
    sig = loaded.signatures["serving_default"]
    inputs = serving_json.parse_request(body, sig.structured_input_signature[1])
    out = {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    resp = serving_json.format_response(out)
    assert len(resp["predictions"]) == 4 and len(resp["predictions"][0]["top_k_names"]) == 3
    expected = tf.nn.softmax(exported["model"].predict(images[..., None], verbose=0)).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, atol=2e-2)  # 8-bit PNG round trip
    # Named row form for the two-input strokes signature, and the columnar form.
    strokes, lengths = export.strokes_to_request([s.strokes for s in exported["sketches"]])
    sig = loaded.signatures["predict_strokes"]
    specs = sig.structured_input_signature[1]
    rows = {"instances": [{"strokes": s.tolist(), "lengths": int(n)} for s, n in zip(strokes, lengths)]}
    cols = {"inputs": {"strokes": strokes.tolist(), "lengths": lengths.tolist()}}
    a, b = serving_json.parse_request(rows, specs), serving_json.parse_request(cols, specs)
    np.testing.assert_array_equal(a["strokes"], b["strokes"])
    assert a["strokes"].dtype == np.float32 and a["lengths"].dtype == np.int32


@pytest.mark.parametrize("body,match", [
    ({"instances": [{"b64": "not base64!!"}]}, "base64"),
    ({"instances": []}, "non-empty"),
    ({"inputs": {}, "instances": [1]}, "exactly one"),
    ({"instances": [{"strokes": [[1, 2]], "lengths": 1}]}, "dimension 2 must be 3"),
    ({"instances": [{"strokes": [[[1, 2, 0]]]}]}, "expected inputs"),
])
def test_bad_rest_bodies_raise_request_errors(body, match):
    specs = {"strokes": tf.TensorSpec([None, None, 3], tf.float32), "lengths": tf.TensorSpec([None], tf.int32)}
    if "b64" in json.dumps(body):
        specs = {"image_bytes": tf.TensorSpec([None], tf.string)}
    with pytest.raises(serving_json.RequestError, match=match):
        serving_json.parse_request(body, specs)


def test_training_reader_and_serving_agree_on_ink_polarity(tmp_path):
    # A scan whose border is 60% light paper and 40% shadow: the two old rules
    # disagreed on it (border mean vs most border pixels); now both read
    # render.light_page and both turn the dark stroke into ink = 1.
    from sketchtf.data.image_folder import load_image
    img = np.full((32, 32), 0.6, np.float32)
    img[:, :13] = 0.0                      # shadow over the left 40% (touches the border)
    img[8:24, 20:22] = 0.05                # the stroke, dark on the paper
    path = tmp_path / "scan.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    read = load_image(path, ink="auto") / 255.0
    module = export.ServingModule(build_model("sketchnet", num_classes=3, input_shape=(32, 32, 1)), ["a", "b", "c"],
                                  data_config(image_size=32))
    served = module.decode_images(tf.constant([path.read_bytes()])).numpy()[0, ..., 0]
    assert read[16, 21] > 0.9 and read[16, 25] < 0.5  # stroke inked, paper not
    # Served: the same polarity (inverted the other way, the stroke would sit
    # below the paper and nothing would be left as ink), the shadow taken out as
    # background, and the stroke framed as the training renders are.
    assert served.max() > 0.9 and 0.0 < (served > 0.5).mean() < 0.2
