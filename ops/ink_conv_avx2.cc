// Ink-sparse conv kernels, AVX2 + FMA (compiled with -mavx2 -mfma). See ink_conv.h.
#include <immintrin.h>

#include <algorithm>

#include "ink_conv.h"

namespace sketchtf {
namespace {

// 64 output channels in 8 ymm registers per set (two sets); kFull: out_c is
// a multiple of 64, no masks.
template <bool kFull>
struct AccAvx2 {
  static constexpr int64_t kBlock = 64;
  __m256 s1[8], s2[8];
  __m256i m[8];
  AccAvx2(int64_t /*o0*/, int64_t n) {
    if (!kFull) {
      const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      for (int i = 0; i < 8; ++i)
        m[i] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n) - 8 * i), lane);
    }
    for (int i = 0; i < 8; ++i) s1[i] = s2[i] = _mm256_setzero_ps();
  }
  __m256 load(const float* p, int i) const {
    return kFull ? _mm256_loadu_ps(p + 8 * i) : _mm256_maskload_ps(p + 8 * i, m[i]);
  }
  void add2(float v1, const float* w1, float v2, const float* w2) {
    const __m256 x1 = _mm256_set1_ps(v1), x2 = _mm256_set1_ps(v2);
    for (int i = 0; i < 8; ++i) {
      s1[i] = _mm256_fmadd_ps(x1, load(w1, i), s1[i]);
      s2[i] = _mm256_fmadd_ps(x2, load(w2, i), s2[i]);
    }
  }
  void store(const float* bias, bool relu, float* out) const {
    for (int i = 0; i < 8; ++i) {
      __m256 y = _mm256_add_ps(_mm256_add_ps(s1[i], s2[i]), load(bias, i));
      // max(y, 0) returns its second operand for NaN: max(0, y) keeps NaN, as tf.nn.relu.
      if (relu) y = _mm256_max_ps(_mm256_setzero_ps(), y);
      if (kFull) _mm256_storeu_ps(out + 8 * i, y);
      else _mm256_maskstore_ps(out + 8 * i, m[i], y);
    }
  }
};

void BuildMasksAvx2(const InkConvArgs& a, int64_t r0, int64_t r1) {
  const int64_t len = a.in_w * a.in_c;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    const float* src = a.input + r * len;
    uint64_t* dst = a.masks + r * a.row_words;
    std::fill(dst, dst + a.row_words, uint64_t{0});
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {  // NEQ_UQ: true for NaN too
      const int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + i), zero, _CMP_NEQ_UQ));
      dst[a.lead + i / 64] |= static_cast<uint64_t>(bits) << (i % 64);
    }
    for (; i < len; ++i) dst[a.lead + i / 64] |= static_cast<uint64_t>(src[i] != 0.0f) << (i % 64);
  }
}

void ConvRowsAvx2(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  if (a.out_c % 64 == 0) InkConvRowsImpl<AccAvx2<true>>(a, r0, step, r1);
  else InkConvRowsImpl<AccAvx2<false>>(a, r0, step, r1);
}

}  // namespace

const InkConvKernel& InkConvKernelAvx2() {
  static const InkConvKernel k{"avx2", BuildMasksAvx2, ConvRowsAvx2};
  return k;
}

}  // namespace sketchtf
