/* Inference's depthwise-separable block: a 3x3 depthwise convolution (conv2d_depthwise) and
 * the pointwise (1x1) convolution that reads it, each with its batchnorm folded in and its
 * ReLU, in one pass; and that pointwise convolution alone, by the same matrix kernel.
 * Channels-last, AVX-512.
 *
 * Why: inside MobileNet each depthwise pass ran 2-4x slower than alone (bench/RESULTS.md,
 * session 22), with oneDNN's kernel and conv2d_depthwise's alike: it reads the map the previous
 * pointwise layer wrote and writes one the next reads back, 16-32 MB a batch at 128x128. Here a
 * task makes a tile of the depthwise output (whole rows of the batch's stacked images, at most
 * TILE_FLOATS floats: it stays in L2) and multiplies it by the pointwise weights at once, so the
 * map between the two layers never goes to memory. MobileNet 64x64's forward, batch 32: 256 ->
 * 256 channels on 8x8 maps 0.87 -> 0.77 ms the pair, the whole forward 3-5% faster; 128x128
 * 1-2% (the first pairs' 32 MB outputs still go to memory). The product alone runs level with
 * oneDNN's sgemm on these shapes (370-430 GFLOP/s, a microbenchmark).
 *
 * How (the product): the pointwise weights are packed in panels of 32 output channels,
 * [OC / 32][C][32]. For each panel, strips of up to 14 pixels of the tile keep 14 x 2 sums in
 * registers; per input channel the panel's two weight vectors are loaded once and each pixel's
 * value is broadcast into both. Each output is one sum in channel order from the bias: the
 * result does not depend on the thread count. Built with -ffp-contract=fast (Makefile). */
#include <omp.h>
#include <stddef.h>

#include "gate.h"
#include "layers.h"

#if defined(__AVX512F__) && !defined(MR_NO_DIRECT)
#define SEPARABLE_KERNELS 1
#else
#define SEPARABLE_KERNELS 0
#endif

#define PANEL 32      /* output channels a panel holds: two vectors */
#define STRIP_ROWS 14 /* pixels a strip holds: 28 sums and 2 weight vectors in 32 registers */
#define TILE_FLOATS (32 * 1024) /* a task's depthwise tile (128 KB) */
/* Every tile reads all the pointwise weights: past 256 KB (MobileNet's 256 -> 512 and wider)
 * they come from L3 for each tile, and the pair ran slower fused than apart (1024 -> 1024 on
 * 4x4 maps: 6.0 ms against 3.2) */
#define SEPARABLE_MAX_WEIGHTS (64 * 1024)

int conv2d_pointwise_panels_supported(Conv2dDims d) {
  return SEPARABLE_KERNELS && d.KH == 1 && d.KW == 1 && d.SH == 1 && d.SW == 1 && !d.PT && !d.PB &&
         !d.PL && !d.PR && d.groups == 1 && d.OC % PANEL == 0 && d.OH == d.H && d.OW == d.W;
}

int conv2d_separable_supported(Conv2dDims dw, Conv2dDims pw) {
  return conv2d_depthwise_supported(dw) && conv2d_pointwise_panels_supported(pw) && pw.B == dw.B &&
         pw.C == dw.OC && pw.H == dw.OH && pw.W == dw.OW &&
         (size_t)pw.C * pw.OC <= SEPARABLE_MAX_WEIGHTS;
}

size_t conv2d_pointwise_panels_floats(Conv2dDims d) { return (size_t)d.C * d.OC; }

/* packed[oc / 32][c][oc % 32] = weight[oc][c] */
void conv2d_pointwise_panels_pack(float *packed, const float *weight, Conv2dDims d) {
  for (int oc = 0; oc < d.OC; oc++)
    for (int c = 0; c < d.C; c++)
      packed[((size_t)(oc / PANEL) * d.C + c) * PANEL + oc % PANEL] = weight[(size_t)oc * d.C + c];
}

/* P pixels (rows of x, pitch C) times one panel into out (pitch OC): out = bias + x w, then
 * max(0, .) if relu. P is a literal at every call. */
static inline __attribute__((always_inline)) void strip(float *out, const float *x, const float *w,
                                                        const float *bias, int C, int OC, int relu,
                                                        int P) {
  Vec a0[STRIP_ROWS], a1[STRIP_ROWS];
  const Vec b0 = vec_load(bias), b1 = vec_load(bias + VEC);
  for (int p = 0; p < P; p++) a0[p] = b0, a1[p] = b1;
  for (int c = 0; c < C; c++) {
    const Vec w0 = vec_load(w + (size_t)c * PANEL), w1 = vec_load(w + (size_t)c * PANEL + VEC);
    for (int p = 0; p < P; p++) {
      const float v = x[(size_t)p * C + c];
      a0[p] += v * w0, a1[p] += v * w1;
    }
  }
  for (int p = 0; p < P; p++) {
    if (relu) a0[p] = vec_gate(a0[p], a0[p] > (Vec){0}), a1[p] = vec_gate(a1[p], a1[p] > (Vec){0});
    vec_store(out + (size_t)p * OC, a0[p]), vec_store(out + (size_t)p * OC + VEC, a1[p]);
  }
}

typedef void (*StripFn)(float *out, const float *x, const float *w, const float *bias, int C,
                        int OC, int relu);
#define STRIP(P)                                                                              \
  static void strip_##P(float *out, const float *x, const float *w, const float *bias, int C, \
                        int OC, int relu) {                                                   \
    strip(out, x, w, bias, C, OC, relu, P);                                                   \
  }
/* clang-format off */
STRIP(1) STRIP(2) STRIP(3) STRIP(4) STRIP(5) STRIP(6) STRIP(7)
STRIP(8) STRIP(9) STRIP(10) STRIP(11) STRIP(12) STRIP(13) STRIP(14)
#undef STRIP
static const StripFn strips[STRIP_ROWS + 1] = {NULL,       strip_1,  strip_2,  strip_3,
                                               strip_4,    strip_5,  strip_6,  strip_7,
                                               strip_8,    strip_9,  strip_10, strip_11,
                                               strip_12,   strip_13, strip_14};
/* clang-format on */

/* out (M rows, pitch OC) = x (M rows, pitch C) times every panel, on the calling thread */
static void product(float *out, const float *x, const float *packed, const float *bias, long M,
                    int C, int OC, int relu) {
  for (int panel = 0; panel < OC / PANEL; panel++) {
    const float *w = packed + (size_t)panel * C * PANEL;
    for (long m = 0; m < M; m += STRIP_ROWS) {
      const int P = M - m < STRIP_ROWS ? (int)(M - m) : STRIP_ROWS;
      strips[P](out + m * OC + panel * PANEL, x + m * C, w, bias + panel * PANEL, C, OC, relu);
    }
  }
}

/* tiles of whole rows of `row_floats` floats each (at least one row, at most TILE_FLOATS
 * floats when rows allow), and at least four a thread when there are rows enough */
static long tile_rows(long rows, size_t row_floats, int threads) {
  long per = (long)(TILE_FLOATS / row_floats);
  if (per < 1) per = 1;
  const long fair = (rows + 4L * threads - 1) / (4L * threads);
  return per < fair ? per : fair < 1 ? 1 : fair;
}

void conv2d_pointwise_panels_forward(float *out, const float *inp, const float *packed,
                                     const float *bias, Conv2dDims d, int relu) {
  const long M = (long)d.B * d.H * d.W;
  const long per = tile_rows(M, (size_t)d.C, omp_get_max_threads());
  const long tiles = (M + per - 1) / per;
#pragma omp parallel for schedule(static)
  for (long t = 0; t < tiles; t++) {
    const long m0 = t * per, m1 = m0 + per < M ? m0 + per : M;
    product(out + m0 * d.OC, inp + m0 * d.C, packed, bias, m1 - m0, d.C, d.OC, relu);
  }
}

size_t conv2d_separable_scratch_floats(Conv2dDims dw, int threads) {
  const size_t row = (size_t)dw.OW * dw.OC;
  const long per = tile_rows((long)dw.B * dw.OH, row, threads);
  return (size_t)threads * per * row;
}

void conv2d_separable_forward(float *out, float *scratch, const float *inp, const float *dw_packed,
                              const float *dw_bias, int dw_relu, Conv2dDims dw,
                              const float *pw_packed, const float *pw_bias, int pw_relu,
                              Conv2dDims pw, int threads) {
  const long rows = (long)dw.B * dw.OH;
  const size_t row = (size_t)dw.OW * dw.OC;
  const long per = tile_rows(rows, row, threads);
  const long tiles = (rows + per - 1) / per;
  const int team = threads < omp_get_max_threads() ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(team)
  for (long t = 0; t < tiles; t++) {
    float *tile = scratch + (size_t)omp_get_thread_num() * per * row;
    const long g0 = t * per, g1 = g0 + per < rows ? g0 + per : rows;
    conv2d_depthwise_rows(tile, inp, dw_packed, dw_bias, dw, g0, g1, dw_relu);
    product(out + g0 * dw.OW * pw.OC, tile, pw_packed, pw_bias, (g1 - g0) * dw.OW, pw.C, pw.OC,
            pw_relu);
  }
}
