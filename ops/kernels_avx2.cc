// AVX2 kernels (compiled with -mavx2 -mfma -mpopcnt; used only on CPUs that
// have AVX2, see cpu_features.cc).
//
// XNOR popcount: the nibble-LUT method (vpshufb looks up the bit count of 32
// nibbles at once) with a twist that saves a quarter of the work: both operands
// are stored "nibble-split" ahead of time (low nibbles and high nibbles of each
// 4-word chunk in two vectors), and since (x ^ w) splits the same way, each
// chunk costs 2 xor + 2 shuffle + 2 byte-add per (pixel, filter) pair instead
// of also shifting and masking every xor result. Byte counters are folded into
// 32-bit totals with vpsadbw every 31 chunks (<= 8 per byte per chunk).
// Harley-Seal carry-save trees were not used: a receptive field here is only
// 4..36 words long, too short for the tree to pay for itself.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "xnor_kernels.h"

namespace sketchtf {

namespace {
template <bool kStream>
inline __attribute__((always_inline)) void EpilogueAvx2(const int32_t* pc, const int32_t* corr,
                                                        int64_t oc, int32_t base,
                                                        const float* scale, const float* alpha,
                                                        const float* bias, bool relu, float* out) {
  const __m256i vbase = _mm256_set1_epi32(base);
  const __m256 vscale = _mm256_set1_ps(scale ? *scale : 1.0f);
  const __m256 zero = _mm256_setzero_ps();
  int64_t o = 0;
  for (; o + 8 <= oc; o += 8) {
    __m256i cnt = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pc + o));
    if (corr) cnt = _mm256_sub_epi32(cnt, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + o)));
    const __m256i dot = _mm256_sub_epi32(vbase, _mm256_add_epi32(cnt, cnt));
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(alpha + o));
    if (scale) y = _mm256_mul_ps(y, vscale);
    y = _mm256_add_ps(y, _mm256_loadu_ps(bias + o));  // separate mul and add: no FMA rounding
    if (relu) y = _mm256_max_ps(zero, y);  // NaN stays NaN, like the scalar path
    if (kStream) _mm256_stream_ps(out + o, y);
    else _mm256_storeu_ps(out + o, y);
  }
  if (o < oc) XnorEpilogueScalar(pc + o, corr ? corr + o : nullptr, oc - o, base, scale,
                                 alpha + o, bias + o, relu, out + o, false);
}
}  // namespace

// stream: the output written around the caches (a batch-32 layer writes
// 7-16 MB; with plain stores each line is first read in). Aligned rows only.
void XnorEpilogueAvx2(const int32_t* pc, const int32_t* corr, int64_t oc, int32_t base,
                      const float* scale, const float* alpha, const float* bias, bool relu,
                      float* out, bool stream) {
  if (stream && reinterpret_cast<uintptr_t>(out) % 32 == 0)
    EpilogueAvx2<true>(pc, corr, oc, base, scale, alpha, bias, relu, out);
  else
    EpilogueAvx2<false>(pc, corr, oc, base, scale, alpha, bias, relu, out);
}

namespace {

// ------------------------------------------------------------------ bitpack --
void Avx2Bitpack(const float* x, int64_t rows, int64_t c, uint64_t* out) {
  const int64_t words = CeilDiv(c, 64);
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * c;
    uint64_t* dst = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const float* s = src + 64 * w;
      const int64_t n = (c - 64 * w < 64) ? c - 64 * w : 64;
      uint64_t bits = 0;
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        // NGE_UQ: true for x < 0 and for NaN, matching !(x >= 0).
        const __m256 neg = _mm256_cmp_ps(_mm256_loadu_ps(s + i), zero, _CMP_NGE_UQ);
        bits |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_ps(neg))) << i;
      }
      for (; i < n; ++i) bits |= static_cast<uint64_t>(!(s[i] >= 0.0f)) << i;
      dst[w] = bits;
    }
  }
}

// --------------------------------------------------------------------- XNOR --
constexpr int kChunkWords = 4;   // one __m256i
constexpr int kSegment = 31;     // chunks before byte counters could overflow

inline __m256i LoNibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
inline __m256i HiNibbles(__m256i v) {
  return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f));
}

// src: n chunks of 4 words -> dst: n pairs of vectors (low nibbles, high nibbles).
void SplitChunks(const uint64_t* src, int64_t nchunks, __m256i* dst) {
  for (int64_t c = 0; c < nchunks; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src) + c);
    _mm256_storeu_si256(dst + 2 * c, LoNibbles(v));
    _mm256_storeu_si256(dst + 2 * c + 1, HiNibbles(v));
  }
}

int64_t Avx2FilterWords(int64_t out_channels, int64_t kp) { return out_channels * kp * 2; }

void Avx2PrepareFilter(const uint64_t* w, int64_t out_channels, int64_t k, int64_t kp,
                       uint64_t* out) {
  std::vector<uint64_t> padded(kp, 0);
  for (int64_t o = 0; o < out_channels; ++o) {
    std::memcpy(padded.data(), w + o * k, k * sizeof(uint64_t));
    SplitChunks(padded.data(), kp / kChunkWords, reinterpret_cast<__m256i*>(out + o * kp * 2));
  }
}

int64_t Avx2ScratchWords(int64_t npix, int64_t kp) { return npix * kp * 2; }

inline int64_t HSumSad(__m256i acc8) {
  const __m256i s = _mm256_sad_epu8(acc8, _mm256_setzero_si256());
  const __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return _mm_cvtsi128_si64(_mm_add_epi64(t, _mm_unpackhi_epi64(t, t)));
}

// P split patches x Q split filters, all nchunks chunks; adds into pc.
template <int P, int Q>
inline __attribute__((always_inline)) void Avx2Block(const __m256i* x, int64_t xstride,
                                                     const __m256i* w, int64_t wstride,
                                                     int64_t nchunks, int32_t* pc,
                                                     int64_t ldpc) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  int64_t tot[P][Q] = {};
  for (int64_t c0 = 0; c0 < nchunks; c0 += kSegment) {
    const int64_t c1 = nchunks - c0 < kSegment ? nchunks : c0 + kSegment;
    __m256i acc[P][Q];
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) acc[p][q] = _mm256_setzero_si256();
    for (int64_t c = c0; c < c1; ++c) {
      __m256i xl[P], xh[P];
      for (int p = 0; p < P; ++p) {
        xl[p] = _mm256_loadu_si256(x + p * xstride + 2 * c);
        xh[p] = _mm256_loadu_si256(x + p * xstride + 2 * c + 1);
      }
      for (int q = 0; q < Q; ++q) {
        const __m256i wl = _mm256_loadu_si256(w + q * wstride + 2 * c);
        const __m256i wh = _mm256_loadu_si256(w + q * wstride + 2 * c + 1);
        for (int p = 0; p < P; ++p) {
          const __m256i a = _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl[p], wl));
          const __m256i b = _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh[p], wh));
          acc[p][q] = _mm256_add_epi8(acc[p][q], _mm256_add_epi8(a, b));
        }
      }
    }
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) tot[p][q] += HSumSad(acc[p][q]);
  }
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) pc[p * ldpc + q] = static_cast<int32_t>(tot[p][q]);
}

// Register blocking: 3 pixels x 2 filters = 6 byte accumulators, 6 pixel
// vectors, 2 filter vectors, the table and temporaries fit the 16 ymm
// registers without spills (2x4 and 1x8 spilled with GCC 12 and ran slower).
#ifndef SKETCHTF_XNOR_P
#define SKETCHTF_XNOR_P 3
#define SKETCHTF_XNOR_Q 2
#endif
constexpr int kP = SKETCHTF_XNOR_P, kQ = SKETCHTF_XNOR_Q;

// Q filters against all npix patches: the filters' chunks stay in L1 while
// the block's patches stream past them.
template <int Q>
inline void Avx2Column(const __m256i* xs, int64_t npix, const __m256i* w, int64_t nchunks,
                       int32_t* pc, int64_t ldpc) {
  const int64_t stride = 2 * nchunks;
  int64_t p = 0;
  for (; p + kP <= npix; p += kP)
    Avx2Block<kP, Q>(xs + p * stride, stride, w, stride, nchunks, pc + p * ldpc, ldpc);
  for (; p < npix; ++p)
    Avx2Block<1, Q>(xs + p * stride, stride, w, stride, nchunks, pc + p * ldpc, ldpc);
}

void Avx2PopcountBlock(const uint64_t* patches, int64_t npix, int64_t kp, const uint64_t* filter,
                       int64_t oc, uint64_t* scratch, int32_t* pc) {
  const int64_t nchunks = kp / kChunkWords;
  __m256i* xs = reinterpret_cast<__m256i*>(scratch);
  for (int64_t p = 0; p < npix; ++p) SplitChunks(patches + p * kp, nchunks, xs + p * 2 * nchunks);
  const __m256i* fs = reinterpret_cast<const __m256i*>(filter);
  const int64_t stride = 2 * nchunks;
  int64_t o = 0;
  for (; o + kQ <= oc; o += kQ) Avx2Column<kQ>(xs, npix, fs + o * stride, nchunks, pc + o, oc);
  for (; o < oc; ++o) Avx2Column<1>(xs, npix, fs + o * stride, nchunks, pc + o, oc);
}

// Roofline probe: Harley-Seal carry-save adders over 16 vectors, one table
// popcount per 16 vectors (Mula, Kurz, Lemire 2018), the fastest AVX2 method
// for long streams.
inline void Csa(__m256i* h, __m256i* l, __m256i a, __m256i b, __m256i c) {
  const __m256i u = _mm256_xor_si256(a, b);
  *h = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u, c));
  *l = _mm256_xor_si256(u, c);
}

inline __m256i Popcount256(__m256i v) {  // 4 x u64 counts
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, LoNibbles(v)),
                                    _mm256_shuffle_epi8(lut, HiNibbles(v)));
  return _mm256_sad_epu8(c, _mm256_setzero_si256());
}

// Register probe with the XNOR kernel's own inner sequence (Avx2Block): two
// 4-word chunks of both operands held nibble-split in 8 ymm, the LUT, 2 byte-
// counter chains (one per chunk; each adds the sum of its two lookups, so the
// loop-carried latency is one add), 4 temporaries: 15 of the 16 ymm (4
// accumulators made GCC spill one to the stack, a store-forwarding chain that
// halved the rate). Folded with vpsadbw every kSegment iterations (<= 8 per
// byte per iteration). Per iteration (8 word pairs): 4 xor + 4 vpshufb + 4 byte adds.
constexpr int kAvx2RegWords = 2 * kChunkWords;
uint64_t Avx2XorPopcountRegister(const uint64_t* a, const uint64_t* b, int64_t iters) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i va0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i va1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a) + 1);
  const __m256i vb0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
  const __m256i vb1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b) + 1);
  __m256i al0 = LoNibbles(va0), ah0 = HiNibbles(va0), al1 = LoNibbles(va1), ah1 = HiNibbles(va1);
  __m256i bl0 = LoNibbles(vb0), bh0 = HiNibbles(vb0), bl1 = LoNibbles(vb1), bh1 = HiNibbles(vb1);
  const __m256i zero = _mm256_setzero_si256();
  __m256i total = zero;
  for (int64_t i0 = 0; i0 < iters; i0 += kSegment) {
    const int64_t n = iters - i0 < kSegment ? iters - i0 : kSegment;
    __m256i c0 = zero, c1 = zero;
    for (int64_t i = 0; i < n; ++i) {
      // "Maybe changed": the xor and lookups must be redone every iteration.
      asm volatile("" : "+x"(al0), "+x"(ah0), "+x"(al1), "+x"(ah1), "+x"(bl0), "+x"(bh0),
                   "+x"(bl1), "+x"(bh1));
      c0 = _mm256_add_epi8(c0, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(al0, bl0)),
                                               _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah0, bh0))));
      c1 = _mm256_add_epi8(c1, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(al1, bl1)),
                                               _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah1, bh1))));
    }
    total = _mm256_add_epi64(total, _mm256_sad_epu8(c0, zero));
    total = _mm256_add_epi64(total, _mm256_sad_epu8(c1, zero));
  }
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), total);
  return t[0] + t[1] + t[2] + t[3];
}

uint64_t Avx2XorPopcountStream(const uint64_t* a, const uint64_t* b, int64_t n) {
  const __m256i* va = reinterpret_cast<const __m256i*>(a);
  const __m256i* vb = reinterpret_cast<const __m256i*>(b);
  auto v = [&](int64_t i) {
    return _mm256_xor_si256(_mm256_loadu_si256(va + i), _mm256_loadu_si256(vb + i));
  };
  __m256i total = _mm256_setzero_si256(), ones = total, twos = total, fours = total,
          eights = total, sixteens, twos_a, twos_b, fours_a, fours_b, eights_a, eights_b;
  for (int64_t i = 0; i < n / 4; i += 16) {
    Csa(&twos_a, &ones, ones, v(i), v(i + 1));
    Csa(&twos_b, &ones, ones, v(i + 2), v(i + 3));
    Csa(&fours_a, &twos, twos, twos_a, twos_b);
    Csa(&twos_a, &ones, ones, v(i + 4), v(i + 5));
    Csa(&twos_b, &ones, ones, v(i + 6), v(i + 7));
    Csa(&fours_b, &twos, twos, twos_a, twos_b);
    Csa(&eights_a, &fours, fours, fours_a, fours_b);
    Csa(&twos_a, &ones, ones, v(i + 8), v(i + 9));
    Csa(&twos_b, &ones, ones, v(i + 10), v(i + 11));
    Csa(&fours_a, &twos, twos, twos_a, twos_b);
    Csa(&twos_a, &ones, ones, v(i + 12), v(i + 13));
    Csa(&twos_b, &ones, ones, v(i + 14), v(i + 15));
    Csa(&fours_b, &twos, twos, twos_a, twos_b);
    Csa(&eights_b, &fours, fours, fours_a, fours_b);
    Csa(&sixteens, &eights, eights, eights_a, eights_b);
    total = _mm256_add_epi64(total, Popcount256(sixteens));
  }
  total = _mm256_slli_epi64(total, 4);
  total = _mm256_add_epi64(total, _mm256_slli_epi64(Popcount256(eights), 3));
  total = _mm256_add_epi64(total, _mm256_slli_epi64(Popcount256(fours), 2));
  total = _mm256_add_epi64(total, _mm256_slli_epi64(Popcount256(twos), 1));
  total = _mm256_add_epi64(total, Popcount256(ones));
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), total);
  return t[0] + t[1] + t[2] + t[3];
}

// ------------------------------------------------------------ binary weight --
// 4x8 transpose: 8 lanes' 4 consecutive channels -> 4 vectors of 8 lanes.
inline void Gather4(const float* const src[kBwTile], int64_t c, __m256 out[4]) {
  const __m256 r0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src[0] + c)),
                                         _mm_loadu_ps(src[4] + c), 1);
  const __m256 r1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src[1] + c)),
                                         _mm_loadu_ps(src[5] + c), 1);
  const __m256 r2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src[2] + c)),
                                         _mm_loadu_ps(src[6] + c), 1);
  const __m256 r3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src[3] + c)),
                                         _mm_loadu_ps(src[7] + c), 1);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  out[0] = _mm256_shuffle_ps(t0, t2, 0x44);
  out[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
  out[2] = _mm256_shuffle_ps(t1, t3, 0x44);
  out[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}

// Builds the 16 signed sums of one channel group: entry m has -x_i where bit i
// of m is set.
inline void BuildLut(const __m256 x[4], __m256* lut) {
  const __m256 p0 = _mm256_add_ps(x[0], x[1]), p1 = _mm256_sub_ps(x[1], x[0]);
  const __m256 q0 = _mm256_add_ps(x[2], x[3]), q1 = _mm256_sub_ps(x[3], x[2]);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lo[4] = {p0, p1, _mm256_xor_ps(p1, sign), _mm256_xor_ps(p0, sign)};
  const __m256 hi[4] = {q0, q1, _mm256_xor_ps(q1, sign), _mm256_xor_ps(q0, sign)};
  for (int h = 0; h < 4; ++h)
    for (int l = 0; l < 4; ++l) _mm256_store_ps(reinterpret_cast<float*>(lut + 4 * h + l),
                                                _mm256_add_ps(lo[l], hi[h]));
}

// Address of the entry selected by nibble G of w in table G (16 entries of 32
// bytes each): the shift and mask give the byte offset directly.
template <int G>
inline const __m256* Entry(const char* luts, uint64_t w) {
  const uint64_t off = G >= 2 ? (w >> (4 * G - 5)) & 0x1E0 : (w << (5 - 4 * G)) & 0x1E0;
  return reinterpret_cast<const __m256*>(luts + G * 512 + off);
}

template <int G>
inline __attribute__((always_inline)) void AddGroups(const char* luts, uint64_t w, __m256* s) {
  if constexpr (G > 0) {
    AddGroups<G - 1>(luts, w, s);
    s[(G - 1) & 3] = _mm256_add_ps(s[(G - 1) & 3], _mm256_load_ps(
        reinterpret_cast<const float*>(Entry<G - 1>(luts, w))));
  }
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
std::unique_ptr<T[], AlignedFree> AlignedArray(size_t n) {
  const size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
  return std::unique_ptr<T[], AlignedFree>(static_cast<T*>(std::aligned_alloc(64, bytes)));
}

void Avx2BwConvTiles(const BwConvArgs& a, int64_t tile_begin, int64_t tile_end) {
  const int64_t oc = a.out_c;
  auto acc = AlignedArray<__m256>(oc);
  auto lut = AlignedArray<__m256>(16 * 16);
  // Zero "pixel" for padded taps, wide enough for every channel offset.
  std::vector<float> zeros(a.words * 64 + 4, 0.0f);
  const char* luts = reinterpret_cast<const char*>(lut.get());
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    BwTile t;
    BwTileInit(a, tile, &t);
    for (int64_t o = 0; o < oc; ++o) acc[o] = _mm256_setzero_ps();
    for (int64_t kh = 0; kh < a.k_h; ++kh) {
      for (int64_t kw = 0; kw < a.k_w; ++kw) {
        const float* src[kBwTile];
        for (int l = 0; l < kBwTile; ++l) src[l] = BwTapPtr(a, t, l, kh, kw, zeros.data());
        for (int64_t j = 0; j < a.words; ++j) {
          const int64_t c0 = 64 * j;
          const int64_t nc = a.in_c - c0 < 64 ? a.in_c - c0 : 64;
          const int full = static_cast<int>(nc / 4);
          for (int g = 0; g < full; ++g) {
            __m256 x[4];
            Gather4(src, c0 + 4 * g, x);
            BuildLut(x, lut.get() + 16 * g);
          }
          int ng = full;
          if (nc % 4) {  // a partial group: the missing channels are zeros
            alignas(32) float part[4][kBwTile] = {};
            for (int i = 0; i < nc % 4; ++i)
              for (int l = 0; l < kBwTile; ++l) part[i][l] = src[l][c0 + 4 * full + i];
            __m256 x[4];
            for (int i = 0; i < 4; ++i) x[i] = _mm256_load_ps(part[i]);
            BuildLut(x, lut.get() + 16 * full);
            ++ng;
          }
          const uint64_t* wrow = a.weights + ((kh * a.k_w + kw) * a.words + j) * a.w_ld;
          if (ng == 16) {
            for (int64_t o = 0; o < oc; ++o) {
              __m256 s[4] = {acc[o], _mm256_setzero_ps(), _mm256_setzero_ps(),
                             _mm256_setzero_ps()};
              AddGroups<16>(luts, wrow[o], s);  // four independent add chains
              acc[o] = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]));
            }
          } else {
            for (int64_t o = 0; o < oc; ++o) {
              const uint64_t w = wrow[o];
              __m256 s = acc[o];
              for (int g = 0; g < ng; ++g) s = _mm256_add_ps(s, lut[16 * g + ((w >> (4 * g)) & 15)]);
              acc[o] = s;
            }
          }
        }
      }
    }
    // acc[o] holds 8 positions; the output wants [position][o].
    alignas(32) float lanes[kBwTile];
    for (int64_t o = 0; o < oc; ++o) {
      _mm256_store_ps(lanes, acc[o]);
      for (int l = 0; l < t.lanes; ++l) {
        const float y = a.alpha[o] * lanes[l] + a.bias[o];
        a.output[(t.pos0 + l) * a.out_ld + o] = (a.relu && y < 0.0f) ? 0.0f : y;
      }
    }
  }
}

}  // namespace

const XnorKernel& XnorKernelAvx2() {
  static const XnorKernel k = {"avx2",           kChunkWords,      Avx2FilterWords,
                               Avx2PrepareFilter, Avx2ScratchWords, Avx2PopcountBlock, nullptr, nullptr,
                               Avx2Bitpack,       XnorEpilogueAvx2,  Avx2XorPopcountStream,
                               kAvx2RegWords,     Avx2XorPopcountRegister};
  return k;
}

const BwKernel& BwKernelAvx2() {
  static const BwKernel k = {"avx2", BwTileUnits, Avx2BwConvTiles, 0, nullptr};
  return k;
}

}  // namespace sketchtf
