/* 3x3 depthwise convolutions (one filter per channel: groups = C = OC) with one pixel of zero
 * padding, at stride 1 or at stride 2 on even maps (MobileNet's), channels-last, by a direct
 * kernel: the forward, and at stride 1 the input gradient (the same convolution over dout with
 * each filter turned 180 degrees).
 *
 * Why by hand: oneDNN 2.6's input gradient at stride 1 is slow on these shapes (batch 32, 2
 * threads: 32 channels on 64x64 maps 1.34 ms against 1.16 here, 256 on 16x16 0.87 against 0.48,
 * 1024 on 4x4 0.18 against 0.11; a microbenchmark, session 22), and this kernel's forward, which
 * it is, runs level with oneDNN's (0.12 against 0.12 ms for 32 channels on 32x32, 0.034 against
 * 0.044 for 512 on 4x4). At stride 2, and for the weight gradient, kernels of this kind measured
 * slower than oneDNN's (64 channels on 64x64 maps: 1.9 and 1.4 ms against 1.6 and 0.9): those
 * stay oneDNN's. Inside a network every one of these passes runs two to four times slower than
 * alone (256 channels on 8x8: 0.19-0.24 ms in MobileNet 64x64's forward, 0.06-0.09 alone), which
 * no kernel of one layer changes: inference runs each depthwise layer with the pointwise one
 * after it (conv2d_separable, through conv2d_depthwise_rows) where their shapes allow.
 *
 * How: a vector holds 16 channels of one pixel, and a block of 16 channels keeps its 9 filter
 * taps in registers. Strips of up to STRIP output pixels along a row (8, 7, 4, 2 or 1: the
 * widest that divides the row) hold their sums in registers; each input vector of a kernel row
 * is loaded once and feeds the (up to 3) sums it reaches, and the padding columns of a row's
 * first and last strips are left out at compile time. Every output is one sum in the order of
 * its taps, from the bias: the result does not depend on the thread count. Built with
 * -ffp-contract=fast (Makefile): the sums are multiply-adds. */
#include <stddef.h>
#include <string.h>

#include "gate.h"
#include "layers.h"

/* As conv2d_direct's: where a vector is one AVX-512 register (with 32-byte ones each sum takes
 * two and the strips spill), and not in `make DIRECT=0`. */
#if defined(__AVX512F__) && !defined(MR_NO_DIRECT)
#define DEPTHWISE_KERNELS 1
#else
#define DEPTHWISE_KERNELS 0
#endif

#define STRIP 8
#define TAPS 9

/* Tasks of whole output rows, all channel blocks: a row's three input rows stay in cache
 * across its blocks, and the next row (same thread, schedule static) reuses two of them. */
int conv2d_depthwise_supported(Conv2dDims d) {
  const int same = d.SH == 1 && d.SW == 1 && d.OH == d.H && d.OW == d.W;
  const int halved =
      d.SH == 2 && d.SW == 2 && d.H % 2 == 0 && d.W % 2 == 0 && d.OH == d.H / 2 && d.OW == d.W / 2;
  return DEPTHWISE_KERNELS && d.groups == d.C && d.OC == d.C && d.C % VEC == 0 && d.KH == 3 &&
         d.KW == 3 && d.DH <= 1 && d.DW <= 1 && d.PT == 1 && d.PB == 1 && d.PL == 1 && d.PR == 1 &&
         (same || halved);
}

size_t conv2d_depthwise_packed_floats(Conv2dDims d) { return (size_t)TAPS * d.C; }

/* packed[c / 16][tap][c % 16] = weight[c][tap] (tap turned 180 degrees when rotated) */
static void pack(float *packed, const float *weight, Conv2dDims d, int rotated) {
  for (int c = 0; c < d.C; c++)
    for (int t = 0; t < TAPS; t++)
      packed[((size_t)(c / VEC) * TAPS + t) * VEC + c % VEC] =
          weight[(size_t)c * TAPS + (rotated ? TAPS - 1 - t : t)];
}

void conv2d_depthwise_pack(float *packed, const float *weight, Conv2dDims d) {
  pack(packed, weight, d, 0);
}

static inline Vec finish(Vec acc, const float *o, int sum, int relu) {
  if (sum) acc += vec_load(o);
  if (relu) acc = vec_gate(acc, acc > (Vec){0});
  return acc;
}

/* P output pixels of row r from column q0, 16 channels. x: the image at this channel block; o:
 * the first output pixel at it. Input column j of the strip's span (from q0 S - 1) feeds output
 * p through tap kw = j - S p; L: the strip starts the row, so its first column is padding; R:
 * it ends the row, and at stride 1 its last column is padding (at stride 2 on even maps the
 * last tap ends on the last column). P, S, L and R are literals at every call. */
static inline __attribute__((always_inline)) void strip(float *o, const float *x, const Vec *w,
                                                        Vec bias, int C, int H, int W, int r,
                                                        int q0, int sum, int relu, int P, int S,
                                                        int L, int R) {
  Vec acc[STRIP];
  for (int p = 0; p < P; p++) acc[p] = bias;
  const int span = S * (P - 1) + 3;
  for (int kh = 0; kh < 3; kh++) {
    const int iy = r * S + kh - 1;
    if (iy < 0 || iy >= H) continue;
    const float *row = x + ((size_t)iy * W + q0 * S) * C;
#pragma GCC unroll 32
    for (int j = 0; j < span; j++) {
      if ((L && j == 0) || (R && S == 1 && j == span - 1)) continue;
      const Vec v = vec_load(row + (ptrdiff_t)(j - 1) * C);
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; kw++) {
        const int p = (j - kw) / S;
        if (j >= kw && (j - kw) % S == 0 && p < P) acc[p] += v * w[kh * 3 + kw];
      }
    }
  }
  for (int p = 0; p < P; p++) {
    float *op = o + (size_t)p * C;
    vec_store(op, finish(acc[p], op, sum, relu));
  }
}

/* output row r of one image (at out_row), every channel block, in strips of P pixels */
static inline __attribute__((always_inline)) void row_strips(float *out_row, const float *x,
                                                             const float *packed, const float *bias,
                                                             Conv2dDims d, int r, int sum, int relu,
                                                             int P, int S) {
  const int C = d.C, H = d.H, W = d.W, OW = d.OW;
  for (int cb = 0; cb < C / VEC; cb++) {
    Vec w[TAPS];
    for (int t = 0; t < TAPS; t++) w[t] = vec_load(packed + ((size_t)cb * TAPS + t) * VEC);
    const Vec b = bias ? vec_load(bias + (size_t)cb * VEC) : (Vec){0};
    const float *xc = x + (size_t)cb * VEC;
    float *oc = out_row + (size_t)cb * VEC;
    for (int q = 0; q < OW; q += P) {
      float *o = oc + (size_t)q * C;
      const int L = q == 0, R = q + P == OW;
      if (L && R)
        strip(o, xc, w, b, C, H, W, r, q, sum, relu, P, S, 1, 1);
      else if (L)
        strip(o, xc, w, b, C, H, W, r, q, sum, relu, P, S, 1, 0);
      else if (R)
        strip(o, xc, w, b, C, H, W, r, q, sum, relu, P, S, 0, 1);
      else
        strip(o, xc, w, b, C, H, W, r, q, sum, relu, P, S, 0, 0);
    }
  }
}

typedef void (*RowFn)(float *out_row, const float *x, const float *packed, const float *bias,
                      Conv2dDims d, int r, int sum, int relu);
#define ROW(P, S)                                                                        \
  static void row_##P##_##S(float *out_row, const float *x, const float *packed,         \
                            const float *bias, Conv2dDims d, int r, int sum, int relu) { \
    row_strips(out_row, x, packed, bias, d, r, sum, relu, P, S);                         \
  }
/* clang-format off */
ROW(8, 1) ROW(7, 1) ROW(4, 1) ROW(2, 1) ROW(1, 1)
ROW(8, 2) ROW(7, 2) ROW(4, 2) ROW(2, 2) ROW(1, 2)
#undef ROW
/* by strip width, the widest that divides the row, then stride */
static const struct {
  int P;
  RowFn fn[2];
} rows[] = {{8, {row_8_1, row_8_2}},
            {7, {row_7_1, row_7_2}},
            {4, {row_4_1, row_4_2}},
            {2, {row_2_1, row_2_2}},
            {1, {row_1_1, row_1_2}}};
/* clang-format on */

static RowFn row_fn(Conv2dDims d) {
  int i = 0;
  while (d.OW % rows[i].P) i++; /* the last row's P is 1 */
  return rows[i].fn[d.SH - 1];
}

void conv2d_depthwise_forward(float *out, const float *inp, const float *packed, const float *bias,
                              Conv2dDims d, int sum, int relu) {
  const size_t x_image = (size_t)d.H * d.W * d.C, out_row = (size_t)d.OW * d.C;
  const RowFn fn = row_fn(d);
#pragma omp parallel for schedule(static)
  for (int task = 0; task < d.B * d.OH; task++)
    fn(out + task * out_row, inp + task / d.OH * x_image, packed, bias, d, task % d.OH, sum, relu);
}

void conv2d_depthwise_rows(float *rows_out, const float *inp, const float *packed,
                           const float *bias, Conv2dDims d, long first, long end, int relu) {
  const size_t x_image = (size_t)d.H * d.W * d.C, out_row = (size_t)d.OW * d.C;
  const RowFn fn = row_fn(d);
  for (long g = first; g < end; g++)
    fn(rows_out + (g - first) * out_row, inp + g / d.OH * x_image, packed, bias, d, (int)(g % d.OH),
       0, relu);
}

/* at stride 1 the forward over dout with each filter turned 180 degrees */
int conv2d_depthwise_input_grad_supported(Conv2dDims d) {
  return conv2d_depthwise_supported(d) && d.SH == 1;
}

void conv2d_depthwise_input_grad(float *dinp, float *packed, const float *dout, const float *weight,
                                 Conv2dDims d, int accumulate) {
  pack(packed, weight, d, 1);
  conv2d_depthwise_forward(dinp, dout, packed, NULL, d, accumulate, 0);
}
