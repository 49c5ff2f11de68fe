// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vpopcntdq; used
// only where the CPU reports all three and the OS saves zmm state, see
// cpu_features.cc). VPOPCNTQ counts 8 words per instruction: xor + popcount +
// add cover one patch word against 8 filters.
#include <immintrin.h>

#include <cstring>

#include "xnor_kernels.h"

namespace sketchtf {
namespace {

void Avx512Bitpack(const float* x, int64_t rows, int64_t c, uint64_t* out) {
  const int64_t words = CeilDiv(c, 64);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * c;
    uint64_t* dst = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const float* s = src + 64 * w;
      const int64_t n = (c - 64 * w < 64) ? c - 64 * w : 64;
      uint64_t bits = 0;
      int64_t i = 0;
      for (; i + 16 <= n; i += 16) {
        // NGE_UQ: true for x < 0 and for NaN, matching !(x >= 0).
        const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + i), zero, _CMP_NGE_UQ);
        bits |= static_cast<uint64_t>(m) << i;
      }
      for (; i < n; ++i) bits |= static_cast<uint64_t>(!(s[i] >= 0.0f)) << i;
      dst[w] = bits;
    }
  }
}

// Filters in groups of 8: [ceil(oc / 8)][kp][8] words, so one zmm holds word k
// of 8 filters. A patch word is broadcast against it and each 64-bit lane
// accumulates one filter's popcount: no horizontal sums and no padding of kp
// (an earlier layout, 8 words of one filter per zmm, padded kp to a multiple
// of 8 and reduced 16 accumulators per block: L2 at batch 32 ran 7.0x fp32 on
// one core, this layout 11.4x; docs/binary.md).
constexpr int kGroup = 8;

int64_t Avx512FilterWords(int64_t out_channels, int64_t kp) {
  return CeilDiv(out_channels, kGroup) * kGroup * kp;
}

void Avx512PrepareFilter(const uint64_t* w, int64_t out_channels, int64_t k, int64_t kp,
                         uint64_t* out) {
  const int64_t groups = CeilDiv(out_channels, kGroup);
  std::memset(out, 0, groups * kGroup * kp * sizeof(uint64_t));
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t i = 0; i < k; ++i) out[((o / kGroup) * kp + i) * kGroup + o % kGroup] = w[o * k + i];
}

int64_t Avx512ScratchWords(int64_t, int64_t) { return 0; }

// P pixels x Q filter groups (8 filters each): P*Q accumulators + Q filter
// vectors + P broadcasts, at most 4 x 4 -> 24 of the 32 zmm.
template <int P, int Q>
inline __attribute__((always_inline)) void Avx512Block(const uint64_t* x, const uint64_t* w,
                                                       int64_t kp, int64_t valid, int32_t* pc,
                                                       int64_t ldpc) {
  __m512i acc[P][Q];
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) acc[p][q] = _mm512_setzero_si512();
  for (int64_t k = 0; k < kp; ++k) {
    __m512i wv[Q];
    for (int q = 0; q < Q; ++q) wv[q] = _mm512_loadu_si512(w + (q * kp + k) * kGroup);
    for (int p = 0; p < P; ++p) {
      const __m512i xv = _mm512_set1_epi64(static_cast<long long>(x[p * kp + k]));
      for (int q = 0; q < Q; ++q)
        acc[p][q] = _mm512_add_epi64(acc[p][q], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv[q])));
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int q = 0; q < Q; ++q) {
      const __m256i v = _mm512_cvtepi64_epi32(acc[p][q]);  // counts fit easily in int32
      const int64_t n = valid - q * kGroup;                 // filters of this group to keep
      if (n >= kGroup) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pc + p * ldpc + q * kGroup), v);
      } else {
        alignas(32) int32_t tmp[kGroup];
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v);
        std::memcpy(pc + p * ldpc + q * kGroup, tmp, n * sizeof(int32_t));
      }
    }
  }
}

template <int P>
inline void Avx512Row(const uint64_t* x, int64_t kp, const uint64_t* filter, int64_t oc,
                      int32_t* pc) {
  const int64_t groups = CeilDiv(oc, kGroup);
  int64_t g = 0;
  for (; g + 4 <= groups; g += 4)
    Avx512Block<P, 4>(x, filter + g * kp * kGroup, kp, oc - g * kGroup, pc + g * kGroup, oc);
  for (; g < groups; ++g)
    Avx512Block<P, 1>(x, filter + g * kp * kGroup, kp, oc - g * kGroup, pc + g * kGroup, oc);
}

void Avx512PopcountBlock(const uint64_t* patches, int64_t npix, int64_t kp,
                         const uint64_t* filter, int64_t oc, uint64_t*, int32_t* pc) {
  int64_t p = 0;
  for (; p + 4 <= npix; p += 4) Avx512Row<4>(patches + p * kp, kp, filter, oc, pc + p * oc);
  for (; p < npix; ++p) Avx512Row<1>(patches + p * kp, kp, filter, oc, pc + p * oc);
}

uint64_t Avx512XorPopcountStream(const uint64_t* a, const uint64_t* b, int64_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0;  // two chains hide the add latency
  for (int64_t i = 0; i < n; i += 16) {
    s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(
                                  _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i))));
    s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(
                                  _mm512_loadu_si512(a + i + 8), _mm512_loadu_si512(b + i + 8))));
  }
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(s0, s1)));
}

// Register probe: 4 zmm pairs (32 word pairs) and 4 accumulator chains, 12 of
// the 32 zmm. Per zmm pair: vpxorq + vpopcntq + vpaddq, the XNOR kernel's
// inner sequence (Avx512Block). The adds form the only loop-carried chains
// (latency 1); four of them keep several vpopcntq in flight.
constexpr int kAvx512RegWords = 32;
uint64_t Avx512XorPopcountRegister(const uint64_t* a, const uint64_t* b, int64_t iters) {
  __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + 8);
  __m512i a2 = _mm512_loadu_si512(a + 16), a3 = _mm512_loadu_si512(a + 24);
  __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 8);
  __m512i b2 = _mm512_loadu_si512(b + 16), b3 = _mm512_loadu_si512(b + 24);
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i < iters; ++i) {
    // "Maybe changed" ("v": any of zmm0-31): the xor and popcount are redone every iteration.
    asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(b0), "+v"(b1), "+v"(b2),
                 "+v"(b3));
    s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(a0, b0)));
    s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(a1, b1)));
    s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(a2, b2)));
    s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(a3, b3)));
  }
  const __m512i s = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(s));
}

}  // namespace

const XnorKernel& XnorKernelAvx512() {
  static const XnorKernel k = {"avx512",           1,                  Avx512FilterWords,
                               Avx512PrepareFilter, Avx512ScratchWords, Avx512PopcountBlock,
                               Avx512Bitpack,       XnorEpilogueAvx2,
                               Avx512XorPopcountStream, kAvx512RegWords,
                               Avx512XorPopcountRegister};
  return k;
}

}  // namespace sketchtf
