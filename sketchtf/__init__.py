"""sketchtf: hand-drawn sketches to a tiny, fast, shippable recognizer.

tf_keras (Keras 2) is the one Keras of this package because TFMOT quantizes only
tf_keras models; TF_USE_LEGACY_KERAS must be set before TensorFlow is imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF C++ log: warnings and errors (commands set it from --tf_log; see console.py).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
