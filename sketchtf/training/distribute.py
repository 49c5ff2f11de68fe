"""tf.distribute for the training loop: which strategy, who writes, batch and
learning-rate rules, mixed precision.

Strategy (`config.strategy`):
  default       one device (TF's default strategy): what every run did before
  mirrored      one machine, all its GPUs (MirroredStrategy); without GPUs, all
                logical CPU devices (tests split one CPU into two)
  multi_worker  MultiWorkerMirroredStrategy; the cluster and this process' role
                come from the TF_CONFIG environment variable (see
                `python -m sketchtf.launch` and docs/distribute.md)
  tpu           TPUStrategy on the TPU at `config.tpu_address` ("" = the local
                TPU VM / the address in the environment)

Batch size: `config.train.batch_size` is PER REPLICA. The training dataset is
batched with the global batch = per-replica x replicas and Keras `fit` splits
each global batch over the replicas, so one optimizer step sees the global
batch. `train.steps_per_epoch` (when set) counts these global steps; when 0 it
is ceil(examples / global batch).

Learning rate (`config.lr_scaling`): "linear" (default) multiplies train.lr,
and so every schedule built from it, by the number of replicas: the lr was
tuned for one replica's batch, and the global batch grows with the replicas
(Goyal et al. 2017, "Accurate, large minibatch SGD"; pair it with warmup for
large replica counts). "none" uses train.lr as given. With one replica the two
rules agree, so single-device runs are unchanged.

Chief: the process that writes checkpoints, TensorBoard, history and the
report. Every other worker still runs every save and evaluation (reading
BatchNorm's sync-on-read statistics is an all-reduce every worker must join)
but writes into a temporary folder that is removed at the end of training
(`worker_dir`), the same rule tf_keras' BackupAndRestore follows.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from sketchtf.keras import keras

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("", "float32", "mixed_float16", "mixed_bfloat16")
LR_SCALING = ("linear", "none")

# One strategy object per kind and process: MultiWorkerMirroredStrategy and a
# TPU system can only be set up once per process, before other TF work.
_CACHE: dict = {}


def _get(config, key, default):
    return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


def strategy_name(config) -> str:
    name = str(_get(config, "strategy", "default") or "default")
    if name not in STRATEGIES:
        raise ValueError(f"config.strategy={name!r}: expected one of {', '.join(STRATEGIES)}")
    return name


def strategy_from_config(config) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by config.strategy (created once per process).

    For multi_worker and tpu call this before any other TensorFlow work of the
    process (the trainer does): both configure the runtime at start-up."""
    name = strategy_name(config)
    address = str(_get(config, "tpu_address", "") or "")
    key = (name, address if name == "tpu" else "")
    if key not in _CACHE:
        _CACHE[key] = _create(name, address)
    return _CACHE[key]


def _create(name, tpu_address):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG", "")
        if not raw:
            raise ValueError("config.strategy='multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster + task); start local workers with `python -m sketchtf.launch --workers=N "
                             "-- <train args>` or see docs/distribute.md")
        parse_tf_config(raw)  # a clear error for malformed TF_CONFIG before TF's own
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise RuntimeError(f"config.strategy='tpu': no TPU at config.tpu_address={tpu_address!r}: {e}") from e
    return tf.distribute.TPUStrategy(resolver)


def parse_tf_config(raw: str) -> dict:
    """TF_CONFIG as a dict, checked: {"cluster": {type: [host:port, ...]}, "task": {"type", "index"}}."""
    try:
        tfc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from None
    cluster, task = tfc.get("cluster"), tfc.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG: 'cluster' must map task types to address lists, got {cluster!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG: 'task' must be {{'type': ..., 'index': ...}}, got {task!r}")
    if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG: task {task} is not in the cluster {cluster}")
    return tfc


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True for the process that writes outputs.

    With a strategy: its own answer (MultiWorkerMirroredStrategy: the "chief"
    task, else worker 0). Without: read from TF_CONFIG (no TF_CONFIG = chief)."""
    if strategy is not None:
        return bool(strategy.extended.should_checkpoint)
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return True
    tfc = parse_tf_config(raw)
    kind, index = tfc["task"]["type"], int(tfc["task"]["index"])
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in tfc["cluster"]


def task_id(strategy: tf.distribute.Strategy) -> str:
    """'worker1', 'chief0', ...: names a process' temporary folder."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}{resolver.task_id}"


def worker_dir(workdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes: the workdir on the chief, else a temporary
    workdir/workertemp_<task> folder (removed after training)."""
    if is_chief(strategy):
        return workdir
    return os.path.join(workdir, f"workertemp_{task_id(strategy)}")


def replicas(strategy: tf.distribute.Strategy) -> int:
    return int(strategy.num_replicas_in_sync)


def input_worker(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(index, count) of this process among those reading input: (0, 1) but
    under multi-worker, where each worker reads its own shards (chief first)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 0, 1
    cluster = resolver.cluster_spec().as_dict()
    tasks = [("chief", i) for i in range(len(cluster.get("chief", [])))] + \
            [("worker", i) for i in range(len(cluster.get("worker", [])))]
    if len(tasks) <= 1:
        return 0, 1
    return tasks.index((resolver.task_type, int(resolver.task_id))), len(tasks)


def global_batch_size(per_replica: int, num_replicas: int) -> int:
    """config.train.batch_size is per replica; one step consumes this many examples."""
    if int(per_replica) < 1 or int(num_replicas) < 1:
        raise ValueError(f"batch size {per_replica} per replica x {num_replicas} replicas: both must be >= 1")
    return int(per_replica) * int(num_replicas)


def lr_scale(config, num_replicas: int) -> float:
    """The factor config.lr_scaling applies to train.lr for `num_replicas` replicas."""
    rule = str(_get(config, "lr_scaling", "linear") or "linear")
    if rule not in LR_SCALING:
        raise ValueError(f"config.lr_scaling={rule!r}: expected one of {', '.join(LR_SCALING)}")
    return float(num_replicas) if rule == "linear" else 1.0


def scaled_train_config(config, num_replicas: int):
    """A copy of config.train whose lr follows config.lr_scaling."""
    train = config.train.copy_and_resolve_references()
    train.lr = float(config.train.lr) * lr_scale(config, num_replicas)
    return train


def precision_policy(config) -> str:
    """The Keras dtype policy named by config.mixed_precision ("" = float32)."""
    name = str(_get(config, "mixed_precision", "") or "")
    if name not in PRECISIONS:
        raise ValueError(f"config.mixed_precision={name!r}: expected '', mixed_float16 or mixed_bfloat16")
    return name or "float32"


def float32_logits(model: keras.Model) -> keras.Model:
    """The model with float32 outputs under a mixed policy.

    Softmax / cross-entropy in float16 lose precision (and overflow), so the
    logits leave the network as float32 through a weightless linear layer;
    checkpoints stay interchangeable with the plain float32 model."""
    if all(o.dtype == tf.float32 for o in model.outputs):
        return model
    outs = [keras.layers.Activation("linear", dtype="float32", name=f"{o.name.split('/')[0]}_float32")(o)
            for o in model.outputs]
    return keras.Model(model.inputs, outs[0] if len(outs) == 1 else outs, name=model.name)


def synchronize_batchnorm(model: keras.Model) -> int:
    """Makes every BatchNormalization of `model` (nested models too) use the
    mean/variance of the global batch, all-reduced over replicas, instead of
    each replica's slice. Costs one all-reduce per BN layer and step; gives the
    same statistics as one device with the global batch. Returns the count."""
    n = 0
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            # The fused kernel has no cross-replica path; the flag is read when
            # the training step is traced, after the functional model is built.
            layer.synchronized, layer.fused = True, False
            n += 1
    return n
