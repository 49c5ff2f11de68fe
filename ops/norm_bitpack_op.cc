// SketchtfNormBitpack: the float steps in front of an XNOR layer, fused.
//
// In the XNOR Sketch-A-Net every binary layer's input is
//   [max pool 3x3/2] -> BatchNorm (inference: x * scale + offset) -> sign -> bit-pack,
// three or two TF ops on maps of 35x35 and smaller. At batch 1 each costs TF
// more to dispatch and shard than to compute (on 2 intra-op threads a pool or a
// batch norm ran 2-4x slower than on one), and only the signs are kept. This op
// produces the packed signs directly: bit = !(max_window(x) * scale + offset >= 0),
// i.e. 1 for negative or NaN (a NaN anywhere in a window is the window's max),
// as SketchtfBitpackChannels; the product and the
// sum are rounded separately (no fused multiply-add: this file is built
// without -mfma), as TF's elementwise ops round them.
#include <algorithm>
#include <limits>
#include <vector>

#include "fork_join.h"
#include "op_common.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"

namespace sketchtf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("SketchtfNormBitpack")
    .Input("input: float")
    .Input("scale: float")
    .Input("offset: float")
    .Output("output: int64")
    .Attr("pool_size: int = 1")
    .Attr("pool_stride: int = 1")
    .SetShapeFn([](InferenceContext* c) {
      int64_t pool, stride;
      TF_RETURN_IF_ERROR(c->GetAttr("pool_size", &pool));
      TF_RETURN_IF_ERROR(c->GetAttr("pool_stride", &stride));
      if (pool < 1 || stride < 1) return InvalidArg("NormBitpack: pool_size and pool_stride must be >= 1");
      ShapeHandle in;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &in));
      if (pool > 1) TF_RETURN_IF_ERROR(c->WithRank(in, 4, &in));
      DimensionHandle last = c->Dim(in, -1);
      DimensionHandle words = c->UnknownDim();
      if (c->ValueKnown(last)) words = c->MakeDim(CeilDiv(std::max<int64_t>(c->Value(last), 1), 64));
      ShapeHandle out;
      TF_RETURN_IF_ERROR(c->ReplaceDim(in, -1, words, &out));
      if (pool > 1) {
        for (int axis : {1, 2}) {
          DimensionHandle d = c->Dim(in, axis), o = c->UnknownDim();
          if (c->ValueKnown(d)) o = c->MakeDim(std::max<int64_t>(0, (c->Value(d) - pool) / stride + 1));
          TF_RETURN_IF_ERROR(c->ReplaceDim(out, axis, o, &out));
        }
      }
      c->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Packed signs of a per-channel affine map (inference BatchNorm), optionally after
a VALID max pool (pool_size x pool_size, stride pool_stride; input [B, H, W, C]):
bit c of a pixel is 1 when max_window(x)[c] * scale[c] + offset[c] is negative
or NaN. Output [..., ceil(C/64)] int64, the layout of SketchtfBitpackChannels.
)doc");

class NormBitpackOp : public OpKernel {
 public:
  explicit NormBitpackOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_size", &pool_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_stride", &stride_));
    OP_REQUIRES(ctx, pool_ >= 1 && stride_ >= 1,
                InvalidArg("NormBitpack: pool_size and pool_stride must be >= 1, got ", pool_, " and ",
                           stride_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& scale = ctx->input(1);
    const Tensor& offset = ctx->input(2);
    OP_REQUIRES(ctx, x.dims() >= 1 && (pool_ == 1 || x.dims() == 4),
                InvalidArg("NormBitpack: input must be ", pool_ == 1 ? "rank >= 1" : "[batch, h, w, c] to pool",
                           ", got ", x.shape().DebugString()));
    const int64_t c = x.dim_size(x.dims() - 1);
    OP_REQUIRES(ctx, c >= 1, InvalidArg("NormBitpack: the channel axis is empty in shape ", x.shape().DebugString()));
    OP_REQUIRES(ctx, scale.dims() == 1 && scale.dim_size(0) == c && offset.dims() == 1 && offset.dim_size(0) == c,
                InvalidArg("NormBitpack: scale and offset must be [", c, "] (one per channel), got ",
                           scale.shape().DebugString(), " and ", offset.shape().DebugString()));
    const int64_t words = CeilDiv(c, 64);
    TensorShape out_shape = x.shape();
    out_shape.set_dim(x.dims() - 1, words);
    int64_t batch = 1, in_h = 1, in_w = 1, out_h = 1, out_w = 1;
    if (pool_ > 1) {
      batch = x.dim_size(0), in_h = x.dim_size(1), in_w = x.dim_size(2);
      out_h = std::max<int64_t>(0, (in_h - pool_) / stride_ + 1);
      out_w = std::max<int64_t>(0, (in_w - pool_) / stride_ + 1);
      out_shape.set_dim(1, out_h);
      out_shape.set_dim(2, out_w);
    } else {
      batch = x.NumElements() / c;  // every row of C values is one "pixel"
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    const int64_t rows = batch * out_h;  // units of work: one output row each
    if (out->NumElements() == 0) return;
    const float* src = x.flat<float>().data();
    const float* s = scale.flat<float>().data();
    const float* o = offset.flat<float>().data();
    uint64_t* dst = reinterpret_cast<uint64_t*>(out->flat<int64_t>().data());
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath("auto", &path));  // SKETCHTF_XNOR_PATH can force scalar
    const bool avx512 = path == Path::kAvx512 && c % 16 == 0;
    auto run_rows = [&](int64_t r0, int64_t r1) {
      std::vector<float> m(pool_ > 1 ? c : 0);  // the window max, when pooling
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / out_h, oh = r % out_h;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const float* px = src + ((b * in_h + oh * stride_) * in_w + ow * stride_) * c;
          if (avx512) {  // the same bits, 16 channels a vector (xnor_kernels.h)
            PoolNormSignsAvx512(px, in_w * c, c, pool_, s, o, dst + (r * out_w + ow) * words);
            continue;
          }
          const float* v = px;
          if (pool_ > 1) {
            std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
            for (int64_t i = 0; i < pool_; ++i)
              for (int64_t j = 0; j < pool_; ++j) {
                const float* q = px + (i * in_w + j) * c;
                for (int64_t k = 0; k < c; ++k)  // a NaN in the window wins, as in numpy
                  m[k] = (q[k] > m[k] || q[k] != q[k]) ? q[k] : m[k];
              }
            v = m.data();
          }
          uint64_t* bits = dst + (r * out_w + ow) * words;
          for (int64_t w = 0; w < words; ++w) {
            uint64_t word = 0;
            const int64_t k1 = std::min(c, (w + 1) * 64);
            for (int64_t k = w * 64; k < k1; ++k) {
              const float prod = v[k] * s[k];
              const float y = prod + o[k];
              word |= static_cast<uint64_t>(!(y >= 0.0f)) << (k - w * 64);
            }
            bits[w] = word;
          }
        }
      }
    };
    const int64_t threads = OpThreads(ctx);
    // Tens of microseconds at batch 1: one equal run of rows per thread (fork_join.h), tiny maps inline.
    // A unit (one float of a window) is ~0.2 ns on AVX-512: 2^13 of them outweigh the ~1 us hand-off
    // (2^15 left 15x15x256 serial: 0.019 ms on 1 or 2 threads; split, 0.014 on 2).
    const int64_t work = rows * out_w * c * pool_ * pool_;
    const int64_t shards = std::min(rows, ShardsFor(threads, work, int64_t{1} << 13));
    RunShards(ctx, shards, CeilDiv(work, shards), [&](int64_t sh) {
      run_rows(sh * rows / shards, (sh + 1) * rows / shards);
    });
  }

 private:
  int64_t pool_ = 1, stride_ = 1;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfNormBitpack").Device(tensorflow::DEVICE_CPU), NormBitpackOp);

}  // namespace
}  // namespace sketchtf
