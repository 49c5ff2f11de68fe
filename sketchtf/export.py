"""Export a trained workdir as a TF Serving SavedModel <export_dir>/<model_name>/<version>/
(signatures: sketchtf/ship/export.py).

  python -m sketchtf.export --workdir=runs/sketchnet --export_dir=exported
"""
import os

from absl import flags

from sketchtf import console

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json, classes.json, checkpoints/).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "exported", "Base folder: <export_dir>/<model_name>/<version>/.")
_MODEL_NAME = flags.DEFINE_string("model_name", "", "Defaults to config.export.model_name.")
_VERSION = flags.DEFINE_integer("version", 0, "Defaults to config.export.version.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    from sketchtf.ship.export import export_saved_model
    from sketchtf.workdir import load_trained_model
    model, config, class_names = load_trained_model(_WORKDIR.value)
    name = _MODEL_NAME.value or config.export.get("model_name", config.model.name)
    path = export_saved_model(model, class_names, config.data, _EXPORT_DIR.value, name,
                              version=_VERSION.value or config.export.get("version", 1),
                              top_k=config.export.get("top_k", 3))
    print(f"SavedModel for TF Serving: {path}")
    print(f"  docker run -p 8501:8501 -v {os.path.abspath(os.path.join(_EXPORT_DIR.value, name))}:/models/{name} "
          f"-e MODEL_NAME={name} tensorflow/serving")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
