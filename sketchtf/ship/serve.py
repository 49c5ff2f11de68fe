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
JSON, NaN/Infinity) answer 400 {"error": "..."}; an unknown model or version
404. The SavedModel's signatures do all the work (decoding, rendering, the
model); the JSON mapping is sketchtf.ship.serving_json's.

Under load (docs/serving.md has the measured figures):
  - batching, as TF Serving's --enable_batching: one queue and one thread per
    signature (Batcher); concurrent requests are run as one signature call of
    up to max_batch_size rows, `strokes` zero-padded to one length, and the
    outputs split back. A lone request is not held back for the timeout.
  - bounds (Limits): a body over max_body_bytes is 413; more than max_instances
    rows, a sketch over max_points rows or max_strokes strokes, an image over
    max_image_pixels is 400 naming the limit and the instance, before any TF work.
    Every answer, the stdlib's own rejections included, is JSON {"error": ...}.
  - shutdown: serve_until_signalled() stops accepting on SIGTERM/SIGINT, lets
    the requests in flight finish (up to drain_timeout_s) and returns.
The HTTP layer is the stdlib's ThreadingHTTPServer (a thread a connection): the
work is in TF ops, which release the GIL, and the batcher keeps it to one
signature call at a time per signature, so threads are not the bottleneck.

  python -m sketchtf.serve --model_base_path=exported/sketchnet --port=8501
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import mimetypes
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

from sketchtf.ship import serving_json

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
_MODEL_URL = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict)?$")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold and take. Over a limit is a 4xx naming it,
    answered before any TF work (the flags of python -m sketchtf.serve)."""
    max_body_bytes: int = 16 << 20        # Content-Length over this: 413
    max_instances: int = 256              # sketches (rows) in one request
    max_points: int = 4096                # rows of one predict_strokes sketch (padding included)
    max_strokes: int = 512                # strokes of one sketch (stroke_index changes + 1)
    max_image_pixels: int = 4096 * 4096   # width x height of one serving_default image
    read_timeout_s: float = 30.0          # a connection silent this long: 408 mid-body, else closed
    drain_timeout_s: float = 30.0         # on shutdown, how long requests in flight may still take


@dataclasses.dataclass(frozen=True)
class Batching:
    """TF Serving's --enable_batching parameters (max_batch_size, batch_timeout_micros)."""
    enabled: bool = True
    max_batch_size: int = 32              # rows per signature call
    batch_timeout_ms: float = 2.0         # the longest a request waits for others to join it


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


def _bad(message: str) -> ServingError:
    return ServingError(HTTPStatus.BAD_REQUEST, message)


def _check_strokes(strokes: np.ndarray, lengths: np.ndarray, limits: Limits) -> None:
    """Per-sketch bounds of predict_strokes, and the lengths the graph would reject
    (checked here so that one bad sketch never fails a batch it shares)."""
    n_rows = strokes.shape[1]
    if n_rows > limits.max_points:
        over = np.flatnonzero(lengths > limits.max_points)
        i = int(over[0]) if over.size else 0
        raise _bad(f"instance {i}: {max(int(lengths[i]), n_rows)} points (rows of strokes, padding included), "
                   f"over max_points={limits.max_points}")
    for i, n in enumerate(lengths.tolist()):
        if n < 1:
            raise _bad(f"every sketch needs at least one point (instance {i}: lengths={n})")
        if n > n_rows:
            raise _bad(f"lengths exceed the padded stroke length (instance {i}: lengths={n} > {n_rows} rows)")
        ids = np.rint(strokes[i, :n, 2])
        count = 1 + int(np.count_nonzero(ids[1:] != ids[:-1]))
        if count > limits.max_strokes:
            raise _bad(f"instance {i}: {count} strokes, over max_strokes={limits.max_strokes}")


def _check_images(images: np.ndarray, limits: Limits) -> None:
    """Reads only each image's header (PIL) so a decompression bomb is refused
    before TF decodes it; bytes PIL cannot read are left to the signature's own error."""
    try:
        from PIL import Image
    except ImportError:  # pillow is a runtime dependency; without it TF's decoder is the only check
        return
    for i, data in enumerate(images.tolist()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w, h = Image.open(io.BytesIO(data)).size
        except Image.DecompressionBombError as e:
            raise _bad(f"instance {i}: image over max_image_pixels={limits.max_image_pixels} ({e})") from None
        except Exception:  # noqa: BLE001 - not an image PIL knows: tf.io.decode_image answers
            continue
        if w * h > limits.max_image_pixels:
            raise _bad(f"instance {i}: image of {w} x {h} = {w * h} pixels, "
                       f"over max_image_pixels={limits.max_image_pixels}")


def check_limits(inputs: dict, limits: Limits) -> None:
    """The bounds of one parsed request (ServingError 400 naming the limit and the instance)."""
    if any(v.size == 0 for v in inputs.values()):
        raise _bad(f"empty input: shapes {({k: list(v.shape) for k, v in inputs.items()})}")
    rows = {k: v.shape[0] for k, v in inputs.items()}
    if len(set(rows.values())) > 1:
        raise _bad(f"inputs disagree on the number of instances: {rows}")
    if next(iter(rows.values())) > limits.max_instances:
        raise _bad(f"{next(iter(rows.values()))} instances, over max_instances={limits.max_instances}")
    if "strokes" in inputs and "lengths" in inputs:
        _check_strokes(inputs["strokes"], inputs["lengths"], limits)
    if "image_bytes" in inputs:
        _check_images(inputs["image_bytes"], limits)


def _check_finite(outputs: dict) -> None:
    """Never answer NaN (not JSON): a sketch whose output is not finite is refused."""
    for k, v in outputs.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            i = int(np.flatnonzero(~np.isfinite(v).reshape(len(v), -1).all(axis=1))[0])
            raise _bad(f"instance {i}: output {k!r} is not finite (coordinates out of range?)")


def _merge(inputs: list[dict], pad: set) -> dict:
    """Stacks several requests' inputs into one batch; `pad` inputs ([B, P, ...])
    are zero-padded to the longest P first (rows past `lengths` are not drawn)."""
    if len(inputs) == 1:
        return inputs[0]
    out = {}
    for k in inputs[0]:
        arrays = [x[k] for x in inputs]
        if k in pad:
            p = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, [(0, 0), (0, p - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
        out[k] = np.concatenate(arrays)
    return out


class _Task:
    """One request waiting in a Batcher's queue."""

    def __init__(self, inputs: dict, pad: set):
        self.inputs = inputs
        self.rows = len(next(iter(inputs.values())))
        # Requests batch together only when their unpadded inputs share a shape.
        self.key = tuple((k, v.shape[1:]) for k, v in sorted(inputs.items()) if k not in pad)
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs, self.error = None, None


class Batcher:
    """TF Serving's batching for one signature: requests queue up; one thread
    takes up to max_batch_size rows (waiting at most batch_timeout_ms from the
    oldest one's arrival, and not at all when no other request is on its way:
    `arriving` counts requests still being parsed), pads `strokes` to one
    length, calls the signature once and splits the outputs back. When a batch
    fails in the graph, each of its requests is run alone, so only the bad one
    gets the error. calls/rows/sizes count the signature calls made."""

    def __init__(self, fn, name: str, config: Batching, arriving=lambda: 0):
        self.fn, self.name, self.config, self.arriving = fn, name, config, arriving
        specs = set(fn.structured_input_signature[1])
        self.pad = {"strokes"} if {"strokes", "lengths"} <= specs else set()
        self.calls, self.rows, self.sizes = 0, 0, collections.Counter()
        self._queue: collections.deque[_Task] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, inputs: dict, on_queued=None) -> dict:
        """Runs one request's inputs (in some batch); returns its own output rows."""
        task = _Task(inputs, self.pad)
        with self._cv:
            if self._closed:
                raise ServingError(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down")
            self._queue.append(task)
            if on_queued is not None:
                on_queued()
            self._cv.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def queued(self) -> int:
        return len(self._queue)

    def notify(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def close(self) -> None:
        """Runs what is queued, then stops the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=60)

    def _ready_rows(self, key) -> int:
        return sum(t.rows for t in self._queue if t.key == key)

    def _take(self) -> list[_Task] | None:
        cap = self.config.max_batch_size
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            first = self._queue[0]
            deadline = first.enqueued + self.config.batch_timeout_ms / 1000.0
            while self._ready_rows(first.key) < cap and self.arriving() > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch, rows = [], 0
            for t in self._queue:
                if t.key == first.key and (not batch or rows + t.rows <= cap):
                    batch.append(t)
                    rows += t.rows
            for t in batch:
                self._queue.remove(t)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._run(batch)

    def _call(self, batch: list[_Task]) -> dict:
        inputs = _merge([t.inputs for t in batch], self.pad)
        out = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        rows = sum(t.rows for t in batch)
        self.calls, self.rows = self.calls + 1, self.rows + rows
        self.sizes[rows] += 1
        return {k: v.numpy() for k, v in out.items()}

    def _run(self, batch: list[_Task]) -> None:
        try:
            outs = self._call(batch)
        except tf.errors.OpError as e:
            if len(batch) > 1:  # one bad request must not fail the others
                for t in batch:
                    self._run([t])
                return
            batch[0].error = _bad(_clean_tf_error(e))
        except Exception as e:  # noqa: BLE001 - a bug: each caller answers 500 with it
            for t in batch:
                t.error = e
        else:
            start = 0
            for t in batch:
                t.outputs = {k: v[start:start + t.rows] for k, v in outs.items()}
                start += t.rows
        for t in batch:
            t.done.set()


class ModelServer:
    """Loads the newest version of one exported model (TF Serving's default policy).

    predict() and status() take and return JSON-ready Python objects and raise
    ServingError; the HTTP layer below only moves bytes. With batching on, each
    signature has a Batcher (self.batchers); close() stops them.
    """

    def __init__(self, model_base_path: str, model_name: str | None = None,
                 limits: Limits | None = None, batching: Batching | None = None):
        self.base = os.path.abspath(model_base_path)
        self.name = model_name or os.path.basename(self.base.rstrip(os.sep))
        self.version = find_versions(self.base)[-1]
        self.path = os.path.join(self.base, str(self.version))
        self.loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self.loaded.signatures)
        self.limits, self.batching = limits or Limits(), batching or Batching()
        self._arriving, self._arriving_lock = 0, threading.Lock()
        on = self.batching.enabled and self.batching.max_batch_size > 1
        self.batchers = {n: Batcher(fn, n, self.batching, lambda: self._arriving)
                         for n, fn in self.signatures.items()} if on else {}

    def close(self) -> None:
        for b in self.batchers.values():
            b.close()

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

    def _signature(self, body):
        if not isinstance(body, dict):
            raise _bad("request body must be a JSON object")
        sig_name = body.get("signature_name") or "serving_default"
        if not isinstance(sig_name, str):
            raise _bad(f'"signature_name" must be a string, got {type(sig_name).__name__}')
        if sig_name not in self.signatures:
            raise _bad(f'Serving signature name: "{sig_name}" not found in signature def '
                       f"(available: {sorted(self.signatures)})")
        return sig_name, self.signatures[sig_name]

    def predict(self, name: str, body, version=None, on_queued=None) -> dict:
        """One predict request; on_queued() is called once it waits for (or skips) a batch."""
        self._check(name, version)
        sig_name, fn = self._signature(body)
        try:
            inputs = serving_json.parse_request(body, fn.structured_input_signature[1], self.limits.max_instances)
        except serving_json.RequestError as e:
            raise _bad(str(e)) from None
        except RecursionError:
            raise _bad("request nested too deeply") from None
        check_limits(inputs, self.limits)
        outs = self._run(sig_name, fn, inputs, on_queued)
        _check_finite(outs)
        return serving_json.format_response(outs, row_format="instances" in body)

    def predict_json(self, name: str, raw: bytes, version=None) -> dict:
        """predict() on a raw JSON body. While it is parsed the batchers know a
        request is on its way and hold a part-full batch for it (up to their timeout)."""
        with self._arrival() as queued:
            return self.predict(name, parse_json(raw), version, on_queued=queued)

    @contextlib.contextmanager
    def _arrival(self):
        state = {"arriving": True}
        with self._arriving_lock:
            self._arriving += 1

        def leave():
            with self._arriving_lock:
                if state["arriving"]:
                    state["arriving"] = False
                    self._arriving -= 1
        try:
            yield leave
        finally:
            leave()
            for b in self.batchers.values():  # a batcher waiting for this request need not wait
                b.notify()

    def _run(self, sig_name: str, fn, inputs: dict, on_queued=None) -> dict:
        if sig_name in self.batchers:
            return self.batchers[sig_name].submit(inputs, on_queued)
        if on_queued is not None:
            on_queued()
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as e:  # e.g. undecodable image bytes
            raise _bad(_clean_tf_error(e)) from None
        return {k: v.numpy() for k, v in out.items()}

    def batch_stats(self) -> dict:
        """Per batched signature: signature calls, rows run, {batch rows: calls}."""
        return {n: {"calls": b.calls, "rows": b.rows, "sizes": dict(sorted(b.sizes.items()))}
                for n, b in self.batchers.items()}


def parse_json(raw: bytes):
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(f"JSON Parse error: {e}") from None
    except RecursionError:
        raise _bad("JSON Parse error: nested too deeply") from None


class _Handler(BaseHTTPRequestHandler):
    server_version = "sketchtf-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: the canvas page posts many small requests
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm
    # holds the body until the client's delayed ACK (~40 ms a request on Linux).
    disable_nagle_algorithm = True

    def setup(self):
        self.timeout = self.server.model.limits.read_timeout_s  # socket timeout: no connection hangs
        super().setup()
        self._in_flight, self._unread = False, False
        self.server.track(self, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def handle_one_request(self):
        self._in_flight, self._unread = False, False
        try:
            super().handle_one_request()
            if self._unread:  # answered before reading the whole request: let the client read it
                self._linger()
        finally:
            if self._in_flight:
                self.server.request_done(self)

    def parse_request(self):
        self._in_flight = True  # a request line arrived: in flight until answered
        self.server.request_started(self)
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # "GET /": no status line to answer with
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not supported")
            return False
        return True

    def handle_expect_100(self):
        """Expect: 100-continue (curl's way for bodies over 1 KiB): refuse a body
        over max_body_bytes before the client sends it."""
        raw, limit = self.headers.get("Content-Length", "").strip(), self.server.model.limits.max_body_bytes
        if raw.isdigit() and int(raw) > limit:
            self.close_connection, self._unread = True, True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"request body of {int(raw)} bytes is over max_body_bytes={limit}"})
            return False
        return super().handle_expect_100()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own rejections (bad request line or headers, unknown
        method) as {"error": ...} JSON; its 501 only means "unknown method"."""
        code = HTTPStatus.METHOD_NOT_ALLOWED if code == HTTPStatus.NOT_IMPLEMENTED else HTTPStatus(code)
        self.log_error("code %d, message %s", code, message)
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with a status line
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        self._json(code, {"error": f"{code.phrase}: {message}" if message else code.phrase})

    def _send(self, status: int, payload: bytes, content_type: str):
        self.send_response(int(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection or self.server.draining:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, status: int, obj):
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _route(self, method: str, body: bytes | None):
        path = self.path.split("?", 1)[0]
        m = _MODEL_URL.match(path)
        model: ModelServer = self.server.model
        if m:
            name, version, predict = m.groups()
            name = urllib.parse.unquote(name)
            if predict and method == "POST":
                return self._json(HTTPStatus.OK, model.predict_json(name, body, version))
            if not predict and method == "GET":
                return self._json(HTTPStatus.OK, model.status(name, version))
            raise ServingError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not supported on {path}")
        if method == "GET" and path == "/sketchtf.json":
            return self._json(HTTPStatus.OK, {"model_name": model.name, "version": str(model.version)})
        if method == "GET":
            return self._static(path)
        raise ServingError(HTTPStatus.NOT_FOUND, f"Malformed request: {method} {path}")

    def _refuse(self, status: int, message: str):
        """An error after which the rest of the request is not read: answer, then close."""
        self.close_connection, self._unread = True, True
        raise ServingError(status, message)

    def _read_body(self) -> bytes:
        # Always drained before answering, so a kept-alive connection stays in step.
        limits = self.server.model.limits
        if self.headers.get("Transfer-Encoding"):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported: send Content-Length")
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, f"{self.command} needs a Content-Length header")
        raw = lengths.pop().strip()
        if lengths or not re.fullmatch(r"[0-9]{1,18}", raw):
            self._refuse(HTTPStatus.BAD_REQUEST, f"bad Content-Length header: {raw[:40]!r}")
        n = int(raw)
        if n > limits.max_body_bytes:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"request body of {n} bytes is over max_body_bytes={limits.max_body_bytes}")
        try:
            data = self.rfile.read(n)
        except TimeoutError:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT,
                         f"request body not received within read_timeout_s={limits.read_timeout_s:g}")
        if len(data) < n:
            self._refuse(HTTPStatus.BAD_REQUEST, f"body ended after {len(data)} of {n} bytes (Content-Length)")
        return data

    def _linger(self, seconds: float = 2.0, max_bytes: int = 64 << 20):
        """After answering a request whose body was not read (413, 408): stop
        writing and discard what the client still sends for a moment, so that
        closing does not reset the connection before it has read the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline, got = time.monotonic() + seconds, 0
            while got < max_bytes and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass

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
            has_body = method == "POST" or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
            self._route(method, self._read_body() if has_body else None)
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

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_OPTIONS(self):
        self._handle("OPTIONS")


class Server(ThreadingHTTPServer):
    """The HTTP server: a thread a connection. server_close() stops accepting,
    lets the requests in flight finish (up to limits.drain_timeout_s), closes
    idle kept-alive connections and stops the batchers; `drained` says whether
    every request in flight finished."""
    daemon_threads = True
    block_on_close = False  # server_close() waits for requests, not for idle keep-alive connections
    request_queue_size = 128  # listen() backlog: the stdlib's 5 drops bursts of new connections (SYN retried after 1 s)

    def __init__(self, model: ModelServer, host: str = "127.0.0.1", port: int = 8501, verbose: bool = False):
        self.model, self.verbose = model, verbose
        self.draining, self.drained = False, None
        self._conns, self._busy = set(), set()
        self._cv = threading.Condition()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # the client went away: nothing to answer
            return
        super().handle_error(request, client_address)

    def track(self, handler, is_open: bool) -> None:
        with self._cv:
            (self._conns.add if is_open else self._conns.discard)(handler)

    def request_started(self, handler) -> None:
        with self._cv:
            self._busy.add(handler)

    def request_done(self, handler) -> None:
        with self._cv:
            self._busy.discard(handler)
            if self.draining:
                handler.close_connection = True
            self._cv.notify_all()

    def in_flight(self) -> int:
        with self._cv:
            return len(self._busy)

    def server_close(self):
        """Call once serve_forever has returned (shutdown())."""
        with self._cv:
            self.draining = True
        super().server_close()  # the listening socket: new connections are refused from here
        with self._cv:
            self.drained = self._cv.wait_for(lambda: not self._busy, self.model.limits.drain_timeout_s)
            for handler in self._conns - self._busy:  # idle keep-alive connections: wake and close
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
        self.model.close()


def serve_until_signalled(srv: Server, signals=(signal.SIGTERM, signal.SIGINT)) -> bool:
    """Serves on this (the main) thread until one of `signals`, then stops
    accepting, finishes the requests in flight and returns True when all of
    them finished (a second signal takes the default action)."""
    def stop(signum, frame):
        del frame
        print(f"{signal.Signals(signum).name}: refusing new connections, finishing {srv.in_flight()} "
              "request(s) in flight", flush=True)
        threading.Thread(target=srv.shutdown, name="sketchtf-serve-stop", daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in signals}
    try:
        srv.serve_forever()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        srv.server_close()
    return bool(srv.drained)


def start_in_thread(model_base_path: str, port: int = 0, host: str = "127.0.0.1",
                    model_name: str | None = None, limits: Limits | None = None,
                    batching: Batching | None = None) -> Server:
    """Starts a server on a background thread (port 0 = any free port); call
    .shutdown() then .server_close() to stop."""
    srv = Server(ModelServer(model_base_path, model_name, limits, batching), host, port)
    threading.Thread(target=srv.serve_forever, name="sketchtf-serve", daemon=True).start()
    return srv
