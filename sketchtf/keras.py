"""The one way this package imports Keras: tf_keras (Keras 2)."""
import sketchtf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tf_keras as keras  # noqa: E402

__all__ = ["keras"]
