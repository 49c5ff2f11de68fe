// SketchtfInkConv2D: float conv2d that skips zero inputs (the first layer of a
// sketch network; kernels and the why in ink_conv.h). Same contract as
// tf.nn.conv2d(x, filter) + bias [-> ReLU], up to float summation order.
#include <algorithm>
#include <vector>

#include "fork_join.h"
#include "ink_conv.h"
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
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

const InkConvKernel& SelectInkKernel(Path p) {
  switch (p) {
    case Path::kScalar: return InkConvKernelScalar();
    case Path::kAvx2: return InkConvKernelAvx2();
    case Path::kAvx512: return InkConvKernelAvx512();
  }
  return InkConvKernelScalar();
}

REGISTER_OP("SketchtfInkConv2D")
    .Input("input: float")
    .Input("filter: float")
    .Input("bias: float")
    .Output("output: float")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("fused_relu: bool = false")
    .Attr("path: string = 'auto'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle in, filter, bias;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &bias));
      DimensionHandle unused, out_c;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(in, 3), c->Dim(filter, 2), &unused));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(filter, 3), c->Dim(bias, 0), &out_c));
      std::vector<int32_t> strides;
      TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
      std::string padding;
      TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
      if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
        return InvalidArg("strides must be 2 positive ints");
      const bool same = padding == "SAME";
      DimensionHandle oh, ow;
      TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 1), c->Dim(filter, 0), strides[0], same, &oh));
      TF_RETURN_IF_ERROR(ConvOutDim(c, c->Dim(in, 2), c->Dim(filter, 1), strides[1], same, &ow));
      c->set_output(0, c->MakeShape({c->Dim(in, 0), oh, ow, out_c}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
conv2d(input, filter) + bias, optional ReLU, computed over the non-zero inputs
only (cost grows with the ink, not the image): input [B, H, W, C] float,
filter [KH, KW, C, O] (tf.nn.conv2d's layout) with KW * C <= 64 and KH <= 256,
bias [O]. Equal to the dense conv up to float summation order for finite
weights. Inference only.
)doc");

class InkConvOp : public OpKernel {
 public:
  explicit InkConvOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadConvAttrs(ctx, &stride_h_, &stride_w_, &same_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("fused_relu", &relu_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("path", &path_attr_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& f = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    OP_REQUIRES(ctx, x.dims() == 4,
                InvalidArg("InkConv2D: input must be [batch, height, width, channels], got ",
                           x.shape().DebugString()));
    OP_REQUIRES(ctx, f.dims() == 4,
                InvalidArg("InkConv2D: filter must be [kh, kw, in_channels, out_channels], got ",
                           f.shape().DebugString()));
    const int64_t in_c = x.dim_size(3), oc = f.dim_size(3);
    OP_REQUIRES(ctx, in_c >= 1 && f.dim_size(2) == in_c,
                InvalidArg("InkConv2D: filter has ", f.dim_size(2), " input channels, input has ", in_c));
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == oc,
                InvalidArg("InkConv2D: bias must be [", oc, "], got ", bias.shape().DebugString()));
    OP_REQUIRES(ctx, InkConvSupported(f.dim_size(0), f.dim_size(1), in_c),
                InvalidArg("InkConv2D: needs filter width * in_channels <= 64 and height <= ", kInkMaxKh,
                           ", got filter ", f.shape().DebugString(), ": use tf.nn.conv2d"));
    Window wh, ww;
    OP_REQUIRES_OK(ctx, ConvWindow("height", x.dim_size(1), f.dim_size(0), stride_h_, same_, &wh));
    OP_REQUIRES_OK(ctx, ConvWindow("width", x.dim_size(2), f.dim_size(1), stride_w_, same_, &ww));
    Path path;
    OP_REQUIRES_OK(ctx, ResolvePath(path_attr_, &path));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {x.dim_size(0), wh.out, ww.out, oc}, &out));
    if (out->NumElements() == 0) return;

    InkConvArgs a{};
    a.batch = x.dim_size(0);
    a.in_h = x.dim_size(1);
    a.in_w = x.dim_size(2);
    a.in_c = in_c;
    a.out_h = wh.out;
    a.out_w = ww.out;
    a.out_c = oc;
    a.k_h = f.dim_size(0);
    a.k_w = f.dim_size(1);
    a.stride_h = stride_h_;
    a.stride_w = stride_w_;
    a.pad_top = wh.pad_before;
    a.pad_left = ww.pad_before;
    a.input = x.flat<float>().data();
    a.filter = f.flat<float>().data();
    a.bias = bias.flat<float>().data();
    a.relu = relu_;
    a.output = out->flat<float>().data();
    InkMaskLayout(&a);
    std::vector<uint64_t> masks(a.batch * a.in_h * a.row_words + a.row_words, 0);
    a.masks = masks.data();
    a.zero_row = masks.data() + a.batch * a.in_h * a.row_words;

    const InkConvKernel& kern = SelectInkKernel(path);
    const int64_t threads = OpThreads(ctx);
    // Masks: one compare per input value (a few microseconds at batch 1: inline).
    const int64_t in_rows = a.batch * a.in_h, row_work = a.in_w * in_c;
    const int64_t mask_shards = std::min(in_rows, ShardsFor(threads, in_rows * row_work, int64_t{1} << 18));
    RunShards(ctx, mask_shards, CeilDiv(in_rows, mask_shards) * row_work, [&](int64_t s) {
      kern.build_masks(a, s * in_rows / mask_shards, (s + 1) * in_rows / mask_shards);
    });
    // Conv: output rows dealt round-robin so every thread gets ink from the
    // whole drawing (strokes bunch up: a contiguous split leaves one thread idle).
    // The work estimate assumes ~1/8 of the taps are ink.
    const int64_t out_rows = a.batch * a.out_h;
    const int64_t work = out_rows * a.out_w * (a.k_h * a.k_w * in_c / 8 + 16) * oc;
    const int64_t shards = std::min(out_rows, ShardsFor(threads, work, int64_t{1} << 17));
    RunShards(ctx, shards, CeilDiv(work, shards), [&](int64_t s) {
      kern.conv_rows(a, s, shards, out_rows);
    });
  }

 private:
  int64_t stride_h_ = 1, stride_w_ = 1;
  bool same_ = false, relu_ = false;
  std::string path_attr_;
};
REGISTER_KERNEL_BUILDER(Name("SketchtfInkConv2D").Device(tensorflow::DEVICE_CPU), InkConvOp);

}  // namespace
}  // namespace sketchtf
