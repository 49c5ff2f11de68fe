// Ink-sparse conv kernels, AVX-512F (compiled with -mavx512f ... -mfma). See ink_conv.h.
#include <immintrin.h>

#include <algorithm>

#include "ink_conv.h"

namespace sketchtf {
namespace {

// 64 output channels in 4 zmm registers per set (two sets); kFull: out_c is
// a multiple of 64, no masks.
template <bool kFull>
struct AccAvx512 {
  static constexpr int64_t kBlock = 64;
  __m512 s1[4], s2[4];
  __mmask16 m[4];
  AccAvx512(int64_t /*o0*/, int64_t n) {
    for (int i = 0; i < 4; ++i) {
      if (!kFull) {  // built per pixel: only the masked variant needs them (as AccAvx2)
        const int64_t k = std::min<int64_t>(16, std::max<int64_t>(0, n - 16 * i));
        m[i] = static_cast<__mmask16>((1u << k) - 1);
      }
      s1[i] = s2[i] = _mm512_setzero_ps();
    }
  }
  __m512 load(const float* p, int i) const {
    return kFull ? _mm512_loadu_ps(p + 16 * i) : _mm512_maskz_loadu_ps(m[i], p + 16 * i);
  }
  void add2(float v1, const float* w1, float v2, const float* w2) {
    const __m512 x1 = _mm512_set1_ps(v1), x2 = _mm512_set1_ps(v2);
    for (int i = 0; i < 4; ++i) {
      s1[i] = _mm512_fmadd_ps(x1, load(w1, i), s1[i]);
      s2[i] = _mm512_fmadd_ps(x2, load(w2, i), s2[i]);
    }
  }
  void store(const float* bias, bool relu, float* out) const {
    for (int i = 0; i < 4; ++i) {
      __m512 y = _mm512_add_ps(_mm512_add_ps(s1[i], s2[i]), load(bias, i));
      if (relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);  // keeps NaN (second operand), as tf.nn.relu
      if (kFull) _mm512_storeu_ps(out + 16 * i, y);
      else _mm512_mask_storeu_ps(out + 16 * i, m[i], y);
    }
  }
};

void BuildMasksAvx512(const InkConvArgs& a, int64_t r0, int64_t r1) {
  const int64_t len = a.in_w * a.in_c;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    const float* src = a.input + r * len;
    uint64_t* dst = a.masks + r * a.row_words;
    std::fill(dst, dst + a.row_words, uint64_t{0});
    for (int64_t i = 0; i < len; i += 16) {  // NEQ_UQ: true for NaN too
      const int64_t n = std::min<int64_t>(16, len - i);
      const __mmask16 live = static_cast<__mmask16>((1u << n) - 1);
      const __mmask16 bits = _mm512_mask_cmp_ps_mask(live, _mm512_maskz_loadu_ps(live, src + i), zero, _CMP_NEQ_UQ);
      dst[a.lead + i / 64] |= static_cast<uint64_t>(bits) << (i % 64);
    }
  }
}

void ConvRowsAvx512(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  if (a.out_c % 64 == 0) InkConvRowsImpl<AccAvx512<true>>(a, r0, step, r1);
  else InkConvRowsImpl<AccAvx512<false>>(a, r0, step, r1);
}

}  // namespace

const InkConvKernel& InkConvKernelAvx512() {
  static const InkConvKernel k{"avx512", BuildMasksAvx512, ConvRowsAvx512};
  return k;
}

}  // namespace sketchtf
