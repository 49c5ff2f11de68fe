// Helpers shared by sketchtf's op files: kernel-path selection from CPU flags,
// convolution geometry (TensorFlow's SAME/VALID rules), shape-function pieces.
#ifndef SKETCHTF_OPS_OP_COMMON_H_
#define SKETCHTF_OPS_OP_COMMON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "xnor_kernels.h"

namespace sketchtf {

// InvalidArgument status with the pieces concatenated.
template <typename... Args>
absl::Status InvalidArg(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

struct CpuFeatures {
  bool popcnt = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vpopcntdq = false;
};
const CpuFeatures& GetCpuFeatures();

// Paths this CPU can run, best last: "scalar", "avx2", "avx512".
std::vector<std::string> AvailablePaths();

// Resolves an op's `path` attr. "auto" means the SKETCHTF_XNOR_PATH environment
// variable if it is set (and not "auto"), else the best path this CPU has.
// A path the CPU lacks is an error, never an illegal instruction.
absl::Status ResolvePath(const std::string& requested, Path* path);
const char* PathName(Path path);

// Output size and leading padding, exactly as tf.nn.conv2d computes them.
struct Window {
  int64_t out = 0, pad_before = 0;
};
absl::Status ConvWindow(const char* axis, int64_t in, int64_t k, int64_t stride,
                              bool same, Window* w);

// Attr checks shared by the convolution ops' constructors.
absl::Status ReadConvAttrs(tensorflow::OpKernelConstruction* ctx, int64_t* stride_h,
                                 int64_t* stride_w, bool* same);

// Shape-function helper: output spatial dim, or unknown when inputs are unknown.
absl::Status ConvOutDim(tensorflow::shape_inference::InferenceContext* c,
                              tensorflow::shape_inference::DimensionHandle in,
                              tensorflow::shape_inference::DimensionHandle k, int64_t stride,
                              bool same, tensorflow::shape_inference::DimensionHandle* out);

// SKETCHTF_XNOR_SPLIT, read on every call (for measurements and tests): how
// the ops split batch-1 work over threads. "pixels": TF's cost-model sharding;
// "filters": XnorConv2D's filter split whenever there are 2+ threads; "serial":
// the whole op on the calling thread; "tfpool": each op's own rule, but its
// batch-1 shards run on TF's intra-op pool instead of the spinning helpers of
// fork_join.h (the baseline they replaced); unset, "auto" or anything else:
// each op's own rule (xnor_conv_op.cc, binary_weight_op.cc).
enum class SplitModeT { kAuto, kPixels, kFilters, kSerial, kTfPool };
SplitModeT SplitMode();

// Mask of the valid bits in the last word of an in_channels-bit row.
inline uint64_t LastWordMask(int64_t in_channels) {
  const int r = static_cast<int>(in_channels % 64);
  return r == 0 ? ~uint64_t{0} : (uint64_t{1} << r) - 1;
}

}  // namespace sketchtf

#endif  // SKETCHTF_OPS_OP_COMMON_H_
