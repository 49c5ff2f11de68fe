"""Fuzzing sketchtf.ship.serve's REST API with hypothesis.

Whatever arrives (JSON of the wrong types, NaN/Infinity as JSON tokens and as
numbers beyond float32, huge integers, deep nesting, empty instances, wrong
signature or model names, binary garbage, a wrong Content-Length), the answer
is a 4xx with {"error": "<message>"} (or a 200 when the input happens to be a
valid request), never a 5xx, and always within a socket timeout; after every
case the server still answers a valid request with the SavedModel's numbers.

  python -m pytest tests/ship/test_serve_fuzz.py -s --hypothesis-show-statistics

-s prints the cases tried and the status codes seen (docs/serving.md, "Fuzzing").
"""
import base64
import collections
import http.client
import json
import socket
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketchtf.config import data_config
from sketchtf.data import synthetic
from sketchtf.models import build_model
from sketchtf.ship import export, serve

SIZE = 32
TIMEOUT_S = 20  # a connection silent this long is a hung one: the test fails
CASES = collections.Counter()      # test -> cases tried
STATUSES = collections.Counter()   # status code -> answers seen
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    classes = list(synthetic.CLASSES)
    model = build_model("sketchnet", num_classes=len(classes), input_shape=(SIZE, SIZE, 1))
    base = tmp_path_factory.mktemp("export")
    path = export.export_saved_model(model, classes, data_config(source="synthetic", image_size=SIZE),
                                     str(base), "fz", version=1)
    limits = serve.Limits(max_body_bytes=200_000, max_instances=8, max_points=256, max_strokes=32,
                          max_image_pixels=256 * 256, read_timeout_s=0.5, drain_timeout_s=10)
    srv = serve.start_in_thread(str(base / "fz"), limits=limits,
                                batching=serve.Batching(max_batch_size=8, batch_timeout_ms=1))
    strokes, lengths = export.strokes_to_request([list(synthetic.generate(1, split="test"))[0].strokes])
    want = tf.saved_model.load(path).signatures["predict_strokes"](strokes=tf.constant(strokes),
                                                                  lengths=tf.constant(lengths))
    valid = {"signature_name": "predict_strokes",
             "instances": [{"strokes": strokes[0].tolist(), "lengths": int(lengths[0])}]}
    yield dict(srv=srv, valid=json.dumps(valid).encode(), want=want["probabilities"].numpy()[0])
    srv.shutdown()
    srv.server_close()
    total = sum(CASES.values())
    print(f"\nfuzz: {total} cases tried ({dict(CASES)}); answers by status {dict(sorted(STATUSES.items()))}; "
          f"5xx answers: {sum(n for s, n in STATUSES.items() if s >= 500)}")


def send(srv, data: bytes):
    """Sends raw bytes; returns (status, body bytes) of the one answer, or (None, b"")
    when the server closed the connection without one."""
    host, port = srv.server_address[:2]
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        r = http.client.HTTPResponse(sock)
        try:
            r.begin()
        except http.client.RemoteDisconnected:
            return None, b""
        return r.status, r.read()


def post(srv, body: bytes, path="/v1/models/fz:predict", content_length=None):
    n = len(body) if content_length is None else content_length
    head = f"POST {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
    return send(srv, head.encode() + body)


def check(server, name, status, body, ok_allowed=True):
    """The answer is a 4xx with a JSON error message (or a 200 with predictions),
    and the server then still answers a valid request correctly."""
    CASES[name] += 1
    STATUSES[status] += 1
    assert status is not None and status < 500, (status, body[:500])
    payload = json.loads(body, parse_constant=_not_json)  # every answer is strict JSON (no NaN/Infinity)
    if status == 200:
        assert ok_allowed and ("predictions" in payload or "outputs" in payload), payload
    else:
        assert 400 <= status < 500 and set(payload) == {"error"}, (status, payload)
        assert isinstance(payload["error"], str) and payload["error"] and "Traceback" not in payload["error"]
    still_serving(server)


def _not_json(token):
    raise AssertionError(f"the answer holds {token}, which is not JSON")


def still_serving(server):
    status, body = post(server["srv"], server["valid"])
    assert status == 200, body[:500]
    np.testing.assert_allclose(json.loads(body)["predictions"][0]["probabilities"], server["want"], atol=1e-5)


# --- strategies -----------------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # NaN/Infinity are written as JSON's NaN/Infinity tokens
    st.floats(-300, 300),
    st.integers(),
    st.integers(min_value=-10 ** 60, max_value=10 ** 60),
    st.sampled_from([3.5e38, 3.5e39, 1e308, -1e308, 5e-324, 2 ** 31, -2 ** 31 - 1, 2 ** 63, 0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12), st.binary(max_size=8).map(
    lambda b: {"b64": base64.b64encode(b).decode()}))
JSON = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                    st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                    max_leaves=25)
SIGNATURES = st.one_of(st.sampled_from(["predict_strokes", "serving_default", "", "classify", "PREDICT_STROKES"]),
                       st.text(max_size=20), JSON)
POINT = st.one_of(st.tuples(NUMBERS, NUMBERS, st.integers(0, 40)).map(list),
                  st.lists(SCALARS, max_size=4))
STROKE_ROWS = st.one_of(st.lists(POINT, min_size=0, max_size=12),
                        st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3),
                                           st.integers(0, 3)).map(list), min_size=1, max_size=300))
LENGTHS = st.one_of(st.integers(-5, 300), NUMBERS, SCALARS)


@st.composite
def predict_bodies(draw):
    """Near-valid predict requests: the right keys, values of every kind."""
    sig = draw(SIGNATURES)
    n = draw(st.integers(0, 10))
    if draw(st.booleans()):  # row form
        inst = st.one_of(st.fixed_dictionaries({"strokes": STROKE_ROWS, "lengths": LENGTHS}),
                         st.fixed_dictionaries({"b64": st.binary(max_size=64).map(
                             lambda b: base64.b64encode(b).decode())}), JSON)
        body = {"signature_name": sig, "instances": draw(st.lists(inst, min_size=n, max_size=n))}
    else:  # columnar form
        body = {"signature_name": sig, "inputs": draw(st.one_of(
            st.fixed_dictionaries({"strokes": st.lists(STROKE_ROWS, max_size=n),
                                   "lengths": st.lists(LENGTHS, max_size=n)}),
            JSON))}
    if draw(st.booleans()):
        del body["signature_name"]
    return body


# --- the fuzz tests -------------------------------------------------------------------------------------

@settings(FUZZ, max_examples=200)
@given(value=JSON)
def test_any_json_value_as_body(server, value):
    check(server, "any_json", *post(server["srv"], json.dumps(value).encode()))


@settings(FUZZ, max_examples=400)
@given(body=predict_bodies())
def test_near_valid_predict_requests(server, body):
    check(server, "near_valid", *post(server["srv"], json.dumps(body).encode()))


@settings(FUZZ, max_examples=100)
@given(token=st.sampled_from(["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e39", "3.5e38",
                              "123456789012345678901234567890123456789", "-0", "1e-400", "0x10", "01", ".5",
                              "true", "null", '"7"', "[]", "{}"]),
       where=st.sampled_from(["x", "y", "id", "lengths"]),
       n=st.integers(1, 20))
def test_special_number_tokens(server, token, where, n):
    """Numbers written as JSON text (not via Python floats): NaN/Infinity tokens, overflow, non-JSON forms."""
    pts = [[str(i), str(i % 5), "0"] for i in range(n)]
    col = {"x": 0, "y": 1, "id": 2}.get(where)
    if col is not None:
        pts[n // 2][col] = token
    rows = ",".join("[" + ",".join(p) + "]" for p in pts)
    length = token if where == "lengths" else str(n)
    body = f'{{"signature_name": "predict_strokes", "instances": [{{"strokes": [{rows}], "lengths": {length}}}]}}'
    check(server, "number_tokens", *post(server["srv"], body.encode()))


@settings(FUZZ, max_examples=50)
@given(depth=st.integers(1, 60_000), shape=st.sampled_from(["list", "dict", "instances", "strokes"]))
def test_deep_nesting(server, depth, shape):
    body = {"list": "[" * depth + "]" * depth,
            "dict": '{"a":' * depth + "1" + "}" * depth,
            "instances": '{"instances": ' + "[" * depth + "]" * depth + "}",
            "strokes": '{"signature_name": "predict_strokes", "instances": [{"strokes": '
                       + "[" * depth + "1" + "]" * depth + ', "lengths": 1}]}'}[shape]
    check(server, "deep_nesting", *post(server["srv"], body.encode()))


EMPTY = [{}, [], "", {"instances": []}, {"inputs": {}}, {"inputs": []}, {"instances": [{}]},
         {"instances": [[]]}, {"instances": [{"b64": ""}]}, {"inputs": {"image_bytes": []}},
         {"signature_name": "predict_strokes", "instances": [{"strokes": [], "lengths": 0}]},
         {"signature_name": "predict_strokes", "instances": [{"strokes": [[]], "lengths": 1}]},
         {"signature_name": "predict_strokes", "instances": [{"strokes": [[0, 0, 0]], "lengths": 0}]},
         {"signature_name": "predict_strokes", "inputs": {"strokes": [], "lengths": []}},
         {"signature_name": "predict_strokes", "inputs": {"strokes": [[]], "lengths": [0]}},
         {"instances": None}, {"inputs": None}, {"instances": [None]}, {"instances": {}}]


@settings(FUZZ, max_examples=len(EMPTY) * 2)
@given(body=st.sampled_from(EMPTY))
def test_empty_instances(server, body):
    check(server, "empty", *post(server["srv"], json.dumps(body).encode()), ok_allowed=False)


@settings(FUZZ, max_examples=100)
@given(sig=st.text(max_size=40), model=st.text(min_size=1, max_size=20), version=st.integers(0, 10 ** 20))
def test_wrong_signature_model_and_version(server, sig, model, version):
    valid = json.loads(server["valid"])
    srv = server["srv"]
    if sig not in srv.model.signatures and sig:
        valid["signature_name"] = sig
        check(server, "names", *post(srv, json.dumps(valid).encode()), ok_allowed=False)
    quoted = urllib.parse.quote(model, safe="")
    if model != "fz":
        check(server, "names", *post(srv, server["valid"], path=f"/v1/models/{quoted}:predict"), ok_allowed=False)
    if version != 1:
        check(server, "names", *post(srv, server["valid"], path=f"/v1/models/fz/versions/{version}:predict"),
              ok_allowed=False)


@settings(FUZZ, max_examples=200)
@given(data=st.one_of(st.binary(max_size=3000), st.binary(max_size=40).map(lambda b: b'{"instances": [' + b),
                      st.text(max_size=200).map(lambda t: t.encode("utf-16"))))
def test_binary_garbage_bodies(server, data):
    check(server, "garbage_body", *post(server["srv"], data))


@settings(FUZZ, max_examples=60)
@given(delta=st.integers(-400, 400), header=st.sampled_from(["exact", "number", "text", "negative", "two", "huge"]))
def test_wrong_content_length(server, delta, header):
    """A declared length longer than the body times out (408, read_timeout_s), a
    shorter one cuts the JSON (400); malformed, conflicting or huge ones are refused."""
    body = server["valid"]
    n = max(0, len(body) + delta)
    n = len(body) if header == "exact" else n
    value = {"exact": str(n), "number": str(n), "text": f"{n}abc", "negative": str(-n - 1),
             "two": f"{n}\r\nContent-Length: {n + 1}", "huge": str(10 ** 30)}[header]
    head = f"POST /v1/models/fz:predict HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {value}\r\n\r\n"
    check(server, "content_length", *send(server["srv"], head.encode() + body))


@settings(FUZZ, max_examples=100)
@given(line=st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b and b"\r" not in b))
def test_garbage_request_lines(server, line):
    """Not even HTTP: a JSON 4xx, or (a blank line) the connection closed without an answer."""
    status, body = send(server["srv"], line + b"\r\nHost: fuzz\r\n\r\n")
    if status is None:
        CASES["garbage_line"] += 1
        assert not line.decode("latin-1").split(), line  # only a blank request line gets no answer
        still_serving(server)
    else:
        check(server, "garbage_line", status, body, ok_allowed=False)


def test_every_answer_was_a_4xx_or_200(server):
    """Summary after the cases above (module order): no 5xx was ever answered."""
    assert sum(CASES.values()) > 0
    assert not [s for s in STATUSES if s is not None and s >= 500]
