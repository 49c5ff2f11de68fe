"""Start N local worker processes of a training command, each with its TF_CONFIG
(MultiWorkerMirroredStrategy on one machine; sketchtf/training/launch.py).

  python -m sketchtf.launch --workers=2 -- --config=configs/sketchnet_qd10.py:smoke --workdir=/tmp/mw
"""
import signal
import sys

from absl import app, flags

_WORKERS = flags.DEFINE_integer("workers", 2, "Number of local worker processes.", lower_bound=1)
_MODULE = flags.DEFINE_string("module", "sketchtf.train", "Python module each worker runs with -m.")
_HOST = flags.DEFINE_string("host", "localhost", "Host name the workers use to reach each other.")
_GPUS = flags.DEFINE_integer("gpus_per_worker", 0,
                             "> 0: give worker i GPUs [i*k, (i+1)*k) via CUDA_VISIBLE_DEVICES; "
                             "0: leave the environment as is.", lower_bound=0)
_GRACE = flags.DEFINE_float("grace_s", 10.0, "Seconds between SIGTERM and SIGKILL when stopping workers.")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv):
    from sketchtf.training.launch import launch
    args = argv[1:]
    if not args:
        raise app.UsageError("give the training arguments after --, e.g. "
                             "python -m sketchtf.launch --workers=2 -- --config=configs/x.py --workdir=runs/x")
    signal.signal(signal.SIGTERM, _interrupt)  # stopping the launcher stops its workers
    sys.exit(launch(args, _WORKERS.value, module=_MODULE.value, host=_HOST.value,
                    gpus_per_worker=_GPUS.value, grace_s=_GRACE.value))


def run():
    # No TensorFlow here: the launcher only starts and watches processes.
    app.run(main)


if __name__ == "__main__":
    run()
