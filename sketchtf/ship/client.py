"""A small client for TF Serving's REST predict API (real TF Serving or sketchtf.ship.serve).

  python -m sketchtf.ship.client --server=http://localhost:8501 --model=sketchnet --png=a.png --png=b.png
  python -m sketchtf.ship.client --server=http://localhost:8501 --model=sketchnet \\
      --ndjson="../shared/data/quickdraw_10class_ndjson/test/sun.ndjson" --index=0

PNGs (or JPEGs) go base64-encoded to `serving_default`; Quick Draw drawings go
as padded strokes to `predict_strokes`. Prints the top-k classes of each.
"""
from __future__ import annotations

import base64
import itertools
import json
import urllib.error
import urllib.request

from sketchtf.ship import export


class ServingError(RuntimeError):
    """The server answered an error (TF Serving's {"error": ...} body) or could not be reached."""

    def __init__(self, url: str, status: int | None, message: str):
        super().__init__(f"{url}: " + (f"HTTP {status}: " if status else "") + message)
        self.url, self.status, self.message = url, status, message


def model_url(server: str, model: str, version: int | None = None) -> str:
    base = f"{server.rstrip('/')}/v1/models/{urllib.request.quote(model, safe='')}"
    return base + (f"/versions/{int(version)}" if version else "")


def _call(url: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        raise ServingError(url, e.code, text) from None
    except urllib.error.URLError as e:
        raise ServingError(url, None, f"cannot reach the server ({e.reason})") from None


def model_status(server: str, model: str, version: int | None = None, timeout: float = 60.0) -> dict:
    return _call(model_url(server, model, version), timeout=timeout)


def predict(server: str, model: str, body: dict, version: int | None = None, timeout: float = 60.0) -> list:
    """POSTs a predict body; returns the "predictions" list (one dict per example)."""
    return _call(model_url(server, model, version) + ":predict", body, timeout)["predictions"]


def png_request(image_bytes: list[bytes]) -> dict:
    """Encoded PNG/JPEG images -> a serving_default request in TF Serving's row form."""
    return {"signature_name": "serving_default",
            "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in image_bytes]}


def strokes_request(sketches) -> dict:
    """Lists of (n, 2) stroke arrays -> a predict_strokes request in the row form; rows
    are padded to one length (export.strokes_to_request) because instances are stacked."""
    strokes, lengths = export.strokes_to_request(sketches)
    return {"signature_name": "predict_strokes",
            "instances": [{"strokes": s.tolist(), "lengths": int(n)} for s, n in zip(strokes, lengths)]}


def top_k(prediction: dict, k: int | None = None) -> list[tuple[str, float]]:
    """(class name, probability) pairs of one prediction, best first."""
    pairs = list(zip(prediction["top_k_names"], prediction["top_k_probabilities"]))
    return pairs[:k] if k else pairs


def predict_pngs(server: str, model: str, paths, version=None, timeout=60.0) -> list:
    images = []
    for p in paths:
        with open(p, "rb") as f:
            images.append(f.read())
    return predict(server, model, png_request(images), version, timeout)


def read_ndjson_drawing(path: str, index: int):
    """The index-th drawing (0-based, blank lines skipped) of a Quick Draw ndjson file."""
    from sketchtf.data import quickdraw
    if index < 0:
        raise ValueError(f"--index must be >= 0, got {index}")
    rec = next(itertools.islice(quickdraw.read_ndjson(path, with_times=False), index, None), None)
    if rec is None:
        raise ValueError(f"{path}: has no drawing at index {index}")
    return rec


def predict_ndjson(server: str, model: str, path: str, indices, version=None, timeout=60.0):
    """Returns (records, predictions) for drawings of one ndjson file."""
    recs = [read_ndjson_drawing(path, i) for i in indices]
    return recs, predict(server, model, strokes_request([r.strokes for r in recs]), version, timeout)


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    if bool(f.png) == bool(f.ndjson):
        raise SystemExit("give --png (one or more) or --ndjson with --index, not both")
    try:
        if f.png:
            labels, preds = list(f.png), predict_pngs(f.server, f.model, f.png, f.version or None, f.timeout)
        else:
            recs, preds = predict_ndjson(f.server, f.model, f.ndjson, [int(i) for i in f.index],
                                         f.version or None, f.timeout)
            labels = [f"{f.ndjson}[{i}] ({r.label})" for i, r in zip(f.index, recs)]
    except (ServingError, ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    for label, pred in zip(labels, preds):
        print(label)
        for rank, (name, p) in enumerate(top_k(pred, f.top_k), 1):
            print(f"  {rank}. {name:<24} {100 * p:6.2f}%")


if __name__ == "__main__":
    from absl import app, flags
    flags.DEFINE_string("server", "http://localhost:8501", "TF Serving REST address.")
    flags.DEFINE_string("model", None, "Model name (TF Serving's MODEL_NAME).")
    flags.DEFINE_integer("version", 0, "Model version; 0 = the newest served.")
    flags.DEFINE_multi_string("png", [], "PNG/JPEG file(s), sent to serving_default.")
    flags.DEFINE_string("ndjson", "", "Quick Draw ndjson file; drawings sent as strokes to predict_strokes.")
    flags.DEFINE_multi_integer("index", [0], "0-based drawing index(es) in --ndjson.")
    flags.DEFINE_integer("top_k", 0, "How many classes to print; 0 = all the model returns (its export top_k).")
    flags.DEFINE_float("timeout", 60.0, "Seconds to wait for an answer.")
    flags.mark_flag_as_required("model")
    app.run(main)
