// SketchtfBitpackChannels, SketchtfXnorConv2D and SketchtfXnorConv2DDot.
//
// XnorConv2D computes, for every output pixel and filter, the integer
//   dot = sum over the valid (non-padded) taps and the in_channels channels of
//         sign(x) * sign(w)
//       = n_valid * in_channels - 2 * popcount(x XOR w over the valid taps)
// which equals tf.nn.conv2d(sign(x), sign(w)) with zero padding: a padded tap
// contributes 0. Padded taps are gathered as zero words, which adds
// popcount(w) over those taps to the raw count; that is subtracted exactly
// using per-filter popcounts of each tap (a 2-D prefix table, since the valid
// taps of a pixel always form a rectangle). Bits past in_channels in the last
// word of a pixel or filter are masked off, whatever the caller put there.
// Output: alpha[o] * dot (* input_scale[b, y, x]) + bias[o], optional ReLU; the
// Dot variant returns the int32 dot itself (for exact tests and custom epilogues).
#include <xmmintrin.h>  // _mm_sfence (SSE, baseline x86-64)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "fork_join.h"
#include "op_common.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

namespace sketchtf {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

const XnorKernel& SelectXnorKernel(Path p) {
  switch (p) {
    case Path::kAvx512: return XnorKernelAvx512();
    case Path::kAvx2: return XnorKernelAvx2();
    case Path::kScalar: break;
  }
  return XnorKernelScalar();
}

// -------------------------------------------------------------- bitpacking --
REGISTER_OP("SketchtfBitpackChannels")
    .Input("input: float")
    .Output("output: int64")
    .Attr("path: string = 'auto'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle in;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &in));
      DimensionHandle last = c->Dim(in, -1);
      DimensionHandle words = c->UnknownDim();
      if (c->ValueKnown(last)) {
        if (c->Value(last) < 1)
          return InvalidArg("BitpackChannels: the channel axis is empty");
        words = c->MakeDim(CeilDiv(c->Value(last), 64));
      }
      ShapeHandle out;
      TF_RETURN_IF_ERROR(c->ReplaceDim(in, -1, words, &out));
      c->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Packs the signs of the last axis into 64-bit words (uint64 bits in int64).
Channel c -> word c // 64, bit c % 64; bit 1 means x < 0 (or NaN), bit 0 means
x >= 0 (so sign(0) = +1). Bits past the channel count are 0.
)doc");

class BitpackChannelsOp : public OpKernel {
 public:
  explicit BitpackChannelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() >= 1,
                InvalidArg("BitpackChannels: input must have rank >= 1, got shape ",
                                        x.shape().DebugString()));
    const int64_t c = x.dim_size(x.dims() - 1);
    OP_REQUIRES(ctx, c >= 1,
                InvalidArg("BitpackChannels: the channel axis is empty in shape ",
                                        x.shape().DebugString()));
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));
    TensorShape out_shape = x.shape();
    const int64_t words = CeilDiv(c, 64);
    out_shape.set_dim(x.dims() - 1, words);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    const int64_t rows = x.NumElements() / c;
    if (rows == 0) return;
    const XnorKernel& k = SelectXnorKernel(path);
    const float* src = x.flat<float>().data();
    uint64_t* dst = reinterpret_cast<uint64_t*>(out->flat<int64_t>().data());
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
    const int64_t threads = OpThreads(ctx);
    if (x.NumElements() < (int64_t{1} << 22)) {
      // Batch-1 activations (tens of microseconds): equal row runs, one per
      // thread, on the spinning helpers (fork_join.h); tiny ones inline.
      const int64_t shards = std::min(rows, ShardsFor(threads, x.NumElements(), int64_t{1} << 14));
      RunShards(ctx, shards, CeilDiv(rows, shards) * 2 * c, [&](int64_t s) {
        const int64_t begin = s * rows / shards, end = (s + 1) * rows / shards;
        k.bitpack(src + begin * c, end - begin, c, dst + begin * words);
      });
      return;
    }
    tensorflow::Shard(threads, pool->workers, rows, 2 * c,
                      [&](int64_t begin, int64_t end) {
                        k.bitpack(src + begin * c, end - begin, c, dst + begin * words);
                      });
  }

 private:
  std::string path_attr_;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfBitpackChannels").Device(tensorflow::DEVICE_CPU),
                        BitpackChannelsOp);

// ----------------------------------------------------------- XNOR conv2d --
static absl::Status XnorConvShape(InferenceContext* c, bool dot) {
  ShapeHandle in, filter;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
  int64_t in_channels;
  TF_RETURN_IF_ERROR(c->GetAttr("in_channels", &in_channels));
  std::vector<int32_t> strides;
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
  std::string padding;
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
    return InvalidArg("strides must be 2 positive ints");
  const int64_t words = CeilDiv(in_channels, 64);
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(in, 3), words, &unused));
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(filter, 3), words, &unused));
  DimensionHandle out_c = c->Dim(filter, 0);
  if (!dot) {
    ShapeHandle alpha, bias;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &alpha));
    TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &bias));
    TF_RETURN_IF_ERROR(c->Merge(out_c, c->Dim(alpha, 0), &out_c));
    TF_RETURN_IF_ERROR(c->Merge(out_c, c->Dim(bias, 0), &out_c));
  }
  const bool same = padding == "SAME";
  DimensionHandle oh, ow;
  TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 1), c->Dim(filter, 1), strides[0], same, &oh));
  TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 2), c->Dim(filter, 2), strides[1], same, &ow));
  c->set_output(0, c->MakeShape({c->Dim(in, 0), oh, ow, out_c}));
  return absl::OkStatus();
}

#define SKETCHTF_CONV_ATTRS                   \
  Attr("in_channels: int >= 1")               \
      .Attr("strides: list(int) = [1, 1]")    \
      .Attr("padding: {'SAME', 'VALID'}")     \
      .Attr("path: string = 'auto'")

REGISTER_OP("SketchtfXnorConv2D")
    .Input("input: int64")
    .Input("filter: int64")
    .Input("alpha: float")
    .Input("bias: float")
    .Input("input_scale: num_scales * float")
    .Output("output: float")
    .SKETCHTF_CONV_ATTRS
    .Attr("fused_relu: bool = false")
    .Attr("num_scales: int >= 0 = 0")
    .SetShapeFn([](InferenceContext* c) { return XnorConvShape(c, false); })
    .Doc(R"doc(
Binary convolution of packed signs: out = alpha * dot [* input_scale] + bias,
optional ReLU. input: [B, H, W, ceil(in_channels/64)] words from
SketchtfBitpackChannels; filter: [O, KH, KW, ceil(in_channels/64)] words;
alpha, bias: [O]; input_scale (0 or 1 of them): [B, OH, OW] (XNOR-Net's K).
Padded taps contribute 0 (tf.nn.conv2d of sign(x), sign(w) with zero padding).
Inference only: no gradient.
)doc");

REGISTER_OP("SketchtfXnorConv2DDot")
    .Input("input: int64")
    .Input("filter: int64")
    .Output("output: int32")
    .SKETCHTF_CONV_ATTRS
    .SetShapeFn([](InferenceContext* c) { return XnorConvShape(c, true); })
    .Doc(R"doc(
The integer core of SketchtfXnorConv2D: [B, OH, OW, O] int32 equal to
tf.nn.conv2d(sign(x), sign(w)) with zero padding, exactly.
)doc");

// How XnorConv2D splits its work over threads (the dispatch is in Compute).
// Large outputs: 36-pixel units, sharded by TF's cost model. Small ones: one
// equal shard per thread; with fewer than 2 blocks of pixels per thread and
// enough filters (L6-L7 at batch 1), `threads` chunks of filters, each a
// multiple of kFilterAlign (the AVX-512 layout's group of 8, and the AVX2
// epilogue's width), all pixels each. A filter split repeats every pixel's
// set-up and epilogue call in each shard: on Zen 4, L3-L5 at batch 1 (7
// blocks, 2 threads) ran 4-7% faster as pixel runs than as filter chunks.
// SKETCHTF_XNOR_SPLIT (read on every call; for measurements and tests):
// "pixels" forces TF's cost-model sharding (the rule before batch-1 splits
// existed), "filters" the filter split whenever there are 2+ threads, "serial"
// runs the whole op on the calling thread (a one-thread baseline in the same
// process), "tfpool" the rule above with the shards on TF's pool; unset or
// "auto" is the rule above.
constexpr int64_t kFilterAlign = 8;
struct XnorSplit {
  int64_t filter_chunks = 1, chunk = 0;
};
XnorSplit PlanXnorSplit(int64_t blocks, int64_t oc, int64_t threads, SplitModeT mode) {
  XnorSplit s;
  if (threads <= 1 || mode == SplitModeT::kPixels || mode == SplitModeT::kSerial) return s;
  if (mode != SplitModeT::kFilters && (blocks >= 2 * threads || oc < kFilterAlign * threads)) return s;
  s.chunk = CeilDiv(CeilDiv(oc, threads), kFilterAlign) * kFilterAlign;
  s.filter_chunks = CeilDiv(oc, s.chunk);
  return s;
}

// The filter as the kernels want it: padding bits masked, the path's own
// layout, and per-tap popcounts as a 2-D prefix table [(k_h+1)(k_w+1)][oc] for
// the SAME padding correction. Each op instance keeps the last one it built
// with a copy of the words it came from, and reuses it while a call's filter
// has the same shape and bytes (one memcmp): served models pass the same
// constant filter every call, and for a 7x7x256 -> 512 layer at batch 1 the
// re-layout was most of the op's time (0.21 -> 0.05 ms). A call whose filter
// is the very buffer the cached one was built from (a graph constant) skips
// even the memcmp: for that layer the compare read 2 x 800 KB a call, out of
// L2 inside a forward pass (~0.04 ms, serial before the split). The entry
// holds a reference to that buffer, so it cannot be freed and reused for
// other words, and TF's resource variables copy a shared buffer before they
// write (tests/ops: assigning a variable filter changes the output).
struct PreparedFilter {
  Tensor source;              // the filter tensor it was built from (shares its buffer)
  std::vector<uint64_t> raw;  // the filter words it was built from
  Path path;
  int64_t oc, k_h, k_w, words;
  std::vector<uint64_t> fprep;
  std::vector<int32_t> prefix;
};

std::shared_ptr<const PreparedFilter> PrepareFilter(const Tensor& f, const XnorKernel& kern,
                                                    Path path, int64_t in_channels, bool same) {
  auto p = std::make_shared<PreparedFilter>();
  const uint64_t* fsrc = reinterpret_cast<const uint64_t*>(f.flat<int64_t>().data());
  p->raw.assign(fsrc, fsrc + f.NumElements());
  p->source = f;
  p->path = path;
  p->oc = f.dim_size(0);
  p->k_h = f.dim_size(1);
  p->k_w = f.dim_size(2);
  p->words = f.dim_size(3);
  const int64_t oc = p->oc, k_h = p->k_h, k_w = p->k_w, words = p->words;
  const int64_t taps = k_h * k_w, k = taps * words;
  const int64_t kp = CeilDiv(k, kern.k_align) * kern.k_align;
  const uint64_t mask = LastWordMask(in_channels);
  std::vector<uint64_t> fmasked(p->raw);
  for (int64_t i = words - 1; i < oc * k; i += words) fmasked[i] &= mask;
  p->fprep.resize(kern.filter_words(oc, kp));
  kern.prepare_filter(fmasked.data(), oc, k, kp, p->fprep.data());
  if (same) {
    const int64_t pw = k_w + 1;
    std::vector<int32_t> tap_counts(oc * taps);  // [o][tap]
    PopcountRows(fmasked.data(), oc * taps, words, tap_counts.data());
    p->prefix.assign((k_h + 1) * pw * oc, 0);
    for (int64_t i = 0; i < k_h; ++i) {
      for (int64_t j = 0; j < k_w; ++j) {
        int32_t* dst = p->prefix.data() + ((i + 1) * pw + j + 1) * oc;
        const int32_t* up = p->prefix.data() + (i * pw + j + 1) * oc;
        const int32_t* left = p->prefix.data() + ((i + 1) * pw + j) * oc;
        const int32_t* diag = p->prefix.data() + (i * pw + j) * oc;
        for (int64_t o = 0; o < oc; ++o)
          dst[o] = tap_counts[o * taps + i * k_w + j] + up[o] + left[o] - diag[o];
      }
    }
  }
  return p;
}

// SAME padding's corrections for one input size: filter popcount over the
// padded taps, per output row kind x column kind (a kind is the run of valid
// taps the window has along that axis: 3 each for a 3x3 SAME conv on 15x15).
// Built once per prepared filter and input size, not on every call: per call
// and shard they were ~8 vector allocations and a pass over the prefix table
// (issue 17: a few microseconds of a 40 us batch-1 shard).
struct BorderCorrections {
  int64_t in_h, in_w;
  std::vector<int32_t> row_kind, col_kind;  // per output row / column
  int64_t col_kinds;
  std::vector<uint8_t> full_row, full_col;  // per kind: every tap valid
  std::vector<int32_t> table;               // [row kind][col kind][oc]
  // Correction for output (r, c) over filters [o0, ...), nullptr when none.
  const int32_t* at(int64_t r, int64_t c, int64_t oc, int64_t o0) const {
    const int32_t rk = row_kind[r], ck = col_kind[c];
    if (full_row[rk] && full_col[ck]) return nullptr;
    return table.data() + (rk * col_kinds + ck) * oc + o0;
  }
};

// Distinct [first, last) valid-tap runs along one axis, and each output's run.
static void TapKinds(const Window& w, int64_t in, int64_t k, int64_t stride,
                     std::vector<int32_t>* kind_of, std::vector<std::pair<int64_t, int64_t>>* kinds) {
  kind_of->resize(w.out);
  for (int64_t r = 0; r < w.out; ++r) {
    const int64_t i0 = r * stride - w.pad_before;
    const std::pair<int64_t, int64_t> run{std::max<int64_t>(0, -i0), std::min(k, in - i0)};
    auto it = std::find(kinds->begin(), kinds->end(), run);
    (*kind_of)[r] = static_cast<int32_t>(it - kinds->begin());
    if (it == kinds->end()) kinds->push_back(run);
  }
}

std::shared_ptr<const BorderCorrections> BuildCorrections(const PreparedFilter& pf, int64_t in_h,
                                                          int64_t in_w, const Window& wh,
                                                          const Window& ww, int64_t stride_h,
                                                          int64_t stride_w) {
  auto bc = std::make_shared<BorderCorrections>();
  bc->in_h = in_h;
  bc->in_w = in_w;
  std::vector<std::pair<int64_t, int64_t>> rows, cols;
  TapKinds(wh, in_h, pf.k_h, stride_h, &bc->row_kind, &rows);
  TapKinds(ww, in_w, pf.k_w, stride_w, &bc->col_kind, &cols);
  bc->col_kinds = static_cast<int64_t>(cols.size());
  for (const auto& r : rows) bc->full_row.push_back(r.first == 0 && r.second == pf.k_h);
  for (const auto& c : cols) bc->full_col.push_back(c.first == 0 && c.second == pf.k_w);
  const int64_t oc = pf.oc, pw = pf.k_w + 1;
  const int32_t* p = pf.prefix.data();
  bc->table.resize(rows.size() * cols.size() * oc);
  int32_t* dst = bc->table.data();
  for (const auto& r : rows) {
    for (const auto& c : cols) {
      // Filter popcount over the padded taps = total - the valid rectangle.
      const int32_t* tot = p + (pf.k_h * pw + pf.k_w) * oc;
      const int32_t* r11 = p + (r.second * pw + c.second) * oc;
      const int32_t* r01 = p + (r.first * pw + c.second) * oc;
      const int32_t* r10 = p + (r.second * pw + c.first) * oc;
      const int32_t* r00 = p + (r.first * pw + c.first) * oc;
      for (int64_t o = 0; o < oc; ++o, ++dst) *dst = tot[o] - (r11[o] - r01[o] - r10[o] + r00[o]);
    }
  }
  return bc;
}

// Per-thread buffers of XnorConv2D's shards, grown as needed and kept between
// calls instead of allocated (and zeroed) in every shard of every call; timed
// only together with the cached corrections above (L3, batch 1, one thread:
// 86.1-88.5 -> 84.3-85.3 us). Every word a shard reads from patches, scratch
// or pc it has written first in the same call; zero_row is only ever read.
struct XnorShardBuffers {
  std::vector<uint64_t> patches, scratch, zero_row;
  std::vector<const uint64_t*> rows;
  std::vector<int32_t> pc;
};
template <typename T>
static T* AtLeast(std::vector<T>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(n);
  return v->data();
}

template <bool kDot>
class XnorConvOp : public OpKernel {
 public:
  explicit XnorConvOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("in_channels", &in_channels_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
    OP_REQUIRES_OK(ctx, ReadConvAttrs(ctx, &stride_h_, &stride_w_, &same_));
    if (!kDot) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("fused_relu", &relu_));
      int64_t num_scales;
      OP_REQUIRES_OK(ctx, ctx->GetAttr("num_scales", &num_scales));
      OP_REQUIRES(ctx, num_scales <= 1,
                  InvalidArg("XnorConv2D takes at most one input_scale, got ",
                                          num_scales));
      has_scale_ = num_scales == 1;
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const char* op = kDot ? "XnorConv2DDot" : "XnorConv2D";
    const Tensor& x = ctx->input(0);
    const Tensor& f = ctx->input(1);
    const int64_t words = CeilDiv(in_channels_, 64);
    OP_REQUIRES(ctx, x.dims() == 4,
                InvalidArg(op, ": input must be [batch, height, width, words], got ",
                                        x.shape().DebugString()));
    OP_REQUIRES(ctx, f.dims() == 4,
                InvalidArg(op, ": filter must be [out_channels, kh, kw, words], got ",
                                        f.shape().DebugString()));
    OP_REQUIRES(ctx, x.dim_size(3) == words,
                InvalidArg(op, ": input has ", x.dim_size(3),
                                        " words per pixel but in_channels=", in_channels_,
                                        " needs ", words));
    OP_REQUIRES(ctx, f.dim_size(3) == words,
                InvalidArg(op, ": filter has ", f.dim_size(3),
                                        " words per tap but in_channels=", in_channels_,
                                        " needs ", words));
    const int64_t batch = x.dim_size(0), in_h = x.dim_size(1), in_w = x.dim_size(2);
    const int64_t oc = f.dim_size(0), k_h = f.dim_size(1), k_w = f.dim_size(2);
    Window wh, ww;
    OP_REQUIRES_OK(ctx, ConvWindow("height", in_h, k_h, stride_h_, same_, &wh));
    OP_REQUIRES_OK(ctx, ConvWindow("width", in_w, k_w, stride_w_, same_, &ww));
    const float* alpha = nullptr;
    const float* bias = nullptr;
    const float* scale = nullptr;
    if (!kDot) {
      const Tensor& a = ctx->input(2);
      const Tensor& b = ctx->input(3);
      OP_REQUIRES(ctx, a.dims() == 1 && a.dim_size(0) == oc,
                  InvalidArg(op, ": alpha must be [", oc, "] (one per filter), got ",
                                          a.shape().DebugString()));
      OP_REQUIRES(ctx, b.dims() == 1 && b.dim_size(0) == oc,
                  InvalidArg(op, ": bias must be [", oc, "] (one per filter), got ",
                                          b.shape().DebugString()));
      alpha = a.flat<float>().data();
      bias = b.flat<float>().data();
      if (has_scale_) {
        const Tensor& s = ctx->input(4);
        OP_REQUIRES(ctx, s.shape() == TensorShape({batch, wh.out, ww.out}),
                    InvalidArg(op, ": input_scale must be [", batch, ", ", wh.out,
                                            ", ", ww.out, "] (one per output pixel), got ",
                                            s.shape().DebugString()));
        scale = s.flat<float>().data();
      }
    }
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));

    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {batch, wh.out, ww.out, oc}, &out));
    const int64_t npix_total = batch * wh.out * ww.out;
    if (npix_total == 0 || oc == 0) return;

    const XnorKernel& kern = SelectXnorKernel(path);
    const int64_t taps = k_h * k_w, k = taps * words;
    const int64_t kp = CeilDiv(k, kern.k_align) * kern.k_align;
    const uint64_t mask = LastWordMask(in_channels_);
    const std::shared_ptr<const PreparedFilter> pf = Filter(f, kern, path);
    const std::vector<uint64_t>& fprep = pf->fprep;
    // SAME padding's per-border-kind corrections (nullptr for VALID).
    const std::shared_ptr<const BorderCorrections> bc =
        same_ ? Corrections(pf, in_h, in_w, wh, ww) : nullptr;

    const uint64_t* xsrc = reinterpret_cast<const uint64_t*>(x.flat<int64_t>().data());
    const int64_t out_h = wh.out, out_w = ww.out;
    // Output pixels per block: at most 36 (a multiple of the kernels' 2-, 3-
    // and 4-pixel register blocks). Large outputs (batch 32): 36-pixel units on
    // TF's pool, its cost model balancing them. Small ones (batch 1, under
    // kSmallWork word pairs): exactly one equal shard per thread on the spinning
    // helpers (fork_join.h): a run of pixels each, or, when there are too few
    // pixels, all pixels against one chunk of filters each (PlanXnorSplit).
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
    constexpr int64_t kMaxBlock = 36;
    constexpr int64_t kSmallWork = int64_t{32} << 20;
    const SplitModeT mode = SplitMode();
    const bool small = npix_total * oc * kp < kSmallWork && mode != SplitModeT::kPixels;
    // Small outputs: no more shards than 2^15 word pairs (~1.5 us) each.
    const int64_t threads = small ? ShardsFor(std::max(1, pool->num_threads), npix_total * oc * kp,
                                              int64_t{1} << 15)
                                  : std::max(1, pool->num_threads);
    const bool serial = mode == SplitModeT::kSerial || threads <= 1;
    const XnorSplit split =
        PlanXnorSplit(CeilDiv(npix_total, kMaxBlock), oc, threads, mode);
    // Outputs far larger than a core's caches (batch 32: 7-16 MB a layer) go
    // out with non-temporal stores: a plain store first reads each line in,
    // which cost L2 at batch 32 6-12% of its time on one core (docs/binary.md).
    // Batch-1 outputs (<= 0.5 MB) stay in cache for the next layer.
    constexpr int64_t kStreamBytes = int64_t{4} << 20;
    const bool stream = !kDot && out->NumElements() * int64_t{4} >= kStreamBytes;
    // Checked once here: flat<T>() checks the type and alignment on every call.
    int32_t* const out_dot = kDot ? out->flat<int32_t>().data() : nullptr;
    float* const out_float = kDot ? nullptr : out->flat<float>().data();
    // Output pixels [p_begin, p_end) against filters [o0, o1) (o0 a multiple of
    // kFilterAlign, so fprep + filter_words(o0) starts a filter group of every
    // kernel's layout), in blocks of about equal size, at most kMaxBlock.
    auto compute = [&](int64_t p_begin, int64_t p_end, int64_t o0, int64_t o1) {
      const int64_t noc = o1 - o0;
      const int64_t n = p_end - p_begin;
      if (n <= 0 || noc <= 0) return;
      const int64_t block = std::min(kMaxBlock, CeilDiv(CeilDiv(n, CeilDiv(n, kMaxBlock)), 6) * 6);
      const uint64_t* fsub = fprep.data() + kern.filter_words(o0, kp);
      // Patches: with popcount_rows, k_h row pointers per pixel, straight into
      // the input where a kernel row lies inside it (no copy: the copy cost
      // ~5% of L2 at batch 32 on one core), else at a zero row or at a row
      // rebuilt in `patches` (taps in the padding as zero words, or a partial
      // last word masked); without it, every patch copied (im2col).
      const int64_t rw = k_w * words;
      const bool by_rows = kern.popcount_rows != nullptr && kp == k;
      // The epilogue in the popcount kernel's registers where it has that form;
      // streamed outputs (batch 32) keep the separate pass and its stores.
      const bool fused = !kDot && by_rows && kern.popcount_rows_out != nullptr && !stream;
      const bool interior_rows = by_rows && mask == ~uint64_t{0};
      thread_local XnorShardBuffers buf;
      uint64_t* patches = AtLeast(&buf.patches, block * kp);
      const uint64_t** rows = AtLeast(&buf.rows, by_rows ? block * k_h : 0);
      const uint64_t* zero_row = AtLeast(&buf.zero_row, rw);
      uint64_t* scratch = AtLeast(&buf.scratch, kern.scratch_words(block, kp) + 8);
      int32_t* pc = AtLeast(&buf.pc, block * noc);
      // Per pixel of a block: the count of valid bits (valid taps x
      // in_channels) and the padded taps' correction (null: none).
      int32_t base[kMaxBlock];
      const int32_t* corr[kMaxBlock];
      const int32_t full_base = static_cast<int32_t>(k_h * k_w * in_channels_);
      // Output pixel p_begin as (image, row, column), then stepped without
      // divisions: four 64-bit divides a pixel were ~4 us of L3's 85 at batch 1.
      int64_t b = p_begin / (out_h * out_w), oy = p_begin % (out_h * out_w) / out_w,
              ox = p_begin % out_w;
      auto next_pixel = [&] {
        if (++ox == out_w) {
          ox = 0;
          if (++oy == out_h) oy = 0, ++b;
        }
      };
      for (int64_t p0 = p_begin; p0 < p_end; p0 += block) {
        const int64_t np = std::min(block, p_end - p0);
        for (int64_t i = 0; i < np; ++i) {
          const int64_t ih0 = oy * stride_h_ - wh.pad_before;
          const int64_t iw0 = ox * stride_w_ - ww.pad_before;
          if (interior_rows && ih0 >= 0 && ih0 <= in_h - k_h && iw0 >= 0 && iw0 <= in_w - k_w) {
            // The whole window inside the input (most pixels): k_h pointers
            // into it and no correction, without the general set-up's per-row
            // checks (L2 at batch 1, all interior, one thread: -4%).
            base[i] = full_base;
            corr[i] = nullptr;
            const uint64_t* src = xsrc + ((b * in_h + ih0) * in_w + iw0) * words;
            for (int64_t kh = 0; kh < k_h; ++kh) rows[i * k_h + kh] = src + kh * in_w * words;
            next_pixel();
            continue;
          }
          // The valid taps: rows [h0, h1) and columns [v0, v1) of the window.
          const int64_t h0 = std::max<int64_t>(0, -ih0), h1 = std::min(k_h, in_h - ih0);
          const int64_t v0 = std::max<int64_t>(0, -iw0), v1 = std::min(k_w, in_w - iw0);
          base[i] = static_cast<int32_t>((h1 - h0) * (v1 - v0) * in_channels_);
          corr[i] = bc ? bc->at(oy, ox, oc, o0) : nullptr;
          const bool full_row = v0 == 0 && v1 == k_w && mask == ~uint64_t{0};
          uint64_t* dst = patches + i * kp;
          for (int64_t kh = 0; kh < k_h; ++kh, dst += rw) {
            const int64_t ih = ih0 + kh;
            const uint64_t** row = by_rows ? &rows[i * k_h + kh] : nullptr;
            if (ih < 0 || ih >= in_h) {
              if (row) *row = zero_row;
              else std::fill(dst, dst + rw, 0);
              continue;
            }
            // The valid taps of a kernel row are contiguous in the input.
            const uint64_t* src = xsrc + ((b * in_h + ih) * in_w + iw0 + v0) * words;
            if (row && full_row) {
              *row = src;
              continue;
            }
            if (row) *row = dst;
            const int64_t n0 = v0 * words, n1 = v1 * words;
            for (int64_t t = 0; t < n0; ++t) dst[t] = 0;
            for (int64_t t = n0; t < n1; ++t) dst[t] = src[t - n0];
            for (int64_t t = n1; t < rw; ++t) dst[t] = 0;
            if (mask != ~uint64_t{0})
              for (int64_t t = n0 + words - 1; t < n1; t += words) dst[t] &= mask;
          }
          if (!by_rows) std::fill(dst, patches + (i + 1) * kp, 0);
          next_pixel();
        }
        if (fused) {
          const XnorOut e{base, corr, scale ? scale + p0 : nullptr, alpha + o0, bias + o0, relu_,
                          out_float + p0 * oc + o0, oc};
          kern.popcount_rows_out(rows, np, k_h, rw, fsub, noc, e);
          continue;
        }
        if (by_rows)
          kern.popcount_rows(rows, np, k_h, rw, fsub, noc, pc);
        else
          kern.popcount_block(patches, np, kp, fsub, noc, scratch, pc);
        for (int64_t i = 0; i < np; ++i) {
          const int32_t* row = pc + i * noc;
          const int32_t* c = corr[i];
          if (kDot) {
            int32_t* dst = out_dot + (p0 + i) * oc + o0;
            for (int64_t o = 0; o < noc; ++o) dst[o] = base[i] - 2 * (c ? row[o] - c[o] : row[o]);
          } else {
            kern.epilogue(row, c, noc, base[i], scale ? scale + p0 + i : nullptr, alpha + o0,
                          bias + o0, relu_, out_float + (p0 + i) * oc + o0,
                          stream);
          }
        }
      }
      if (stream) _mm_sfence();  // the streamed lines are visible before the shard reports done
    };
    // Cost in cycles: roughly one cycle per word pair on AVX2.
    if (serial) {
      compute(0, npix_total, 0, oc);
    } else if (split.filter_chunks > 1) {
      RunShards(ctx, split.filter_chunks, npix_total * split.chunk * kp, [&](int64_t f) {
        const int64_t o0 = f * split.chunk;
        compute(0, npix_total, o0, std::min(oc, o0 + split.chunk));
      });
    } else if (small) {
      const int64_t shards = std::min(threads, npix_total);
      RunShards(ctx, shards, CeilDiv(npix_total, shards) * oc * kp, [&](int64_t s) {
        compute(s * npix_total / shards, (s + 1) * npix_total / shards, 0, oc);
      });
    } else {
      const int64_t units = CeilDiv(npix_total, kMaxBlock);
      tensorflow::Shard(threads, pool->workers, units, kMaxBlock * oc * kp,
                        [&](int64_t begin, int64_t end) {
                          compute(begin * kMaxBlock, std::min(npix_total, end * kMaxBlock), 0, oc);
                        });
    }
  }

 private:
  // The cached prepared filter if it was built from these very words on this
  // path, else a fresh one, which becomes the cached one.
  std::shared_ptr<const PreparedFilter> Filter(const Tensor& f, const XnorKernel& kern, Path path) {
    std::shared_ptr<const PreparedFilter> c;
    {
      std::lock_guard<std::mutex> lock(mu_);
      c = cached_;
    }
    if (c && c->path == path && c->oc == f.dim_size(0) && c->k_h == f.dim_size(1) &&
        c->k_w == f.dim_size(2) && c->words == f.dim_size(3)) {
      const bool same_buffer = c->source.SharesBufferWith(f) &&
                               c->source.tensor_data().data() == f.tensor_data().data();
      if (same_buffer ||
          std::memcmp(c->raw.data(), f.tensor_data().data(), c->raw.size() * sizeof(uint64_t)) == 0)
        return c;
    }
    c = PrepareFilter(f, kern, path, in_channels_, same_);
    std::lock_guard<std::mutex> lock(mu_);
    cached_ = c;
    return c;
  }

  // The cached corrections if they belong to this prepared filter and input
  // size (held alongside it: the entry keeps its filter alive), else new ones.
  std::shared_ptr<const BorderCorrections> Corrections(
      const std::shared_ptr<const PreparedFilter>& pf, int64_t in_h, int64_t in_w,
      const Window& wh, const Window& ww) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (corr_ && corr_filter_ == pf && corr_->in_h == in_h && corr_->in_w == in_w) return corr_;
    }
    auto bc = BuildCorrections(*pf, in_h, in_w, wh, ww, stride_h_, stride_w_);
    std::lock_guard<std::mutex> lock(mu_);
    corr_filter_ = pf;
    corr_ = bc;
    return bc;
  }

  int64_t in_channels_ = 0, stride_h_ = 1, stride_w_ = 1;
  bool same_ = false, relu_ = false, has_scale_ = false;
  std::string path_attr_;
  std::mutex mu_;
  std::shared_ptr<const PreparedFilter> cached_;
  std::shared_ptr<const PreparedFilter> corr_filter_;
  std::shared_ptr<const BorderCorrections> corr_;
};

REGISTER_KERNEL_BUILDER(Name("SketchtfXnorConv2D").Device(tensorflow::DEVICE_CPU),
                        XnorConvOp<false>);

// ------------------------------------------------------------- roofline --
REGISTER_OP("SketchtfPopcountRoofline")
    .Output("words_per_second: float64")
    .Attr("path: string = 'auto'")
    .Attr("kind: {'stream', 'register'} = 'stream'")
    .SetIsStateful()  // a measurement: never constant-fold or cache it
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Vector(3));
      return absl::OkStatus();
    })
    .Doc(R"doc(
XOR+popcount rate of a kernel path in 64-bit word pairs per second, best of
several trials: [one thread, all of TF's intra-op threads at once, that thread
count]. kind='stream': the path's fastest long-stream loop over two L1-resident
arrays (bounded by loads once popcount is cheap); kind='register': the path's
XNOR-kernel instruction sequence on operands held in registers (no memory
traffic, independent accumulator chains): the compute ceiling.
)doc");

class PopcountRooflineOp : public OpKernel {
 public:
  explicit PopcountRooflineOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
    std::string kind;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kind", &kind));
    register_ = kind == "register";
  }
  void Compute(OpKernelContext* ctx) override {
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));
    const XnorKernel& k = SelectXnorKernel(path);
    constexpr int64_t kWords = 1024, kReps = 4000;  // stream: 2 x 8 KB stay in L1
    // register: about as many word pairs per trial as the stream probe.
    const int64_t iters = kWords * kReps / k.reg_words;
    auto operands = [](std::vector<uint64_t>* a, std::vector<uint64_t>* b, int64_t n) {
      a->resize(n);
      b->resize(n);
      uint64_t s = 0x9E3779B97F4A7C15ull;
      for (int64_t i = 0; i < n; ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        (*a)[i] = s;
        (*b)[i] = s * 0xD1B54A32D192ED03ull;
      }
    };
    // Exact result the register probe must return (checked below: a probe the
    // compiler had folded or mangled would be caught, not reported as fast).
    uint64_t reg_expect = 0;
    {
      std::vector<uint64_t> a, b;
      operands(&a, &b, kRegisterProbeWords);
      for (int i = 0; i < k.reg_words; ++i) reg_expect += __builtin_popcountll(a[i] ^ b[i]);
      reg_expect *= static_cast<uint64_t>(iters);
    }
    std::atomic<bool> reg_ok{true};
    auto run = [&]() {
      std::vector<uint64_t> a, b;
      if (register_) {
        operands(&a, &b, kRegisterProbeWords);
        const uint64_t r = k.xor_popcount_register(a.data(), b.data(), iters);
        if (r != reg_expect) reg_ok = false;
        return r;
      }
      operands(&a, &b, kWords);
      uint64_t sink = 0;
      for (int64_t r = 0; r < kReps; ++r) {
        a[r % kWords] ^= sink;  // keeps every call live
        sink += k.xor_popcount_stream(a.data(), b.data(), kWords);
      }
      return sink;
    };
    auto seconds = [](auto f) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    double best1 = 1e30, best_all = 1e30;
    std::atomic<uint64_t> keep{0};
    for (int t = 0; t < 15; ++t) best1 = std::min(best1, seconds([&] { keep += run(); }));
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
    const int64_t threads = std::max(1, pool->num_threads);
    for (int t = 0; t < 7; ++t) {
      best_all = std::min(best_all, seconds([&] {
        tensorflow::Shard(threads, pool->workers, threads, int64_t{1} << 40,
                          [&](int64_t b, int64_t e) {
                            for (int64_t u = b; u < e; ++u) keep += run();
                          });
      }));
    }
    OP_REQUIRES(ctx, reg_ok.load(),
                absl::InternalError(absl::StrCat(
                    "PopcountRoofline: the ", k.name,
                    " register probe returned a wrong popcount sum (expected ", reg_expect, ")")));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {3}, &out));
    const double words =
        register_ ? static_cast<double>(iters * k.reg_words) : static_cast<double>(kWords * kReps);
    out->vec<double>()(0) = words / best1;
    out->vec<double>()(1) = words * threads / best_all;
    out->vec<double>()(2) = static_cast<double>(threads);
  }

 private:
  std::string path_attr_;
  bool register_ = false;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfPopcountRoofline").Device(tensorflow::DEVICE_CPU),
                        PopcountRooflineOp);
REGISTER_KERNEL_BUILDER(Name("SketchtfXnorConv2DDot").Device(tensorflow::DEVICE_CPU),
                        XnorConvOp<true>);

}  // namespace sketchtf
