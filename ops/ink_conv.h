// Ink-sparse float convolution for a network's first layer (TF-free kernels).
//
// A sketch is mostly background: rendered Quick Draw drawings at 225 px have
// 4-24% non-zero pixels (ink = 1 on 0, the project's convention), so a dense
// conv of the input image (Sketch-A-Net's float L1: 15x15/3, 64 filters, 73 M
// multiply-adds) spends most of its work multiplying zeros. These kernels
// skip them exactly: an output pixel is bias + the sum over the NON-ZERO taps
// of its window of x * w, so the result is the dense conv's up to float
// rounding order (a zero tap adds exactly 0 for finite weights), and the cost
// follows the ink, not the image size.
//
// How a window's non-zero taps are found without a branch per tap: each input
// row is bit-packed once (bit = x != 0, NaN included, so NaN propagates) in
// `row_words` words after `lead` zero words that cover the left padding. An
// output row ORs its window rows, so a pixel without ink in its window costs
// one test and writes bias [-> ReLU]. For a pixel with ink, each window row's
// seg = k_w * in_c bits come out with one shift pair, rows_per_word = 64 / seg
// rows are packed per word, and the set bits are walked with tzcnt: bit b of
// word j is window row j * rows_per_word + b / seg, tap b % seg, with weights
// at filter row j * rows_per_word * seg + b. Per tap: one multiply-add of the
// broadcast input value by the out_c weights, taps alternating between two
// accumulator sets. (Also tried and measured no faster on drawings, so not
// kept: a column table with VPCOMPRESSD of the taps, and multiply-adds by
// bands of window rows whose weights fit L1; docs/binary.md, session 9.)
#ifndef SKETCHTF_OPS_INK_CONV_H_
#define SKETCHTF_OPS_INK_CONV_H_

#include <cstdint>
#include <cstring>
#include <vector>

namespace sketchtf {

struct InkConvArgs {
  int64_t batch, in_h, in_w, in_c;
  int64_t out_h, out_w, out_c;
  int64_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
  const float* input;    // [batch, in_h, in_w, in_c]
  const float* filter;   // [k_h, k_w, in_c, out_c] (tf.nn.conv2d's layout)
  const float* bias;     // [out_c]
  bool relu;
  float* output;         // [batch, out_h, out_w, out_c]
  // Row masks (built by build_masks): [batch * in_h][row_words] words.
  uint64_t* masks;
  int64_t lead, row_words;
  const uint64_t* zero_row;  // row_words zero words, for rows in the padding
};

// Mask geometry for a, which must satisfy InkConvSupported.
inline void InkMaskLayout(InkConvArgs* a) {
  a->lead = (a->pad_left * a->in_c + 63) / 64;
  a->row_words = a->lead + (a->in_w * a->in_c + 63) / 64 + (a->k_w * a->in_c + 63) / 64 + 1;
}

// The kernels need one window row in one 64-bit word, and at most kInkMaxKh rows.
constexpr int64_t kInkMaxKh = 256;
inline bool InkConvSupported(int64_t k_h, int64_t k_w, int64_t in_c) {
  return k_w * in_c <= 64 && k_h <= kInkMaxKh;
}

struct InkConvKernel {
  const char* name;
  // Masks of input rows [r0, r1) (flat over batch * in_h).
  void (*build_masks)(const InkConvArgs& a, int64_t r0, int64_t r1);
  // Output rows r0, r0 + step, ... < r1 (flat over batch * out_h; strided so
  // that every thread gets rows from all over the drawing).
  void (*conv_rows)(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1);
};

const InkConvKernel& InkConvKernelScalar();
const InkConvKernel& InkConvKernelAvx2();
const InkConvKernel& InkConvKernelAvx512();

namespace {  // internal linkage: each ISA file compiles its own copy

// seg bits of row `m` from bit p (the next word is always readable, see InkMaskLayout).
inline uint64_t InkBits(const uint64_t* m, int64_t p, uint64_t seg_mask) {
  const int s = static_cast<int>(p & 63);
  const uint64_t lo = m[p >> 6], hi = m[(p >> 6) + 1];
  return ((lo >> s) | ((hi << 1) << (63 - s))) & seg_mask;
}

// Per-call geometry of the window words.
struct InkGeometry {
  int64_t seg, rpw, words, row_len;
  uint64_t seg_mask;
  int64_t in_off[64];  // bit b of a window word: input offset from its first row at x0
  explicit InkGeometry(const InkConvArgs& a)
      : seg(a.k_w * a.in_c), rpw(64 / seg), words((a.k_h + rpw - 1) / rpw),
        row_len(a.in_w * a.in_c), seg_mask(seg == 64 ? ~uint64_t{0} : (uint64_t{1} << seg) - 1) {
    for (int b = 0; b < 64; ++b) in_off[b] = (b / seg) * row_len + b % seg;
  }
};

// One output row's window rows (the padding's rows read as zeros) and their OR.
struct InkRow {
  int64_t iy0;
  const float* img;  // the row's image
  const uint64_t* rows[kInkMaxKh];
  InkRow(const InkConvArgs& a, int64_t r, uint64_t* colmask) {
    const int64_t b = r / a.out_h, oh = r % a.out_h;
    iy0 = oh * a.stride_h - a.pad_top;
    img = a.input + b * a.in_h * a.in_w * a.in_c;
    for (int64_t ky = 0; ky < a.k_h; ++ky) {
      const int64_t iy = iy0 + ky;
      rows[ky] = (iy < 0 || iy >= a.in_h) ? a.zero_row : a.masks + (b * a.in_h + iy) * a.row_words;
    }
    // One test of the OR finds the pixels without ink in their window.
    for (int64_t i = 0; i < a.row_words; ++i) {
      uint64_t v = 0;
      for (int64_t ky = 0; ky < a.k_h; ++ky) v |= rows[ky][i];
      colmask[i] = v;
    }
  }
  // The window words of output column ox into win; false when it has no ink.
  bool Window(const InkConvArgs& a, const InkGeometry& g, const uint64_t* colmask, int64_t ox,
              uint64_t* win) const {
    const int64_t p = a.lead * 64 + (ox * a.stride_w - a.pad_left) * a.in_c;
    if (InkBits(colmask, p, g.seg_mask) == 0) return false;
    for (int64_t j = 0; j < g.words; ++j) {
      uint64_t w = 0;
      const int64_t k1 = (j + 1) * g.rpw < a.k_h ? (j + 1) * g.rpw : a.k_h;
      for (int64_t ky = j * g.rpw; ky < k1; ++ky)
        w |= InkBits(rows[ky], p, g.seg_mask) << ((ky - j * g.rpw) * g.seg);
      win[j] = w;
    }
    return true;
  }
  // Input index (in img) of window word j's first row at output column ox.
  int64_t Base(const InkConvArgs& a, const InkGeometry& g, int64_t ox, int64_t j) const {
    return (iy0 + j * g.rpw) * g.row_len + (ox * a.stride_w - a.pad_left) * a.in_c;
  }
};

// The walk every kernel runs: taps found with tzcnt. Acc is the
// ISA's accumulator over a block of up to Acc::kBlock output channels with two
// independent sets, so that consecutive taps do not wait on each other's
// multiply-add latency: Acc(o0, n), add2(v1, w1, v2, w2) (tap 1 into set 1,
// tap 2 into set 2), store(bias, relu, out) (the sets' sum + bias [-> ReLU]).
template <class Acc>
void InkConvRowsImpl(const InkConvArgs& a, int64_t r0, int64_t step, int64_t r1) {
  const InkGeometry g(a);
  uint64_t win[kInkMaxKh];  // words <= k_h <= kInkMaxKh (InkConvSupported)
  std::vector<uint64_t> colmask(a.row_words);
  for (int64_t r = r0; r < r1; r += step) {
    const InkRow row(a, r, colmask.data());
    float* out_row = a.output + r * a.out_w * a.out_c;
    for (int64_t ox = 0; ox < a.out_w; ++ox) {
      const bool any = row.Window(a, g, colmask.data(), ox, win);
      float* out = out_row + ox * a.out_c;
      for (int64_t o0 = 0; o0 < a.out_c; o0 += Acc::kBlock) {
        const int64_t n = a.out_c - o0 < Acc::kBlock ? a.out_c - o0 : Acc::kBlock;
        Acc acc(o0, n);
        for (int64_t j = 0; any && j < g.words; ++j) {
          const int64_t base = row.Base(a, g, ox, j);  // set bits are never in the padding
          const float* wts = a.filter + (j * g.rpw * g.seg) * a.out_c + o0;
          for (uint64_t m = win[j]; m;) {
            // Two taps per step; an odd last one is paired with itself times 0.
            const int b1 = __builtin_ctzll(m);
            m &= m - 1;
            const bool two = m != 0;
            const int b2 = two ? __builtin_ctzll(m) : b1;
            m &= m - 1;
            const float v2 = row.img[base + g.in_off[b2]];
            acc.add2(row.img[base + g.in_off[b1]], wts + b1 * a.out_c, two ? v2 : 0.0f,
                     wts + b2 * a.out_c);
          }
        }
        acc.store(a.bias + o0, a.relu, out + o0);
      }
    }
  }
}

}  // namespace
}  // namespace sketchtf

#endif  // SKETCHTF_OPS_INK_CONV_H_
