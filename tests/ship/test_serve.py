"""sketchtf.ship.serve: TF Serving's REST status/predict endpoints over an exported SavedModel."""
import base64
import http.client
import io
import json
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sketchtf.ship import export, serve
from sketchtf.config import data_config
from sketchtf.data import synthetic
from sketchtf.models import build_model

SIZE = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg = data_config(source="synthetic", image_size=SIZE)
    classes = list(synthetic.CLASSES)
    model = build_model("sketchnet", num_classes=len(classes), input_shape=(SIZE, SIZE, 1))
    base = tmp_path_factory.mktemp("export")
    path = export.export_saved_model(model, classes, cfg, str(base), "sk", version=2)
    shutil.copytree(path, base / "sk" / "1")
    (base / "sk" / "3.tmp").mkdir()  # an export in progress: not a version yet
    srv = serve.start_in_thread(str(base / "sk"))
    yield dict(url=srv.url, path=path, classes=classes, loaded=tf.saved_model.load(path),
               sketches=list(synthetic.generate(1, split="test"))[:3])
    srv.shutdown()
    srv.server_close()


def call(url, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def direct(served, signature, **inputs):
    out = served["loaded"].signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def test_status_endpoints_answer_like_tf_serving(served):
    ok = {"model_version_status": [{"version": "2", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(served["url"] + "/v1/models/sk") == (200, ok)
    assert call(served["url"] + "/v1/models/sk/versions/2") == (200, ok)
    code, body = call(served["url"] + "/v1/models/sk/versions/1")  # older versions are not loaded
    assert code == 404 and "Specific(sk, 1)" in body["error"]


def test_unknown_model_is_404(served):
    for url, body in (("/v1/models/other", None), ("/v1/models/other:predict", {"instances": [1]})):
        code, resp = call(served["url"] + url, body)
        assert code == 404 and "other" in resp["error"]


def test_predict_strokes_equals_the_savedmodel_called_directly(served):
    strokes, lengths = export.strokes_to_request([s.strokes for s in served["sketches"]])
    want = direct(served, "predict_strokes", strokes=strokes, lengths=lengths)
    rows = {"signature_name": "predict_strokes",
            "instances": [{"strokes": s.tolist(), "lengths": int(n)} for s, n in zip(strokes, lengths)]}
    code, resp = call(served["url"] + "/v1/models/sk/versions/2:predict", rows)
    assert code == 200 and len(resp["predictions"]) == 3
    assert set(resp["predictions"][0]) == {"probabilities", "top_k_ids", "top_k_names", "top_k_probabilities"}
    np.testing.assert_allclose([p["probabilities"] for p in resp["predictions"]], want["probabilities"], atol=1e-6)
    assert [p["top_k_names"] for p in resp["predictions"]] == want["top_k_names"].astype(str).tolist()
    # Columnar form answers {"outputs": {...}} with the same numbers.
    cols = {"signature_name": "predict_strokes", "inputs": {"strokes": strokes.tolist(), "lengths": lengths.tolist()}}
    code, resp = call(served["url"] + "/v1/models/sk:predict", cols)
    assert code == 200 and set(resp) == {"outputs"}
    np.testing.assert_allclose(resp["outputs"]["probabilities"], want["probabilities"], atol=1e-6)
    assert resp["outputs"]["top_k_ids"] == want["top_k_ids"].tolist()


def test_predict_png_b64_equals_the_savedmodel_called_directly(served):
    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(2):
        img = np.full((40, 50), 255, np.uint8)
        img[rng.integers(5, 15):rng.integers(25, 35), rng.integers(5, 20):rng.integers(30, 45)] = 0
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    want = direct(served, "serving_default", image_bytes=np.array(pngs, dtype=object))
    body = {"instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]}  # default signature
    code, resp = call(served["url"] + "/v1/models/sk:predict", body)
    assert code == 200
    np.testing.assert_allclose([p["probabilities"] for p in resp["predictions"]], want["probabilities"], atol=1e-6)
    assert [p["top_k_ids"] for p in resp["predictions"]] == want["top_k_ids"].tolist()


GOOD_STROKE = [[0, 0, 0], [10, 5, 0], [3, 9, 1]]


@pytest.mark.parametrize("body,match", [
    ({"instances": [{"b64": "not base64!!"}]}, "base64"),
    ({"instances": [{"b64": base64.b64encode(b"not an image").decode()}]}, "image"),
    ({"signature_name": "predict_strokes", "instances": [{"strokes": GOOD_STROKE, "lengths": 0}]},
     "at least one point"),
    ({"signature_name": "predict_strokes", "instances": [{"strokes": [], "lengths": 0}]}, "rank 3"),
    ({"signature_name": "predict_strokes", "instances": [{"strokes": [[1, 2]], "lengths": 1}]},
     "dimension 2 must be 3"),
    ({"signature_name": "predict_strokes", "instances": [{"strokes": GOOD_STROKE, "lengths": 9}]},
     "lengths exceed"),
    ({"signature_name": "predict_strokes",
      "instances": [{"strokes": GOOD_STROKE, "lengths": 3}, {"strokes": GOOD_STROKE[:2], "lengths": 2}]},
     "instances must share a shape"),
    ({"signature_name": "classify", "instances": [1]}, 'signature name: "classify" not found'),
    ({"instances": []}, "non-empty"),
    ({"inputs": {"image_bytes": []}}, "empty input"),
    ([1, 2], "JSON object"),
])
def test_bad_requests_are_clean_400s(served, body, match):
    code, resp = call(served["url"] + "/v1/models/sk:predict", body)
    assert code == 400, resp
    assert set(resp) == {"error"} and match in resp["error"]
    assert "Traceback" not in resp["error"] and "node" not in resp["error"]


def test_wrong_methods_are_405_and_the_connection_stays_usable(served):
    host, port = served["url"][len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/models/sk", body=b'{"instances": [1]}')  # a body the route never reads
    r = conn.getresponse()
    assert r.status == 405 and "POST" in json.loads(r.read())["error"]
    conn.request("GET", "/v1/models/sk:predict")
    r = conn.getresponse()
    assert r.status == 405 and json.loads(r.read())["error"]
    conn.request("GET", "/v1/models/sk")  # same kept-alive connection, still in step
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["model_version_status"][0]["state"] == "AVAILABLE"
    conn.close()


def test_malformed_json_is_400(served):
    code, resp = call(served["url"] + "/v1/models/sk:predict", raw=b'{"instances": [')
    assert code == 400 and resp["error"].startswith("JSON Parse error")


def test_canvas_page_and_assets_are_served_but_nothing_else(served):
    with urllib.request.urlopen(served["url"] + "/", timeout=30) as r:
        html = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html") and '<canvas id="pad"' in html
    for name in ("app.js", "style.css"):
        with urllib.request.urlopen(f"{served['url']}/{name}", timeout=30) as r:
            assert r.status == 200 and len(r.read()) > 100
    assert call(served["url"] + "/sketchtf.json") == (200, {"model_name": "sk", "version": "2"})
    for bad in ("/../serve.py", "/%2e%2e/serve.py", "/missing.js", "/web/app.js"):
        assert call(served["url"] + bad)[0] == 404


def test_missing_base_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model base folder"):
        serve.ModelServer(str(tmp_path / "nope"))
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no version folder"):
        serve.ModelServer(str(tmp_path / "m"))
