"""sketchtf.ship.client against the local TF Serving stand-in (sketchtf.ship.serve)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sketchtf.ship import client, export, serve
from sketchtf.config import data_config
from sketchtf.data import quickdraw, synthetic
from sketchtf.models import build_model

SIZE = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    classes = list(synthetic.CLASSES)
    model = build_model("sketchnet", num_classes=len(classes), input_shape=(SIZE, SIZE, 1))
    base = tmp_path_factory.mktemp("export")
    export.export_saved_model(model, classes, data_config(source="synthetic", image_size=SIZE),
                              str(base), "sk", version=4, top_k=3)
    srv = serve.start_in_thread(str(base / "sk"))
    yield srv
    srv.shutdown()
    srv.server_close()


def signature(srv, name, **inputs):
    out = srv.model.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def write_png(path, seed):
    rng = np.random.default_rng(seed)
    img = np.full((64, 64), 255, np.uint8)
    r0, c0 = rng.integers(4, 24, size=2)
    img[r0:r0 + 30, c0:c0 + 4] = 0
    img[r0:r0 + 4, c0:c0 + 30] = 0
    Image.fromarray(img).save(path)
    return path.read_bytes()


def test_pngs_go_to_serving_default_and_match_the_savedmodel(server, tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    raw = [write_png(p, i) for i, p in enumerate(paths)]
    preds = client.predict_pngs(server.url, "sk", [str(p) for p in paths])
    want = signature(server, "serving_default", image_bytes=np.array(raw, dtype=object))
    assert len(preds) == 2
    for pred, names, probs in zip(preds, want["top_k_names"], want["top_k_probabilities"]):
        got = client.top_k(pred)
        assert [n for n, _ in got] == [n.decode() for n in names]
        np.testing.assert_allclose([p for _, p in got], probs, atol=1e-6)
        assert client.top_k(pred, 2) == got[:2]


def test_ndjson_drawings_go_to_predict_strokes_and_match_the_savedmodel(server, shared):
    path = str(shared("quickdraw_10class_ndjson", "test", "sun.ndjson"))
    recs, preds = client.predict_ndjson(server.url, "sk", path, [0, 3], version=4)
    all_recs = list(quickdraw.read_ndjson(path, with_times=False))
    assert [r.id for r in recs] == [all_recs[0].id, all_recs[3].id] and recs[0].label == "sun"
    strokes, lengths = export.strokes_to_request([r.strokes for r in recs])
    want = signature(server, "predict_strokes", strokes=strokes, lengths=lengths)
    np.testing.assert_allclose([p["probabilities"] for p in preds], want["probabilities"], atol=1e-6)
    with pytest.raises(ValueError, match="no drawing at index 100000"):
        client.read_ndjson_drawing(path, 100000)


def test_server_errors_surface_with_status_and_message(server):
    with pytest.raises(client.ServingError, match="HTTP 404: Servable not found") as e:
        client.model_status(server.url, "nope")
    assert e.value.status == 404
    with pytest.raises(client.ServingError, match="HTTP 400: .*at least one point") as e:
        client.predict(server.url, "sk", {"signature_name": "predict_strokes",
                                          "instances": [{"strokes": [[0, 0, 0]], "lengths": 0}]})
    assert client.model_status(server.url, "sk")["model_version_status"][0]["version"] == "4"
    with pytest.raises(client.ServingError, match="cannot reach the server") as e:
        client.model_status("http://127.0.0.1:9", "sk", timeout=5)
    assert e.value.status is None


def test_command_line_prints_top_k_and_fails_cleanly(server, tmp_path):
    write_png(tmp_path / "a.png", 0)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "sketchtf.ship.client", f"--server={server.url}", "--model=sk",
           f"--png={tmp_path / 'a.png'}", "--top_k=2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    pred = client.predict_pngs(server.url, "sk", [str(tmp_path / "a.png")])[0]
    lines = r.stdout.strip().splitlines()
    assert lines[0].endswith("a.png") and len(lines) == 3
    for rank, (line, (name, p)) in enumerate(zip(lines[1:], client.top_k(pred, 2)), 1):
        assert line.split() == [f"{rank}.", *name.split(), f"{100 * p:.2f}%"]
    r = subprocess.run(cmd[:4] + ["--model=nope", cmd[5]], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0 and "HTTP 404" in r.stderr and "Traceback" not in r.stderr
