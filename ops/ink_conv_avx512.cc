// Ink-sparse conv kernels, AVX-512F (compiled with -mavx512f ... -mfma). See ink_conv.h.
#include <immintrin.h>

#include <algorithm>

#include "ink_conv.h"

namespace sketchtf {
namespace {

// 64 output channels in 4 zmm registers per set, kSets independent sets so
// that consecutive taps do not wait on each other's multiply-add latency (the
// row walk uses two, add2; the column walk four, add4); kFull: out_c is a
// multiple of 64, no masks.
template <bool kFull>
struct AccAvx512 {
  static constexpr int64_t kBlock = 64;
  static constexpr int kSets = 4;
  __m512 s[kSets][4];
  __mmask16 m[4];
  AccAvx512(int64_t /*o0*/, int64_t n) {
    for (int i = 0; i < 4; ++i) {
      const int64_t k = std::min<int64_t>(16, std::max<int64_t>(0, n - 16 * i));
      m[i] = static_cast<__mmask16>((1u << k) - 1);
      for (int u = 0; u < kSets; ++u) s[u][i] = _mm512_setzero_ps();
    }
  }
  __m512 load(const float* p, int i) const {
    return kFull ? _mm512_loadu_ps(p + 16 * i) : _mm512_maskz_loadu_ps(m[i], p + 16 * i);
  }
  void add(int u, float v, const float* w) {
    const __m512 x = _mm512_set1_ps(v);
    for (int i = 0; i < 4; ++i) s[u][i] = _mm512_fmadd_ps(x, load(w, i), s[u][i]);
  }
  void add2(float v1, const float* w1, float v2, const float* w2) { add(0, v1, w1), add(1, v2, w2); }
  void store(const float* bias, bool relu, float* out) const {
    for (int i = 0; i < 4; ++i) {
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(s[0][i], s[1][i]), _mm512_add_ps(s[2][i], s[3][i]));
      __m512 y = _mm512_add_ps(sum, load(bias, i));
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

// The AVX-512 walk for k_h <= 16. Per output row, a column table: one 16-bit
// slot per input column position q = (x + pad_left) * in_c + c whose bit ky
// says that window row ky has ink there. A pixel's window is the
// S = k_w * in_c consecutive slots from (x0 + pad_left) * in_c: for each slot
// s, VPCOMPRESSD of a 16-lane table row by the slot's 16 bits writes its taps,
// in order and with no branch per tap (a data-dependent tzcnt loop costs a
// mispredicted exit per word). A tap is one 32-bit word: its input offset
// from the window's corner (ky * row_len + s, low 16 bits) and its weight row
// (ky * S + s, high 16 bits), so the multiply-add loop loads 6 things per tap:
// the word, the input value, 4 x 16 weights.
inline bool ColumnWalkFits(const InkConvArgs& a) {
  return a.k_h <= 16 && (a.k_h - 1) * a.in_w * a.in_c + a.k_w * a.in_c <= 0xffff;
}

template <bool kFull>
void ConvRowsColumns(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  const int64_t S = a.k_w * a.in_c;                 // slots per window
  const int64_t row_len = a.in_w * a.in_c;
  std::vector<__m512i> tab(S);                      // tap words of slot s, lane ky
  for (int64_t s = 0; s < S; ++s) {
    alignas(64) uint32_t lanes[16] = {};
    for (int64_t ky = 0; ky < a.k_h; ++ky)
      lanes[ky] = static_cast<uint32_t>(ky * row_len + s) | static_cast<uint32_t>(ky * S + s) << 16;
    tab[s] = _mm512_load_si512(lanes);
  }
  const int64_t slots = (a.pad_left + a.in_w + a.k_w) * a.in_c + 32;
  std::vector<uint16_t> col(((slots + 31) / 32) * 32);
  std::vector<uint32_t> taps(S * 16 + 16);          // each store writes 16 words
  // Bit of row mask for slot q: lead * 64 - pad_left * in_c + q.
  const int64_t mask_shift = a.lead * 64 - a.pad_left * a.in_c;
  const int64_t used = (a.pad_left + a.in_w) * a.in_c;  // slots that can hold ink (the rest stay 0)
  for (int64_t r = r0; r < r1; r += step) {
    const int64_t b = r / a.out_h, oh = r % a.out_h;
    const int64_t iy0 = oh * a.stride_h - a.pad_top;
    const float* img = a.input + b * a.in_h * row_len;
    std::fill(col.begin(), col.end(), uint16_t{0});
    for (int64_t ky = 0; ky < a.k_h; ++ky) {
      const int64_t iy = iy0 + ky;
      if (iy < 0 || iy >= a.in_h) continue;
      const uint64_t* m = a.masks + (b * a.in_h + iy) * a.row_words;
      for (int64_t q = 0; q < used; q += 32) {
        const __mmask32 k = static_cast<__mmask32>(InkBits(m, mask_shift + q, 0xffffffffull));
        const __m512i c = _mm512_loadu_si512(col.data() + q);
        const __m512i bit = _mm512_maskz_set1_epi16(k, static_cast<int16_t>(1 << ky));
        _mm512_storeu_si512(col.data() + q, _mm512_or_si512(c, bit));
      }
    }
    float* out_row = a.output + r * a.out_w * a.out_c;
    for (int64_t ox = 0; ox < a.out_w; ++ox) {
      const int64_t x0 = ox * a.stride_w - a.pad_left;
      const uint16_t* wslots = col.data() + (x0 + a.pad_left) * a.in_c;
      int64_t n = 0;
      for (int64_t s = 0; s < S; ++s) {
        const __mmask16 k = wslots[s];
        _mm512_storeu_si512(taps.data() + n, _mm512_maskz_compress_epi32(k, tab[s]));
        n += __builtin_popcount(k);
      }
      const int64_t base = iy0 * row_len + x0 * a.in_c;  // window corner; taps are never in the padding
      float* out = out_row + ox * a.out_c;
      for (int64_t o0 = 0; o0 < a.out_c; o0 += AccAvx512<kFull>::kBlock) {
        AccAvx512<kFull> acc(o0, a.out_c - o0);
        const float* wts = a.filter + o0;
        auto add = [&](int u, uint32_t t) { acc.add(u, img[base + (t & 0xffff)], wts + (t >> 16) * a.out_c); };
        int64_t k = 0;
        for (; k + 4 <= n; k += 4)
          for (int u = 0; u < 4; ++u) add(u, taps[k + u]);
        for (; k < n; ++k) add(0, taps[k]);
        acc.store(a.bias + o0, a.relu, out + o0);
      }
    }
  }
}

void ConvRowsAvx512(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  const bool full = a.out_c % 64 == 0;
  if (!ColumnWalkFits(a)) {  // window rows or offsets beyond 16 bits: the row walk
    if (full) InkConvRowsImpl<AccAvx512<true>>(a, r0, step, r1);
    else InkConvRowsImpl<AccAvx512<false>>(a, r0, step, r1);
  } else if (full) {
    ConvRowsColumns<true>(a, r0, step, r1);
  } else {
    ConvRowsColumns<false>(a, r0, step, r1);
  }
}

}  // namespace

const InkConvKernel& InkConvKernelAvx512() {
  static const InkConvKernel k{"avx512", BuildMasksAvx512, ConvRowsAvx512};
  return k;
}

}  // namespace sketchtf
