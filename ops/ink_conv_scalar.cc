// Ink-sparse conv kernels, baseline x86-64 (any CPU). See ink_conv.h.
#include <algorithm>

#include "ink_conv.h"

namespace sketchtf {
namespace {

struct AccScalar {
  static constexpr int64_t kBlock = 64;
  float s1[kBlock] = {}, s2[kBlock] = {};
  int64_t n;
  AccScalar(int64_t /*o0*/, int64_t n_) : n(n_) {}
  void add2(float v1, const float* w1, float v2, const float* w2) {
    for (int64_t i = 0; i < n; ++i) s1[i] += v1 * w1[i], s2[i] += v2 * w2[i];
  }
  void store(const float* bias, bool relu, float* out) const {
    for (int64_t i = 0; i < n; ++i) {
      const float y = (s1[i] + s2[i]) + bias[i];
      out[i] = relu && y < 0.0f ? 0.0f : y;  // NaN stays NaN, as tf.nn.relu
    }
  }
};

void BuildMasksScalar(const InkConvArgs& a, int64_t r0, int64_t r1) {
  const int64_t len = a.in_w * a.in_c;
  for (int64_t r = r0; r < r1; ++r) {
    const float* src = a.input + r * len;
    uint64_t* dst = a.masks + r * a.row_words;
    std::fill(dst, dst + a.row_words, uint64_t{0});
    for (int64_t i = 0; i < len; ++i)
      dst[a.lead + i / 64] |= static_cast<uint64_t>(src[i] != 0.0f) << (i % 64);  // NaN != 0
  }
}

void ConvRowsScalar(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  InkConvRowsImpl<AccScalar>(a, r0, step, r1);
}

}  // namespace

const InkConvKernel& InkConvKernelScalar() {
  static const InkConvKernel k{"scalar", BuildMasksScalar, ConvRowsScalar};
  return k;
}

}  // namespace sketchtf
