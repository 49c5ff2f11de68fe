"""The training loop as a library: config + workdir in, checkpoints, TensorBoard
logs, metrics.json and report.md out. `sketchtf.train` is its absl front end.

Workdir layout (config.json, classes.json, checkpoints/: sketchtf/workdir.py):
  backup/            BackupAndRestore state: rerunning the same command after a
                     crash continues from the last finished epoch
  tb/                TensorBoard (train/, validation/, eval/)
  history.csv        per-epoch logs (appended across resumes); run_log.txt
  metrics.json, report.md   final evaluation on the eval split

Distribution (config.strategy, training/distribute.py): the model, optimizer and
metrics are built inside `run_scope(config)` (which also sets the mixed
precision policy); the training dataset is batched with the GLOBAL batch
(train.batch_size is per replica) and Keras fit splits it over the replicas.
Under multi-worker only the chief writes the files above; the other workers
write into workdir/workertemp_<task>/ (removed after training) and restore
crash-resume state from the chief's backup/.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time

import tensorflow as tf

from sketchtf import workdir as run_folder
from sketchtf.data import pipeline
from sketchtf.evaluation import report
from sketchtf.evaluation.scoring import predict_scores
from sketchtf.keras import keras
from sketchtf.training import callbacks as cb
from sketchtf.training import distribute, optim


class NonFiniteLossError(RuntimeError):
    pass




def get_strategy(config):
    """The run's tf.distribute strategy (config.strategy; one per process)."""
    return distribute.strategy_from_config(config)


@contextlib.contextmanager
def run_scope(config):
    """Build every Keras object of a run inside this: the strategy's scope with
    the config's precision policy set (restored on exit). Yields the strategy.

        with trainer.run_scope(config) as strategy:
            model = trainer.make_model(config, n)      # Distiller, teacher too
            trainer.compile_model(model, config, steps)
            trainer.fit_and_report(...)
    """
    strategy = get_strategy(config)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(distribute.precision_policy(config))
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_model(config, num_classes):
    """The zoo model of the config. Under a mixed precision policy (set by
    run_scope) its logits are cast to float32; config.sync_batchnorm makes its
    BatchNorm layers use global-batch statistics."""
    model = distribute.float32_logits(run_folder.build_config_model(config, num_classes))
    if config.get("sync_batchnorm", False):
        distribute.synchronize_batchnorm(model)
    return model


def resumed_steps(workdir, steps_per_epoch):
    """Training steps a crashed run finished, read from its BackupAndRestore
    state (backup/chief): whole epochs, or epoch and batch with
    train.backup_every=N steps. 0 for a new run."""
    path = tf.train.latest_checkpoint(os.path.join(workdir, "backup", "chief"))
    if not path:
        return 0
    reader = tf.train.load_checkpoint(path)
    epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    if batch >= 0:  # saved mid-epoch (tf_keras resumes at the next batch)
        return epoch * steps_per_epoch + batch + 1
    return (epoch + 1) * steps_per_epoch if epoch >= 0 else 0


def build_data(config, *, with_index=False, strategy=None, workdir=None):
    """(train_ds, train_info, eval_ds, eval_info) with one shared vocabulary.

    The training set is batched with the global batch (train.batch_size x the
    strategy's replicas; strategy defaults to config.strategy's); evaluation
    runs on one device with eval.batch_size. With the workdir of a crashed run,
    the training stream starts where the run stopped (resumed_steps), not at
    the start of the data again."""
    seed = int(config.get("seed", 0))
    strategy = strategy or get_strategy(config)
    per_replica = int(config.train.batch_size)
    bs = distribute.global_batch_size(per_replica, distribute.replicas(strategy))
    worker = distribute.input_worker(strategy)
    train_ds, info = pipeline.make_dataset(config.data, "train", batch_size=bs, training=True, seed=seed,
                                           with_index=with_index, worker=worker)
    done = resumed_steps(workdir, int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)) \
        if workdir else 0
    if done:
        # Each worker reads its own stream: it consumed its share of each global batch.
        train_ds, info = pipeline.make_dataset(config.data, "train", batch_size=bs, training=True, seed=seed,
                                               with_index=with_index, worker=worker, start=done * bs // worker[1])
    split = config.get("eval_split", "test")
    eval_ds, einfo = pipeline.make_dataset(config.data, split,
                                           batch_size=int(config.eval.get("batch_size", per_replica)),
                                           training=False, class_names=info.class_names)
    return train_ds, info, eval_ds, einfo


def build_optimizer(config, steps_per_epoch, strategy=None):
    """config.train's optimizer with lr scaled by config.lr_scaling for the
    strategy's replicas; wrapped in a LossScaleOptimizer under mixed_float16
    (bfloat16 has float32's exponent range and needs no loss scaling)."""
    strategy = strategy or tf.distribute.get_strategy()
    opt = optim.build_optimizer(distribute.scaled_train_config(config, distribute.replicas(strategy)),
                                steps_per_epoch)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        opt = keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def train_metrics():
    """The metrics every fit reports (train, distill, QAT): top-1 and top-5."""
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")]


def compile_model(model, config, steps_per_epoch):
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, model.distribute_strategy),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True) if not config.train.get("label_smoothing") else _smoothed_loss(config),
        metrics=train_metrics(),
        jit_compile=bool(config.get("jit_compile", False)))


def _smoothed_loss(config):
    eps = float(config.train.label_smoothing)

    def loss(y, logits):
        onehot = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), tf.shape(logits)[-1])
        return keras.losses.categorical_crossentropy(onehot, logits, from_logits=True, label_smoothing=eps)
    return loss


def verbosity(value):
    """train.verbose; -1 (the default): a progress bar on a terminal, one line per
    epoch in a log (Keras' bar writes every step into a file: pages per epoch)."""
    if int(value) < 0:
        return 1 if sys.stdout.isatty() else 2
    return int(value)


def _save_freq(value):
    """train.backup_every: "epoch", or a number of steps (a string in the config: "2000")."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def standard_callbacks(config, workdir, eval_ds, class_names, samples, target=None, strategy=None,
                       metric_callbacks=()):
    """The callback list shared by plain training and distillation.

    target: the model to checkpoint and evaluate when fit runs on a wrapper.
    strategy: the fit model's; a non-chief worker runs the same saves and
    evaluations (they all-reduce) into its temporary folder and keeps no
    run log or history.
    metric_callbacks: run right after the evaluation (each gets `.evaluator`,
    whose `.last` holds that epoch's scores) and before checkpoint choice, so
    the val_* values they add to the logs can be train.select_on."""
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    out = distribute.worker_dir(workdir, strategy)
    tb_dir = os.path.join(out, "tb")
    guard = cb.NanGuard()
    ckpt = cb.SafeCheckpoint(os.path.join(out, "checkpoints"), guard, target=target)
    evaluator = cb.EvalCallback(eval_ds, class_names, tb_dir, every=int(config.eval.get("every", 1)),
                                samples=samples, target=target)
    # Every worker reads workdir/backup; tf_keras sends non-chief writes to a temp dir.
    backup = keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"),
                                              save_freq=_save_freq(config.train.get("backup_every", "epoch")))
    for m in metric_callbacks:
        m.evaluator = evaluator
    callbacks = ([cb.RunLog(workdir)] if chief else []) + [guard, evaluator, *metric_callbacks, cb.LearningRateLogger(),
                                                           ckpt]
    callbacks += _selection_callbacks(config, out, guard, target)
    callbacks += [backup, keras.callbacks.TensorBoard(tb_dir, write_graph=True, update_freq="epoch", profile_batch=0)]
    if chief:
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(workdir, "history.csv"), append=True))
    return callbacks, guard, ckpt, evaluator


def _selection_callbacks(config, out, guard, target):
    """train.keep_best and train.early_stop_patience, both on train.select_on
    (val_top1 by default) of eval_split, which must be "valid": choosing on
    test would leak it."""
    keep, patience = bool(config.train.get("keep_best", False)), int(config.train.get("early_stop_patience", 0))
    monitor = str(config.train.get("select_on", "val_top1"))
    if not (keep or patience):
        return []
    if config.get("eval_split", "test") != "valid":
        raise ValueError("train.keep_best / train.early_stop_patience choose on eval_split, which is "
                         f"{config.get('eval_split', 'test')!r}: set eval_split='valid' (and data.valid_fraction > 0)")
    out_cbs = [cb.BestCheckpoint(os.path.join(out, "checkpoints"), guard, monitor=monitor, target=target)] if keep else []
    if patience:
        out_cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience))
    return out_cbs


def _samples(train_ds, n=16):
    x, y = next(iter(train_ds.take(1)))[:2]
    return x.numpy()[:n], y.numpy()[:n]


def fit_and_report(model, config, workdir, train_ds, info, eval_ds, einfo, *, title, fit_model=None, extra=None,
                   metric_callbacks=()):
    """Runs fit with the standard callbacks, then writes metrics.json/report.md.

    fit_model: the model to fit if not `model` itself (e.g. a Distiller whose
    student is `model`); checkpoints and evaluation always track `model`.
    metric_callbacks: see standard_callbacks.
    """
    fit_model = fit_model or model
    strategy = fit_model.distribute_strategy
    epochs = int(config.train.epochs)
    steps = int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)
    callbacks, guard, ckpt, evaluator = standard_callbacks(config, workdir, eval_ds, info.class_names,
                                                           None, target=model, strategy=strategy,
                                                           metric_callbacks=metric_callbacks)
    t0 = time.time()
    with pipeline.explain_data_errors(config.data):
        fit_model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                      verbose=verbosity(config.train.get("verbose", -1)))
    wall = time.time() - t0
    if distribute.is_chief(strategy):
        # The TensorBoard input preview iterates train_ds, and a seeded reshuffling
        # dataset orders each new iterator differently: drawn after fit, fit's
        # iterator is the first under every strategy (the distributed copies
        # start fresh), so all strategies train on the same batches.
        evaluator.samples = _samples(train_ds)
        evaluator.on_train_begin()
    if guard.hit_nan:
        path = ckpt.restore_last_good()
        raise NonFiniteLossError(f"training stopped on a non-finite loss; last good checkpoint: {path}")
    if config.train.get("keep_best", False):
        ckpt.restore_best()  # the reported (and loaded, exported) model is the one chosen on valid
    # Every worker evaluates (BatchNorm statistics are all-reduced when read); the chief writes.
    result, loss = predict_scores(model, eval_ds, info.class_names)
    if not distribute.is_chief(strategy):
        shutil.rmtree(distribute.worker_dir(workdir, strategy), ignore_errors=True)
        return result
    n = distribute.replicas(strategy)
    run = dict(model=config.model.name, params=int(model.count_params()), epochs=epochs,
               steps_per_epoch=steps, batch_size=int(config.train.batch_size),
               image_size=int(config.data.image_size), train_examples=info.num_examples,
               eval_examples=einfo.num_examples, eval_loss=round(loss, 4), fit_wall_s=round(wall, 1),
               skipped_train=info.skipped, command=" ".join(sys.argv))
    if n > 1 or distribute.strategy_name(config) != "default":
        run.update(strategy=distribute.strategy_name(config), replicas=n,
                   global_batch_size=distribute.global_batch_size(config.train.batch_size, n),
                   lr=float(config.train.lr) * distribute.lr_scale(config, n))
    if distribute.precision_policy(config) != "float32":
        run.update(mixed_precision=distribute.precision_policy(config))
    run.update(extra or {})
    report.write_report(workdir, result, title=title, extra=run)
    return result


def start_run(config, workdir):
    """The setup every training entry shares (train, distill, QAT, adaptive):
    the config's strategy first (multi-worker and TPU set up the runtime before
    any other TF work), the run folder, the seed. Returns the strategy; build
    models inside run_scope(config), which also sets config.mixed_precision."""
    strategy = get_strategy(config)
    os.makedirs(workdir, exist_ok=True)
    keras.utils.set_random_seed(int(config.get("seed", 0)))
    return strategy


def record_run(config, workdir, class_names, strategy):
    """config.json + classes.json of the run (the chief writes them)."""
    if distribute.is_chief(strategy):
        run_folder.write_run(workdir, config, class_names)


def initial_model(config, num_classes):
    """make_model, started from config.model.init_from when it names a run."""
    model = make_model(config, num_classes)
    if config.model.get("init_from"):
        init_from_workdir(model, config.model.init_from, by_name=bool(config.model.get("init_by_name")))
    return model


def train_and_evaluate(config, workdir):
    """Trains config.model on config.data; returns the final metrics dict."""
    strategy = start_run(config, workdir)
    train_ds, info, eval_ds, einfo = build_data(config, strategy=strategy, workdir=workdir)
    record_run(config, workdir, info.class_names, strategy)
    with run_scope(config):
        model = initial_model(config, len(info.class_names))
        steps = int(config.train.get("steps_per_epoch", 0) or info.steps_per_epoch)
        compile_model(model, config, steps)
        return fit_and_report(model, config, workdir, train_ds, info, eval_ds, einfo,
                              title=f"{config.model.name} on {config.data.source}")


def init_from_workdir(model, workdir, by_name=False):
    """Starts `model` from another run's last checkpoint (config model.init_from).

    Default: the checkpoint is matched by object structure, so a model with the
    same layers works even when their classes differ (e.g. float Sketch-A-Net ->
    BinaryConv2D Sketch-A-Net, as seed C initialises its binary nets); every
    variable of `model` must be found; extra entries (optimizer) are ignored.
    by_name (config model.init_by_name): for models that add layers (the XNOR
    net's BN layers), weights are copied layer by layer where names match (see
    copy_weights_by_name). Returns the checkpoint path."""
    path = run_folder.latest_checkpoint(workdir)
    if by_name:
        src, _, _ = run_folder.load_trained_model(workdir)
        copy_weights_by_name(src, model, source=path)
        return path
    try:
        status = tf.train.Checkpoint(model=model).restore(path)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ValueError(f"model.init_from: cannot start {model.name} from {path}: {e} "
                         "(set model.init_by_name=True to copy weights by layer name)") from None
    return path


def copy_weights_by_name(src, dst, *, source="source model"):
    """Copies weights from `src` into `dst` layer by layer where names match.

    Layers of `dst` with no namesake in `src` keep their initial values; a
    namesake with other weight shapes is an error naming the layer, and so is
    copying nothing at all. Returns the copied layer names."""
    src_layers = {layer.name: layer for layer in src.layers}
    copied = []
    for layer in dst.layers:
        other = src_layers.get(layer.name)
        if not layer.weights or other is None:
            continue
        theirs = other.get_weights()
        mine = [tuple(w.shape) for w in layer.weights]
        if [t.shape for t in theirs] != mine:
            raise ValueError(f"model.init_from {source}: layer {layer.name!r} weight shapes differ: "
                             f"{dst.name} has {mine}, {src.name} has {[t.shape for t in theirs]}")
        layer.set_weights(theirs)
        copied.append(layer.name)
    if not copied:
        raise ValueError(f"model.init_from {source}: no layer of {dst.name} has a namesake in {src.name}")
    return copied
