// SketchtfBinaryWeightConv2D and SketchtfBinaryWeightDense: float input times
// packed 1-bit weights (the layout of SketchtfBitpackChannels applied to the
// filter transposed to [O, KH, KW, Cin]), out = alpha * conv(x, sign(w)) + bias,
// optional ReLU. Zero padding is exact: a padded input is 0 whatever the sign.
// The inner loop only adds (see BwKernel in xnor_kernels.h). Inference only.
#include <algorithm>
#include <limits>
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
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

const BwKernel& SelectBwKernel(Path p) {
  switch (p) {
    case Path::kScalar: return BwKernelScalar();
    case Path::kAvx2: return BwKernelAvx2();
    case Path::kAvx512: return BwKernelAvx512();
  }
  return BwKernelScalar();
}

absl::Status CheckWordsDim(InferenceContext* c, DimensionHandle channels, DimensionHandle words) {
  if (!c->ValueKnown(channels)) return absl::OkStatus();
  DimensionHandle unused;
  return c->WithValue(words, CeilDiv(c->Value(channels), 64), &unused);
}

absl::Status MergeOutChannels(InferenceContext* c, DimensionHandle* out_c) {
  ShapeHandle alpha, bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &alpha));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &bias));
  TF_RETURN_IF_ERROR(c->Merge(*out_c, c->Dim(alpha, 0), out_c));
  return c->Merge(*out_c, c->Dim(bias, 0), out_c);
}

// Runs the kernel over all tiles; splits output channels too when there are
// too few tiles to keep every thread busy (batch-1 dense layers), and gives
// each thread one equal run of tiles when there are few (batch-1 convs).
// SKETCHTF_XNOR_SPLIT=pixels restores the cost-model sharding for the latter,
// =serial runs everything on the calling thread (see xnor_conv_op.cc).
void RunBwTiles(OpKernelContext* ctx, const BwKernel& kern, BwConvArgs a) {
  const int64_t tiles = kern.units(a), unit_positions = CeilDiv(a.batch * a.out_h * a.out_w, tiles);
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  const int64_t threads = std::max(1, pool->num_threads);
  int64_t ocb = a.out_c;
  if (tiles < 2 * threads && a.out_c > 32) {
    ocb = std::max<int64_t>(32, CeilDiv(CeilDiv(a.out_c, 2 * threads), 8) * 8);
  }
  const int64_t ochunks = CeilDiv(a.out_c, ocb);
  const int64_t cost = unit_positions * a.k_h * a.k_w * a.in_c * ocb / 8;  // ~cycles per unit
  const SplitModeT mode = SplitMode();
  const bool legacy = mode == SplitModeT::kPixels;
  if (mode == SplitModeT::kSerial) {  // one-thread baseline
    kern.conv_tiles(a, 0, tiles);
    return;
  }
  if (!legacy && ochunks == 1 && threads > 1 && tiles * cost < (int64_t{1} << 27)) {
    // Small outputs (batch 1): exactly one contiguous run of tiles per thread,
    // sizes differing by at most one tile (the cost model's blocks could leave
    // one thread a block more). Threads beyond the tile count get nothing.
    // On the spinning helpers of fork_join.h (=tfpool: on TF's pool).
    const int64_t shards = std::min(tiles, ShardsFor(threads, tiles * cost, int64_t{1} << 17));
    RunShards(ctx, shards, cost * CeilDiv(tiles, shards), [&](int64_t s) {
      kern.conv_tiles(a, s * tiles / shards, (s + 1) * tiles / shards);
    });
    return;
  }
  tensorflow::Shard(threads, pool->workers, tiles * ochunks, cost,
                    [&](int64_t begin, int64_t end) {
                      for (int64_t u = begin; u < end;) {
                        // Consecutive units of one output-channel chunk run as one call.
                        const int64_t chunk = u / tiles, t0 = u % tiles;
                        const int64_t t1 = std::min(tiles, t0 + (end - u));
                        BwConvArgs b = a;
                        const int64_t o0 = chunk * ocb;
                        b.out_c = std::min(ocb, a.out_c - o0);
                        b.weights = a.weights + o0;
                        b.alpha = a.alpha + o0;
                        b.bias = a.bias + o0;
                        b.output = a.output + o0;
                        kern.conv_tiles(b, t0, t1);
                        u += t1 - t0;
                      }
                    });
}

// [rows][words] filter words (row = o, tap) -> [tap][word][O], padding bits cleared.
std::vector<uint64_t> LookupWeights(const Tensor& f, int64_t oc, int64_t taps, int64_t words,
                                    int64_t in_c) {
  const uint64_t* src = reinterpret_cast<const uint64_t*>(f.flat<int64_t>().data());
  const uint64_t mask = LastWordMask(in_c);
  std::vector<uint64_t> w(taps * words * oc);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t j = 0; j < words; ++j) {
        uint64_t v = src[(o * taps + t) * words + j];
        if (j == words - 1) v &= mask;
        w[(t * words + j) * oc + o] = v;
      }
  return w;
}

// The lookup kernel's re-layout of a filter, kept per op instance for the
// buffer it was built from: served models pass the same constant every call,
// and the re-layout (74 KB for Sketch-A-Net's L4/L5) ran serially before the
// split on every call. Holding a reference to that buffer keeps it from being
// freed and reused for other words; TF's resource variables copy a shared
// buffer before they write (as the XNOR op's prepared-filter cache).
class LookupCache {
 public:
  std::shared_ptr<const std::vector<uint64_t>> Get(const Tensor& f, int64_t oc, int64_t taps,
                                                   int64_t words, int64_t in_c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (w_ && in_c_ == in_c && source_.shape() == f.shape() && source_.SharesBufferWith(f) &&
          source_.tensor_data().data() == f.tensor_data().data())
        return w_;
    }
    auto w = std::make_shared<const std::vector<uint64_t>>(LookupWeights(f, oc, taps, words, in_c));
    std::lock_guard<std::mutex> lock(mu_);
    source_ = f;
    w_ = w;
    in_c_ = in_c;
    return w;
  }

 private:
  std::mutex mu_;
  Tensor source_;
  std::shared_ptr<const std::vector<uint64_t>> w_;
  int64_t in_c_ = 0;
};

// Thin outputs go to the kernel's rows path, which reads the filter as given,
// split into one equal run of output channels per thread (multiples of 8, the
// kernel's block); the rest is re-laid out for the lookup kernel.
void RunBw(OpKernelContext* ctx, const BwKernel& kern, BwConvArgs a, const Tensor& f,
           LookupCache* cache) {
  const int64_t taps = a.k_h * a.k_w;
  if (a.batch * a.out_h * a.out_w <= kern.rows_max_positions) {
    a.filter_rows = reinterpret_cast<const uint64_t*>(f.flat<int64_t>().data());
    const int64_t threads = OpThreads(ctx);
    const int64_t shards =
        std::min(CeilDiv(a.out_c, 8), ShardsFor(threads, a.out_c * taps * a.words * 64, int64_t{1} << 17));
    const int64_t per = CeilDiv(CeilDiv(a.out_c, shards), 8) * 8;
    if (shards == 1) {
      kern.conv_rows(a, 0, a.out_c);
      return;
    }
    RunShards(ctx, shards, per * taps * a.words * 64, [&](int64_t s) {
      kern.conv_rows(a, std::min(a.out_c, s * per), std::min(a.out_c, (s + 1) * per));
    });
    return;
  }
  const std::shared_ptr<const std::vector<uint64_t>> w = cache->Get(f, a.out_c, taps, a.words, a.in_c);
  a.weights = w->data();
  a.w_ld = a.out_c;
  RunBwTiles(ctx, kern, a);
}

}  // namespace

// ------------------------------------------------------------------ conv2d --
REGISTER_OP("SketchtfBinaryWeightConv2D")
    .Input("input: float")
    .Input("filter: int64")
    .Input("alpha: float")
    .Input("bias: float")
    .Output("output: float")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("fused_relu: bool = false")
    .Attr("path: string = 'auto'")
    .Attr("pool_size: int = 1")
    .Attr("pool_stride: int = 1")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle in, filter;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
      int64_t pool = 1, pool_stride = 1;
      TF_RETURN_IF_ERROR(c->GetAttr("pool_size", &pool));
      TF_RETURN_IF_ERROR(c->GetAttr("pool_stride", &pool_stride));
      if (pool < 1 || pool_stride < 1) return InvalidArg("pool_size and pool_stride must be >= 1");
      if (pool > 1) {  // the conv's input is the VALID max pool of the op's input
        DimensionHandle ph, pw;
        TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 1), c->MakeDim(pool), pool_stride, false, &ph));
        TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 2), c->MakeDim(pool), pool_stride, false, &pw));
        in = c->MakeShape({c->Dim(in, 0), ph, pw, c->Dim(in, 3)});
      }
      TF_RETURN_IF_ERROR(CheckWordsDim(c, c->Dim(in, 3), c->Dim(filter, 3)));
      std::vector<int32_t> strides;
      TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
      std::string padding;
      TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
      if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
        return InvalidArg("strides must be 2 positive ints");
      DimensionHandle out_c = c->Dim(filter, 0), oh, ow;
      TF_RETURN_IF_ERROR(MergeOutChannels(c, &out_c));
      const bool same = padding == "SAME";
      TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 1), c->Dim(filter, 1), strides[0], same, &oh));
      TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 2), c->Dim(filter, 2), strides[1], same, &ow));
      c->set_output(0, c->MakeShape({c->Dim(in, 0), oh, ow, out_c}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Float input [B, H, W, C] times packed binary filter [O, KH, KW, ceil(C/64)]:
alpha * conv2d(x, sign(w)) + bias (zero padding), optional ReLU. Inference only.
pool_size > 1: x is max-pooled first (VALID, pool_size x pool_size window,
pool_stride; NaN anywhere in a window gives NaN), as tf.nn.max_pool2d in front.
)doc");

class BinaryWeightConvOp : public OpKernel {
 public:
  explicit BinaryWeightConvOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadConvAttrs(ctx, &stride_h_, &stride_w_, &same_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("fused_relu", &relu_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_size", &pool_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_stride", &pool_stride_));
    OP_REQUIRES(ctx, pool_ >= 1 && pool_stride_ >= 1,
                InvalidArg("BinaryWeightConv2D: pool_size and pool_stride must be >= 1, got ",
                           pool_, " and ", pool_stride_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& f = ctx->input(1);
    const Tensor& alpha = ctx->input(2);
    const Tensor& bias = ctx->input(3);
    OP_REQUIRES(ctx, input.dims() == 4,
                InvalidArg("BinaryWeightConv2D: input must be [batch, height, "
                                        "width, channels], got ", input.shape().DebugString()));
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));
    Tensor pooled;
    if (pool_ > 1) OP_REQUIRES_OK(ctx, MaxPool(ctx, input, path, &pooled));
    const Tensor& x = pool_ > 1 ? pooled : input;
    OP_REQUIRES(ctx, f.dims() == 4,
                InvalidArg("BinaryWeightConv2D: filter must be [out_channels, kh, "
                                        "kw, words], got ", f.shape().DebugString()));
    const int64_t in_c = x.dim_size(3), words = CeilDiv(in_c, 64);
    OP_REQUIRES(ctx, in_c >= 1,
                InvalidArg("BinaryWeightConv2D: input has no channels"));
    OP_REQUIRES(ctx, f.dim_size(3) == words,
                InvalidArg("BinaryWeightConv2D: filter has ", f.dim_size(3),
                                        " words per tap but ", in_c, " input channels need ",
                                        words));
    const int64_t oc = f.dim_size(0);
    OP_REQUIRES(ctx, alpha.dims() == 1 && alpha.dim_size(0) == oc,
                InvalidArg("BinaryWeightConv2D: alpha must be [", oc, "], got ",
                                        alpha.shape().DebugString()));
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == oc,
                InvalidArg("BinaryWeightConv2D: bias must be [", oc, "], got ",
                                        bias.shape().DebugString()));
    Window wh, ww;
    OP_REQUIRES_OK(ctx, ConvWindow("height", x.dim_size(1), f.dim_size(1), stride_h_, same_, &wh));
    OP_REQUIRES_OK(ctx, ConvWindow("width", x.dim_size(2), f.dim_size(2), stride_w_, same_, &ww));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {x.dim_size(0), wh.out, ww.out, oc}, &out));
    if (out->NumElements() == 0) return;

    BwConvArgs a{};
    a.batch = x.dim_size(0);
    a.in_h = x.dim_size(1);
    a.in_w = x.dim_size(2);
    a.in_c = in_c;
    a.out_h = wh.out;
    a.out_w = ww.out;
    a.out_c = oc;
    a.k_h = f.dim_size(1);
    a.k_w = f.dim_size(2);
    a.stride_h = stride_h_;
    a.stride_w = stride_w_;
    a.pad_top = wh.pad_before;
    a.pad_left = ww.pad_before;
    a.words = words;
    a.input = x.flat<float>().data();
    a.alpha = alpha.flat<float>().data();
    a.bias = bias.flat<float>().data();
    a.relu = relu_;
    a.output = out->flat<float>().data();
    a.out_ld = oc;
    RunBw(ctx, SelectBwKernel(path), a, f, &cache_);
  }

 private:
  // The VALID max pool in front (served models: pool1, pool2, pool5 of
  // Sketch-A-Net). TF's MaxPool at batch 1 ran 2-4x slower on 2 intra-op
  // threads than on one (0.096 vs 0.045 ms at 71x71x64): here one equal run of
  // output rows per thread on the spinning helpers (fork_join.h).
  absl::Status MaxPool(OpKernelContext* ctx, const Tensor& x, Path path, Tensor* out) {
    const int64_t batch = x.dim_size(0), in_h = x.dim_size(1), in_w = x.dim_size(2),
                  c = x.dim_size(3);
    if (in_h < pool_ || in_w < pool_)
      return InvalidArg("BinaryWeightConv2D: input ", x.shape().DebugString(),
                        " is smaller than the ", pool_, "x", pool_, " pool window");
    const int64_t out_h = (in_h - pool_) / pool_stride_ + 1, out_w = (in_w - pool_) / pool_stride_ + 1;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, {batch, out_h, out_w, c}, out));
    const float* src = x.flat<float>().data();
    float* dst = out->flat<float>().data();
    const bool avx512 = path == Path::kAvx512 && c % 16 == 0;
    const int64_t p = pool_, st = pool_stride_, rows = batch * out_h;
    auto run_rows = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / out_h, oh = r % out_h;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const float* px = src + ((b * in_h + oh * st) * in_w + ow * st) * c;
          float* o = dst + (r * out_w + ow) * c;
          if (avx512) {
            PoolMaxAvx512(px, in_w * c, c, p, o);
            continue;
          }
          std::copy(px, px + c, o);
          for (int64_t i = 0; i < p; ++i)
            for (int64_t j = 0; j < p; ++j) {
              const float* q = px + (i * in_w + j) * c;
              for (int64_t k = 0; k < c; ++k)  // a NaN in the window wins, and stays
                if (!(q[k] <= o[k]) && o[k] == o[k]) o[k] = q[k];
            }
        }
      }
    };
    const int64_t work = rows * out_w * c * p * p;
    const int64_t shards = std::min(rows, ShardsFor(OpThreads(ctx), work, int64_t{1} << 13));
    RunShards(ctx, shards, CeilDiv(work, shards), [&](int64_t sh) {
      run_rows(sh * rows / shards, (sh + 1) * rows / shards);
    });
    return absl::OkStatus();
  }

  int64_t stride_h_ = 1, stride_w_ = 1, pool_ = 1, pool_stride_ = 1;
  bool same_ = false, relu_ = false;
  std::string path_attr_;
  LookupCache cache_;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfBinaryWeightConv2D").Device(tensorflow::DEVICE_CPU),
                        BinaryWeightConvOp);

// ------------------------------------------------------------------- dense --
REGISTER_OP("SketchtfBinaryWeightDense")
    .Input("input: float")
    .Input("filter: int64")
    .Input("alpha: float")
    .Input("bias: float")
    .Output("output: float")
    .Attr("fused_relu: bool = false")
    .Attr("path: string = 'auto'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle in, filter;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &in));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &filter));
      TF_RETURN_IF_ERROR(CheckWordsDim(c, c->Dim(in, 1), c->Dim(filter, 1)));
      DimensionHandle out_c = c->Dim(filter, 0);
      TF_RETURN_IF_ERROR(MergeOutChannels(c, &out_c));
      c->set_output(0, c->Matrix(c->Dim(in, 0), out_c));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Float input [B, C] times packed binary weights [O, ceil(C/64)] (the dense kernel
[C, O] transposed and bit-packed): alpha * x @ sign(w) + bias, optional ReLU.
Inference only.
)doc");

class BinaryWeightDenseOp : public OpKernel {
 public:
  explicit BinaryWeightDenseOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("fused_relu", &relu_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& f = ctx->input(1);
    const Tensor& alpha = ctx->input(2);
    const Tensor& bias = ctx->input(3);
    OP_REQUIRES(ctx, x.dims() == 2,
                InvalidArg("BinaryWeightDense: input must be [batch, channels], "
                                        "got ", x.shape().DebugString()));
    OP_REQUIRES(ctx, f.dims() == 2,
                InvalidArg("BinaryWeightDense: filter must be [out_channels, "
                                        "words], got ", f.shape().DebugString()));
    const int64_t in_c = x.dim_size(1), words = CeilDiv(in_c, 64), oc = f.dim_size(0);
    OP_REQUIRES(ctx, in_c >= 1, InvalidArg("BinaryWeightDense: input has no channels"));
    OP_REQUIRES(ctx, f.dim_size(1) == words,
                InvalidArg("BinaryWeightDense: filter has ", f.dim_size(1),
                                        " words per row but ", in_c, " input channels need ",
                                        words));
    OP_REQUIRES(ctx, alpha.dims() == 1 && alpha.dim_size(0) == oc,
                InvalidArg("BinaryWeightDense: alpha must be [", oc, "], got ",
                                        alpha.shape().DebugString()));
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == oc,
                InvalidArg("BinaryWeightDense: bias must be [", oc, "], got ",
                                        bias.shape().DebugString()));
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {x.dim_size(0), oc}, &out));
    if (out->NumElements() == 0) return;

    // A dense layer is a 1x1 convolution over a [B, 1, 1, C] image.
    BwConvArgs a{};
    a.batch = x.dim_size(0);
    a.in_h = a.in_w = a.out_h = a.out_w = 1;
    a.in_c = in_c;
    a.out_c = oc;
    a.k_h = a.k_w = a.stride_h = a.stride_w = 1;
    a.pad_top = a.pad_left = 0;
    a.words = words;
    a.input = x.flat<float>().data();
    a.alpha = alpha.flat<float>().data();
    a.bias = bias.flat<float>().data();
    a.relu = relu_;
    a.output = out->flat<float>().data();
    a.out_ld = oc;
    RunBw(ctx, SelectBwKernel(path), a, f, &cache_);
  }

 private:
  bool relu_ = false;
  std::string path_attr_;
  LookupCache cache_;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfBinaryWeightDense").Device(tensorflow::DEVICE_CPU),
                        BinaryWeightDenseOp);

}  // namespace sketchtf
