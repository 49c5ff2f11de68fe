"""Serve an exported model with TF Serving's REST API, plus the canvas page
(a local stand-in for TF Serving: sketchtf/ship/serve.py).

  python -m sketchtf.serve --model_base_path=exported/sketchnet --port=8501
"""
from absl import flags

from sketchtf import console

_BASE = flags.DEFINE_string("model_base_path", None,
                            "<export_dir>/<model_name>, holding version folders (as TF Serving's).")
_NAME = flags.DEFINE_string("model_name", "", "Defaults to the base folder's name (as TF Serving's MODEL_NAME).")
_PORT = flags.DEFINE_integer("port", 8501, "REST port (TF Serving's default is 8501).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on; 0.0.0.0 to serve other machines.")
flags.mark_flag_as_required("model_base_path")


def main(argv):
    del argv
    from sketchtf.ship.serve import ModelServer, Server
    model = ModelServer(_BASE.value, _NAME.value or None)
    srv = Server(model, _HOST.value, _PORT.value, verbose=True)
    print(f"Serving {model.name} version {model.version} from {model.path}")
    print(f"  status:  {srv.url}/v1/models/{model.name}")
    print(f"  predict: {srv.url}/v1/models/{model.name}:predict  (signatures: {sorted(model.signatures)})")
    print(f"  canvas:  {srv.url}/")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


def run():
    console.run(main)


if __name__ == "__main__":
    run()
