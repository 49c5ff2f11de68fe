// Portable kernels (baseline x86-64, no -m flags): the fallback path and the
// reference the SIMD paths are tested against.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "xnor_kernels.h"

namespace sketchtf {

void BitpackScalar(const float* x, int64_t rows, int64_t c, uint64_t* out) {
  const int64_t words = CeilDiv(c, 64);
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * c;
    uint64_t* dst = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t n = (c - 64 * w < 64) ? c - 64 * w : 64;
      uint64_t bits = 0;
      for (int64_t i = 0; i < n; ++i) {
        // !(x >= 0): negatives and NaN are -1; +0 and -0 are +1.
        bits |= static_cast<uint64_t>(!(src[64 * w + i] >= 0.0f)) << i;
      }
      dst[w] = bits;
    }
  }
}

void XnorEpilogueScalar(const int32_t* pc, const int32_t* corr, int64_t oc, int32_t base,
                        const float* scale, const float* alpha, const float* bias, bool relu,
                        float* out, bool /*stream: plain stores only*/) {
  for (int64_t o = 0; o < oc; ++o) {
    const int32_t cnt = corr ? pc[o] - corr[o] : pc[o];
    float y = static_cast<float>(base - 2 * cnt) * alpha[o];
    if (scale) y *= *scale;
    y += bias[o];
    out[o] = (relu && y < 0.0f) ? 0.0f : y;
  }
}

namespace {
inline __attribute__((always_inline)) void PopcountRowsImpl(const uint64_t* w, int64_t rows,
                                                            int64_t words, int32_t* counts) {
  for (int64_t r = 0; r < rows; ++r) {
    int32_t c = 0;
    for (int64_t i = 0; i < words; ++i) c += __builtin_popcountll(w[r * words + i]);
    counts[r] = c;
  }
}
__attribute__((target("popcnt"))) void PopcountRowsHw(const uint64_t* w, int64_t rows,
                                                      int64_t words, int32_t* counts) {
  PopcountRowsImpl(w, rows, words, counts);
}
}  // namespace

void PopcountRows(const uint64_t* w, int64_t rows, int64_t words, int32_t* counts) {
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) {
    PopcountRowsHw(w, rows, words, counts);
  } else {
    PopcountRowsImpl(w, rows, words, counts);
  }
}

namespace {

// ------------------------------------------------------------------- XNOR --
int64_t ScalarFilterWords(int64_t out_channels, int64_t kp) { return out_channels * kp; }

void ScalarPrepareFilter(const uint64_t* w, int64_t out_channels, int64_t k, int64_t kp,
                         uint64_t* out) {
  for (int64_t o = 0; o < out_channels; ++o) {
    std::memcpy(out + o * kp, w + o * k, k * sizeof(uint64_t));
    std::memset(out + o * kp + k, 0, (kp - k) * sizeof(uint64_t));
  }
}

int64_t ScalarScratchWords(int64_t, int64_t) { return 0; }

// P pixels x Q filters held in registers; each loaded word is reused Q (or P)
// times. Instantiated twice below so the popcnt instruction is used when the
// CPU has it, and libgcc's bit-twiddling popcount otherwise.
template <int P, int Q>
inline __attribute__((always_inline)) void ScalarBlock(const uint64_t* x, const uint64_t* w,
                                                       int64_t kp, int32_t* pc, int64_t ldpc) {
  uint64_t acc[P][Q] = {};
  for (int64_t k = 0; k < kp; ++k) {
    uint64_t xv[P];
    for (int p = 0; p < P; ++p) xv[p] = x[p * kp + k];
    for (int q = 0; q < Q; ++q) {
      const uint64_t wv = w[q * kp + k];
      for (int p = 0; p < P; ++p) acc[p][q] += __builtin_popcountll(xv[p] ^ wv);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) pc[p * ldpc + q] = static_cast<int32_t>(acc[p][q]);
}

template <int P>
inline __attribute__((always_inline)) void ScalarRow(const uint64_t* x, int64_t kp,
                                                     const uint64_t* filter, int64_t oc,
                                                     int32_t* pc) {
  int64_t o = 0;
  for (; o + 4 <= oc; o += 4) ScalarBlock<P, 4>(x, filter + o * kp, kp, pc + o, oc);
  for (; o < oc; ++o) ScalarBlock<P, 1>(x, filter + o * kp, kp, pc + o, oc);
}

inline __attribute__((always_inline)) void ScalarPopcountImpl(
    const uint64_t* patches, int64_t npix, int64_t kp, const uint64_t* filter, int64_t oc,
    int32_t* pc) {
  int64_t p = 0;
  for (; p + 2 <= npix; p += 2) ScalarRow<2>(patches + p * kp, kp, filter, oc, pc + p * oc);
  for (; p < npix; ++p) ScalarRow<1>(patches + p * kp, kp, filter, oc, pc + p * oc);
}

void ScalarPopcountGeneric(const uint64_t* patches, int64_t npix, int64_t kp,
                           const uint64_t* filter, int64_t oc, int32_t* pc) {
  ScalarPopcountImpl(patches, npix, kp, filter, oc, pc);
}

__attribute__((target("popcnt"))) void ScalarPopcountHw(const uint64_t* patches, int64_t npix,
                                                        int64_t kp, const uint64_t* filter,
                                                        int64_t oc, int32_t* pc) {
  ScalarPopcountImpl(patches, npix, kp, filter, oc, pc);
}

void ScalarPopcountBlock(const uint64_t* patches, int64_t npix, int64_t kp,
                         const uint64_t* filter, int64_t oc, uint64_t*, int32_t* pc) {
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) {
    ScalarPopcountHw(patches, npix, kp, filter, oc, pc);
  } else {
    ScalarPopcountGeneric(patches, npix, kp, filter, oc, pc);
  }
}

inline __attribute__((always_inline)) uint64_t ScalarStreamImpl(const uint64_t* a,
                                                                const uint64_t* b, int64_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains hide the add latency
  for (int64_t i = 0; i < n; i += 4) {
    s0 += __builtin_popcountll(a[i] ^ b[i]);
    s1 += __builtin_popcountll(a[i + 1] ^ b[i + 1]);
    s2 += __builtin_popcountll(a[i + 2] ^ b[i + 2]);
    s3 += __builtin_popcountll(a[i + 3] ^ b[i + 3]);
  }
  return s0 + s1 + s2 + s3;
}
uint64_t ScalarStreamGeneric(const uint64_t* a, const uint64_t* b, int64_t n) {
  return ScalarStreamImpl(a, b, n);
}
__attribute__((target("popcnt"))) uint64_t ScalarStreamHw(const uint64_t* a, const uint64_t* b,
                                                          int64_t n) {
  return ScalarStreamImpl(a, b, n);
}
uint64_t ScalarXorPopcountStream(const uint64_t* a, const uint64_t* b, int64_t n) {
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  return has_popcnt ? ScalarStreamHw(a, b, n) : ScalarStreamGeneric(a, b, n);
}

// Register probe: 4 word pairs in 8 general registers, 4 accumulator chains
// (12 of the 16 GPRs). Per word pair: xor + popcnt + add, as in ScalarBlock.
constexpr int kScalarRegWords = 4;
inline __attribute__((always_inline)) uint64_t ScalarRegisterImpl(const uint64_t* a,
                                                                  const uint64_t* b,
                                                                  int64_t iters) {
  uint64_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  uint64_t b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t i = 0; i < iters; ++i) {
    // "Maybe changed": forces the xor and popcount to be redone every iteration.
    asm volatile("" : "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3), "+r"(b0), "+r"(b1), "+r"(b2),
                 "+r"(b3));
    s0 += __builtin_popcountll(a0 ^ b0);
    s1 += __builtin_popcountll(a1 ^ b1);
    s2 += __builtin_popcountll(a2 ^ b2);
    s3 += __builtin_popcountll(a3 ^ b3);
  }
  return s0 + s1 + s2 + s3;
}
uint64_t ScalarRegisterGeneric(const uint64_t* a, const uint64_t* b, int64_t iters) {
  return ScalarRegisterImpl(a, b, iters);
}
__attribute__((target("popcnt"))) uint64_t ScalarRegisterHw(const uint64_t* a,
                                                            const uint64_t* b, int64_t iters) {
  return ScalarRegisterImpl(a, b, iters);
}
uint64_t ScalarXorPopcountRegister(const uint64_t* a, const uint64_t* b, int64_t iters) {
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  return has_popcnt ? ScalarRegisterHw(a, b, iters) : ScalarRegisterGeneric(a, b, iters);
}

// ---------------------------------------------------------- binary weight --
// The same lookup-table algorithm as the AVX2 kernel, on plain 8-float arrays.
struct Lane8 {
  float v[kBwTile];
};

void ScalarBwConvTiles(const BwConvArgs& a, int64_t tile_begin, int64_t tile_end) {
  const int64_t oc = a.out_c;
  std::vector<Lane8> acc(oc);
  std::vector<Lane8> lut(16 * 16);  // 16 channel groups x 16 sign patterns
  std::vector<float> zeros(a.words * 64, 0.0f);
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    BwTile t;
    BwTileInit(a, tile, &t);
    std::memset(acc.data(), 0, oc * sizeof(Lane8));
    for (int64_t kh = 0; kh < a.k_h; ++kh) {
      for (int64_t kw = 0; kw < a.k_w; ++kw) {
        const float* src[kBwTile];
        for (int l = 0; l < kBwTile; ++l) src[l] = BwTapPtr(a, t, l, kh, kw, zeros.data());
        for (int64_t j = 0; j < a.words; ++j) {
          const int64_t c0 = 64 * j;
          const int ng = static_cast<int>(CeilDiv(a.in_c - c0 < 64 ? a.in_c - c0 : 64, 4));
          for (int g = 0; g < ng; ++g) {
            Lane8 x[4];
            for (int i = 0; i < 4; ++i) {
              const int64_t c = c0 + 4 * g + i;
              for (int l = 0; l < kBwTile; ++l) x[i].v[l] = c < a.in_c ? src[l][c] : 0.0f;
            }
            // Entry m: channel i counts -x_i where bit i of m is set.
            for (int m = 0; m < 16; ++m) {
              for (int l = 0; l < kBwTile; ++l) {
                float s = 0.0f;
                for (int i = 0; i < 4; ++i) s += ((m >> i) & 1) ? -x[i].v[l] : x[i].v[l];
                lut[g * 16 + m].v[l] = s;
              }
            }
          }
          const uint64_t* wrow = a.weights + ((kh * a.k_w + kw) * a.words + j) * a.w_ld;
          for (int64_t o = 0; o < oc; ++o) {
            const uint64_t w = wrow[o];
            Lane8 s = acc[o];
            for (int g = 0; g < ng; ++g) {
              const Lane8& e = lut[g * 16 + ((w >> (4 * g)) & 15)];
              for (int l = 0; l < kBwTile; ++l) s.v[l] += e.v[l];
            }
            acc[o] = s;
          }
        }
      }
    }
    for (int l = 0; l < t.lanes; ++l) {
      float* out = a.output + (t.pos0 + l) * a.out_ld;
      for (int64_t o = 0; o < oc; ++o) {
        const float y = a.alpha[o] * acc[o].v[l] + a.bias[o];
        out[o] = (a.relu && y < 0.0f) ? 0.0f : y;
      }
    }
  }
}

}  // namespace

const XnorKernel& XnorKernelScalar() {
  static const XnorKernel k = {"scalar",           1,
                               ScalarFilterWords,  ScalarPrepareFilter,
                               ScalarScratchWords, ScalarPopcountBlock, nullptr, nullptr,
                               BitpackScalar,      XnorEpilogueScalar,
                               ScalarXorPopcountStream, kScalarRegWords,
                               ScalarXorPopcountRegister};
  return k;
}

const BwKernel& BwKernelScalar() {
  static const BwKernel k = {"scalar", BwTileUnits, ScalarBwConvTiles, 0, nullptr};
  return k;
}

}  // namespace sketchtf
