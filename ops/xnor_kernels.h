// Kernels behind sketchtf's binary ops, one table per instruction set.
//
// This header and the kernels_*.cc files do not depend on TensorFlow: the op
// files (*_op.cc) validate inputs, lay data out and shard work over TF's thread
// pool; the kernels only do arithmetic on buffers they are given. Each ISA file
// is compiled with its own -m flags (sketchtf/ops/build.py) and is only called
// after cpu_features.cc has checked that the CPU has that ISA.
//
// Bit convention (all ops): bit 1 = sign -1 (x < 0, or NaN); bit 0 = sign +1
// (x >= 0, so sign(0) = +1). Channel c lives in word c / 64, bit c % 64.
#ifndef SKETCHTF_OPS_XNOR_KERNELS_H_
#define SKETCHTF_OPS_XNOR_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace sketchtf {

enum class Path { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// ---------------------------------------------------------------- XNOR conv --
// The epilogue's inputs for pixels [0, npix) of a popcount_rows_out call:
// pixel p's output row out + p * ld gets, for filter o < out_channels,
// alpha[o] * (base[p] - 2 * (pc - corr[p][o])) [* scale[p]] + bias[o], then
// ReLU if relu (the epilogue's formula; corr[p] null: no padded taps).
struct XnorOut {
  const int32_t* base;
  const int32_t* const* corr;
  const float* scale;  // null: no input scale
  const float* alpha;
  const float* bias;
  bool relu;
  float* out;
  int64_t ld;
};

// The op gathers, for a block of output pixels, each pixel's receptive field
// ("patch") as kp words: taps in (kh, kw) order, each tap in_words words, then
// zero words up to kp (a multiple of k_align). Taps in the zero padding are
// written as zero words and corrected for by the op (see xnor_conv_op.cc).
struct XnorKernel {
  const char* name;
  int k_align;  // kp must be a multiple of this
  // Words of the kernel's private filter layout for out_channels filters.
  int64_t (*filter_words)(int64_t out_channels, int64_t kp);
  // w: [out_channels][k] words (k <= kp). Writes the private layout.
  void (*prepare_filter)(const uint64_t* w, int64_t out_channels, int64_t k,
                         int64_t kp, uint64_t* out);
  // Scratch words popcount_block needs for a block of npix patches.
  int64_t (*scratch_words)(int64_t npix, int64_t kp);
  // pc[p * out_channels + o] = popcount(patch_p XOR filter_o), p < npix.
  void (*popcount_block)(const uint64_t* patches, int64_t npix, int64_t kp,
                         const uint64_t* filter, int64_t out_channels,
                         uint64_t* scratch, int32_t* pc);
  // The same without the gathered copy (null where the ISA has no such
  // kernel; needs kp == k_h * row_words): patch p is the k_h rows
  // rows[p * k_h + r], row_words words each (for an interior pixel, pointers
  // straight into the input).
  void (*popcount_rows)(const uint64_t* const* rows, int64_t npix, int64_t k_h,
                        int64_t row_words, const uint64_t* filter, int64_t out_channels,
                        int32_t* pc);
  // popcount_rows with the epilogue fused in (null where the ISA has none):
  // each block's counts go to `out` as floats, never through a pc buffer.
  void (*popcount_rows_out)(const uint64_t* const* rows, int64_t npix, int64_t k_h,
                            int64_t row_words, const uint64_t* filter, int64_t out_channels,
                            const XnorOut& e);
  // rows x c floats -> rows x ceil(c/64) words; padding bits are 0.
  void (*bitpack)(const float* x, int64_t rows, int64_t c, uint64_t* out);
  // One output pixel: out[o] = alpha[o] * (base - 2 * (pc[o] - corr[o])) [* scale]
  // + bias[o], then ReLU if relu; corr may be null (no padded taps). stream:
  // non-temporal stores where the kernel has them (outputs far larger than
  // the caches; the caller fences before the output is read).
  void (*epilogue)(const int32_t* pc, const int32_t* corr, int64_t out_channels, int32_t base,
                   const float* scale, const float* alpha, const float* bias, bool relu,
                   float* out, bool stream);
  // Roofline probe: sum of popcount(a[i] ^ b[i]), i < n (n a multiple of 64),
  // with the fastest long-stream method known for the ISA.
  uint64_t (*xor_popcount_stream)(const uint64_t* a, const uint64_t* b, int64_t n);
  // Compute-bound probe: the first reg_words word pairs of a and b are loaded
  // into registers once; then, iters times, XOR + popcount + accumulate of all
  // of them with the path's per-word instruction sequence (several independent
  // accumulator chains, no loads or stores in the loop; an empty asm statement
  // per iteration makes the operands opaque so the compiler cannot hoist or
  // fold the work). Returns iters * sum_i popcount(a[i] ^ b[i]), i < reg_words.
  int reg_words;  // <= kRegisterProbeWords
  uint64_t (*xor_popcount_register)(const uint64_t* a, const uint64_t* b, int64_t iters);
};
constexpr int kRegisterProbeWords = 32;

// ------------------------------------------------------- binary-weight conv --
// Float input times 1-bit weights without multiplies: for every tile of 8
// output positions and every group of 4 input channels the kernel builds the
// 16 signed sums +-x0 +-x1 +-x2 +-x3 (8 positions each) once, and every output
// channel then adds the entry its 4 weight bits select (one 8-wide add per 32
// multiply-accumulates, shared by all output channels).
struct BwConvArgs {
  int64_t batch, in_h, in_w, in_c;
  int64_t out_h, out_w, out_c;
  int64_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
  int64_t words;              // ceil(in_c / 64)
  const float* input;         // [batch, in_h, in_w, in_c]
  const uint64_t* weights;    // [k_h * k_w][words][w_ld], first out_c of each row used
  int64_t w_ld;
  const float* alpha;         // [out_c]
  const float* bias;          // [out_c]
  bool relu;
  float* output;              // [batch * out_h * out_w][out_ld], first out_c used
  int64_t out_ld;
  // The filter as the op receives it, [out_c][k_h * k_w * words] (padding
  // bits arbitrary), for conv_rows; set only when that path runs.
  const uint64_t* filter_rows;
};
constexpr int kBwTile = 8;       // output positions per tile (AVX2 and scalar)
constexpr int kBwMaxLanes = 16;  // lanes of the widest kernel (BwTile)

struct BwKernel {
  const char* name;
  // How many work units conv_tiles splits the output of a into (the op shards
  // these over threads): BwTileUnits, or the kernel's own.
  int64_t (*units)(const BwConvArgs& a);
  // Computes units [tile_begin, tile_end) (BwTileUnits: output positions
  // [tile_begin * 8, min(tile_end * 8, total))).
  void (*conv_tiles)(const BwConvArgs& a, int64_t tile_begin, int64_t tile_end);
  // Outputs with at most this many positions (batch-1 dense layers, a conv
  // down to 1x1) are too thin for a lookup table over positions: the op calls
  // conv_rows instead, which needs only a.filter_rows. 0: never.
  int64_t rows_max_positions;
  // Computes output channels [o_begin, o_end) at every position.
  void (*conv_rows)(const BwConvArgs& a, int64_t o_begin, int64_t o_end);
};

// Tables; the AVX ones must only be used when the CPU has the ISA.
const XnorKernel& XnorKernelScalar();
const XnorKernel& XnorKernelAvx2();
const XnorKernel& XnorKernelAvx512();
const BwKernel& BwKernelScalar();
const BwKernel& BwKernelAvx2();
const BwKernel& BwKernelAvx512();

// Portable helpers shared by the kernel files (defined in kernels_scalar.cc).
void XnorEpilogueScalar(const int32_t* pc, const int32_t* corr, int64_t out_channels,
                        int32_t base, const float* scale, const float* alpha, const float* bias,
                        bool relu, float* out, bool stream);
// AVX2 version (kernels_avx2.cc); the AVX-512 table uses it too.
void XnorEpilogueAvx2(const int32_t* pc, const int32_t* corr, int64_t out_channels, int32_t base,
                      const float* scale, const float* alpha, const float* bias, bool relu,
                      float* out, bool stream);
void BitpackScalar(const float* x, int64_t rows, int64_t c, uint64_t* out);

// SketchtfNormBitpack's work for one output pixel, AVX-512 (kernels_avx512.cc;
// c % 16 == 0): the packed signs (1 = negative or NaN) of
// max_window(x) * scale + offset, product and sum rounded separately, over the
// pool x pool window at px whose rows are `row` floats apart (pool 1: px itself).
void PoolNormSignsAvx512(const float* px, int64_t row, int64_t c, int64_t pool,
                         const float* scale, const float* offset, uint64_t* bits);
// out[k] = max over the pool x pool window at px (rows `row` floats apart) of
// channel k, k < c (c % 16 == 0); NaN if any value of the window is NaN.
void PoolMaxAvx512(const float* px, int64_t row, int64_t c, int64_t pool, float* out);
// counts[r] = popcount of words [r * words, (r + 1) * words) of w, r < rows
// (the popcnt instruction when the CPU has it).
void PopcountRows(const uint64_t* w, int64_t rows, int64_t words, int32_t* counts);
inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Units of kBwTile flat output positions.
inline int64_t BwTileUnits(const BwConvArgs& a) { return CeilDiv(a.batch * a.out_h * a.out_w, kBwTile); }

// Where each lane of a binary-weight tile reads its input. For a tap (kh, kw)
// lane l reads img[l] + ((ih0[l] + kh) * in_w + iw0[l] + kw) * in_c, or zeros
// when that pixel lies in the padding or the lane is past the last position.
struct BwTile {
  int64_t pos0;                  // first flat output position of the tile
  int lanes;                     // active lanes (fewer in the last tile)
  const float* img[kBwMaxLanes];
  int64_t ih0[kBwMaxLanes], iw0[kBwMaxLanes];
};

// A tile of up to max_lanes (<= kBwMaxLanes) positions from pos0.
inline void BwTileInitAt(const BwConvArgs& a, int64_t pos0, int max_lanes, BwTile* t) {
  const int64_t total = a.batch * a.out_h * a.out_w;
  t->pos0 = pos0;
  t->lanes = static_cast<int>(total - pos0 < max_lanes ? total - pos0 : max_lanes);
  for (int l = 0; l < max_lanes; ++l) {
    const int64_t p = t->pos0 + (l < t->lanes ? l : 0);
    const int64_t b = p / (a.out_h * a.out_w), r = p % (a.out_h * a.out_w);
    t->img[l] = a.input + b * a.in_h * a.in_w * a.in_c;
    t->ih0[l] = (r / a.out_w) * a.stride_h - a.pad_top;
    t->iw0[l] = (r % a.out_w) * a.stride_w - a.pad_left;
  }
}
inline void BwTileInit(const BwConvArgs& a, int64_t tile, BwTile* t) {
  BwTileInitAt(a, tile * kBwTile, kBwTile, t);
}

// Pointer to the in_c channels lane l reads at tap (kh, kw), or `zeros`.
inline const float* BwTapPtr(const BwConvArgs& a, const BwTile& t, int l,
                             int64_t kh, int64_t kw, const float* zeros) {
  const int64_t ih = t.ih0[l] + kh, iw = t.iw0[l] + kw;
  if (l >= t.lanes || ih < 0 || ih >= a.in_h || iw < 0 || iw >= a.in_w) return zeros;
  return t.img[l] + (ih * a.in_w + iw) * a.in_c;
}

}  // namespace sketchtf

#endif  // SKETCHTF_OPS_XNOR_KERNELS_H_
