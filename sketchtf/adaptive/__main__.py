"""CLI: python -m sketchtf.adaptive {train,policy,evaluate,export} (see sketchtf/adaptive/__init__.py)."""
import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

import sketchtf  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config (train only), e.g. configs/adaptive_qd10.py.")
flags.DEFINE_string("workdir", None, "Run folder (checkpoints, holdout.json, policy.json).")
flags.DEFINE_string("export_dir", "exported", "export: base folder <export_dir>/<model_name>/<version>/.")
flags.DEFINE_string("policy", "", "export: 'selector', 'selector_lowres' or 'cascade' (default: policy.json's).")
flags.DEFINE_integer("version", 0, "export: defaults to config.export.version.")
flags.mark_flag_as_required("workdir")
COMMANDS = ("train", "policy", "evaluate", "export")


def _load(workdir):
    from sketchtf.adaptive import evaluate as E
    from sketchtf.adaptive import multires  # noqa: F401
    from sketchtf.workdir import load_trained_model
    model, config, class_names = load_trained_model(workdir)
    sizes = multires.check_sizes(config.adaptive.sizes)
    return model, config, class_names, sizes, E.size_flops(model, sizes, int(config.data.channels))


def _policies(workdir):
    path = os.path.join(workdir, "policy.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing: run `python -m sketchtf.adaptive policy --workdir={workdir}` first")
    with open(path) as f:
        return json.load(f)


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise SystemExit(f"usage: python -m sketchtf.adaptive {{{','.join(COMMANDS)}}} --workdir=... [--config=...]")
    cmd, f = argv[1], flags.FLAGS
    from sketchtf.adaptive import evaluate as E
    from sketchtf.adaptive import multires
    if cmd == "train":
        if _CONFIG.value is None:
            raise SystemExit("train needs --config=configs/adaptive_qd10.py[:smoke]")
        result = multires.train_multires(_CONFIG.value, f.workdir)
        print(f"top-1 at the largest size {result['top1']:.4f}; report: {f.workdir}/report.md")
        return
    model, config, class_names, sizes, costs = _load(f.workdir)
    if cmd == "policy":
        held = multires.load_holdout(config, f.workdir)
        tables = E.holdout_tables(model, config.data, held, class_names, sizes, int(config.eval.batch_size))
        pol = E.fit_policies(*tables, costs, config.adaptive, int(config.get("seed", 0)))
        print(f"default policy: {pol['default']}; wrote {E.save_json(pol, os.path.join(f.workdir, 'policy.json'))}")
    elif cmd == "evaluate":
        from sketchtf.data import pipeline
        test = pipeline.load_records(config.data, config.get("eval_split", "test"))
        tables = E.holdout_tables(model, config.data, test, class_names, sizes, int(config.eval.batch_size))
        rows = E.evaluate_policies(*tables, costs, sizes, _policies(f.workdir))
        for r in rows:
            print(f"{r['method']:18s} top-1 {r['top1']:6.2f}  MFLOPs {r['mean_flops'] / 1e6:8.2f}  "
                  f"x max {r['flops_vs_max']:.3f}  sizes {r['size_share']}")
        E.save_json(rows, os.path.join(f.workdir, "adaptive_eval.json"))
    else:
        from sketchtf.adaptive.serving import export_adaptive
        pols = _policies(f.workdir)
        name = f.policy or pols["default"]
        if name not in pols:
            raise SystemExit(f"--policy={name!r}: policy.json has {[k for k in pols if isinstance(pols[k], dict)]}")
        path = export_adaptive(model, class_names, config.data, sizes, costs, pols[name], f.export_dir,
                               config.export.get("model_name", "sketchnet_adaptive"),
                               version=f.version or config.export.get("version", 1),
                               top_k=config.export.get("top_k", 3))
        print(f"SavedModel ({name}): {path}")


if __name__ == "__main__":
    app.run(main, argv=sys.argv)
