"""Serving under load: requests/s and latency of sketchtf.ship.serve at 1, 8 and 32 concurrent clients.

  python benchmarks/serve_load.py                  # about 3-4 minutes on 2 cores
  python benchmarks/serve_load.py --requests=100 --clients=1,8 --no-compare_unbatched   # a quick look

A SketchNet with random weights (nothing is trained: the figures are about
serving, not accuracy) is exported as a SavedModel and served in this process
with batching on, on 127.0.0.1 and a free port. The clients run in a separate
process (threads, one kept-alive connection each, bodies encoded beforehand),
so the server does not share its GIL with them. They send real Quick Draw test
sketches from ../shared/data/quickdraw_10class_ndjson/test/: the strokes to
predict_strokes, and the same sketches drawn as 256 px PNGs (a canvas export)
to serving_default, one sketch a request. Each row is a fixed number of
requests with a time limit, so the run stops by itself. Every answer is checked
against the SavedModel's own signature run on that input alone (within 1e-5).

--compare_unbatched adds the same rows against a second server with batching
off; a GET-status row shows what the HTTP layer alone (stdlib
ThreadingHTTPServer) can do. Ends with one JSON line: the figures and the
targets (no errors or mismatches; p99 at 32 clients <= 10x p50 at 1 client;
requests/s at 8 clients >= 2x at 1 client).
"""
from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sketchtf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF)

FLAGS = flags.FLAGS
flags.DEFINE_list("clients", ["1", "8", "32"], "Concurrent clients per row.")
flags.DEFINE_integer("requests", 300, "Requests per row (the row stops earlier at --row_time_limit_s).")
flags.DEFINE_float("row_time_limit_s", 30.0, "Longest one row may run.")
flags.DEFINE_integer("per_class", 20, "Test sketches per class (the request pool).")
flags.DEFINE_integer("image_size", 32, "The model's input size (32: the smoke configs').")
flags.DEFINE_integer("max_batch_size", 32, "Server batching: rows per signature call.")
flags.DEFINE_float("batch_timeout_ms", 2.0, "Server batching: the longest a request waits for others.")
flags.DEFINE_list("signatures", ["predict_strokes", "serving_default"], "Signatures to load.")
flags.DEFINE_bool("compare_unbatched", True, "Also run the rows against a server with batching off.")
flags.DEFINE_string("data", "", "Quick Draw ndjson test folder (default ../shared/data/quickdraw_10class_ndjson/test).")
flags.DEFINE_string("json_out", "", "Also write the summary JSON here.")

ATOL = 1e-5


def client_load(host, port, path, bodies, clients, requests, time_limit_s):
    """Runs in the client process: `clients` threads share `requests` requests
    (body i % len(bodies); None = GET). Returns ([(body index, status, seconds,
    answer bytes)], wall seconds)."""
    import http.client
    import itertools
    import threading

    counter, results = itertools.count(), []
    stop_at = time.monotonic() + time_limit_s

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while (i := next(counter)) < requests and time.monotonic() < stop_at:
            k = i % len(bodies)
            t0 = time.perf_counter()
            try:
                conn.request("GET" if bodies[k] is None else "POST", path, body=bodies[k],
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                status, data = r.status, r.read()
            except (OSError, http.client.HTTPException) as e:
                status, data = None, repr(e).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
            results.append((k, status, time.perf_counter() - t0, data))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start, time.process_time() - cpu


def load_sketches(folder, per_class):
    from sketchtf.data import quickdraw
    return list(quickdraw.read_ndjson(folder, with_times=False, limit_per_class=per_class))


def draw_png(strokes, size=256, width=3):
    """A sketch drawn black on white with PIL, as a canvas export would be."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(img)
    for s in strokes:
        pts = [(float(x), float(y)) for x, y in s]
        pen.line(pts if len(pts) > 1 else pts * 2, fill=0, width=width)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build_requests(sketches):
    """Per signature: (JSON bodies, the inputs of each alone) for every sketch."""
    import numpy as np
    from sketchtf.ship import export
    strokes_b, strokes_in, png_b, png_in = [], [], [], []
    for sk in sketches:
        strokes, lengths = export.strokes_to_request([sk.strokes])
        strokes_b.append(json.dumps({"signature_name": "predict_strokes", "instances": [
            {"strokes": strokes[0].tolist(), "lengths": int(lengths[0])}]}).encode())
        strokes_in.append(dict(strokes=strokes, lengths=lengths))
        png = draw_png(sk.strokes)
        png_b.append(json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode())
        png_in.append(dict(image_bytes=np.array([png], dtype=object)))
    return {"predict_strokes": (strokes_b, strokes_in), "serving_default": (png_b, png_in)}


def export_model(work, image_size, num_classes, class_names):
    from sketchtf.config import data_config
    from sketchtf.models import build_model
    from sketchtf.ship import export
    model = build_model("sketchnet", num_classes=num_classes, input_shape=(image_size, image_size, 1))
    export.export_saved_model(model, class_names, data_config(image_size=image_size), work, "sketchnet")
    return os.path.join(work, "sketchnet")


def references(path, requests):
    """The SavedModel's own outputs, each input run alone (batch of one)."""
    import tensorflow as tf
    loaded = tf.saved_model.load(path)
    return {sig: [loaded.signatures[sig](**{k: tf.constant(v) for k, v in x.items()})["probabilities"].numpy()[0]
                  for x in inputs] for sig, (_, inputs) in requests.items()}


def percentile(values, q):
    import numpy as np
    return float(np.percentile(values, q)) if values else float("nan")


def run_row(pool, srv, sig, bodies, refs, clients):
    """One row: fixed requests at `clients` concurrent clients; answers checked against refs."""
    import numpy as np
    host, port = srv.server_address[:2]
    path = f"/v1/models/{srv.model.name}" + (":predict" if sig != "status" else "")
    before = srv.model.batch_stats().get(sig, {"calls": 0, "rows": 0})
    cpu = time.process_time()
    results, wall, client_cpu = pool.apply(client_load, (host, port, path, bodies, clients, FLAGS.requests,
                                                         FLAGS.row_time_limit_s))
    server_cpu = time.process_time() - cpu
    after = srv.model.batch_stats().get(sig, {"calls": 0, "rows": 0})
    errors = sum(1 for _, status, _, _ in results if status != 200)
    mismatches = 0
    if refs is not None:
        for k, status, _, data in results:
            if status == 200:
                got = np.asarray(json.loads(data)["predictions"][0]["probabilities"])
                mismatches += int(not np.allclose(got, refs[k], atol=ATOL, rtol=0))
    failed = [(status, data[:200]) for _, status, _, data in results if status != 200]
    if failed:
        print(f"  {sig} at {clients} clients: {len(failed)} errors, e.g. {failed[0]}", flush=True)
    lat = [s * 1000 for _, _, s, _ in results]
    calls = after["calls"] - before["calls"]
    return dict(signature=sig, clients=clients, requests=len(results), rps=len(results) / wall,
                p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), errors=errors, mismatches=mismatches,
                mean_batch=(after["rows"] - before["rows"]) / calls if calls else None, wall_s=wall,
                server_cpu_ms=1000 * server_cpu / max(len(results), 1),
                client_cpu_ms=1000 * client_cpu / max(len(results), 1))


def print_row(r, batching):
    mb = f"{r['mean_batch']:.1f}" if r["mean_batch"] else "-"
    print(f"| {r['signature']:<15} | {batching:<8} | {r['clients']:>7} | {r['requests']:>8} | {r['rps']:>10.1f} | "
          f"{r['p50_ms']:>8.1f} | {r['p99_ms']:>8.1f} | {r['errors']:>6} | {r['mismatches']:>10} | {mb:>10} | "
          f"{r['server_cpu_ms']:>10.2f} | {r['client_cpu_ms']:>10.2f} |",
          flush=True)


def targets(rows):
    """The issue's targets, per signature, from the batched rows."""
    out = {}
    for sig in FLAGS.signatures:
        by = {r["clients"]: r for r in rows if r["signature"] == sig and r["batching"] == "on"}
        t = {"no_errors": all(r["errors"] == 0 and r["mismatches"] == 0 for r in by.values())}
        if 1 in by and 32 in by:
            t["p99_32_over_p50_1"] = round(by[32]["p99_ms"] / by[1]["p50_ms"], 2)
            t["p99_32_le_10x_p50_1"] = t["p99_32_over_p50_1"] <= 10
        if 1 in by and 8 in by:
            t["rps_8_over_rps_1"] = round(by[8]["rps"] / by[1]["rps"], 2)
            t["rps_8_ge_2x_rps_1"] = t["rps_8_over_rps_1"] >= 2
        out[sig] = t
    return out


def headline(rows, batching):
    """{signature: {figure: {clients: value}}} of one server's rows."""
    out = {}
    for r in rows:
        if r["batching"] == batching:
            sig = out.setdefault(r["signature"], {})
            for k in ("rps", "p50_ms", "p99_ms", "mean_batch"):
                if r[k] is not None:
                    sig.setdefault(k, {})[r["clients"]] = round(r[k], 1)
    return out


def summarize(rows, status, seconds):
    summary = {"benchmark": "serve_load", "cpu_cores": os.cpu_count(), "image_size": FLAGS.image_size,
               "max_batch_size": FLAGS.max_batch_size, "batch_timeout_ms": FLAGS.batch_timeout_ms,
               "requests_per_row": FLAGS.requests, "errors": sum(r["errors"] for r in rows),
               "mismatches": sum(r["mismatches"] for r in rows), "batched": headline(rows, "on"),
               "unbatched": headline(rows, "off"), "status_rps_8_clients": round(status["rps"], 1),
               "targets": targets(rows), "seconds": round(seconds, 1)}
    summary["targets_met"] = all(v for t in summary["targets"].values() for v in t.values() if isinstance(v, bool))
    return summary


def serve_rows(pool, srv, requests, refs, batching, clients):
    rows = []
    for sig in FLAGS.signatures:
        bodies = requests[sig][0]
        run_row(pool, srv, sig, bodies[:64], None, 8)  # warm-up: every batch size path, not reported
        for c in clients:
            r = dict(run_row(pool, srv, sig, bodies, refs[sig], c), batching=batching)
            print_row(r, batching)
            rows.append(r)
    return rows


def main(argv):
    del argv
    from sketchtf.config import data_path
    folder = FLAGS.data or (os.path.join(data_path("quickdraw_10class_ndjson"), "test")
                            if data_path("quickdraw_10class_ndjson") else "")
    if not folder or not os.path.isdir(folder):
        print(f"serve_load: skipped: Quick Draw test sketches not found at {folder or '../shared/data'} "
              "(set --data or SKETCHTF_DATA)")
        return 0
    from sketchtf.ship import serve
    t0 = time.time()
    sketches = load_sketches(folder, FLAGS.per_class)
    class_names = sorted({s.label for s in sketches})
    work = tempfile.mkdtemp(prefix="serve_load_")
    base = export_model(work, FLAGS.image_size, len(class_names), class_names)
    requests = build_requests(sketches)
    refs = references(os.path.join(base, "1"), requests)
    clients = [int(c) for c in FLAGS.clients]
    print(f"{len(sketches)} Quick Draw test sketches ({len(class_names)} classes) from {folder}; "
          f"sketchnet {FLAGS.image_size} px, random weights; {os.cpu_count()} CPU cores; "
          f"{FLAGS.requests} requests a row (limit {FLAGS.row_time_limit_s:g} s)")
    print("| signature       | batching | clients | requests | requests/s |   p50 ms |   p99 ms | errors | "
          "mismatches | mean batch | server CPU ms/req | client CPU ms/req |")
    print("|-----------------|----------|--------:|---------:|-----------:|---------:|---------:|-------:|-----------:|"
          "-----------:|-----------:|-----------:|")
    batching = serve.Batching(True, FLAGS.max_batch_size, FLAGS.batch_timeout_ms)
    servers = [("on", batching)] + ([("off", serve.Batching(enabled=False))] if FLAGS.compare_unbatched else [])
    rows = []
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        for name, cfg in servers:
            srv = serve.start_in_thread(base, batching=cfg)
            try:
                rows += serve_rows(pool, srv, requests, refs, name, clients)
                if name == "on":
                    status = dict(run_row(pool, srv, "status", [None], None, 8), batching=name)
                    print_row(status, name)
            finally:
                srv.shutdown()
                srv.server_close()
    summary = summarize(rows, status, time.time() - t0)
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    app.run(main)
