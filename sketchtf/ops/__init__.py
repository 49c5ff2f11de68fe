"""Python side of sketchtf's C++ ops (sources in ops/, built by build.py).

The wrappers live in sketchtf.ops.xnor and are re-exported here lazily, so
that `python -m sketchtf.ops.build` works before the library exists.
"""
_XNOR_API = (
    "OpsNotBuiltError", "load_ops", "cpu_features", "available_paths", "popcount_roofline",
    "bitpack_channels", "norm_bitpack",
    "pack_filter", "pack_dense", "unpack_bits", "xnor_conv2d", "xnor_conv2d_dot",
    "binary_weight_conv2d", "binary_weight_dense",
)
__all__ = list(_XNOR_API)


def __getattr__(name):
    if name in _XNOR_API:
        from sketchtf.ops import xnor
        return getattr(xnor, name)
    raise AttributeError(f"module 'sketchtf.ops' has no attribute {name!r}")
