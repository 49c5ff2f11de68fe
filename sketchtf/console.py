"""What a run prints: progress bars for long non-Keras work, and TensorFlow's
own logging kept to warnings unless asked for.

Every `python -m sketchtf.<verb>` runs through `run(main)`, which adds
--tf_log=info|warning|error (default warning): TF's C++ log level
(TF_CPP_MIN_LOG_LEVEL) and the absl/Python log level. TensorFlow is imported
there, before main, with the lines its import and device probe write straight
to stderr (CUDA probes on a CPU machine, "log messages before
absl::InitializeLog") filtered out; anything else they write is passed through.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

_LEVELS = {"info": "0", "warning": "1", "error": "2"}
# Written by TF's import on machines without a GPU, before any log level applies.
_IMPORT_NOISE = re.compile(r"cudart_stub\.cc|cuda_(dnn|fft|blas|executor)\.cc|Unable to register cu|"
                           r"All log messages before absl::InitializeLog|computation placer already registered|"
                           r"oneDNN custom operations are on|TF-TRT Warning|This TensorFlow binary is optimized|"
                           r"rebuild TensorFlow with the appropriate compiler flags|failed call to cuInit")


def progress(iterable, *, total=None, desc: str = ""):
    """tqdm on stderr when it is a terminal; silent in logs and CI (disable=None)."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with tensorflow-datasets; stay usable without it
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=None, leave=False)


def import_tensorflow(level: str = "warning"):
    """Imports TensorFlow at `level`, dropping its known import-time noise."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _LEVELS[level]
    if "tensorflow" in sys.modules or level == "info":
        import tensorflow as tf
    else:
        tf = _import_filtered()
    tf.get_logger().setLevel({"info": "INFO", "warning": "WARNING", "error": "ERROR"}[level])
    return tf


def _import_filtered():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices("GPU")  # the CUDA probe (cuInit) logs here, inside the filter
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not _IMPORT_NOISE.search(line):
                    sys.stderr.write(line)
    return tf


def run(main):
    """absl's app.run with --tf_log; the entry of every sketchtf command."""
    from absl import app, flags, logging
    if "tf_log" not in flags.FLAGS:
        flags.DEFINE_enum("tf_log", "warning", list(_LEVELS),
                          "TensorFlow/absl log level: info brings back TF's INFO lines.")

    def wrapped(argv):
        level = flags.FLAGS.tf_log
        logging.set_verbosity({"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[level])
        import_tensorflow(level)
        return main(argv)

    app.run(wrapped)
