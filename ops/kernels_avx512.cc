// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vpopcntdq; used
// only where the CPU reports all three and the OS saves zmm state, see
// cpu_features.cc). VPOPCNTQ counts 8 words per instruction: xor + popcount +
// add cover one patch word against 8 filters. The binary-weight kernels are at
// the end of the file.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

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
// vectors + P broadcasts, at most 4 x 4 -> 24 of the 32 zmm. Pixel p's patch
// is the k_h rows rows[p * k_h + r] of rw words each (word k = r * rw + j of
// the filter layout), so the op can point at the input instead of copying it.
template <int P, int Q>
inline __attribute__((always_inline)) void Avx512Accumulate(const uint64_t* const* rows,
                                                            int64_t k_h, int64_t rw,
                                                            const uint64_t* w, int64_t kp,
                                                            __m512i (&acc)[P][Q]) {
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) acc[p][q] = _mm512_setzero_si512();
  for (int64_t r = 0; r < k_h; ++r, w += rw * kGroup) {
    const uint64_t* x[P];
    for (int p = 0; p < P; ++p) x[p] = rows[p * k_h + r];
    for (int64_t j = 0; j < rw; ++j) {
      __m512i wv[Q];
      for (int q = 0; q < Q; ++q) wv[q] = _mm512_loadu_si512(w + (q * kp + j) * kGroup);
      for (int p = 0; p < P; ++p) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(x[p][j]));
        for (int q = 0; q < Q; ++q)
          acc[p][q] = _mm512_add_epi64(acc[p][q], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv[q])));
      }
    }
  }
}

// Groups q and q + 1 of a block as 16 int32 counts (q alone when it is the
// last: 8). One permute keeps the low dwords of both (VPMOVQD is 2 uops on Zen
// 4, and a block ends with P * Q of them).
template <int Q>
inline __m512i PairCounts(const __m512i* acc, int q) {
  const __m512i lo_dwords = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  if (q + 1 < Q) return _mm512_permutex2var_epi32(acc[q], lo_dwords, acc[q + 1]);
  return _mm512_castsi256_si512(_mm512_cvtepi64_epi32(acc[q]));  // counts fit easily in int32
}

// The block's counts into pc (valid: filters of the block to keep).
template <int P, int Q>
inline __attribute__((always_inline)) void Avx512Block(const uint64_t* const* rows, int64_t k_h,
                                                       int64_t rw, const uint64_t* w, int64_t kp,
                                                       int64_t valid, int32_t* pc, int64_t ldpc) {
  __m512i acc[P][Q];
  Avx512Accumulate<P, Q>(rows, k_h, rw, w, kp, acc);
  int q0 = 0;
  if (Q >= 2 && valid >= Q / 2 * 2 * kGroup) {  // whole pairs: a plain store each
    for (int p = 0; p < P; ++p)
      for (int q = 0; q + 1 < Q; q += 2)
        _mm512_storeu_si512(pc + p * ldpc + q * kGroup, PairCounts<Q>(acc[p], q));
    q0 = Q / 2 * 2;
  }
  for (int p = 0; p < P; ++p) {
    for (int q = q0; q < Q; ++q) {
      const __m256i v = _mm512_cvtepi64_epi32(acc[p][q]);
      const int64_t n = valid - q * kGroup;  // filters of this group to keep
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

// The same block, the epilogue (XnorOut) applied in registers: the counts
// never go through memory, and a 16-wide epilogue replaces a call per pixel
// of the 8-wide one (issue 17: L3's per-output cost at batch 1). p0: the
// block's first pixel in e, o0: its first filter.
template <int P, int Q>
inline __attribute__((always_inline)) void Avx512BlockOut(const uint64_t* const* rows, int64_t k_h,
                                                          int64_t rw, const uint64_t* w, int64_t kp,
                                                          int64_t valid, const XnorOut& e,
                                                          int64_t p0, int64_t o0) {
  __m512i acc[P][Q];
  Avx512Accumulate<P, Q>(rows, k_h, rw, w, kp, acc);
  // The *_round_ps forms are never contracted into an FMA: the product and the
  // sum round separately, as in the other epilogues.
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int p = 0; p < P; ++p) {
    const int32_t* corr = e.corr[p0 + p];
    const __m512i base = _mm512_set1_epi32(e.base[p0 + p]);
    float* out = e.out + (p0 + p) * e.ld + o0;
    for (int q = 0; q < Q; q += 2) {
      const int64_t n = std::min<int64_t>(q + 1 < Q ? 2 * kGroup : kGroup, valid - q * kGroup);
      if (n <= 0) break;
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const int64_t o = o0 + q * kGroup;
      __m512i cnt = PairCounts<Q>(acc[p], q);
      if (corr) cnt = _mm512_sub_epi32(cnt, _mm512_maskz_loadu_epi32(m, corr + o));
      const __m512i dot = _mm512_sub_epi32(base, _mm512_add_epi32(cnt, cnt));
      __m512 y = _mm512_mul_round_ps(_mm512_cvtepi32_ps(dot), _mm512_maskz_loadu_ps(m, e.alpha + o),
                                     kRound);
      if (e.scale) y = _mm512_mul_round_ps(y, _mm512_set1_ps(e.scale[p0 + p]), kRound);
      y = _mm512_add_round_ps(y, _mm512_maskz_loadu_ps(m, e.bias + o), kRound);
      if (e.relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);  // NaN stays NaN, like the scalar path
      _mm512_mask_storeu_ps(out + q * kGroup, m, y);
    }
  }
}

// One register block of P pixels over all filters, 4 groups at a time. e
// null: counts into pc (row stride oc); else outputs through e from pixel p0.
template <int P>
inline void Avx512Row(const uint64_t* const* rows, int64_t k_h, int64_t rw,
                      const uint64_t* filter, int64_t oc, int32_t* pc, const XnorOut* e,
                      int64_t p0) {
  const int64_t groups = CeilDiv(oc, kGroup), kp = k_h * rw;
  int64_t g = 0;
  for (; g + 4 <= groups; g += 4) {
    const uint64_t* w = filter + g * kp * kGroup;
    if (e) Avx512BlockOut<P, 4>(rows, k_h, rw, w, kp, oc - g * kGroup, *e, p0, g * kGroup);
    else Avx512Block<P, 4>(rows, k_h, rw, w, kp, oc - g * kGroup, pc + g * kGroup, oc);
  }
  for (; g < groups; ++g) {
    const uint64_t* w = filter + g * kp * kGroup;
    if (e) Avx512BlockOut<P, 1>(rows, k_h, rw, w, kp, oc - g * kGroup, *e, p0, g * kGroup);
    else Avx512Block<P, 1>(rows, k_h, rw, w, kp, oc - g * kGroup, pc + g * kGroup, oc);
  }
}

void Avx512Rows(const uint64_t* const* rows, int64_t npix, int64_t k_h, int64_t rw,
                const uint64_t* filter, int64_t oc, int32_t* pc, const XnorOut* e) {
  int64_t p = 0;
  for (; p + 4 <= npix; p += 4)
    Avx512Row<4>(rows + p * k_h, k_h, rw, filter, oc, pc ? pc + p * oc : nullptr, e, p);
  // The last 1-3 pixels in one block: a 1-pixel block loads 4 filter vectors
  // per 4 popcounts and, with the filter out of L1 (L3: 37 KB), runs ~1.5x a
  // pixel's time in a 4-pixel block; the op's blocks of 30 pixels (two-thread
  // shards at batch 1) left 2 such pixels in every block.
  int32_t* const pcp = pc ? pc + p * oc : nullptr;
  switch (npix - p) {
    case 3: Avx512Row<3>(rows + p * k_h, k_h, rw, filter, oc, pcp, e, p); break;
    case 2: Avx512Row<2>(rows + p * k_h, k_h, rw, filter, oc, pcp, e, p); break;
    case 1: Avx512Row<1>(rows + p * k_h, k_h, rw, filter, oc, pcp, e, p); break;
    default: break;
  }
}

void Avx512PopcountRows(const uint64_t* const* rows, int64_t npix, int64_t k_h, int64_t rw,
                        const uint64_t* filter, int64_t oc, int32_t* pc) {
  Avx512Rows(rows, npix, k_h, rw, filter, oc, pc, nullptr);
}

void Avx512PopcountRowsOut(const uint64_t* const* rows, int64_t npix, int64_t k_h, int64_t rw,
                           const uint64_t* filter, int64_t oc, const XnorOut& e) {
  Avx512Rows(rows, npix, k_h, rw, filter, oc, nullptr, &e);
}

// Gathered patches (kp words each): one row per pixel.
void Avx512PopcountBlock(const uint64_t* patches, int64_t npix, int64_t kp,
                         const uint64_t* filter, int64_t oc, uint64_t*, int32_t* pc) {
  constexpr int64_t kChunk = 64;
  const uint64_t* rows[kChunk];
  for (int64_t p0 = 0; p0 < npix; p0 += kChunk) {
    const int64_t n = std::min(kChunk, npix - p0);
    for (int64_t i = 0; i < n; ++i) rows[i] = patches + (p0 + i) * kp;
    Avx512PopcountRows(rows, n, 1, kp, filter, oc, pc + p0 * oc);
  }
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


// ------------------------------------------------------------ binary weight --
// The lookup-table algorithm of the AVX2 kernel (see BwKernel in
// xnor_kernels.h) on 16 output positions per zmm. Two ways to fill the lanes:
// - Row segments (up to 16 columns of one output row) over input rows
//   transposed to a planar layout, [stride phase r][c][j] with element
//   (r, c, j) = channel c of column j * stride_w + r - pad_left (0 in the
//   padding). Column ow reads tap (kh, kw) at r = kw % stride_w, j = ow + kw /
//   stride_w, so a group's 4 lane vectors are 4 plain loads, and each input
//   row is transposed once (into a ring of the k_h rows in use) rather than
//   once per tap.
// - Flat runs of 16 positions read from NHWC with 4x4 transposes per group
//   (16 loads, 12 inserts, 8 shuffles), when the rows are too narrow for row
//   segments to fill their lanes (batch > 1 of outputs under 16 columns,
//   dense layers).
// The planar path is 4-5% faster per lane on Zen 4 (Sketch-A-Net L2..L5 at
// batch 1); a copy of the whole input up front instead of the ring cost up to
// 10% a layer at batch 32, and row-spanning segments (two masked loads per
// lane vector) lost the gain.
constexpr int kBwLanes = kBwMaxLanes;  // floats in one zmm (BwTile holds as many)

struct alignas(64) Zmm {
  float v[16];
};

inline __m512 Negate(__m512 v) {  // flips the sign bit (xor_ps would need AVX512DQ)
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

// The 16 signed sums of one channel group: entry m has -x_i where bit i of m
// is set. Entry 15 - m is -(entry m): 8 adds and 8 sign flips (the flips run
// beside the adds; Zen 4 has one zmm add a cycle).
inline void BuildLut16(const __m512 x[4], __m512* lut) {
  const __m512 p0 = _mm512_add_ps(x[0], x[1]), p1 = _mm512_sub_ps(x[1], x[0]);
  const __m512 q0 = _mm512_add_ps(x[2], x[3]), q1 = _mm512_sub_ps(x[3], x[2]);
  const __m512 lo[4] = {p0, p1, Negate(p1), Negate(p0)};
  const __m512 hi[2] = {q0, q1};
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 4; ++l) {
      const __m512 e = _mm512_add_ps(lo[l], hi[h]);
      _mm512_store_ps(reinterpret_cast<float*>(lut + 4 * h + l), e);
      _mm512_store_ps(reinterpret_cast<float*>(lut + 15 - 4 * h - l), Negate(e));
    }
}

// Entry selected by nibble G of w in table G (16 entries of 64 bytes): the
// shift and mask give the byte offset directly.
template <int G>
inline const float* Entry16(const char* luts, uint64_t w) {
  uint64_t off;
  if constexpr (G >= 2) {
    off = (w >> (4 * G - 6)) & 0x3C0;
  } else {
    off = (w << (6 - 4 * G)) & 0x3C0;
  }
  return reinterpret_cast<const float*>(luts + G * 1024 + off);
}

// Groups 4..G-1 into the four chains s[g & 3].
template <int G>
inline __attribute__((always_inline)) void AddGroups16(const char* luts, uint64_t w, __m512* s) {
  if constexpr (G > 4) {
    AddGroups16<G - 1>(luts, w, s);
    s[(G - 1) & 3] = _mm512_add_ps(s[(G - 1) & 3], _mm512_load_ps(Entry16<G - 1>(luts, w)));
  }
}

// Every output channel's 16 entries of a full word: four independent add
// chains that start from groups 0..3, not from zeros (3 adds of 0 in 19 cost
// ~3% of a layer on the planar path). kFirst: sets acc.
template <bool kFirst>
inline void LookupWord16(const char* luts, const uint64_t* wrow, int64_t oc, __m512* acc) {
  for (int64_t o = 0; o < oc; ++o) {
    const uint64_t w = wrow[o];
    const __m512 e0 = _mm512_load_ps(Entry16<0>(luts, w));
    __m512 s[4] = {kFirst ? e0 : _mm512_add_ps(acc[o], e0), _mm512_load_ps(Entry16<1>(luts, w)),
                   _mm512_load_ps(Entry16<2>(luts, w)), _mm512_load_ps(Entry16<3>(luts, w))};
    AddGroups16<16>(luts, w, s);
    acc[o] = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
  }
}

// Every output channel adds (first: sets) its entries of the word's ng
// tables (ng < 16 only for the last, partial word).
inline void LookupWord(const __m512* lut, int ng, const uint64_t* wrow, int64_t oc, bool first,
                       __m512* acc) {
  const char* luts = reinterpret_cast<const char*>(lut);
  if (ng == 16 && first) {
    LookupWord16<true>(luts, wrow, oc, acc);
  } else if (ng == 16) {
    LookupWord16<false>(luts, wrow, oc, acc);
  } else {
    for (int64_t o = 0; o < oc; ++o) {
      const uint64_t w = wrow[o];
      __m512 s = first ? _mm512_setzero_ps() : acc[o];
      for (int g = 0; g < ng; ++g) s = _mm512_add_ps(s, lut[16 * g + ((w >> (4 * g)) & 15)]);
      acc[o] = s;
    }
  }
}

// Output positions pos0 .. pos0 + lanes - 1 (consecutive) from acc.
inline void BwEpilogue(const BwConvArgs& a, const __m512* acc, int64_t pos0, int lanes) {
  alignas(64) float vals[kBwLanes];
  float* out = a.output + pos0 * a.out_ld;
  for (int64_t o = 0; o < a.out_c; ++o) {  // acc[o] holds 16 positions; the output wants [position][o]
    _mm512_store_ps(vals, acc[o]);
    for (int l = 0; l < lanes; ++l) {
      const float y = a.alpha[o] * vals[l] + a.bias[o];
      out[l * a.out_ld + o] = (a.relu && y < 0.0f) ? 0.0f : y;
    }
  }
}

// ---- planar row segments

// r[j] lane k -> r[k] lane j.
inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + m], 128-bit lane L: column 4L + m of rows 4i..4i+3.
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);  // lanes 0, 2
    const __m512 x1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
    const __m512 y0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);  // lanes 1, 3
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    r[m] = _mm512_shuffle_f32x4(x0, x1, 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
    r[4 + m] = _mm512_shuffle_f32x4(y0, y1, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(y0, y1, 0xDD);
  }
}

// Input row r (over batch * in_h) of a.input in the planar layout, pw columns
// per stride phase, at dst: 16 columns x 16 channels per transpose.
void PlanarRow(const BwConvArgs& a, int64_t pw, int64_t r, float* dst) {
  const int64_t s = a.stride_w, c = a.in_c;
  const float* src = a.input + r * a.in_w * c;
  for (int64_t ph = 0; ph < s; ++ph) {
    float* d = dst + ph * c * pw;
    int64_t j0 = 0;
    for (; j0 + 4 < pw; j0 += 16) {
      const int nj = static_cast<int>(std::min<int64_t>(16, pw - j0));
      const __mmask16 jmask = static_cast<__mmask16>((1u << nj) - 1);
      for (int64_t c0 = 0; c0 < c; c0 += 16) {
        const int nc = static_cast<int>(std::min<int64_t>(16, c - c0));
        const __mmask16 cmask = static_cast<__mmask16>((1u << nc) - 1);
        __m512 v[16];
        for (int jj = 0; jj < 16; ++jj) {  // padded columns (and past pw) are zeros
          const int64_t iw = (j0 + jj) * s + ph - a.pad_left;
          v[jj] = jj < nj && iw >= 0 && iw < a.in_w
                      ? _mm512_maskz_loadu_ps(cmask, src + iw * c + c0)
                      : _mm512_setzero_ps();
        }
        Transpose16x16(v);
        for (int k = 0; k < nc; ++k) _mm512_mask_storeu_ps(d + (c0 + k) * pw + j0, jmask, v[k]);
      }
    }
    for (; j0 < pw; ++j0) {  // a few last columns (kernel overhang): a transpose would waste most
      const int64_t iw = j0 * s + ph - a.pad_left;
      const bool pad = iw < 0 || iw >= a.in_w;
      for (int64_t k = 0; k < c; ++k) d[k * pw + j0] = pad ? 0.0f : src[iw * c + k];
    }
  }
}

// Output row segments [seg_begin, seg_end), ceil(out_w / 16) per output row.
void PlanarSegments(const BwConvArgs& a, int64_t seg_begin, int64_t seg_end) {
  // Locals, not a's fields, in the loops: the table stores go through
  // __m512*, which may alias anything and would make the compiler reload them.
  const int64_t oc = a.out_c, in_c = a.in_c, nseg = CeilDiv(a.out_w, kBwLanes);
  const int64_t pw = nseg * kBwLanes + (a.k_w - 1) / a.stride_w;  // lanes past out_w read zeros
  const int64_t chan_stride = in_c * pw, row_floats = a.stride_w * chan_stride;
  std::vector<Zmm> acc_buf(oc), lut_buf(16 * 16);  // C++17 allocates them 64-byte aligned
  __m512* acc = reinterpret_cast<__m512*>(acc_buf.data());
  __m512* lut = reinterpret_cast<__m512*>(lut_buf.data());
  // Ring of planar rows: an output row reads k_h consecutive input rows, so
  // input row r lives in slot r % k_h; held[slot] = r, or -1.
  std::vector<float> ring(a.k_h * row_floats);
  std::vector<int64_t> held(a.k_h, -1);
  for (int64_t sg = seg_begin; sg < seg_end; ++sg) {
    const int64_t row = sg / nseg, b = row / a.out_h, oh = row % a.out_h;
    const int64_t ow0 = (sg % nseg) * kBwLanes;
    bool first = true;  // no word added yet
    for (int64_t kh = 0; kh < a.k_h; ++kh) {
      const int64_t ih = oh * a.stride_h + kh - a.pad_top;
      if (ih < 0 || ih >= a.in_h) continue;  // a padded row adds 0 to every lane
      const int64_t r = b * a.in_h + ih, slot = r % a.k_h;
      float* in_row = ring.data() + slot * row_floats;
      if (held[slot] != r) {
        PlanarRow(a, pw, r, in_row);
        held[slot] = r;
      }
      for (int64_t kw = 0; kw < a.k_w; ++kw) {
        const float* x = in_row + (kw % a.stride_w) * chan_stride + ow0 + kw / a.stride_w;
        for (int64_t j = 0; j < a.words; ++j, first = false) {
          const int64_t c0 = 64 * j;
          const int ng = static_cast<int>(CeilDiv(std::min<int64_t>(64, in_c - c0), 4));
          for (int g = 0; g < ng; ++g) {
            __m512 v[4];
            for (int i = 0; i < 4; ++i) {  // channels past in_c (a partial group) are zeros
              const int64_t c = c0 + 4 * g + i;
              v[i] = c < in_c ? _mm512_loadu_ps(x + c * pw) : _mm512_setzero_ps();
            }
            BuildLut16(v, lut + 16 * g);
          }
          LookupWord(lut, ng, a.weights + ((kh * a.k_w + kw) * a.words + j) * a.w_ld, oc, first,
                     acc);
        }
      }
    }
    if (first)  // every tap's row is padding
      for (int64_t o = 0; o < oc; ++o) acc[o] = _mm512_setzero_ps();
    BwEpilogue(a, acc, row * a.out_w + ow0, static_cast<int>(std::min<int64_t>(kBwLanes, a.out_w - ow0)));
  }
}

// ---- flat runs of 16 positions from NHWC

// 16 lanes' 4 consecutive channels -> 4 vectors of 16 lanes: a 4x4 transpose
// in each 128-bit lane, lane k of row i holding src[i + 4k] (as Gather4 in
// kernels_avx2.cc, twice as wide).
inline void Gather4x16(const float* const src[kBwLanes], int64_t c, __m512 out[4]) {
  __m512 r[4];
  for (int i = 0; i < 4; ++i) {
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(src[i] + c));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(src[i + 4] + c), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(src[i + 8] + c), 2);
    r[i] = _mm512_insertf32x4(v, _mm_loadu_ps(src[i + 12] + c), 3);
  }
  const __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]), t1 = _mm512_unpackhi_ps(r[0], r[1]);
  const __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]), t3 = _mm512_unpackhi_ps(r[2], r[3]);
  out[0] = _mm512_shuffle_ps(t0, t2, 0x44);
  out[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
  out[2] = _mm512_shuffle_ps(t1, t3, 0x44);
  out[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
}

// Flat positions [run_begin * 16, min(run_end * 16, total)).
void FlatRuns(const BwConvArgs& a, int64_t run_begin, int64_t run_end) {
  const int64_t oc = a.out_c, in_c = a.in_c;
  std::vector<Zmm> acc_buf(oc), lut_buf(16 * 16);
  __m512* acc = reinterpret_cast<__m512*>(acc_buf.data());
  __m512* lut = reinterpret_cast<__m512*>(lut_buf.data());
  // Zero "pixel" for padded taps and idle lanes, wide enough for every channel offset.
  const std::vector<float> zeros(a.words * 64 + 4, 0.0f);
  for (int64_t run = run_begin; run < run_end; ++run) {
    BwTile t;
    BwTileInitAt(a, run * kBwLanes, kBwLanes, &t);
    for (int64_t kh = 0; kh < a.k_h; ++kh) {
      for (int64_t kw = 0; kw < a.k_w; ++kw) {
        const float* src[kBwLanes];
        for (int l = 0; l < kBwLanes; ++l) src[l] = BwTapPtr(a, t, l, kh, kw, zeros.data());
        for (int64_t j = 0; j < a.words; ++j) {
          const int64_t c0 = 64 * j, nc = std::min<int64_t>(64, in_c - c0);
          const int full = static_cast<int>(nc / 4);
          for (int g = 0; g < full; ++g) {
            __m512 x[4];
            Gather4x16(src, c0 + 4 * g, x);
            BuildLut16(x, lut + 16 * g);
          }
          if (nc % 4) {  // a partial group: the missing channels are zeros
            alignas(64) float part[4][kBwLanes] = {};
            for (int i = 0; i < nc % 4; ++i)
              for (int l = 0; l < kBwLanes; ++l) part[i][l] = src[l][c0 + 4 * full + i];
            __m512 x[4];
            for (int i = 0; i < 4; ++i) x[i] = _mm512_load_ps(part[i]);
            BuildLut16(x, lut + 16 * full);
          }
          LookupWord(lut, static_cast<int>(CeilDiv(nc, 4)),
                     a.weights + ((kh * a.k_w + kw) * a.words + j) * a.w_ld, oc,
                     kh == 0 && kw == 0 && j == 0, acc);
        }
      }
    }
    BwEpilogue(a, acc, t.pos0, t.lanes);
  }
}

// Row segments when they fill their lanes about as well as flat runs: the
// planar path's 4-5% is worth at most 5% idle lanes (batch 1, or rows of 16+
// columns; not batch 32 of Sketch-A-Net's 15-column L3..L5, where flat runs
// have no idle lanes, nor dense layers).
bool UsePlanarSegments(const BwConvArgs& a) {
  const int64_t total = a.batch * a.out_h * a.out_w;
  const double row_fill = static_cast<double>(a.out_w) / (kBwLanes * CeilDiv(a.out_w, kBwLanes));
  const double flat_fill = static_cast<double>(total) / (kBwLanes * CeilDiv(total, kBwLanes));
  return row_fill >= 0.95 * flat_fill;
}

int64_t Avx512BwUnits(const BwConvArgs& a) {
  if (UsePlanarSegments(a)) return a.batch * a.out_h * CeilDiv(a.out_w, kBwLanes);
  return CeilDiv(a.batch * a.out_h * a.out_w, kBwLanes);
}

void Avx512BwConvTiles(const BwConvArgs& a, int64_t unit_begin, int64_t unit_end) {
  if (UsePlanarSegments(a)) {
    PlanarSegments(a, unit_begin, unit_end);
  } else {
    FlatRuns(a, unit_begin, unit_end);
  }
}

// Thin outputs (1-2 positions, e.g. batch-1 dense layers): one position's
// channels across the lanes and a weight word's bits used directly as mask
// registers, so 16 multiply-accumulates are one masked add:
// neg[o] = sum of x_c where bit c of row o is set, out = sum(x) - 2 * neg[o].
// Bits past in_c meet zero-filled input, so the filter rows are read as given.
struct RowsInput {
  std::vector<const float*> src;  // per tap: the position's in_c channels (or zeros)
  float sum;                      // sum of every channel of every tap
};

inline __m512 LoadChannels(const float* s, int64_t c, int64_t in_c) {
  const int64_t n = in_c - c;
  if (n >= 16) return _mm512_loadu_ps(s + c);
  if (n <= 0) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), s + c);
}

// A mask register straight from memory (kmovw k, m16). GCC 12 compiles
// _load_mask16 and _cvtu32_mask16 to a GPR load + kmovd instead, which on
// Zen 4 capped this kernel at one masked add per 2 cycles; from memory it
// runs at 1.65x that (L6 of Sketch-A-Net, 0.231 -> 0.140 ms). The bits are
// little-endian, so mask q of a word is its uint16_t number q.
inline __mmask16 LoadMask16(const uint16_t* p) {
  __mmask16 k;
  asm("kmovw %1, %0" : "=k"(k) : "m"(*p));
  return k;
}

template <int NB>
inline void Avx512BwRowsBlock(const BwConvArgs& a, const RowsInput& in, int64_t o0, int64_t pos) {
  const int64_t taps = a.k_h * a.k_w, row_words = taps * a.words;
  const uint64_t* w0 = a.filter_rows + o0 * row_words;
  __m512 acc[NB];
  for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
  for (int64_t tap = 0; tap < taps; ++tap) {
    for (int64_t j = 0; j < a.words; ++j) {
      __m512 x[4];
      for (int q = 0; q < 4; ++q) x[q] = LoadChannels(in.src[tap], 64 * j + 16 * q, a.in_c);
      const int64_t wi = tap * a.words + j;
      for (int b = 0; b < NB; ++b) {
        const uint16_t* m = reinterpret_cast<const uint16_t*>(w0 + b * row_words + wi);
        for (int q = 0; q < 4; ++q)
          acc[b] = _mm512_mask_add_ps(acc[b], LoadMask16(m + q), acc[b], x[q]);
      }
    }
  }
  for (int b = 0; b < NB; ++b) {
    const int64_t o = o0 + b;
    const float y = a.alpha[o] * (in.sum - 2.0f * _mm512_reduce_add_ps(acc[b])) + a.bias[o];
    a.output[pos * a.out_ld + o] = (a.relu && y < 0.0f) ? 0.0f : y;
  }
}

void Avx512BwConvRows(const BwConvArgs& a, int64_t o_begin, int64_t o_end) {
  const int64_t total = a.batch * a.out_h * a.out_w, taps = a.k_h * a.k_w;
  const std::vector<float> zeros(a.words * 64, 0.0f);
  RowsInput in;
  in.src.resize(taps);
  for (int64_t pos = 0; pos < total; ++pos) {
    BwTile t;
    BwTileInitAt(a, pos, 1, &t);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t kh = 0; kh < a.k_h; ++kh) {
      for (int64_t kw = 0; kw < a.k_w; ++kw) {
        const float* s = BwTapPtr(a, t, 0, kh, kw, zeros.data());
        in.src[kh * a.k_w + kw] = s;
        for (int64_t c = 0; c < a.in_c; c += 16) sum = _mm512_add_ps(sum, LoadChannels(s, c, a.in_c));
      }
    }
    in.sum = _mm512_reduce_add_ps(sum);
    int64_t o = o_begin;
    for (; o + 8 <= o_end; o += 8) Avx512BwRowsBlock<8>(a, in, o, pos);
    for (; o < o_end; ++o) Avx512BwRowsBlock<1>(a, in, o, pos);
  }
}

}  // namespace

const XnorKernel& XnorKernelAvx512() {
  static const XnorKernel k = {"avx512",           1,                  Avx512FilterWords,
                               Avx512PrepareFilter, Avx512ScratchWords, Avx512PopcountBlock,
                               Avx512PopcountRows, Avx512PopcountRowsOut,
                               Avx512Bitpack,       XnorEpilogueAvx2,
                               Avx512XorPopcountStream, kAvx512RegWords,
                               Avx512XorPopcountRegister};
  return k;
}

// Each 64-channel word's (up to) 4 vectors run their window maxima side by
// side (4 independent MAXPS chains; one chain per 16 channels was latency-bound).
// MAXPS(q, m) = q > m ? q : m and keeps m on NaN, so NaN is tracked in a mask.
// The *_round_ps forms are never contracted into an FMA by the compiler (this
// file is built with -mfma): TF rounds the BN's product and sum separately.
void PoolNormSignsAvx512(const float* px, int64_t row, int64_t c, int64_t pool,
                         const float* scale, const float* offset, uint64_t* bits) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int64_t w = 0; w * 64 < c; ++w) {
    const int64_t k0 = w * 64;
    const int n = static_cast<int>(std::min<int64_t>(4, (c - k0) / 16));
    __m512 m[4];
    __mmask16 nan[4];
    for (int v = 0; v < n; ++v) {
      m[v] = _mm512_loadu_ps(px + k0 + 16 * v);
      nan[v] = _mm512_cmp_ps_mask(m[v], m[v], _CMP_UNORD_Q);
    }
    for (int64_t i = 0; i < pool; ++i)
      for (int64_t j = 0; j < pool; ++j) {
        if (i == 0 && j == 0) continue;
        const float* q = px + i * row + j * c + k0;
        for (int v = 0; v < n; ++v) {
          const __m512 x = _mm512_loadu_ps(q + 16 * v);
          m[v] = _mm512_max_ps(x, m[v]);
          nan[v] = static_cast<__mmask16>(nan[v] | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q));
        }
      }
    uint64_t word = 0;
    for (int v = 0; v < n; ++v) {
      const __m512 prod = _mm512_mul_round_ps(m[v], _mm512_loadu_ps(scale + k0 + 16 * v), kRound);
      const __m512 y = _mm512_add_round_ps(prod, _mm512_loadu_ps(offset + k0 + 16 * v), kRound);
      const __mmask16 neg = static_cast<__mmask16>(
          _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NGE_UQ) | nan[v]);
      word |= static_cast<uint64_t>(neg) << (16 * v);
    }
    bits[w] = word;
  }
}

void PoolMaxAvx512(const float* px, int64_t row, int64_t c, int64_t pool, float* out) {
  const __m512 qnan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  for (int64_t k = 0; k < c; k += 16) {
    // vmaxps returns its second operand when either is NaN: track NaN apart.
    __m512 m = _mm512_loadu_ps(px + k);
    __mmask16 nan = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
    for (int64_t i = 0; i < pool; ++i)
      for (int64_t j = 0; j < pool; ++j) {
        const __m512 x = _mm512_loadu_ps(px + i * row + j * c + k);
        m = _mm512_max_ps(x, m);
        nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q));
      }
    _mm512_storeu_ps(out + k, _mm512_mask_mov_ps(m, nan, qnan));
  }
}

// Positions <= 2 take the masked-add rows kernel: below 3 active lanes a
// 16-lane table costs more than one masked add per 16 channels per position.
const BwKernel& BwKernelAvx512() {
  static const BwKernel k = {"avx512", Avx512BwUnits, Avx512BwConvTiles, 2, Avx512BwConvRows};
  return k;
}

}  // namespace sketchtf
