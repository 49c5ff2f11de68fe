"""sketchtf.ship.serve: TF Serving's REST status/predict endpoints over an exported SavedModel."""
import base64
import http.client
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
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


# --- under load and bad input: batching, bounds, shutdown -------------------------------------------------

LIMITS = serve.Limits(max_body_bytes=20_000, max_instances=4, max_points=50, max_strokes=5,
                      max_image_pixels=100 * 100, read_timeout_s=1.0, drain_timeout_s=30.0)


@pytest.fixture(scope="module")
def tuned(served):
    """A second server on the same export: small limits, max_batch_size=8 and a long batch timeout."""
    srv = serve.start_in_thread(os.path.dirname(served["path"]), limits=LIMITS,
                                batching=serve.Batching(max_batch_size=8, batch_timeout_ms=5000))
    yield srv
    srv.shutdown()
    srv.server_close()


def strokes_body(sketch_strokes):
    strokes, lengths = export.strokes_to_request([sketch_strokes])
    return strokes, lengths, {"signature_name": "predict_strokes",
                              "instances": [{"strokes": strokes[0].tolist(), "lengths": int(lengths[0])}]}


def png_bytes(shape=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    img = np.full(shape, 255, np.uint8)
    img[rng.integers(2, 10):rng.integers(20, 30), rng.integers(2, 10):rng.integers(20, 30)] = 0
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def raw_request(url, data: bytes, timeout=30):
    """Sends bytes as they are; returns (status, JSON body, headers) of the one answer."""
    host, port = url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        r = http.client.HTTPResponse(sock)
        r.begin()
        return r.status, json.loads(r.read()), r.headers


class Gate:
    """Holds the first call of a batcher's signature until release(), so the
    requests sent meanwhile queue up behind it; records each call's batch rows."""

    def __init__(self, batcher, rows_input):
        self.batcher, self.real, self.rows_input = batcher, batcher.fn, rows_input
        self.calls, self.event = [], threading.Event()
        batcher.fn = self

    def __call__(self, **inputs):
        self.calls.append(int(inputs[self.rows_input].shape[0]))
        if len(self.calls) == 1:
            self.event.wait(60)
        return self.real(**inputs)

    def wait_for(self, cond, what):
        deadline = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def restore(self):
        self.event.set()
        self.batcher.fn = self.real


def send_all(url, bodies, gate):
    """Sends bodies[0], waits until it holds the signature, sends the rest at
    once, waits until they are queued, releases the gate; returns the answers."""
    out = [None] * len(bodies)

    def send(i):
        out[i] = call(url + "/v1/models/sk:predict", bodies[i])
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    try:
        threads[0].start()
        gate.wait_for(lambda: len(gate.calls) == 1, "the first call")
        for t in threads[1:]:
            t.start()
        gate.wait_for(lambda: gate.batcher.queued() == len(bodies) - 1, "the queue")
    finally:
        gate.event.set()
        for t in threads:
            t.join(120)
        gate.restore()
    return out


def test_concurrent_requests_share_one_signature_call_and_equal_unbatched(served, tuned):
    sketches = [s for s in synthetic.generate(1, split="test") if len(s.strokes) <= LIMITS.max_strokes][:8]
    reqs = [strokes_body(s.strokes) for s in sketches]
    assert len({r[0].shape[1] for r in reqs}) > 1  # different lengths: the batch is padded
    gate = Gate(tuned.model.batchers["predict_strokes"], "strokes")
    answers = send_all(tuned.url, [body for _, _, body in reqs], gate)
    assert gate.calls == [1, 7]  # the seven sent meanwhile ran as ONE signature call
    for (strokes, lengths, _), (code, resp) in zip(reqs, answers):
        assert code == 200, resp
        want = direct(served, "predict_strokes", strokes=strokes, lengths=lengths)  # alone, unpadded
        np.testing.assert_allclose(resp["predictions"][0]["probabilities"], want["probabilities"][0], atol=1e-5)
        np.testing.assert_allclose(resp["predictions"][0]["top_k_probabilities"],
                                   want["top_k_probabilities"][0], atol=1e-5)


def test_a_bad_request_in_a_batch_fails_alone(served, tuned):
    pngs = [png_bytes(seed=i) for i in range(4)]
    bodies = [{"instances": [{"b64": base64.b64encode(p).decode()}]} for p in pngs]
    bodies.insert(2, {"instances": [{"b64": base64.b64encode(b"not an image at all").decode()}]})
    gate = Gate(tuned.model.batchers["serving_default"], "image_bytes")
    answers = send_all(tuned.url, bodies, gate)
    assert gate.calls[:2] == [1, 4]  # the batch of four failed in the graph, then each ran alone
    assert answers[2][0] == 400 and "image" in answers[2][1]["error"].lower()
    for i, png in zip((0, 1, 3, 4), pngs):
        code, resp = answers[i]
        assert code == 200, resp
        want = direct(served, "serving_default", image_bytes=np.array([png], dtype=object))
        np.testing.assert_allclose(resp["predictions"][0]["probabilities"], want["probabilities"][0], atol=1e-5)


def test_a_lone_request_does_not_wait_for_the_batch_timeout(tuned):
    body = {"signature_name": "predict_strokes", "instances": [{"strokes": GOOD_STROKE, "lengths": 3}]}
    start = time.monotonic()
    code, _ = call(tuned.url + "/v1/models/sk:predict", body)
    assert code == 200 and time.monotonic() - start < 2.5  # the timeout is 5 s


def _rows(*sketches, pad_to=None):
    """Row-form predict_strokes instances, padded to one length."""
    p = pad_to or max(len(s) for s in sketches)
    return {"signature_name": "predict_strokes",
            "instances": [{"strokes": s + [[0, 0, 0]] * (p - len(s)), "lengths": len(s)} for s in sketches]}


def _line(n, stroke=0):
    return [[float(i), float(i % 7), stroke] for i in range(n)]


@pytest.mark.parametrize("body,match", [
    (_rows(*[GOOD_STROKE] * 5), "5 instances, over max_instances=4"),
    ({"signature_name": "predict_strokes", "inputs": {"strokes": [GOOD_STROKE] * 5, "lengths": [3] * 5}},
     "over max_instances=4"),
    (_rows(GOOD_STROKE, _line(60)), "instance 1: 60 points (rows of strokes, padding included), over max_points=50"),
    (_rows(GOOD_STROKE, GOOD_STROKE, pad_to=51), "instance 0: 51 points"),
    (_rows(GOOD_STROKE, GOOD_STROKE, [[i, i, i] for i in range(6)]), "instance 2: 6 strokes, over max_strokes=5"),
    (_rows(GOOD_STROKE, [[0, 0, 0], [float("nan"), 1, 0]]), "instance 1: non-finite value"),
    (_rows([[1e39, 0, 0]]), "instance 0: non-finite value"),
    ({"signature_name": "predict_strokes", "instances": [{"strokes": GOOD_STROKE, "lengths": 10 ** 30}]},
     "cannot convert to int32"),
    ({"signature_name": "predict_strokes", "inputs": {"strokes": [GOOD_STROKE] * 2, "lengths": [3] * 3}},
     "disagree on the number of instances"),
    ({"instances": [{"b64": base64.b64encode(png_bytes((120, 90))).decode()}]},
     "instance 0: image of 90 x 120 = 10800 pixels, over max_image_pixels=10000"),
    ({"instances": [{"b64": base64.b64encode(png_bytes()).decode()}, 7]}, "instance 1: expected a string"),
    ({"signature_name": ["predict_strokes"], "instances": [1]}, '"signature_name" must be a string'),
])
def test_sketch_bounds_are_400s_naming_the_limit_and_instance(tuned, body, match):
    code, resp = call(tuned.url + "/v1/models/sk:predict", body)
    assert code == 400 and set(resp) == {"error"}, resp
    assert match in resp["error"]


def test_bodies_over_max_body_bytes_are_413_and_readable(tuned):
    head = "POST /v1/models/sk:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n"
    code, resp, headers = raw_request(tuned.url, head.format(20_001).encode())  # no body sent at all
    assert code == 413 and resp == {"error": "request body of 20001 bytes is over max_body_bytes=20000"}
    assert headers["Connection"] == "close"
    code, resp = call(tuned.url + "/v1/models/sk:predict", raw=b"[" + b" " * 200_000 + b"]")  # sent in full
    assert code == 413 and "max_body_bytes=20000" in resp["error"]


@pytest.mark.parametrize("request_bytes,status,match", [
    (b"POST /v1/models/sk:predict HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Content-Length"),
    (b"POST /v1/models/sk:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411,
     "chunked"),
    (b"POST /v1/models/sk:predict HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "bad Content-Length"),
    (b"POST /v1/models/sk:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"instances\"", 408, "read_timeout_s=1"),
    (b"POST /v1/models/sk:predict HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 20001\r\n\r\n", 413,
     "over max_body_bytes=20000"),  # refused before the body is sent (curl's way)
    (b"BREW /v1/models/sk HTTP/1.1\r\n\r\n", 405, "Unsupported method ('BREW')"),
    (b"\x00\xff garbage \x13\r\n\r\n", 400, "Bad request"),
])
def test_protocol_errors_are_json_4xx(tuned, request_bytes, status, match):
    code, resp, _ = raw_request(tuned.url, request_bytes)
    assert code == status and set(resp) == {"error"} and match in resp["error"], resp


def _start_cli(base, *flags_):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sketchtf.serve", f"--model_base_path={base}", "--port=0",
                             *flags_], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=180)
        except queue.Empty:
            proc.kill()
            raise AssertionError("the server never printed its URL:\n" + "".join(seen)) from None
        seen.append(line)
        if line.strip().startswith("predict:"):
            return proc, line.split()[1].split("/v1/")[0], lines, seen


def test_sigterm_stops_accepting_finishes_the_request_in_flight_and_exits_0(served):
    proc, url, lines, seen = _start_cli(os.path.dirname(served["path"]), "--batch_timeout_ms=1")
    try:
        host, port = url[len("http://"):].split(":")
        strokes, lengths, body = strokes_body(served["sketches"][0].strokes)
        data = json.dumps(body).encode()
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall(f"POST /v1/models/sk:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data[:10])  # in flight: the server is reading its body
        assert call(url + "/v1/models/sk")[0] == 200  # accepted after ours: ours is being handled
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:  # it stops accepting ...
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting 30 s after SIGTERM"
            time.sleep(0.05)
        assert proc.poll() is None  # ... but waits for the request in flight
        sock.sendall(data[10:])
        r = http.client.HTTPResponse(sock)
        r.begin()
        resp = json.loads(r.read())
        assert r.status == 200 and r.headers["Connection"] == "close"
        want = direct(served, "predict_strokes", strokes=strokes, lengths=lengths)
        np.testing.assert_allclose(resp["predictions"][0]["probabilities"], want["probabilities"][0], atol=1e-5)
        sock.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    out = "".join(seen) + "".join(lines.get() for _ in range(lines.qsize()))
    assert "SIGTERM: refusing new connections, finishing 1 request(s) in flight" in out, out
    assert "stopped: every request in flight was answered" in out, out
