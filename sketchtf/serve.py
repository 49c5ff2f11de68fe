"""Serve an exported model with TF Serving's REST API, plus the canvas page
(a local stand-in for TF Serving: sketchtf/ship/serve.py).

  python -m sketchtf.serve --model_base_path=exported/sketchnet --port=8501

Concurrent predictions are batched per signature (--max_batch_size,
--batch_timeout_ms); requests are bounded (--max_body_bytes: 413; the sketch
and image limits: 400 naming the limit and the instance); SIGTERM or Ctrl-C
stops accepting, finishes the requests in flight and exits 0 (docs/serving.md).
"""
from absl import flags

from sketchtf import console

_BASE = flags.DEFINE_string("model_base_path", None,
                            "<export_dir>/<model_name>, holding version folders (as TF Serving's).")
_NAME = flags.DEFINE_string("model_name", "", "Defaults to the base folder's name (as TF Serving's MODEL_NAME).")
_PORT = flags.DEFINE_integer("port", 8501, "REST port (TF Serving's default is 8501); 0 = any free port.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on; 0.0.0.0 to serve other machines.")
_BATCHING = flags.DEFINE_bool("enable_batching", True, "Batch concurrent predictions per signature.")
_MAX_BATCH = flags.DEFINE_integer("max_batch_size", 32, "Most rows (sketches) in one batched signature call.")
_TIMEOUT = flags.DEFINE_float("batch_timeout_ms", 2.0,
                              "Longest a request waits for others to join its batch (none when none is coming).")
_MAX_BODY = flags.DEFINE_integer("max_body_bytes", 16 << 20, "Larger request bodies are refused with 413.")
_MAX_INSTANCES = flags.DEFINE_integer("max_instances", 256, "Most instances (sketches) in one request.")
_MAX_POINTS = flags.DEFINE_integer("max_points", 4096, "Most rows of one predict_strokes sketch.")
_MAX_STROKES = flags.DEFINE_integer("max_strokes", 512, "Most strokes in one sketch.")
_MAX_PIXELS = flags.DEFINE_integer("max_image_pixels", 4096 * 4096, "Most pixels (w x h) of one image.")
_READ_TIMEOUT = flags.DEFINE_float("read_timeout_s", 30.0,
                                   "A connection silent this long is closed (408 when mid-body).")
_DRAIN_TIMEOUT = flags.DEFINE_float("drain_timeout_s", 30.0,
                                    "On SIGTERM, how long requests in flight may take to finish.")
flags.mark_flag_as_required("model_base_path")


def main(argv):
    del argv
    from sketchtf.ship.serve import Batching, Limits, ModelServer, Server, serve_until_signalled
    limits = Limits(max_body_bytes=_MAX_BODY.value, max_instances=_MAX_INSTANCES.value,
                    max_points=_MAX_POINTS.value, max_strokes=_MAX_STROKES.value,
                    max_image_pixels=_MAX_PIXELS.value, read_timeout_s=_READ_TIMEOUT.value,
                    drain_timeout_s=_DRAIN_TIMEOUT.value)
    batching = Batching(_BATCHING.value, _MAX_BATCH.value, _TIMEOUT.value)
    model = ModelServer(_BASE.value, _NAME.value or None, limits, batching)
    srv = Server(model, _HOST.value, _PORT.value, verbose=True)
    print(f"Serving {model.name} version {model.version} from {model.path}")
    print(f"  status:  {srv.url}/v1/models/{model.name}")
    print(f"  predict: {srv.url}/v1/models/{model.name}:predict  (signatures: {sorted(model.signatures)})")
    print(f"  canvas:  {srv.url}/")
    mode = (f"max_batch_size={batching.max_batch_size}, batch_timeout_ms={batching.batch_timeout_ms:g}"
            if model.batchers else "off")
    print(f"  batching: {mode}", flush=True)
    clean = serve_until_signalled(srv)
    print("stopped: every request in flight was answered" if clean else
          f"stopped: requests still in flight after drain_timeout_s={limits.drain_timeout_s:g} were cut off",
          flush=True)
    return 0 if clean else 1


def run():
    console.run(main)


if __name__ == "__main__":
    run()
