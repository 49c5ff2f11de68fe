// CPU feature detection, path selection, convolution geometry, and the
// SketchtfCpuInfo op that reports them to Python.
#include "op_common.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_join.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/tensor.h"

namespace sketchtf {


const CpuFeatures& GetCpuFeatures() {
  // libgcc's __builtin_cpu_supports also checks (via XGETBV) that the OS saves
  // the ymm/zmm registers, so "avx2"/"avx512f" here means usable, not just present.
  static const CpuFeatures f = [] {
    CpuFeatures r;
    __builtin_cpu_init();
    r.popcnt = __builtin_cpu_supports("popcnt");
    r.avx2 = __builtin_cpu_supports("avx2");
    r.fma = __builtin_cpu_supports("fma");
    r.avx512f = __builtin_cpu_supports("avx512f");
    r.avx512bw = __builtin_cpu_supports("avx512bw");
    r.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq");
    return r;
  }();
  return f;
}

static bool PathSupported(Path p) {
  const CpuFeatures& f = GetCpuFeatures();
  switch (p) {
    case Path::kScalar:
      return true;
    case Path::kAvx2:
      return f.avx2 && f.fma && f.popcnt;
    case Path::kAvx512:
      // The AVX-512 binary-weight path runs the AVX2 kernel, so require both.
      return f.avx512f && f.avx512bw && f.avx512vpopcntdq && f.avx2 && f.fma && f.popcnt;
  }
  return false;
}

SplitModeT SplitMode() {
  const char* env = std::getenv("SKETCHTF_XNOR_SPLIT");
  if (env == nullptr) return SplitModeT::kAuto;
  if (std::strcmp(env, "pixels") == 0) return SplitModeT::kPixels;
  if (std::strcmp(env, "filters") == 0) return SplitModeT::kFilters;
  if (std::strcmp(env, "serial") == 0) return SplitModeT::kSerial;
  if (std::strcmp(env, "tfpool") == 0) return SplitModeT::kTfPool;
  return SplitModeT::kAuto;
}

const char* PathName(Path path) {
  switch (path) {
    case Path::kScalar: return "scalar";
    case Path::kAvx2: return "avx2";
    case Path::kAvx512: return "avx512";
  }
  return "?";
}

std::vector<std::string> AvailablePaths() {
  std::vector<std::string> out;
  for (Path p : {Path::kScalar, Path::kAvx2, Path::kAvx512})
    if (PathSupported(p)) out.push_back(PathName(p));
  return out;
}

absl::Status ResolvePath(const std::string& requested, Path* path) {
  std::string name = requested;
  std::string source = "the op's path attr";
  if (name == "auto") {
    const char* env = std::getenv("SKETCHTF_XNOR_PATH");
    if (env != nullptr && env[0] != '\0' && std::strcmp(env, "auto") != 0) {
      name = env;
      source = "SKETCHTF_XNOR_PATH";
    }
  }
  if (name == "auto") {
    *path = PathSupported(Path::kAvx512) ? Path::kAvx512
            : PathSupported(Path::kAvx2) ? Path::kAvx2
                                         : Path::kScalar;
    return absl::OkStatus();
  }
  for (Path p : {Path::kScalar, Path::kAvx2, Path::kAvx512}) {
    if (name == PathName(p)) {
      if (!PathSupported(p)) {
        return InvalidArg("sketchtf: kernel path '", name, "' (from ", source,
                                       ") needs CPU features this machine lacks; available: ",
                                       absl::StrJoin(AvailablePaths(), ", "));
      }
      *path = p;
      return absl::OkStatus();
    }
  }
  return InvalidArg("sketchtf: unknown kernel path '", name, "' (from ", source,
                                 "); use auto, scalar, avx2 or avx512");
}

absl::Status ConvWindow(const char* axis, int64_t in, int64_t k, int64_t stride, bool same,
                  Window* w) {
  if (in < 1) return InvalidArg("input ", axis, " must be >= 1, got ", in);
  if (k < 1) return InvalidArg("filter ", axis, " must be >= 1, got ", k);
  if (same) {
    w->out = (in + stride - 1) / stride;
    const int64_t need = (w->out - 1) * stride + k - in;
    w->pad_before = need > 0 ? need / 2 : 0;
  } else {
    if (in < k) {
      return InvalidArg("VALID padding needs input ", axis, " (", in,
                                     ") >= filter ", axis, " (", k, ")");
    }
    w->out = (in - k) / stride + 1;
    w->pad_before = 0;
  }
  return absl::OkStatus();
}

absl::Status ReadConvAttrs(tensorflow::OpKernelConstruction* ctx, int64_t* stride_h,
                     int64_t* stride_w, bool* same) {
  std::vector<int32_t> strides;
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1) {
    return InvalidArg("strides must be 2 positive ints [stride_h, stride_w], got [",
                                   absl::StrJoin(strides, ", "), "]");
  }
  std::string padding;
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding", &padding));
  if (padding != "SAME" && padding != "VALID") {
    return InvalidArg("padding must be SAME or VALID, got '", padding, "'");
  }
  *stride_h = strides[0];
  *stride_w = strides[1];
  *same = padding == "SAME";
  return absl::OkStatus();
}

absl::Status ConvOutDim(tensorflow::shape_inference::InferenceContext* c,
                  tensorflow::shape_inference::DimensionHandle in,
                  tensorflow::shape_inference::DimensionHandle k, int64_t stride, bool same,
                  tensorflow::shape_inference::DimensionHandle* out) {
  if (!c->ValueKnown(in) || (!same && !c->ValueKnown(k))) {
    *out = c->UnknownDim();
    return absl::OkStatus();
  }
  Window w;
  TF_RETURN_IF_ERROR(ConvWindow("size", c->Value(in), c->ValueKnown(k) ? c->Value(k) : 1,
                                stride, same, &w));
  *out = c->MakeDim(w.out);
  return absl::OkStatus();
}

// ------------------------------------------------------------ SketchtfCpuInfo --
REGISTER_OP("SketchtfCpuInfo")
    .Output("features: string")
    .Output("paths: string")
    .SetIsStateful()  // reports the machine it runs on: never constant-fold it
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    })
    .Doc("CPU features the binary kernels use, and the kernel paths available.");

class CpuInfoOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    const CpuFeatures& f = GetCpuFeatures();
    std::vector<std::string> feats;
    if (f.popcnt) feats.push_back("popcnt");
    if (f.avx2) feats.push_back("avx2");
    if (f.fma) feats.push_back("fma");
    if (f.avx512f) feats.push_back("avx512f");
    if (f.avx512bw) feats.push_back("avx512bw");
    if (f.avx512vpopcntdq) feats.push_back("avx512vpopcntdq");
    const std::vector<std::string> paths = AvailablePaths();
    for (int i = 0; i < 2; ++i) {
      const auto& v = i == 0 ? feats : paths;
      tensorflow::Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, {static_cast<int64_t>(v.size())}, &t));
      for (size_t j = 0; j < v.size(); ++j) t->vec<tensorflow::tstring>()(j) = v[j];
    }
  }
};
REGISTER_KERNEL_BUILDER(Name("SketchtfCpuInfo").Device(tensorflow::DEVICE_CPU), CpuInfoOp);

}  // namespace sketchtf
