"""Converter: trained model with Binary layers -> packed 1-bit inference model.

    packed = pack_model(model)            # a tf.Module; packed(images) -> logits
    packed.save("model.sktb")             # 1 bit per binary weight
    packed = load("model.sktb")           # no training config, no Keras model needed
    export_saved_model(packed, "saved/1") # SavedModel calling the C++ ops
    fn = load_saved_model("saved/1")      # registers the ops, then tf.saved_model.load

    python -m sketchtf.binarize --workdir=runs/sketchanet_binary_128 --out=runs/sketchanet_binary_128.sktb

Each layer of a chain model (every layer takes the previous one's output, as
Sketch-A-Net does) becomes one step:
* `BinaryConv2D` with binary_activations (XNOR) -> `xnor_conv2d` on
  bit-packed inputs (bitpack_channels of the float input, then XOR/popcount;
  XNOR-Net's K from the float input when the layer has input_scaling);
* `BinaryConv2D` without -> `binary_weight_conv2d` (float input, packed weights);
* `BinaryDense` -> `binary_weight_dense`, or, with binary activations,
  `xnor_conv2d` on a 1x1 map (there is no separate XNOR dense op);
* every other layer (float convs, BatchNormalization, pooling, dropout,
  flatten) is kept as the same Keras layer, rebuilt from its config and weights.
ReLU activations are fused into the ops; other activations run after them.

The float simulation (the Keras model) computes conv(sign x, alpha * sign W);
the ops compute alpha * conv(sign x, sign W) with an exact integer dot, so
XNOR integer sums are equal exactly and scaled outputs up to float rounding.

File format (".sktb", version 1; see docs/binary.md):
  bytes 0-7    magic b"SKTFBIN1"
  bytes 8-15   header length H, uint64 little-endian
  16..16+H     JSON header (UTF-8): model name, input shape, class names,
               one entry per layer (kind, config, tensors) and the data
               section's length and CRC-32
  zero padding to a multiple of 64 bytes, then the data section: every tensor
  little-endian at a 64-byte aligned offset (relative to the section),
  uint64 for packed words, float32 otherwise.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

import numpy as np
import tensorflow as tf

from sketchtf.keras import keras
from sketchtf.layers import BinaryConv2D, BinaryDense, weight_scale
from sketchtf.ops import xnor

MAGIC = b"SKTFBIN1"
FORMAT_VERSION = 1
ALIGN = 64
SUFFIX = ".sktb"
BINARY_KINDS = ("xnor_conv2d", "binary_weight_conv2d", "xnor_dense", "binary_weight_dense")
_DTYPES = {"uint64": np.dtype("<u8"), "float32": np.dtype("<f4")}


class PackedFileError(ValueError):
    """A packed model file is not valid; the message names the file and the field."""


# ---------------------------------------------------------------- conversion

def _chain_layers(model):
    """The model's layers after its input, checked to form a single chain."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"binarize: {model.name} must have one input and one output, "
                         f"has {len(model.inputs)} and {len(model.outputs)}")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    prev = model.inputs[0]
    for layer in layers:
        nodes = layer._inbound_nodes  # tf_keras: one node per call of the layer
        if len(nodes) != 1 or len(tf.nest.flatten(nodes[0].input_tensors)) != 1 \
                or nodes[0].input_tensors is not prev and \
                getattr(nodes[0].input_tensors, "ref", lambda: 0)() != prev.ref():
            raise ValueError(f"binarize: {model.name} is not a chain of single-input layers at "
                             f"layer {layer.name!r} (only chain models such as Sketch-A-Net are "
                             "supported)")
        prev = layer.output
    if prev.ref() != model.outputs[0].ref():
        raise ValueError(f"binarize: the output of {model.name} is not its last layer's output")
    return layers


def _activation_name(layer):
    name = keras.activations.serialize(layer.activation)
    if not isinstance(name, str):
        raise ValueError(f"binarize: layer {layer.name!r} has a non-builtin activation {name!r}")
    return name


def _binary_entry(layer):
    kernel = tf.convert_to_tensor(layer.kernel)
    out = int(kernel.shape[-1])
    bias = layer.bias.numpy() if layer.use_bias else np.zeros([out], np.float32)
    alpha = weight_scale(kernel).numpy()  # the layer's own alpha, bit for bit
    common = dict(name=layer.name, activation=_activation_name(layer),
                  input_scaling=bool(layer.input_scaling), units=out)
    if isinstance(layer, BinaryConv2D):
        kind = "xnor_conv2d" if layer.binary_activations else "binary_weight_conv2d"
        packed = xnor.pack_filter(kernel)
        config = dict(common, in_channels=int(kernel.shape[2]), kernel_size=list(layer.kernel_size),
                      strides=list(layer.strides), padding=layer.padding.upper())
    else:
        kind = "xnor_dense" if layer.binary_activations else "binary_weight_dense"
        packed = xnor.pack_dense(kernel)
        config = dict(common, in_channels=int(kernel.shape[0]))
    return dict(kind=kind, config=config,
                tensors=dict(weights=packed.numpy().view(np.uint64), alpha=alpha.astype(np.float32),
                             bias=bias.astype(np.float32)))


def _keras_entry(layer):
    if layer.__class__.__module__.startswith("sketchtf"):
        raise ValueError(f"binarize: no packed form for sketchtf layer {layer.name!r} "
                         f"({type(layer).__name__})")
    weights = [np.asarray(w, np.float32) for w in layer.get_weights()]
    return dict(kind="keras", config=dict(name=layer.name, layer=keras.layers.serialize(layer)),
                tensors={f"w{i}": w for i, w in enumerate(weights)})


def model_entries(model):
    """The packed description of a trained model: a list of layer entries."""
    entries = []
    for layer in _chain_layers(model):
        if isinstance(layer, (BinaryConv2D, BinaryDense)):
            entries.append(_binary_entry(layer))
        else:
            entries.append(_keras_entry(layer))
    return entries


def pack_model(model, class_names=None, ink_first_layer=True):
    """Converts a trained Keras model with Binary layers into a PackedModel."""
    input_shape = [int(d) for d in model.input_shape[1:]]
    return PackedModel(model_entries(model), input_shape, name=model.name,
                       class_names=list(class_names) if class_names is not None else None,
                       ink_first_layer=ink_first_layer)


# ---------------------------------------------------------- inference model

def _input_scale(x, kernel_size, strides, padding):
    """XNOR-Net's K as BinaryConv2D.input_scale computes it, as [B, OH, OW]."""
    a = tf.reduce_mean(tf.abs(x), axis=-1, keepdims=True)
    kh, kw = kernel_size
    box = tf.ones([kh, kw, 1, 1], a.dtype) / float(kh * kw)
    return tf.nn.conv2d(a, box, strides=list(strides), padding=padding)[..., 0]


class _Plain:
    """Holds python data on a tf.Module without AutoTrackable wrapping it (the
    wrappers are not JSON-serializable and would try to track numpy arrays)."""

    def __init__(self, value):
        self.value = value


class _BinaryStep(tf.Module):
    """One binary layer run by the C++ ops on packed weights."""

    def __init__(self, kind, config, tensors):
        super().__init__(name=config["name"])
        self.kind, self._config = kind, _Plain(config)
        words = tensors["weights"].view(np.int64)
        if kind in ("xnor_conv2d", "binary_weight_conv2d"):
            self.weights = tf.constant(words)
        else:  # dense kernels [O, words]; the XNOR one runs as a 1x1 conv
            self.weights = tf.constant(words if kind == "binary_weight_dense"
                                       else words.reshape(words.shape[0], 1, 1, -1))
        self.alpha = tf.constant(tensors["alpha"])
        self.bias = tf.constant(tensors["bias"])
        act = config["activation"]
        self.fused_relu = act == "relu"
        self.after = None if act in ("relu", "linear") else keras.activations.get(act)

    @property
    def config(self):
        return self._config.value

    def dot(self, x):
        """XNOR layers: the int32 popcount sums conv(sign x, sign W), before any scale."""
        if not self.kind.startswith("xnor"):
            raise ValueError(f"layer {self.config['name']!r} ({self.kind}) has no integer dot")
        x, c = self._xnor_input(x)
        return xnor.xnor_conv2d_dot(xnor.bitpack_channels(x), self.weights, c["in_channels"],
                                    c.get("strides", 1), c.get("padding", "VALID"))

    def _xnor_input(self, x):
        c = self.config
        if self.kind == "xnor_dense":
            x = tf.reshape(x, [-1, 1, 1, c["in_channels"]])
        return x, c

    @property
    def takes_signs(self):
        """XNOR steps without XNOR-Net's K see their input only through its signs."""
        return self.kind in ("xnor_conv2d", "xnor_dense") and not self.config.get("input_scaling")

    def from_bits(self, bits, input_scale=None):
        """The XNOR step on its input's signs, packed ([B, H, W, words]; dense: [B, 1, 1, words])."""
        c = self.config
        y = xnor.xnor_conv2d(bits, self.weights, self.alpha, self.bias, c["in_channels"],
                             c.get("strides", [1, 1]), c.get("padding", "VALID"),
                             fused_relu=self.fused_relu, input_scale=input_scale)
        if self.kind == "xnor_dense":
            y = tf.reshape(y, [-1, c["units"]])
        return self.after(y) if self.after is not None else y

    def __call__(self, x):
        c = self.config
        if self.kind.startswith("xnor"):
            x4, _ = self._xnor_input(x)
            scale = None
            if c["input_scaling"]:
                scale = _input_scale(x4, c.get("kernel_size", [1, 1]), c.get("strides", [1, 1]),
                                     c.get("padding", "VALID"))
            return self.from_bits(xnor.bitpack_channels(x4), scale)
        if self.kind == "binary_weight_conv2d":
            return self.pooled(x, 1, 1)
        # binary_weight_dense
        y = xnor.binary_weight_dense(x, self.weights, self.alpha, self.bias, fused_relu=self.fused_relu)
        return self.after(y) if self.after is not None else y

    def pooled(self, x, pool_size, pool_stride):
        """A binary-weight conv step on max_pool(x) (VALID), the pool fused into the op."""
        c = self.config
        y = xnor.binary_weight_conv2d(x, self.weights, self.alpha, self.bias, c["strides"],
                                      c["padding"], fused_relu=self.fused_relu,
                                      pool_size=pool_size, pool_stride=pool_stride)
        return self.after(y) if self.after is not None else y


class _KerasStep(tf.Module):
    """A float layer, unchanged: the same Keras layer rebuilt from config + weights."""

    def __init__(self, config, tensors, input_shape):
        super().__init__(name=config["name"])
        self._config = _Plain(config)
        self.layer = keras.layers.deserialize(config["layer"])
        self.layer.build(input_shape)
        weights = [tensors[f"w{i}"] for i in range(len(tensors))]
        if len(weights) != len(self.layer.weights):
            raise ValueError(f"layer {config['name']!r}: {len(weights)} stored weights, "
                             f"the layer has {len(self.layer.weights)}")
        self.layer.set_weights(weights)

    @property
    def config(self):
        return self._config.value

    def __call__(self, x):
        return self.layer(x, training=False)


class _NormSignStep:
    """[max pool ->] inference BatchNorm -> XNOR step, with the float steps in
    front run as one `xnor.norm_bitpack` op on the packed signs (they are all
    the XNOR step reads). Built by `_fuse_steps` for `PackedModel.forward`."""

    def __init__(self, pool, bn, xnor_step):
        self.pool_size, self.pool_stride = (pool.pool_size[0], pool.strides[0]) if pool else (1, 1)
        inv = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
        if bn.scale:
            inv = inv * bn.gamma
        offset = -bn.moving_mean * inv
        if bn.center:
            offset = offset + bn.beta
        self.scale, self.offset = tf.constant(inv.numpy()), tf.constant(offset.numpy())
        self.xnor_step = xnor_step

    def __call__(self, x):
        x4, _ = self.xnor_step._xnor_input(x)  # dense: [B, C] -> [B, 1, 1, C]
        bits = xnor.norm_bitpack(x4, self.scale, self.offset, self.pool_size, self.pool_stride)
        return self.xnor_step.from_bits(bits)


class _PoolBinaryWeightStep:
    """max pool -> binary-weight conv as one op (the pool fused into
    `xnor.binary_weight_conv2d`): TF's MaxPool at batch 1 ran 2-4x slower on 2
    intra-op threads than on one. Built by `_fuse_steps` for `PackedModel.forward`."""

    def __init__(self, pool, bw_step):
        self.pool_size, self.pool_stride = pool.pool_size[0], pool.strides[0]
        self.bw_step = bw_step

    def __call__(self, x):
        return self.bw_step.pooled(x, self.pool_size, self.pool_stride)


class _InkConvStep:
    """The model's first layer, a float Conv2D on the input drawing, run as
    `xnor.ink_conv2d`: a sketch is mostly background (ink = 1 on 0) and the op
    skips zero inputs (ops/ink_conv.h), equal to the Keras layer up to float
    summation order. Built by `_fuse_steps` for `PackedModel.forward`."""

    def __init__(self, layer):
        self.kernel = tf.constant(layer.kernel.numpy())
        self.bias = tf.constant(layer.bias.numpy() if layer.use_bias
                                else np.zeros(layer.filters, np.float32))
        self.strides, self.padding = list(layer.strides), layer.padding.upper()
        self.relu = _activation_name(layer) == "relu"

    def __call__(self, x):
        return xnor.ink_conv2d(x, self.kernel, self.bias, self.strides, self.padding,
                               fused_relu=self.relu)


class _MatmulStep:
    """A float Conv2D whose VALID window covers its whole input (Sketch-A-Net's
    L8 on the 1x1 map of L7), run as one matmul + bias [+ activation]: the same
    sums in another order. At batch 1 on 2 intra-op threads TF's Conv2D took
    0.065 ms for L8 (0.021 on one thread), the matmul 0.016 on either."""

    def __init__(self, layer):
        kernel = layer.kernel.numpy()
        self.window = tuple(int(d) for d in kernel.shape[:2])
        self.kernel = tf.constant(kernel.reshape(-1, kernel.shape[-1]))
        self.bias = tf.constant(layer.bias.numpy()) if layer.use_bias else None
        self.activation = layer.activation
        self.layer = layer

    def __call__(self, x):
        if x.shape.rank != 4 or tuple(x.shape[1:3]) != self.window:
            return self.layer(x, training=False)  # another input size: the layer itself
        y = tf.matmul(tf.reshape(x, [-1, self.kernel.shape[0]]), self.kernel)
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return tf.reshape(self.activation(y), [-1, 1, 1, self.kernel.shape[1]])


def _matmul_layer(layer, input_shape):
    """A float VALID Conv2D whose window covers its whole (static) input."""
    input_shape = tf.TensorShape(input_shape)
    return (type(layer) is keras.layers.Conv2D and layer.padding == "valid"
            and layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
            and layer.groups == 1 and input_shape.rank == 4
            and tuple(input_shape[1:3]) == tuple(layer.kernel_size))


def _ink_conv_layer(layer):
    """A plain float Conv2D the ink op computes exactly (up to rounding)."""
    if type(layer) is not keras.layers.Conv2D:
        return False
    kh, kw = layer.kernel_size
    return (layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
            and layer.groups == 1 and keras.activations.serialize(layer.activation) in ("relu", "linear")
            and kw * int(layer.kernel.shape[2]) <= 64 and kh <= 256)


def _fusable_pool(layer):
    return (isinstance(layer, keras.layers.MaxPooling2D) and layer.padding == "valid"
            and layer.data_format == "channels_last" and len(set(layer.pool_size)) == 1
            and len(set(layer.strides)) == 1)


def _fusable_bn(layer):
    """A built inference BatchNormalization over the last axis only."""
    if not isinstance(layer, keras.layers.BatchNormalization) or len(layer.axis) != 1:
        return False
    ndim = getattr(layer.input_spec, "ndim", None)
    return ndim is not None and layer.axis[0] in (-1, ndim - 1)


def _fuse_steps(steps, ink_first_layer=True, in_shapes=None):
    """The steps `forward` runs: [max pool ->] BatchNorm -> XNOR (no K) as one
    `_NormSignStep`; a first float Conv2D (on the input drawing) as an
    `_InkConvStep` if ink_first_layer; max pool -> binary-weight conv as one
    `_PoolBinaryWeightStep`; a VALID float Conv2D whose input (static
    shape in in_shapes) is the window's size as a `_MatmulStep`; Dropout
    (identity at inference) dropped; everything else as it is.
    `intermediates` keeps the steps."""
    plan, i = [], 0
    if ink_first_layer and steps and _ink_conv_layer(getattr(steps[0], "layer", None)):
        plan, i = [_InkConvStep(steps[0].layer)], 1
    keras_layer = lambda k: getattr(steps[k], "layer", None) if k < len(steps) else None  # noqa: E731
    while i < len(steps):
        pool = keras_layer(i) if _fusable_pool(keras_layer(i)) else None
        j = i + (pool is not None)
        bn = keras_layer(j)
        nxt = steps[j + 1] if j + 1 < len(steps) else None
        if _fusable_bn(bn) and getattr(nxt, "takes_signs", False):
            plan.append(_NormSignStep(pool, bn, nxt))
            i = j + 2
        elif pool is not None and getattr(steps[j] if j < len(steps) else None, "kind", None) == \
                "binary_weight_conv2d":
            plan.append(_PoolBinaryWeightStep(pool, steps[j]))
            i = j + 1
        elif isinstance(keras_layer(i), keras.layers.Dropout):
            i += 1
        elif in_shapes is not None and _matmul_layer(keras_layer(i), in_shapes[i]):
            plan.append(_MatmulStep(keras_layer(i)))
            i += 1
        else:
            plan.append(steps[i])
            i += 1
    return plan


class PackedModel(tf.Module):
    """Inference model over packed layer entries; `packed(images) -> logits`.

    `forward(x)` is the plain function (for use inside other tf.functions),
    `serve` (what `__call__` runs) a tf.function over [None, *input_shape] float32,
    `intermediates(x)` the output of every layer (eager, by name),
    `step(name)` one layer's step (XNOR steps have `.dot(x)`)."""

    def __init__(self, entries, input_shape, name="packed", class_names=None, ink_first_layer=True):
        super().__init__(name=name)
        self.model_name = name
        self._entries = _Plain(entries)
        self.input_shape = [int(d) for d in input_shape]
        self._class_names = _Plain(class_names)
        self.steps = []
        shape = tf.TensorShape([None, *self.input_shape])
        in_shapes = []  # each step's static input shape, for _fuse_steps
        for e in entries:
            in_shapes.append(shape)
            if e["kind"] == "keras":
                step = _KerasStep(e["config"], e["tensors"], shape)
                shape = step.layer.compute_output_shape(shape)
            elif e["kind"] in BINARY_KINDS:
                step = _BinaryStep(e["kind"], e["config"], e["tensors"])
                shape = None  # binary steps are shape-agnostic; the next keras layer gets one
            else:
                raise ValueError(f"unknown layer kind {e['kind']!r} in layer {e['config'].get('name')!r}")
            if shape is None:
                shape = tf.TensorShape(self._probe_shape(len(self.steps) + 1, step))
            self.steps.append(step)
        # Served path: the float steps in front of each XNOR layer fused, the first
        # layer on the ink only (`_fuse_steps`).
        self._plan = _Plain(_fuse_steps(self.steps, ink_first_layer, in_shapes))
        self.serve = tf.function(
            self.forward, input_signature=[tf.TensorSpec([None, *self.input_shape], tf.float32)])

    def __call__(self, images):
        return self.serve(tf.convert_to_tensor(images, tf.float32))

    def _probe_shape(self, n_steps, step):
        # Static output shape of a binary step: run the chain so far on one zero image.
        x = tf.zeros([1, *self.input_shape], tf.float32)
        for s in self.steps[:n_steps - 1] + [step]:
            x = s(x)
        return [None, *x.shape[1:]]

    @property
    def entries(self):
        return self._entries.value

    @property
    def class_names(self):
        return self._class_names.value

    def forward(self, x):
        for step in self._plan.value:
            x = step(x)
        return x

    def intermediates(self, x):
        out = {}
        x = tf.convert_to_tensor(x, tf.float32)
        for step, e in zip(self.steps, self.entries):
            x = step(x)
            out[e["config"]["name"]] = x
        return out

    def step(self, name):
        for s, e in zip(self.steps, self.entries):
            if e["config"]["name"] == name:
                return s
        raise KeyError(f"{self.model_name} has no layer {name!r}")

    def save(self, path):
        """Writes the packed file (format in the module docstring); returns its size in bytes."""
        return save_entries(path, self.entries, self.input_shape, self.model_name,
                            self.class_names)


# ------------------------------------------------------------------ the file

def _aligned(n):
    return -(-n // ALIGN) * ALIGN


def save_entries(path, entries, input_shape, name, class_names=None):
    layers, blobs, offset = [], [], 0
    for e in entries:
        meta = {}
        for key, arr in e["tensors"].items():
            arr = np.ascontiguousarray(arr)
            dtype = "uint64" if arr.dtype in (np.uint64, np.int64) else "float32"
            data = arr.astype(_DTYPES[dtype]).tobytes()
            meta[key] = dict(dtype=dtype, shape=list(arr.shape), offset=offset, nbytes=len(data))
            blobs.append(data + b"\0" * (_aligned(len(data)) - len(data)))
            offset += _aligned(len(data))
        layers.append(dict(kind=e["kind"], config=e["config"], tensors=meta))
    data = b"".join(blobs)
    header = dict(format="sketchtf-packed-binary", version=FORMAT_VERSION, name=name,
                  input_shape=list(input_shape), class_names=class_names, layers=layers,
                  data_bytes=len(data), data_crc32=zlib.crc32(data))
    hbytes = json.dumps(header).encode("utf-8")
    pad = _aligned(16 + len(hbytes)) - 16 - len(hbytes)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(MAGIC + np.uint64(len(hbytes)).astype("<u8").tobytes() + hbytes + b"\0" * pad + data)
    os.replace(tmp, path)  # never leave a half-written model under the final name
    return os.path.getsize(path)


def _field(d, key, kind, where, path):
    if key not in d:
        raise PackedFileError(f"{path}: {where} has no field {key!r}")
    if not isinstance(d[key], kind):
        raise PackedFileError(f"{path}: {where}.{key} should be {getattr(kind, '__name__', kind)}, "
                              f"got {d[key]!r}")
    return d[key]


def read_packed(path):
    """Parses and checks a packed file -> (header dict, entries with numpy tensors)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != MAGIC:
        raise PackedFileError(f"{path}: not a sketchtf packed model (magic {raw[:8]!r}, "
                              f"expected {MAGIC!r})")
    if len(raw) < 16:
        raise PackedFileError(f"{path}: truncated header ({len(raw)} bytes)")
    hlen = int(np.frombuffer(raw[8:16], "<u8")[0])
    if 16 + hlen > len(raw):
        raise PackedFileError(f"{path}: header length {hlen} runs past the end of the file "
                              f"({len(raw)} bytes)")
    try:
        header = json.loads(raw[16:16 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackedFileError(f"{path}: JSON header is invalid: {e}") from None
    if not isinstance(header, dict):
        raise PackedFileError(f"{path}: JSON header should be an object")
    version = _field(header, "version", int, "header", path)
    if version != FORMAT_VERSION:
        raise PackedFileError(f"{path}: format version {version} is not supported "
                              f"(this sketchtf reads version {FORMAT_VERSION})")
    data = raw[_aligned(16 + hlen):]
    nbytes = _field(header, "data_bytes", int, "header", path)
    if len(data) != nbytes:
        raise PackedFileError(f"{path}: data section has {len(data)} bytes, header says "
                              f"{nbytes} (truncated or padded file)")
    if zlib.crc32(data) != _field(header, "data_crc32", int, "header", path):
        raise PackedFileError(f"{path}: data section CRC-32 mismatch (corrupted file)")
    _field(header, "input_shape", list, "header", path)
    entries = []
    for i, layer in enumerate(_field(header, "layers", list, "header", path)):
        where = f"layers[{i}]"
        kind = _field(layer, "kind", str, where, path)
        if kind != "keras" and kind not in BINARY_KINDS:
            raise PackedFileError(f"{path}: {where}.kind {kind!r} is unknown")
        config = _field(layer, "config", dict, where, path)
        tensors = {}
        for key, meta in _field(layer, "tensors", dict, where, path).items():
            tw = f"{where}.tensors.{key}"
            dtype = _field(meta, "dtype", str, tw, path)
            if dtype not in _DTYPES:
                raise PackedFileError(f"{path}: {tw}.dtype {dtype!r} is not one of {sorted(_DTYPES)}")
            shape = _field(meta, "shape", list, tw, path)
            off, n = _field(meta, "offset", int, tw, path), _field(meta, "nbytes", int, tw, path)
            count = int(np.prod(shape, dtype=np.int64))
            if n != count * _DTYPES[dtype].itemsize or off < 0 or off + n > len(data):
                raise PackedFileError(f"{path}: {tw} (shape {shape}, {n} bytes at {off}) does not "
                                      f"fit the data section of {len(data)} bytes")
            tensors[key] = np.frombuffer(data, _DTYPES[dtype], count, off).reshape(shape)
        if kind in BINARY_KINDS:
            for key in ("weights", "alpha", "bias"):
                if key not in tensors:
                    raise PackedFileError(f"{path}: {where} ({kind}) has no tensor {key!r}")
        entries.append(dict(kind=kind, config=config, tensors=tensors))
    return header, entries


def load(path, ink_first_layer=True):
    """Loads a packed file into a PackedModel (no training config needed)."""
    header, entries = read_packed(path)
    return PackedModel(entries, header["input_shape"], name=header.get("name", "packed"),
                       class_names=header.get("class_names"), ink_first_layer=ink_first_layer)


SERVING_OUTPUT = "logits"


def export_saved_model(packed, path):
    """Writes `packed` (a PackedModel) as a TF SavedModel at `path`.

    Signature "serving_default": images [None, *input_shape] float32 ->
    {"logits": [None, classes]}. Packed weights, alpha and bias are constants of
    the graph, which calls sketchtf's C++ ops (SketchtfXnorConv2D, ...) by name:
    a process loading it must register them first (`load_saved_model` does,
    with tf.load_op_library); a TF Serving binary needs them linked in
    (ops/BUILD, docs/binary.md). Returns `path`."""
    @tf.function(input_signature=[tf.TensorSpec([None, *packed.input_shape], tf.float32,
                                                name="images")])
    def serving_default(images):
        return {SERVING_OUTPUT: packed.forward(images)}

    tf.saved_model.save(packed, path, signatures={"serving_default": serving_default})
    return path


def load_saved_model(path):
    """Loads a SavedModel from `export_saved_model` after registering the ops
    (tf.load_op_library of sketchtf's library); returns its serving function
    (`fn(images=...)["logits"]`)."""
    xnor.load_ops()
    return tf.saved_model.load(path).signatures["serving_default"]


def size_report(entries):
    """Bytes of float32 weights vs packed bytes, for the binary layers and in total."""
    binary_float = binary_packed = other = 0
    for e in entries:
        t = e["tensors"]
        if e["kind"] in BINARY_KINDS:
            c = e["config"]
            n = c["in_channels"] * int(np.prod(c.get("kernel_size", [1, 1]))) * c["units"]
            binary_float += 4 * (n + 2 * c["units"])  # kernel + bias; alpha has no float twin
            binary_packed += sum(a.nbytes for a in t.values())
        else:
            other += sum(a.nbytes for a in t.values())
    return dict(binary_float32_bytes=binary_float, binary_packed_bytes=binary_packed,
                float_layers_bytes=other, total_float32_bytes=binary_float + other,
                total_packed_bytes=binary_packed + other)


# ------------------------------------------------------------------- command

def binarize_workdir(workdir, out, check=4, eval_split=""):
    """Packs a trained run's model into `out`; returns a dict of sizes and the check.

    eval_split: also evaluate the reloaded packed model (C++ ops) on that split
    through the same pipeline and metrics as training, into
    <workdir>/eval_<split>_packed/ (metrics.json, report.md)."""
    from sketchtf.workdir import load_trained_model

    model, config, class_names = load_trained_model(workdir)
    if not any(isinstance(layer, (BinaryConv2D, BinaryDense)) for layer in model.layers):
        raise ValueError(f"{workdir}: {model.name} has no BinaryConv2D/BinaryDense layer to pack")
    packed = pack_model(model, class_names)
    result = dict(size_report(packed.entries), file_bytes=packed.save(out))
    if check:
        # Random [0, 1] images: not sketches, but they exercise every layer.
        x = tf.random.stateless_uniform([check, *packed.input_shape], seed=[0, 1])
        reloaded = load(out)
        result["check_max_abs_logit_diff"] = float(
            tf.reduce_max(tf.abs(reloaded(x) - model(x, training=False))))
    if eval_split:
        from sketchtf.evaluation import report
        from sketchtf.training.callbacks import predict_scores
        from sketchtf.data import pipeline

        ds, _ = pipeline.make_dataset(config.data, eval_split, batch_size=int(config.eval.get("batch_size", 64)),
                                      training=False, class_names=class_names)
        packed_model = load(out)
        metrics, _ = predict_scores(lambda x, training=False: packed_model.forward(x), ds, class_names)
        report.write_report(os.path.join(workdir, f"eval_{eval_split}_packed"), metrics,
                            title=f"{model.name} packed ({os.path.basename(out)}) on {eval_split}",
                            extra=dict(file_bytes=result["file_bytes"], command=" ".join(sys.argv)))
        result["eval"] = {k: metrics[k] for k in ("top1", "top5", "macro_f1")}
    return result
