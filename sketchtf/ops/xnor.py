"""Python side of sketchtf's binary C++ ops (ops/*.cc): loading and wrappers.

Packed format (every op): the sign of channel c is bit c % 64 of int64 word
c // 64; bit 1 means negative (x < 0, or NaN), bit 0 means x >= 0, so
sign(0) = +1. Bits past the channel count are ignored (the ops mask them).

* activations [..., C] float -> [..., ceil(C/64)] int64 (`bitpack_channels`)
* conv filters [KH, KW, Cin, O] float -> [O, KH, KW, ceil(Cin/64)] (`pack_filter`)
* dense kernels [Cin, O] float -> [O, ceil(Cin/64)] (`pack_dense`)

Padding: SAME pads with zeros that contribute nothing, so `xnor_conv2d_dot`
equals ``tf.nn.conv2d(sign(x), sign(w))`` with zero padding, exactly, and
`binary_weight_conv2d` equals ``alpha * tf.nn.conv2d(x, sign(w)) + bias``.

Kernel path: every op takes ``path="auto"|"scalar"|"avx2"|"avx512"``; "auto"
uses the SKETCHTF_XNOR_PATH environment variable if set, else the best path
the CPU has (`available_paths()`). Forcing a path the CPU lacks is an error.

The ops are for inference; training uses sketchtf.layers.BinaryConv2D /
BinaryDense, whose forward pass these ops reproduce. Asking for a gradient
through them raises a LookupError that says so.
"""
import functools
import os

import tensorflow as tf

LIB_NAME = "_sketchtf_ops.so"
LIB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIB_NAME)
PATHS = ("auto", "scalar", "avx2", "avx512")


class OpsNotBuiltError(ImportError):
    """The compiled op library is missing or does not match this TensorFlow."""


@functools.lru_cache(maxsize=None)
def load_ops():
    """Loads _sketchtf_ops.so from next to this module (once)."""
    if not os.path.exists(LIB_PATH):
        raise OpsNotBuiltError(
            f"sketchtf C++ ops are not built: {LIB_PATH} does not exist. Build them with "
            "`python -m sketchtf.ops.build` in the source tree, or reinstall with `pip install .`")
    try:
        return tf.load_op_library(LIB_PATH)
    except (tf.errors.NotFoundError, OSError) as e:
        raise OpsNotBuiltError(
            f"{LIB_PATH} could not be loaded into TensorFlow {tf.__version__} ({e}); it was "
            "probably built against another TensorFlow: rebuild with "
            "`python -m sketchtf.ops.build` or `pip install .`") from e


def _strides(strides):
    if isinstance(strides, int):
        return [strides, strides]
    strides = [int(s) for s in strides]
    if len(strides) != 2:
        raise ValueError(f"strides must be an int or (stride_h, stride_w), got {strides}")
    return strides


def _check_path(path):
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path


def cpu_features():
    """CPU features the kernels care about, e.g. ['popcnt', 'avx2', 'fma']."""
    feats, _ = load_ops().sketchtf_cpu_info()
    return [f.decode() for f in feats.numpy()]


def available_paths():
    """Kernel paths this CPU can run, best last, e.g. ['scalar', 'avx2']."""
    _, paths = load_ops().sketchtf_cpu_info()
    return [p.decode() for p in paths.numpy()]


ROOFLINE_KINDS = ("stream", "register")


def popcount_roofline(path="auto", kind="stream", return_threads=False):
    """Measured XOR+popcount rate of a kernel path, in 64-bit word pairs/s.

    Returns (one_thread, all_threads), plus the thread count if
    return_threads: best of several trials; all_threads runs one copy per TF
    intra-op thread at once.

    kind="stream": the path's fastest long-stream loop (scalar popcnt, AVX2
    Harley-Seal, AVX-512 VPOPCNTQ) over two L1-resident arrays. It loads both
    operands, so once popcount is one instruction (AVX-512) it is bounded by
    loads, not by the ALUs: a streaming ceiling.
    kind="register": the compute ceiling: the path's XNOR-kernel instruction
    sequence (scalar xor+popcnt+add; AVX2 nibble-split xor+vpshufb+byte add;
    AVX-512 vpxorq+vpopcntq+vpaddq) on operands held in registers, several
    independent accumulator chains, no memory traffic. The op checks the
    probe's popcount sum against the exact value.
    """
    kind = str(kind)
    if kind not in ROOFLINE_KINDS:
        raise ValueError(f"kind must be one of {ROOFLINE_KINDS}, got {kind!r}")
    r = load_ops().sketchtf_popcount_roofline(path=_check_path(path), kind=kind).numpy()
    out = (float(r[0]), float(r[1]))
    return out + (int(r[2]),) if return_threads else out


def bitpack_channels(x, path="auto"):
    """float [..., C] -> int64 [..., ceil(C/64)] sign bits (1 = negative)."""
    return load_ops().sketchtf_bitpack_channels(
        tf.convert_to_tensor(x, tf.float32), path=_check_path(path))


def norm_bitpack(x, scale, offset, pool_size=1, pool_stride=1):
    """Packed signs of `max_pool(x) * scale + offset` (per channel; the pool is
    VALID, square, optional): the float steps in front of an XNOR layer (max
    pool -> inference BatchNorm -> sign) as one op. Same bit layout as
    `bitpack_channels`: 1 = negative or NaN."""
    return load_ops().sketchtf_norm_bitpack(
        tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(scale, tf.float32),
        tf.convert_to_tensor(offset, tf.float32), pool_size=int(pool_size), pool_stride=int(pool_stride))


def pack_filter(w, path="auto"):
    """Conv kernel [KH, KW, Cin, O] -> packed [O, KH, KW, ceil(Cin/64)] int64."""
    w = tf.convert_to_tensor(w, tf.float32)
    if w.shape.rank != 4:
        raise ValueError(f"pack_filter expects a [KH, KW, Cin, O] kernel, got shape {w.shape}")
    return bitpack_channels(tf.transpose(w, [3, 0, 1, 2]), path=path)


def pack_dense(w, path="auto"):
    """Dense kernel [Cin, O] -> packed [O, ceil(Cin/64)] int64."""
    w = tf.convert_to_tensor(w, tf.float32)
    if w.shape.rank != 2:
        raise ValueError(f"pack_dense expects a [Cin, O] kernel, got shape {w.shape}")
    return bitpack_channels(tf.transpose(w), path=path)


def unpack_bits(words, channels):
    """Inverse of bitpack_channels: int64 [..., W] -> float +-1 [..., channels]."""
    words = tf.convert_to_tensor(words, tf.int64)
    shifts = tf.range(64, dtype=tf.int64)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[..., None], shifts), 1)
    bits = tf.reshape(bits, tf.concat([tf.shape(words)[:-1], [-1]], 0))[..., :channels]
    return 1.0 - 2.0 * tf.cast(bits, tf.float32)


def xnor_conv2d(x_packed, filter_packed, alpha, bias, in_channels, strides=1, padding="VALID",
                fused_relu=False, input_scale=None, path="auto"):
    """Binary conv: alpha * conv(sign x, sign w) [* input_scale] + bias [-> ReLU].

    x_packed: [B, H, W, ceil(in_channels/64)] from bitpack_channels;
    filter_packed: [O, KH, KW, ceil(in_channels/64)] from pack_filter;
    alpha, bias: [O] float; input_scale: optional [B, OH, OW] (XNOR-Net's K).
    """
    scales = [] if input_scale is None else [tf.convert_to_tensor(input_scale, tf.float32)]
    return load_ops().sketchtf_xnor_conv2d(
        input=x_packed, filter=filter_packed, alpha=tf.convert_to_tensor(alpha, tf.float32),
        bias=tf.convert_to_tensor(bias, tf.float32), input_scale=scales,
        in_channels=int(in_channels), strides=_strides(strides), padding=padding,
        fused_relu=bool(fused_relu), path=_check_path(path))


def xnor_conv2d_dot(x_packed, filter_packed, in_channels, strides=1, padding="VALID",
                    path="auto"):
    """The int32 dot of xnor_conv2d: tf.nn.conv2d(sign x, sign w), exactly."""
    return load_ops().sketchtf_xnor_conv2d_dot(
        input=x_packed, filter=filter_packed, in_channels=int(in_channels),
        strides=_strides(strides), padding=padding, path=_check_path(path))


def binary_weight_conv2d(x, filter_packed, alpha, bias, strides=1, padding="VALID",
                         fused_relu=False, path="auto", pool_size=1, pool_stride=1):
    """Float x [B, H, W, C] times packed 1-bit filter: alpha * conv(x, sign w) + bias.
    pool_size > 1: x is max-pooled first, as tf.nn.max_pool2d(x, pool_size,
    pool_stride, "VALID") in front (NaN anywhere in a window gives NaN)."""
    return load_ops().sketchtf_binary_weight_conv2d(
        input=tf.convert_to_tensor(x, tf.float32), filter=filter_packed,
        alpha=tf.convert_to_tensor(alpha, tf.float32),
        bias=tf.convert_to_tensor(bias, tf.float32), strides=_strides(strides),
        padding=padding, fused_relu=bool(fused_relu), path=_check_path(path),
        pool_size=int(pool_size), pool_stride=int(pool_stride))


def binary_weight_dense(x, w_packed, alpha, bias, fused_relu=False, path="auto"):
    """Float x [B, C] times packed 1-bit kernel [O, ceil(C/64)]: alpha * x @ sign(w) + bias."""
    return load_ops().sketchtf_binary_weight_dense(
        input=tf.convert_to_tensor(x, tf.float32), filter=w_packed,
        alpha=tf.convert_to_tensor(alpha, tf.float32),
        bias=tf.convert_to_tensor(bias, tf.float32), fused_relu=bool(fused_relu),
        path=_check_path(path))


def ink_conv2d(x, filter, bias, strides=1, padding="VALID", fused_relu=False, path="auto"):
    """conv2d(x, filter) + bias [-> ReLU] over the non-zero inputs only: the
    float first layer of a sketch network, whose input is mostly background
    (ink = 1 on 0). x [B, H, W, C]; filter [KH, KW, C, O] (tf.nn.conv2d's
    layout) with KW * C <= 64; bias [O]. Equal to the dense conv up to float
    summation order for finite weights; time grows with the ink."""
    return load_ops().sketchtf_ink_conv2d(
        input=tf.convert_to_tensor(x, tf.float32), filter=tf.convert_to_tensor(filter, tf.float32),
        bias=tf.convert_to_tensor(bias, tf.float32), strides=_strides(strides), padding=padding,
        fused_relu=bool(fused_relu), path=_check_path(path))


def _inference_only(op, *grads):
    raise LookupError(
        f"{op.type} is an inference-only op (no gradient): train with "
        "sketchtf.layers.BinaryConv2D / BinaryDense and convert the trained model")


for _name in ("SketchtfXnorConv2D", "SketchtfBinaryWeightConv2D", "SketchtfBinaryWeightDense",
              "SketchtfInkConv2D"):
    tf.RegisterGradient(_name)(_inference_only)
