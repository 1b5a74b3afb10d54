/* 3x3 convolutions with one pixel of zero padding, at stride 1 (the "same" convolutions of
 * ResNet, VGG and the small CNNs) or 2 on even maps (ResNet's downsampling ones),
 * channels-last, by direct kernels: forward; at stride 1 the input gradient, which is the same
 * convolution with the weights turned 180 degrees and the channel axes swapped; and the weight
 * gradient.
 * Why by hand: oneDNN 2.6's kernels (PyTorch's too) run these shapes at 60-80% of what this
 * machine's FMA units do (Zen 5 with full-width AVX-512). ResNet-20's 16-channel 3x3 layer on
 * 28x28 maps, batch 128: 1.45 ms in oneDNN, 1.1 ms here; 64 channels on 7x7: 1.25 ms against
 * 0.85 (bench/RESULTS.md, session 18).
 * How: each task is a strip of P output pixels along a row and K vectors of 16 output channels,
 * P*K sums in registers (P*K + K <= 31 of the 32 vector registers). For every input channel
 * and tap, the K weight vectors are loaded once and each pixel's input value is broadcast into
 * K multiply-adds. P, K, the input channel count (the pixel pitch, for the common 16 and 32)
 * and whether the strip touches the left or right edge are literals in each instantiation, so
 * the sums stay in registers, the addresses are constant offsets and the padding taps are
 * left out at compile time, with no test in the loops. The padding rows are skipped per row.
 * Every output is one sum in a fixed order: results do not depend on the thread count. */
#include <string.h>

#include "gate.h"
#include "layers.h"

#define TAPS 3 /* the kernel's side */
/* weights of this many bytes and more are read by strips of several images */
#define DIRECT_WEIGHTS_FAR (256 * 1024)

static int strip_plan(Conv2dDims d, int *P, int *K);

int conv2d_direct_strip(Conv2dDims d, int *P, int *K) {
  static const int wide_strips[] = {14, 8, 7, 4, 3}, strips[] = {16, 14, 8, 7, 4, 3};
  if (d.OC % 32 == 0)
    for (int i = 0; i < 5; i++)
      if (d.OW % wide_strips[i] == 0) {
        *P = wide_strips[i];
        *K = *P <= 4 && d.OC % 64 == 0 ? 4 : 2;
        return 1;
      }
  for (int i = 0; i < 6; i++)
    if (d.OW % strips[i] == 0) {
      *P = strips[i], *K = 1;
      return 1;
    }
  return 0;
}

int conv2d_direct_supported(Conv2dDims d) {
#if !defined(__AVX512F__)
  (void)d;
  return 0; /* 64-byte vectors in halves or quarters: the sums no longer fit in registers */
#else
  int P, K;
  /* stride 2 on even maps: the last output column's taps end on the last input column, so
   * only the first strip meets padding sideways, as at stride 1 (the right edge's test below) */
  const int stride_ok = (d.SH == 1 && d.SW == 1 && d.OH == d.H && d.OW == d.W) ||
                        (d.SH == 2 && d.SW == 2 && d.H % 2 == 0 && d.W % 2 == 0 &&
                         d.OH == d.H / 2 && d.OW == d.W / 2);
  return d.groups == 1 && d.KH == TAPS && d.KW == TAPS && stride_ok && d.DH <= 1 && d.DW <= 1 &&
         d.PT == 1 && d.PB == 1 && d.PL == 1 && d.PR == 1 && d.C >= VEC && d.OC % VEC == 0 &&
         conv2d_direct_strip(d, &P, &K);
#endif
}

size_t conv2d_direct_packed_floats(Conv2dDims d) { return (size_t)TAPS * TAPS * d.C * d.OC; }

/* packed[g][kh][kw][c][K*16] = weight[g*K*16 + j][c][kh][kw]; flip: the input gradient's
 * weights, weight being the forward's (C and OC of d swapped) turned 180 degrees */
static void pack(float *packed, const float *weight, Conv2dDims d, int flip) {
  int P = 0, K = 1;
  strip_plan(d, &P, &K); /* the group the strips read */
  const int group = K * VEC;
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < d.OC; oc++)
    for (int c = 0; c < d.C; c++)
      for (int kh = 0; kh < TAPS; kh++)
        for (int kw = 0; kw < TAPS; kw++) {
          const float v = flip ? weight[(((size_t)c * d.OC + oc) * TAPS + (TAPS - 1 - kh)) * TAPS +
                                        (TAPS - 1 - kw)]
                               : weight[(((size_t)oc * d.C + c) * TAPS + kh) * TAPS + kw];
          packed[((((size_t)(oc / group) * TAPS + kh) * TAPS + kw) * d.C + c) * group +
                 oc % group] = v;
        }
}

void conv2d_direct_pack(float *packed, const float *weight, Conv2dDims d) {
  pack(packed, weight, d, 0);
}

int conv2d_direct_transposed_supported(Conv2dDims d) {
  return d.SH == 1 && d.SW == 1 && conv2d_direct_supported(conv2d_direct_transposed(d));
}

Conv2dDims conv2d_direct_transposed(Conv2dDims d) {
  Conv2dDims t = d;
  t.C = d.OC, t.OC = d.C;
  return t;
}

void conv2d_direct_pack_transposed(float *packed, const float *weight, Conv2dDims d) {
  pack(packed, weight, conv2d_direct_transposed(d), 1);
}

/* One strip: out[q0 .. q0+P) of output row r of NB images (x_image and out_image floats apart),
 * output channels [0, K*16) of the group w and bias belong to, at stride S. x: the first
 * image (H, W, C); C is a literal (16, 32) or 0 for runtime `pitch`. */
ALWAYS_INLINE void strip(const int NB, const int P, const int K, const int C_lit, const int S,
                         const int left, const int right, float *out, const float *x,
                         const float *w, const float *bias, int pitch, int H, int W, int OC, int r,
                         int q0, int sum, int relu, size_t x_image, size_t out_image) {
  const int C = C_lit ? C_lit : pitch;
  Vec acc[4][16][4];
#pragma GCC unroll 4
  for (int n = 0; n < NB; n++)
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
      for (int k = 0; k < K; k++) acc[n][p][k] = bias ? vec_load(bias + k * VEC) : (Vec){0};
  for (int kh = 0; kh < TAPS; kh++) {
    const int ih = r * S - 1 + kh;
    if (ih < 0 || ih >= H) continue;
    const float *row = x + ((size_t)ih * W + q0 * S - 1) * C; /* left of the strip's first tap */
#pragma GCC unroll 3
    for (int kw = 0; kw < TAPS; kw++) {
      const float *wk = w + (size_t)(kh * TAPS + kw) * C * K * VEC;
      for (int c = 0; c < C; c++) {
        Vec wv[4];
#pragma GCC unroll 4
        for (int k = 0; k < K; k++) wv[k] = vec_load(wk + ((size_t)c * K + k) * VEC);
#pragma GCC unroll 4
        for (int n = 0; n < NB; n++)
#pragma GCC unroll 16
          for (int p = 0; p < P; p++) {
            if (left && p * S + kw < 1) continue; /* left of column 0 */
            /* right of column W-1: the last strip ends at output column OW-1 = (W+1)/S - 1 */
            if (right && (p - P) * S + kw - 1 >= 0) continue;
            const float xv = row[n * x_image + (size_t)(p * S + kw) * C + c];
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) acc[n][p][k] += xv * wv[k];
          }
      }
    }
  }
  const Vec zero = {0};
#pragma GCC unroll 4
  for (int n = 0; n < NB; n++)
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
      for (int k = 0; k < K; k++) {
        float *o = out + n * out_image + (size_t)(q0 + p) * OC + k * VEC;
        Vec v = acc[n][p][k];
        if (sum) v += vec_load(o);
        if (relu) v = vec_gate(v, v > zero);
        vec_store(o, v);
      }
}

typedef void (*StripFn)(float *out, const float *x, const float *w, const float *bias, int pitch,
                        int H, int W, int OC, int r, int q0, int sum, int relu, size_t x_image,
                        size_t out_image);

#define STRIP_FN(NB, P, K, C, S, L, R)                                                        \
  static void strip_##NB##_##P##_##K##_##C##_##S##L##R(                                       \
      float *out, const float *x, const float *w, const float *bias, int pitch, int H, int W, \
      int OC, int r, int q0, int sum, int relu, size_t x_image, size_t out_image) {           \
    strip(NB, P, K, C, S, L, R, out, x, w, bias, pitch, H, W, OC, r, q0, sum, relu, x_image,  \
          out_image);                                                                         \
  }
/* at stride 2 no strip meets the right edge: two of the four suffice */
#define STRIP_EDGES(NB, P, K, C) \
  STRIP_FN(NB, P, K, C, 1, 0, 0) \
  STRIP_FN(NB, P, K, C, 1, 1, 0) \
  STRIP_FN(NB, P, K, C, 1, 0, 1) \
  STRIP_FN(NB, P, K, C, 1, 1, 1) STRIP_FN(NB, P, K, C, 2, 0, 0) STRIP_FN(NB, P, K, C, 2, 1, 0)
#define STRIP_PITCHES(P, K) \
  STRIP_EDGES(1, P, K, 16) STRIP_EDGES(1, P, K, 32) STRIP_EDGES(1, P, K, 0)
STRIP_PITCHES(16, 1)
STRIP_PITCHES(14, 1)
STRIP_PITCHES(14, 2)
STRIP_PITCHES(8, 1)
STRIP_PITCHES(8, 2)
STRIP_PITCHES(7, 1)
STRIP_PITCHES(7, 2)
STRIP_PITCHES(4, 1)
STRIP_PITCHES(4, 2)
STRIP_PITCHES(4, 4)
STRIP_PITCHES(3, 1)
STRIP_PITCHES(3, 2)
STRIP_PITCHES(3, 4)
/* several images a strip, for small maps with many channels (strip_plan) */
STRIP_EDGES(3, 4, 2, 0)
STRIP_EDGES(3, 3, 2, 0)
STRIP_EDGES(2, 7, 2, 0)

#define EDGE_ROW(NB, P, K, C)                                                    \
  {                                                                              \
    {strip_##NB##_##P##_##K##_##C##_100, strip_##NB##_##P##_##K##_##C##_110,     \
     strip_##NB##_##P##_##K##_##C##_101, strip_##NB##_##P##_##K##_##C##_111},    \
    {                                                                            \
      strip_##NB##_##P##_##K##_##C##_200, strip_##NB##_##P##_##K##_##C##_210,    \
          strip_##NB##_##P##_##K##_##C##_200, strip_##NB##_##P##_##K##_##C##_210 \
    }                                                                            \
  }
#define PITCH_ROW(P, K)                                                             \
  {                                                                                 \
    1, P, K, { EDGE_ROW(1, P, K, 16), EDGE_ROW(1, P, K, 32), EDGE_ROW(1, P, K, 0) } \
  }
#define BATCHED_ROW(NB, P, K)                                                         \
  {                                                                                   \
    NB, P, K, { EDGE_ROW(NB, P, K, 0), EDGE_ROW(NB, P, K, 0), EDGE_ROW(NB, P, K, 0) } \
  }
static const struct {
  int NB, P, K;
  StripFn fn[3][2][4]; /* [pitch 16, 32, other][stride 1, 2][left + 2 * right] */
} strip_table[] = {
    PITCH_ROW(16, 1), PITCH_ROW(14, 1),     PITCH_ROW(14, 2),     PITCH_ROW(8, 1),
    PITCH_ROW(8, 2),  PITCH_ROW(7, 1),      PITCH_ROW(7, 2),      PITCH_ROW(4, 1),
    PITCH_ROW(4, 2),  PITCH_ROW(4, 4),      PITCH_ROW(3, 1),      PITCH_ROW(3, 2),
    PITCH_ROW(3, 4),  BATCHED_ROW(3, 4, 2), BATCHED_ROW(3, 3, 2), BATCHED_ROW(2, 7, 2)};

static const StripFn *strip_fns(int NB, int P, int K, Conv2dDims d) {
  const int pitch = d.C == 16 ? 0 : d.C == 32 ? 1 : 2;
  for (size_t i = 0; i < sizeof strip_table / sizeof *strip_table; i++)
    if (strip_table[i].NB == NB && strip_table[i].P == P && strip_table[i].K == K)
      return strip_table[i].fn[pitch][d.SW - 1];
  return NULL;
}

/* The strip's pixels *P and vectors *K (conv2d_direct_strip's, K changed for strips of several
 * images); returns the images a strip takes. A strip reads all of its output group's weights; on
 * small maps with many channels those dwarf the input it reads, so strips of several images share
 * each weight load (cnn's 128 -> 256 channels on 4x4 maps: 3.0 ms one image a strip, 2.0 three, in
 * a microbenchmark; 64 channels on 7x7 maps: 0.86 one, 1.03 two, so only large weights). */
static int strip_plan(Conv2dDims d, int *P, int *K) {
  conv2d_direct_strip(d, P, K);
  const size_t weights = sizeof(float) * TAPS * TAPS * d.C * d.OC;
  if (weights < DIRECT_WEIGHTS_FAR || d.OC % 32) return 1;
  if (*P <= 4) {
    *K = 2;
    return 3;
  }
  if (*P == 7) {
    *K = 2;
    return 2;
  }
  return 1;
}

void conv2d_direct_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu) {
  int P = 1, K = 1;
  const int NB = strip_plan(d, &P, &K);
  const StripFn *fn = strip_fns(NB, P, K, d), *fn_one = strip_fns(1, P, K, d);
  const int group = K * VEC, groups = d.OC / group, strips = d.OW / P;
  const size_t image = (size_t)d.H * d.W * d.C, out_image = (size_t)d.OH * d.OW * d.OC;
  const size_t taps = (size_t)TAPS * TAPS * d.C * group;
  const int tasks = (d.B + NB - 1) / NB;
#pragma omp parallel for collapse(2) schedule(static)
  for (int t = 0; t < tasks; t++)
    for (int r = 0; r < d.OH; r++) {
      const int b0 = t * NB, whole = b0 + NB <= d.B; /* else the last images one by one */
      for (int b = b0; b < (whole ? b0 + 1 : d.B); b++)
        for (int g = 0; g < groups; g++)
          for (int s = 0; s < strips; s++)
            (whole ? fn : fn_one)[(s == 0) + 2 * (s == strips - 1)](
                out + ((size_t)b * d.OH + r) * d.OW * d.OC + (size_t)g * group, inp + b * image,
                packed + g * taps, bias ? bias + g * group : NULL, d.C, d.H, d.W, d.OC, r, s * P,
                sum, relu, image, out_image);
    }
}

/* ---- the weight gradient ----------------------------------------------------
 * dW[oc][c][kh][kw] = sum over pixels of dout[oc] times the input under tap (kh, kw). Each task
 * holds CI input channels by K vectors of output channels of one tap in registers, in the
 * order [tap][c][oc] of the partial it adds to, and runs over a block of rows: per pixel, K
 * loads of dout and CI broadcasts of the input, CI*K multiply-adds. A block is as many rows as
 * keep its input and dout in L1 (WGRAD_BLOCK_FLOATS), read once per tap. Measured against
 * oneDNN's backward-weights primitive (batch 128, 2 threads): 16 channels on 64x64 maps
 * 6.8-7.4 ms against 10; 32 on 32x32 5.3-6.0 against 8.7; 64 on 16x16 5.0-5.4 against 8.6. */
#define WGRAD_BLOCK_FLOATS (12 * 1024)

ALWAYS_INLINE void wgrad_block(const int CI, const int K, float *part, const float *x,
                               const float *dy, Conv2dDims d, int h0, int h1) {
  const int W = d.W, C = d.C, OC = d.OC, S = d.SW;
  for (int kh = 0; kh < TAPS; kh++)
    for (int kw = 0; kw < TAPS; kw++) {
      /* the outputs whose input under this tap, at o * S - 1 + k, is inside the image */
      const int w_lo = kw == 0 ? 1 : 0, w_hi = (W - kw) / S + 1 < d.OW ? (W - kw) / S + 1 : d.OW;
      const int r_lo = kh == 0 && h0 < 1 ? 1 : h0,
                r_hi = (d.H - kh) / S + 1 < h1 ? (d.H - kh) / S + 1 : h1;
      for (int c0 = 0; c0 < C; c0 += CI)
        for (int o0 = 0; o0 < OC; o0 += K * VEC) {
          float *pp = part + ((size_t)(kh * TAPS + kw) * C + c0) * OC + o0;
          Vec acc[16][4];
#pragma GCC unroll 16
          for (int i = 0; i < CI; i++)
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) acc[i][k] = vec_load(pp + (size_t)i * OC + k * VEC);
          for (int h = r_lo; h < r_hi; h++) {
            const float *xp = x + ((size_t)(h * S + kh - 1) * W + w_lo * S + kw - 1) * C + c0;
            const float *dp = dy + ((size_t)h * d.OW + w_lo) * OC + o0;
            for (int w = w_lo; w < w_hi; w++, xp += (size_t)S * C, dp += OC) {
              Vec g[4];
#pragma GCC unroll 4
              for (int k = 0; k < K; k++) g[k] = vec_load(dp + k * VEC);
#pragma GCC unroll 16
              for (int i = 0; i < CI; i++)
#pragma GCC unroll 4
                for (int k = 0; k < K; k++) acc[i][k] += xp[i] * g[k];
            }
          }
#pragma GCC unroll 16
          for (int i = 0; i < CI; i++)
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) vec_store(pp + (size_t)i * OC + k * VEC, acc[i][k]);
        }
    }
}

static void wgrad_block_16x1(float *part, const float *x, const float *dy, Conv2dDims d, int h0,
                             int h1) {
  wgrad_block(16, 1, part, x, dy, d, h0, h1);
}

static void wgrad_block_8x2(float *part, const float *x, const float *dy, Conv2dDims d, int h0,
                            int h1) {
  wgrad_block(8, 2, part, x, dy, d, h0, h1);
}

int conv2d_direct_wgrad_supported(Conv2dDims d) {
  return conv2d_direct_supported(d) && d.C % VEC == 0;
}

size_t conv2d_direct_wgrad_floats(Conv2dDims d, int slices) {
  return (size_t)slices * TAPS * TAPS * d.C * d.OC;
}

void conv2d_direct_weight_grad(float *dweight, float *partials, const float *dout, const float *inp,
                               Conv2dDims d, int slices) {
  const size_t n = (size_t)TAPS * TAPS * d.C * d.OC;
  const long rows = (long)d.B * d.OH; /* of the output */
  const size_t per_row = (size_t)d.W * d.C * d.SH + (size_t)d.OW * d.OC;
  int block = (int)(WGRAD_BLOCK_FLOATS / per_row);
  block = block < 1 ? 1 : block;
  void (*run)(float *, const float *, const float *, Conv2dDims, int, int) =
      d.OC % 32 == 0 ? wgrad_block_8x2 : wgrad_block_16x1;
  /* slice s: rows [rows*s/S, rows*(s+1)/S) of the batch's images stacked, its own partial */
#pragma omp parallel for schedule(static)
  for (int s = 0; s < slices; s++) {
    float *part = partials + (size_t)s * n;
    memset(part, 0, sizeof(float) * n);
    const long end = rows * (s + 1) / slices;
    for (long r = rows * s / slices; r < end;) {
      const int b = (int)(r / d.OH), h0 = (int)(r % d.OH);
      long h1 = h0 + block;
      if (h1 > d.OH) h1 = d.OH;
      if ((long)b * d.OH + h1 > end) h1 = end - (long)b * d.OH;
      run(part, inp + (size_t)b * d.H * d.W * d.C, dout + (size_t)b * d.OH * d.OW * d.OC, d, h0,
          (int)h1);
      r += h1 - h0;
    }
  }
  /* dweight [OC][C][3][3] += the partials [tap][c][oc], added in slice order */
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < d.OC; oc++)
    for (int c = 0; c < d.C; c++)
      for (int t = 0; t < TAPS * TAPS; t++) {
        float sum = 0.0f;
        for (int s = 0; s < slices; s++)
          sum += partials[(size_t)s * n + ((size_t)t * d.C + c) * d.OC + oc];
        dweight[((size_t)oc * d.C + c) * TAPS * TAPS + t] += sum;
      }
}
