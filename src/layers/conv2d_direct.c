/* 3x3 convolutions with one pixel of zero padding, at stride 1 (the "same" convolutions of
 * ResNet, VGG and the small CNNs) or 2 on even maps (ResNet's downsampling ones), and 7x7 ones
 * with three at stride 1 (CBR-LargeT's), channels-last, by direct kernels: forward; at stride 1
 * the input gradient, which is the same convolution with the weights turned 180 degrees and the
 * channel axes swapped; and the weight gradient.
 *
 * Why by hand: oneDNN 2.6's kernels (PyTorch's too) run these shapes at 60-80% of what this
 * machine's FMA units do (Zen 5 with full-width AVX-512). ResNet-20's 16-channel 3x3 layer on
 * 28x28 maps, batch 128: 1.45 ms in oneDNN, 1.1 ms here; 64 channels on 7x7: 1.25 ms against
 * 0.85 (bench/RESULTS.md, session 18). CBR-LargeT's 7x7 layers on 64x64 inputs: 231 ms of
 * forward per batch of 128 in oneDNN, 200 here (session 19).
 *
 * How: each task is a strip of P output pixels along a row and K vectors of 16 output channels,
 * P*K sums in registers (P*K + K <= 31 of the 32 vector registers). For every input channel
 * and tap, the K weight vectors are loaded once and each pixel's input value is broadcast into
 * K multiply-adds. The kernel side, P, K, the input channel count (the pixel pitch, for the
 * common 16 and 32) and whether the strip touches the left or right edge are literals in each
 * instantiation, so the sums stay in registers, the addresses are constant offsets and the
 * padding taps are left out at compile time, with no test in the loops. The padding rows are
 * skipped per row. Every output is one sum in a fixed order: results do not depend on the
 * thread count.
 *
 * ONE_VECTOR: with one vector of outputs (K = 1: 16 output channels) at stride 1, that order
 * would broadcast each input value into a single multiply-add, and the broadcasts, which are
 * loads, bound the kernel: 16 -> 16 channels ran at 345 GFLOP/s, 32 -> 32 at 430 (28x28, batch
 * 128). Those strips take a kernel row's taps together instead: per input channel the row's T
 * weight vectors are loaded once and each input value is broadcast once, into the (up to) T
 * sums it feeds: P + T - 1 broadcasts for P * T multiply-adds. */
#include <stddef.h>
#include <string.h>

#include "gate.h"
#include "layers.h"

/* Built only where the sums fit in registers: on 64-byte vectors (AVX-512). With 32-byte ones
 * each would take two, and the strips spill. `make DIRECT=0` leaves them out too (oneDNN runs
 * every convolution: the fuzz targets', which never convolve, and an A/B of the kernels). */
#if defined(__AVX512F__) && !defined(MR_NO_DIRECT)
#define DIRECT_KERNELS 1
#else
#define DIRECT_KERNELS 0
#endif

/* weights of this many bytes and more are read by strips of several images */
#define DIRECT_WEIGHTS_FAR (256 * 1024)

typedef void (*StripFn)(float *out, const float *x, const float *w, const float *bias, int pitch,
                        int H, int W, int OC, int r, int q0, int sum, int relu, size_t x_image,
                        size_t out_image);
static int strip_plan(Conv2dDims d, int *P, int *K);
static const StripFn *strip_fns(int NB, int P, int K, Conv2dDims d);

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
#if !DIRECT_KERNELS
  (void)d;
  return 0;
#else
  int P, K;
  /* stride 2 on even maps: the last output column's taps end on the last input column, so
   * only the first strip meets padding sideways, as at stride 1 (the right edge's test below) */
  const int T = d.KH, pad = T / 2;
  const int stride_ok = (d.SH == 1 && d.SW == 1 && d.OH == d.H && d.OW == d.W) ||
                        (T == 3 && d.SH == 2 && d.SW == 2 && d.H % 2 == 0 && d.W % 2 == 0 &&
                         d.OH == d.H / 2 && d.OW == d.W / 2);
  if (!(d.groups == 1 && (T == 3 || T == 7) && d.KW == T && stride_ok && d.DH <= 1 && d.DW <= 1 &&
        d.PT == pad && d.PB == pad && d.PL == pad && d.PR == pad && d.C >= VEC && d.OC % VEC == 0 &&
        conv2d_direct_strip(d, &P, &K)))
    return 0;
  const int NB = strip_plan(d, &P, &K); /* and the table has its strips */
  return strip_fns(NB, P, K, d) && strip_fns(1, P, K, d);
#endif
}

size_t conv2d_direct_packed_floats(Conv2dDims d) { return (size_t)d.KH * d.KW * d.C * d.OC; }

/* packed[g][kh][kw][c][K*16] = weight[g*K*16 + j][c][kh][kw]; flip: the input gradient's
 * weights, weight being the forward's (C and OC of d swapped) turned 180 degrees */
static void pack(float *packed, const float *weight, Conv2dDims d, int flip) {
  int P = 0, K = 1;
  strip_plan(d, &P, &K); /* the group the strips read */
  const int group = K * VEC, taps = d.KH * d.KW;
  /* A group's taps of one input channel at a time, through a tile on the stack: written
   * straight, each value went C * group floats from the last (32 KB on cbr-larget's 7x7 layer
   * of 256 -> 512 channels, all in one L1 set), and its 25 MB took 40 ms. */
#pragma omp parallel for collapse(2) schedule(static)
  for (int g = 0; g < d.OC / group; g++)
    for (int c = 0; c < d.C; c++) {
      float tile[7 * 7][4 * VEC]; /* [tap][j] */
      for (int j = 0; j < group; j++) {
        const int oc = g * group + j;
        /* the taps of (oc, c); turned: in reverse */
        const float *from = weight + (flip ? (size_t)c * d.OC + oc : (size_t)oc * d.C + c) * taps;
        for (int t = 0; t < taps; t++) tile[t][j] = from[flip ? taps - 1 - t : t];
      }
      float *to = packed + ((size_t)g * taps * d.C + c) * group;
      for (int t = 0; t < taps; t++)
        memcpy(to + (size_t)t * d.C * group, tile[t], sizeof(float) * group);
    }
}

void conv2d_direct_pack(float *packed, const float *weight, Conv2dDims d) {
  pack(packed, weight, d, 0);
}

/* the input gradient's dims: C and OC swapped */
static Conv2dDims transposed(Conv2dDims d) {
  Conv2dDims t = d;
  t.C = d.OC, t.OC = d.C;
  return t;
}

int conv2d_direct_transposed_supported(Conv2dDims d) {
  return d.SH == 1 && d.SW == 1 && conv2d_direct_supported(transposed(d));
}

/* the forward over dout with the weights turned 180 degrees and their channel axes swapped */
void conv2d_direct_input_grad(float *dinp, float *packed, const float *dout, const float *weight,
                              Conv2dDims d, int accumulate) {
  const Conv2dDims t = transposed(d);
  pack(packed, weight, t, 1);
  conv2d_direct_forward(dinp, dout, packed, NULL, t, accumulate, 0);
}

#if DIRECT_KERNELS
/* One strip: out[q0 .. q0+P) of output row r of NB images (x_image and out_image floats apart),
 * output channels [0, K*16) of the group w and bias belong to, TxT taps at stride S. x: the
 * first image (H, W, C); C is a literal (16, 32) or 0 for runtime `pitch`. */
ALWAYS_INLINE void strip(const int T, const int NB, const int P, const int K, const int C_lit,
                         const int S, const int left, const int right, float *out, const float *x,
                         const float *w, const float *bias, int pitch, int H, int W, int OC, int r,
                         int q0, int sum, int relu, size_t x_image, size_t out_image) {
  const int C = C_lit ? C_lit : pitch, PAD = T / 2;
  Vec acc[4][16][4];
#pragma GCC unroll 4
  for (int n = 0; n < NB; n++)
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
      for (int k = 0; k < K; k++) acc[n][p][k] = bias ? vec_load(bias + k * VEC) : (Vec){0};
  for (int kh = 0; kh < T; kh++) {
    const int ih = r * S - PAD + kh;
    if (ih < 0 || ih >= H) continue;
    /* the strip's first tap, left of its first pixel */
    const float *row = x + ((ptrdiff_t)ih * W + q0 * S - PAD) * C;
    if (K == 1 && S == 1 && NB == 1) { /* one vector of outputs: see ONE_VECTOR */
      for (int c = 0; c < C; c++) {
        Vec wv[7];
#pragma GCC unroll 7
        for (int kw = 0; kw < T; kw++) wv[kw] = vec_load(w + ((size_t)(kh * T + kw) * C + c) * VEC);
#pragma GCC unroll 22
        for (int q = 0; q < P + T - 1; q++) { /* input column q0 - PAD + q */
          if ((left && q < PAD) || (right && q - PAD >= P)) continue; /* padding */
          const float xv = row[(size_t)q * C + c];
#pragma GCC unroll 7
          for (int kw = 0; kw < T; kw++)
            if (q - kw >= 0 && q - kw < P) acc[0][q - kw][0] += xv * wv[kw];
        }
      }
      continue;
    }
#pragma GCC unroll 7
    for (int kw = 0; kw < T; kw++) {
      const float *wk = w + (size_t)(kh * T + kw) * C * K * VEC;
      for (int c = 0; c < C; c++) {
        Vec wv[4];
#pragma GCC unroll 4
        for (int k = 0; k < K; k++) wv[k] = vec_load(wk + ((size_t)c * K + k) * VEC);
#pragma GCC unroll 4
        for (int n = 0; n < NB; n++)
#pragma GCC unroll 16
          for (int p = 0; p < P; p++) {
            /* strips are at least PAD wide: only the first and the last meet padding */
            if (left && p * S + kw < PAD) continue; /* left of column 0 */
            /* right of column W-1: the last strip ends at output column OW-1 = (W-1+PAD)/S */
            if (right && (p - P) * S + kw - PAD >= 0) continue;
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

#define STRIP_FN(T, NB, P, K, C, S, L, R)                                                       \
  static void strip_##T##_##NB##_##P##_##K##_##C##_##S##L##R(                                   \
      float *out, const float *x, const float *w, const float *bias, int pitch, int H, int W,   \
      int OC, int r, int q0, int sum, int relu, size_t x_image, size_t out_image) {             \
    strip(T, NB, P, K, C, S, L, R, out, x, w, bias, pitch, H, W, OC, r, q0, sum, relu, x_image, \
          out_image);                                                                           \
  }
#define STRIP_EDGES_1(T, NB, P, K, C) \
  STRIP_FN(T, NB, P, K, C, 1, 0, 0)   \
  STRIP_FN(T, NB, P, K, C, 1, 1, 0)   \
  STRIP_FN(T, NB, P, K, C, 1, 0, 1) STRIP_FN(T, NB, P, K, C, 1, 1, 1)
/* at stride 2 no strip meets the right edge: two of the four suffice */
#define STRIP_EDGES(NB, P, K, C) \
  STRIP_EDGES_1(3, NB, P, K, C)  \
  STRIP_FN(3, NB, P, K, C, 2, 0, 0) STRIP_FN(3, NB, P, K, C, 2, 1, 0)
#define STRIP_PITCHES(P, K) \
  STRIP_EDGES(1, P, K, 16) STRIP_EDGES(1, P, K, 32) STRIP_EDGES(1, P, K, 0)
/* 7x7: stride 1, and the 16-channel pitch runs as any */
#define STRIP_PITCHES_7(P, K) STRIP_EDGES_1(7, 1, P, K, 32) STRIP_EDGES_1(7, 1, P, K, 0)
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
/* 7x7 for 32 output channels and more (CBR-LargeT's) */
STRIP_PITCHES_7(14, 2)
STRIP_PITCHES_7(8, 2)
STRIP_PITCHES_7(7, 2)
STRIP_PITCHES_7(4, 2)
STRIP_PITCHES_7(4, 4)
STRIP_PITCHES_7(3, 2)
STRIP_PITCHES_7(3, 4)
STRIP_EDGES_1(7, 3, 4, 2, 0)
STRIP_EDGES_1(7, 3, 3, 2, 0)
STRIP_EDGES_1(7, 2, 7, 2, 0)

#define FNS_1(T, NB, P, K, C)                                                              \
  {                                                                                        \
    strip_##T##_##NB##_##P##_##K##_##C##_100, strip_##T##_##NB##_##P##_##K##_##C##_110,    \
        strip_##T##_##NB##_##P##_##K##_##C##_101, strip_##T##_##NB##_##P##_##K##_##C##_111 \
  }
#define FNS_2(NB, P, K, C)                                                         \
  {                                                                                \
    strip_3_##NB##_##P##_##K##_##C##_200, strip_3_##NB##_##P##_##K##_##C##_210,    \
        strip_3_##NB##_##P##_##K##_##C##_200, strip_3_##NB##_##P##_##K##_##C##_210 \
  }
#define EDGE_ROW(NB, P, K, C) \
  { FNS_1(3, NB, P, K, C), FNS_2(NB, P, K, C) }
#define EDGE_ROW_7(NB, P, K, C)     \
  {                                 \
    FNS_1(7, NB, P, K, C), { NULL } \
  }
/* a table row: strips of side T, NB images, P pixels, K vectors; EDGES gives each pitch's */
#define TABLE_ROW(T, NB, P, K, EDGES, C16, C32)                                     \
  {                                                                                 \
    T, NB, P, K, { EDGES(NB, P, K, C16), EDGES(NB, P, K, C32), EDGES(NB, P, K, 0) } \
  }
#define PITCH_ROW(P, K) TABLE_ROW(3, 1, P, K, EDGE_ROW, 16, 32)
#define BATCHED_ROW(NB, P, K) TABLE_ROW(3, NB, P, K, EDGE_ROW, 0, 0)
#define PITCH_ROW_7(P, K) TABLE_ROW(7, 1, P, K, EDGE_ROW_7, 0, 32)
#define BATCHED_ROW_7(NB, P, K) TABLE_ROW(7, NB, P, K, EDGE_ROW_7, 0, 0)
static const struct {
  int T, NB, P, K;
  StripFn fn[3][2][4]; /* [pitch 16, 32, other][stride 1, 2][left + 2 * right] */
} strip_table[] = {
    PITCH_ROW(16, 1),       PITCH_ROW(14, 1),      PITCH_ROW(14, 2),     PITCH_ROW(8, 1),
    PITCH_ROW(8, 2),        PITCH_ROW(7, 1),       PITCH_ROW(7, 2),      PITCH_ROW(4, 1),
    PITCH_ROW(4, 2),        PITCH_ROW(4, 4),       PITCH_ROW(3, 1),      PITCH_ROW(3, 2),
    PITCH_ROW(3, 4),        BATCHED_ROW(3, 4, 2),  BATCHED_ROW(3, 3, 2), BATCHED_ROW(2, 7, 2),
    PITCH_ROW_7(14, 2),     PITCH_ROW_7(8, 2),     PITCH_ROW_7(7, 2),    PITCH_ROW_7(4, 2),
    PITCH_ROW_7(4, 4),      PITCH_ROW_7(3, 2),     PITCH_ROW_7(3, 4),    BATCHED_ROW_7(3, 4, 2),
    BATCHED_ROW_7(3, 3, 2), BATCHED_ROW_7(2, 7, 2)};

/* NULL where the table has no such strip */
static const StripFn *strip_fns(int NB, int P, int K, Conv2dDims d) {
  const int pitch = d.C == 16 ? 0 : d.C == 32 ? 1 : 2;
  for (size_t i = 0; i < sizeof strip_table / sizeof *strip_table; i++)
    if (strip_table[i].T == d.KH && strip_table[i].NB == NB && strip_table[i].P == P &&
        strip_table[i].K == K)
      return strip_table[i].fn[pitch][d.SW - 1];
  return NULL;
}
#else
static const StripFn *strip_fns(int NB, int P, int K, Conv2dDims d) {
  (void)NB, (void)P, (void)K, (void)d;
  return NULL;
}
#endif

/* The strip's pixels *P and vectors *K (conv2d_direct_strip's, K changed for strips of several
 * images); returns the images a strip takes. A strip reads all of its output group's weights; on
 * small maps with many channels those dwarf the input it reads, so strips of several images share
 * each weight load (cnn's 128 -> 256 channels on 4x4 maps: 3.0 ms one image a strip, 2.0 three, in
 * a microbenchmark; 64 channels on 7x7 maps: 0.86 one, 1.03 two, so only large weights). */
static int strip_plan(Conv2dDims d, int *P, int *K) {
  conv2d_direct_strip(d, P, K);
  const size_t weights = sizeof(float) * conv2d_direct_packed_floats(d);
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

/* Output row r of the task's images b0 .. b0+NB (or of the last ones, one by one), every group
 * and strip: into out_row (row r of image b0) and out_image floats on per image */
static void forward_row(float *out_row, size_t out_image, const float *inp, const float *packed,
                        const float *bias, Conv2dDims d, int NB, int P, int K, int b0, int r,
                        int sum, int relu) {
  const int whole = b0 + NB <= d.B;
  const StripFn *fn = strip_fns(whole ? NB : 1, P, K, d);
  const int group = K * VEC, groups = d.OC / group, strips = d.OW / P;
  const size_t image = (size_t)d.H * d.W * d.C, taps = (size_t)d.KH * d.KW * d.C * group;
  for (int b = b0; b < (whole ? b0 + 1 : d.B); b++)
    for (int g = 0; g < groups; g++)
      for (int s = 0; s < strips; s++)
        fn[(s == 0) + 2 * (s == strips - 1)](out_row + (b - b0) * out_image + (size_t)g * group,
                                             inp + b * image, packed + g * taps,
                                             bias ? bias + g * group : NULL, d.C, d.H, d.W, d.OC, r,
                                             s * P, sum, relu, image, out_image);
}

void conv2d_direct_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu) {
  int P = 1, K = 1;
  const int NB = strip_plan(d, &P, &K), tasks = (d.B + NB - 1) / NB;
  const size_t out_image = (size_t)d.OH * d.OW * d.OC;
#pragma omp parallel for collapse(2) schedule(static)
  for (int t = 0; t < tasks; t++)
    for (int r = 0; r < d.OH; r++)
      forward_row(out + ((size_t)t * NB * d.OH + r) * d.OW * d.OC, out_image, inp, packed, bias, d,
                  NB, P, K, t * NB, r, sum, relu);
}

/* The two rows a pooled row takes, of a task's images, fit in a tile on the stack: 24 KB on
 * cnn's layers (one image, or three of 256 channels on 4x4 maps), up to 64 KB. */
#define POOL_TILE_FLOATS (16 * 1024)

int conv2d_direct_pool2_supported(Conv2dDims d) {
  int P = 1, K = 1;
  if (!conv2d_direct_supported(d) || d.OH < 2 || d.OW < 2) return 0;
  const int NB = strip_plan(d, &P, &K);
  return (size_t)NB * 2 * d.OW * d.OC <= POOL_TILE_FLOATS;
}

/* Each task computes the two rows under one pooled row into the tile and pools them there, so
 * the full-size map is never written to memory nor read back: cnn 64x64's pools after its
 * direct layers took 1.1 of 12.8 ms of the forward pass, batch 128 (session 20). */
void conv2d_direct_forward_pool2(float *out, const float *inp, const float *packed,
                                 const float *bias, Conv2dDims d, int relu) {
  int P = 1, K = 1;
  const int NB = strip_plan(d, &P, &K), tasks = (d.B + NB - 1) / NB;
  const int PH = d.OH / 2, PW = d.OW / 2, vecs = d.OC / VEC;
  const size_t row = (size_t)d.OW * d.OC, tile_image = 2 * row;
#pragma omp parallel for collapse(2) schedule(static)
  for (int t = 0; t < tasks; t++)
    for (int pr = 0; pr < PH; pr++) {
      float tile[POOL_TILE_FLOATS] __attribute__((aligned(64)));
      const int b0 = t * NB, images = b0 + NB <= d.B ? NB : d.B - b0;
      for (int i = 0; i < 2; i++)
        forward_row(tile + i * row, tile_image, inp, packed, bias, d, NB, P, K, b0, 2 * pr + i, 0,
                    relu);
      for (int n = 0; n < images; n++)
        for (int q = 0; q < PW; q++)
          for (int v = 0; v < vecs; v++) {
            const float *top = tile + n * tile_image + (size_t)2 * q * d.OC + v * VEC;
            Vec best = vec_load(top); /* the first of equal maxima, as maxpool2d */
            best = vec_max(best, vec_load(top + d.OC));
            best = vec_max(best, vec_load(top + row));
            best = vec_max(best, vec_load(top + row + d.OC));
            vec_store(out + (((size_t)(b0 + n) * PH + pr) * PW + q) * d.OC + v * VEC, best);
          }
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
/* Small maps with large weights: a block is several whole images, up to this many floats of
 * input and dout (in L2), so each partial sum is loaded and stored once per block rather than
 * once per image. CBR-LargeT's 256 -> 512 channels on 4x4 maps (25 MB of partials a slice),
 * the layer's backward pass (both gradients) per batch of 128: 172 ms one image a block, 119 ms
 * eight. */
#define WGRAD_IMAGES_FLOATS (96 * 1024)

/* the outputs o in [lo, hi) whose input under tap k, at o * S - pad + k, is inside [0, size) */
static int first_inside(int k, int pad, int S) { return k >= pad ? 0 : (pad - k + S - 1) / S; }
static int end_inside(int size, int k, int pad, int S, int outputs) {
  const int last = size - 1 + pad - k; /* o * S <= last */
  if (last < 0) return 0;
  return last / S + 1 < outputs ? last / S + 1 : outputs;
}

/* rows [h0, h1) of `images` images from x and dy on */
ALWAYS_INLINE void wgrad_block(const int CI, const int K, float *part, const float *x,
                               const float *dy, Conv2dDims d, int images, int h0, int h1) {
  const size_t x_image = (size_t)d.H * d.W * d.C, dy_image = (size_t)d.OH * d.OW * d.OC;
  const int W = d.W, C = d.C, OC = d.OC, S = d.SW, T = d.KW, PAD = T / 2;
  for (int kh = 0; kh < T; kh++)
    for (int kw = 0; kw < T; kw++) {
      const int w_lo = first_inside(kw, PAD, S), w_hi = end_inside(W, kw, PAD, S, d.OW);
      const int r_lo = h0 > first_inside(kh, PAD, S) ? h0 : first_inside(kh, PAD, S);
      const int r_hi = end_inside(d.H, kh, PAD, S, h1);
      if (w_lo >= w_hi || r_lo >= r_hi) continue;
      for (int c0 = 0; c0 < C; c0 += CI)
        for (int o0 = 0; o0 < OC; o0 += K * VEC) {
          float *pp = part + ((size_t)(kh * T + kw) * C + c0) * OC + o0;
          Vec acc[16][4];
#pragma GCC unroll 16
          for (int i = 0; i < CI; i++)
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) acc[i][k] = vec_load(pp + (size_t)i * OC + k * VEC);
          for (int n = 0; n < images; n++)
            for (int h = r_lo; h < r_hi; h++) {
              const float *xp =
                  x + n * x_image + ((size_t)(h * S + kh - PAD) * W + w_lo * S + kw - PAD) * C + c0;
              const float *dp = dy + n * dy_image + ((size_t)h * d.OW + w_lo) * OC + o0;
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

static void wgrad_block_16x1(float *part, const float *x, const float *dy, Conv2dDims d, int images,
                             int h0, int h1) {
  wgrad_block(16, 1, part, x, dy, d, images, h0, h1);
}

static void wgrad_block_8x2(float *part, const float *x, const float *dy, Conv2dDims d, int images,
                            int h0, int h1) {
  wgrad_block(8, 2, part, x, dy, d, images, h0, h1);
}

int conv2d_direct_wgrad_supported(Conv2dDims d) {
  return conv2d_direct_supported(d) && d.C % VEC == 0;
}

size_t conv2d_direct_wgrad_floats(Conv2dDims d, int slices) {
  return (size_t)slices * conv2d_direct_packed_floats(d);
}

void conv2d_direct_weight_grad(float *dweight, float *partials, const float *dout, const float *inp,
                               Conv2dDims d, int slices) {
  const size_t n = conv2d_direct_packed_floats(d);
  const int taps = d.KH * d.KW;
  const long rows = (long)d.B * d.OH; /* of the output */
  const size_t per_row = (size_t)d.W * d.C * d.SH + (size_t)d.OW * d.OC;
  int block = (int)(WGRAD_BLOCK_FLOATS / per_row);
  block = block < 1 ? 1 : block;
  int images = 1; /* a block, when more than one */
  if (block >= d.OH && sizeof(float) * n >= DIRECT_WEIGHTS_FAR)
    images = (int)(WGRAD_IMAGES_FLOATS / (per_row * d.OH));
  void (*run)(float *, const float *, const float *, Conv2dDims, int, int, int) =
      d.OC % 32 == 0 ? wgrad_block_8x2 : wgrad_block_16x1;
  const size_t x_image = (size_t)d.H * d.W * d.C, dy_image = (size_t)d.OH * d.OW * d.OC;
  /* slice s: rows [rows*s/S, rows*(s+1)/S) of the batch's images stacked (images
   * [B*s/S, B*(s+1)/S) in blocks of whole images), its own partial */
#pragma omp parallel for schedule(static)
  for (int s = 0; s < slices; s++) {
    float *part = partials + (size_t)s * n;
    memset(part, 0, sizeof(float) * n);
    if (images > 1) {
      const int last = (int)((long)d.B * (s + 1) / slices);
      for (int b = (int)((long)d.B * s / slices); b < last; b += images)
        run(part, inp + b * x_image, dout + b * dy_image, d, b + images <= last ? images : last - b,
            0, d.OH);
      continue;
    }
    const long end = rows * (s + 1) / slices;
    for (long r = rows * s / slices; r < end;) {
      const int b = (int)(r / d.OH), h0 = (int)(r % d.OH);
      long h1 = h0 + block;
      if (h1 > d.OH) h1 = d.OH;
      if ((long)b * d.OH + h1 > end) h1 = end - (long)b * d.OH;
      run(part, inp + b * x_image, dout + b * dy_image, d, 1, h0, (int)h1);
      r += h1 - h0;
    }
  }
  /* dweight [OC][C][T][T] += the partials [tap][c][oc], added in slice order: 16 output
   * channels of one input channel at a time, through a tile, so the partials are read along
   * their rows and dweight written along its own. Read one float at a time across the taps, the
   * partials' 50 MB of CBR-LargeT's 256 -> 512 layer took 6% of its training step. */
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < d.C; c++)
    for (int o0 = 0; o0 < d.OC; o0 += VEC) {
      float tile[7 * 7][VEC];
      for (int t = 0; t < taps; t++) {
        const float *p = partials + ((size_t)t * d.C + c) * d.OC + o0;
        Vec sum = vec_load(p);
        for (int s = 1; s < slices; s++) sum += vec_load(p + (size_t)s * n);
        vec_store(tile[t], sum);
      }
      for (int j = 0; j < VEC; j++) {
        float *dw = dweight + ((size_t)(o0 + j) * d.C + c) * taps;
        for (int t = 0; t < taps; t++) dw[t] += tile[t][j];
      }
    }
}
