"""A thin local stand-in for TF Serving's REST API over an exported SavedModel.

No TF Serving binary exists on our machines, so this serves the very folder
`docker run ... tensorflow/serving` would serve (`<base>/<model_name>/<version>/`),
with TF Serving's URLs, JSON and status codes:

  GET  /v1/models/<name>                          model status (every version found)
  GET  /v1/models/<name>/versions/<v>             status of one version
  POST /v1/models/<name>:predict                  newest version
  POST /v1/models/<name>/versions/<v>:predict     {"signature_name": ..., "instances"|"inputs": ...}
  GET  /                                          the live canvas page (sketchtf/ship/web/)
  GET  /sketchtf.json                             {"model_name", "version"} for the page

Bad requests (bad base64, empty strokes, wrong shapes, unknown signature, bad
JSON) answer 400 {"error": "..."}; an unknown model or version 404. The
SavedModel's signatures do all the work (decoding, rendering, the model); the
JSON mapping is sketchtf.ship.serving_json's.

  python -m sketchtf.serve --model_base_path=exported/sketchnet --port=8501
"""
from __future__ import annotations

import json
import mimetypes
import os
import re
import threading
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tensorflow as tf

from sketchtf.ship import serving_json

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_BODY_BYTES = 64 << 20
_MODEL_URL = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict)?$")


class ServingError(Exception):
    """An error answered as HTTP `status` with TF Serving's {"error": message} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = int(status), message


def find_versions(model_base_path: str) -> list[int]:
    """Version numbers under the base path, as TF Serving sees them: numeric
    folders holding a saved_model.pb (".tmp" folders of an export in progress are skipped)."""
    if not os.path.isdir(model_base_path):
        raise FileNotFoundError(f"{model_base_path}: no such model base folder "
                                "(expected <export_dir>/<model_name> holding version folders)")
    versions = sorted(int(d) for d in os.listdir(model_base_path)
                      if d.isdigit() and os.path.isfile(os.path.join(model_base_path, d, "saved_model.pb")))
    if not versions:
        raise FileNotFoundError(f"{model_base_path}: no version folder <n>/saved_model.pb "
                                "(export with python -m sketchtf.export)")
    return versions


_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[)")


def _clean_tf_error(err: tf.errors.OpError) -> str:
    """The op's own message, without eager-mode wrapping, node names and op traces
    (TF Serving shows the op message too)."""
    lines = [ln for ln in err.message.splitlines() if ln.strip() and not _TF_NOISE.match(ln)]
    msg = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", lines[0] if lines else type(err).__name__)
    # tf.debugging asserts: "assertion failed: [msg] [Condition ...] [x (name) = ] [values]"
    m = re.match(r"assertion failed: \[(.*?)\s*\] (.*)$", msg)
    if m:
        detail = " ".join(p.strip() for p in re.findall(r"\[([^\[\]]*)\]", m.group(2)))
        msg = f"{m.group(1).rstrip('. ')} ({detail})"
    return msg


class ModelServer:
    """Loads the newest version of one exported model (TF Serving's default policy).

    predict() and status() take and return JSON-ready Python objects and raise
    ServingError; the HTTP layer below only moves bytes.
    """

    def __init__(self, model_base_path: str, model_name: str | None = None):
        self.base = os.path.abspath(model_base_path)
        self.name = model_name or os.path.basename(self.base.rstrip(os.sep))
        self.version = find_versions(self.base)[-1]
        self.path = os.path.join(self.base, str(self.version))
        self.loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self.loaded.signatures)

    def _check(self, name: str, version) -> None:
        if name != self.name:
            raise ServingError(HTTPStatus.NOT_FOUND, f"Servable not found for request: Latest({name})")
        if version is not None and int(version) != self.version:
            raise ServingError(HTTPStatus.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {int(version)})")

    def status(self, name: str, version=None) -> dict:
        self._check(name, version)
        return {"model_version_status": [{
            "version": str(self.version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}

    def predict(self, name: str, body, version=None) -> dict:
        self._check(name, version)
        if not isinstance(body, dict):
            raise ServingError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        sig_name = body.get("signature_name") or "serving_default"
        if sig_name not in self.signatures:
            raise ServingError(HTTPStatus.BAD_REQUEST,
                               f'Serving signature name: "{sig_name}" not found in signature def '
                               f"(available: {sorted(self.signatures)})")
        fn = self.signatures[sig_name]
        try:
            inputs = serving_json.parse_request(body, fn.structured_input_signature[1])
        except serving_json.RequestError as e:
            raise ServingError(HTTPStatus.BAD_REQUEST, str(e)) from None
        if any(v.size == 0 for v in inputs.values()):
            raise ServingError(HTTPStatus.BAD_REQUEST,
                               f"empty input: shapes {({k: list(v.shape) for k, v in inputs.items()})}")
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as e:  # e.g. lengths 0, undecodable image bytes
            raise ServingError(HTTPStatus.BAD_REQUEST, _clean_tf_error(e)) from None
        return serving_json.format_response({k: v.numpy() for k, v in out.items()},
                                            row_format="instances" in body)


def _parse_json(raw: bytes):
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ServingError(HTTPStatus.BAD_REQUEST, f"JSON Parse error: {e}") from None


class _Handler(BaseHTTPRequestHandler):
    server_version = "sketchtf-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: the canvas page posts many small requests

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status: int, payload: bytes, content_type: str):
        self.send_response(int(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, status: int, obj):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _route(self, method: str, body: bytes | None):
        path = self.path.split("?", 1)[0]
        m = _MODEL_URL.match(path)
        model: ModelServer = self.server.model
        if m:
            name, version, predict = m.groups()
            name = urllib.parse.unquote(name)
            if predict and method == "POST":
                return self._json(HTTPStatus.OK, model.predict(name, _parse_json(body), version))
            if not predict and method == "GET":
                return self._json(HTTPStatus.OK, model.status(name, version))
            raise ServingError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not supported on {path}")
        if method == "GET" and path == "/sketchtf.json":
            return self._json(HTTPStatus.OK, {"model_name": model.name, "version": str(model.version)})
        if method == "GET":
            return self._static(path)
        raise ServingError(HTTPStatus.NOT_FOUND, f"Malformed request: {method} {path}")

    def _read_body(self) -> bytes:
        # Always drained before answering, so a kept-alive connection stays in step.
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise ServingError(HTTPStatus.BAD_REQUEST, "bad Content-Length header") from None
        if n > MAX_BODY_BYTES:
            self.close_connection = True
            raise ServingError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(n)

    def _static(self, path: str):
        name = "index.html" if path == "/" else path.lstrip("/")
        # Only plain files directly in web/ are served: no traversal, no listing.
        if "/" in name or name.startswith(".") or not os.path.isfile(os.path.join(WEB_DIR, name)):
            raise ServingError(HTTPStatus.NOT_FOUND, f"not found: {path}")
        with open(os.path.join(WEB_DIR, name), "rb") as f:
            data = f.read()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, data, ctype)

    def _handle(self, method: str):
        try:
            self._route(method, self._read_body() if method == "POST" else None)
        except ServingError as e:
            self._json(e.status, {"error": e.message})
        except tf.errors.OpError as e:  # anything else the graph rejects is still the caller's input
            self._json(HTTPStatus.BAD_REQUEST, {"error": _clean_tf_error(e)})
        except Exception as e:  # a bug here: answer (the page shows it) and log it, keep serving
            traceback.print_exc()
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}: {e}"})

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: ModelServer, host: str = "127.0.0.1", port: int = 8501, verbose: bool = False):
        self.model, self.verbose = model, verbose
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_in_thread(model_base_path: str, port: int = 0, host: str = "127.0.0.1",
                    model_name: str | None = None) -> Server:
    """Starts a server on a background thread (port 0 = any free port); call .shutdown() to stop."""
    srv = Server(ModelServer(model_base_path, model_name), host, port)
    threading.Thread(target=srv.serve_forever, name="sketchtf-serve", daemon=True).start()
    return srv
