"""The main job on the offline default data: preview, train, evaluate, export.

  python -m sketchtf.quickstart --workdir=runs/quickstart

1. builds the pipeline and writes samples.png (rendered, augmented sketches);
2. trains the config's model with the standard loop (TensorBoard, checkpoints,
   resume; the epoch kept is the best on valid);
3. scores it once on test (<workdir>/eval_test/metrics.json, report.md);
4. exports a TF Serving SavedModel to <workdir>/export/<model_name>/<version>.
"""
import os

from absl import flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py", "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Where outputs go.")


def write_preview(cfg, workdir):
    import numpy as np
    from sketchtf.data import pipeline
    from sketchtf.evaluation.report import image_grid, save_png
    ds, info = pipeline.make_dataset(cfg.data, "train", batch_size=cfg.train.batch_size, training=True,
                                     seed=cfg.seed)
    images, labels = [], []
    for x, y in ds.take(max(1, -(-cfg.preview_count // cfg.train.batch_size))):
        images.append(x.numpy())
        labels.extend(info.class_names[i] for i in y.numpy())
    grid = image_grid(np.concatenate(images)[:cfg.preview_count, ..., :1], 8, labels=labels[:cfg.preview_count])
    return save_png(os.path.join(workdir, "samples.png"), grid)


def main(argv):
    del argv
    from sketchtf import workdir as run_folder
    from sketchtf.evaluation.scoring import evaluate_workdir
    from sketchtf.ship import export
    from sketchtf.training import trainer
    cfg, workdir = _CONFIG.value, _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    png = write_preview(cfg, workdir)
    trainer.train_and_evaluate(cfg, workdir)
    result, eval_dir = evaluate_workdir(workdir, "test")
    model, config, class_names = run_folder.load_trained_model(workdir)
    base = os.path.join(workdir, "export")
    version = 1 + max([int(v) for v in _listdir(os.path.join(base, cfg.export.model_name)) if v.isdigit()] or [0])
    path = export.export_saved_model(model, class_names, config.data, base, cfg.export.model_name,
                                     version=version, top_k=cfg.export.top_k)
    print(f"\ntest top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    print(f"samples:      {png}")
    print(f"report:       {os.path.join(eval_dir, 'report.md')} (test), {os.path.join(workdir, 'report.md')} (valid)")
    print(f"TensorBoard:  tensorboard --logdir {os.path.join(workdir, 'tb')}")
    print(f"SavedModel:   {path}")


def _listdir(path):
    return os.listdir(path) if os.path.isdir(path) else []


def run():
    console.run(main)


if __name__ == "__main__":
    run()
