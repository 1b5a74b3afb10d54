/* 3x3 "same" convolutions into 12 output channels (DenseNet's growth-rate layers),
 * channels-last, forward only, by a direct kernel that runs along the input channels.
 *
 * Why: conv2d_direct's strips hold whole vectors of 16 output channels; 12 would leave a quarter
 * of every multiply-add empty. oneDNN 2.6 runs DenseNet's 48 -> 12 layer at 230-300 GFLOP/s on
 * this machine, this kernel at 330-380 (64x64 maps, batch 32, 2 threads: 5.6 ms against 4.1;
 * 8x8 to 128x128 alike; a microbenchmark, session 21). They were a third of DenseNet's forward.
 *
 * How: a strip is two output pixels of one row, 24 outputs, each output's sum held as a vector
 * of 16 partial sums, one per input channel of a block of 16. For every tap and block, each
 * pixel's 16 input channels are one load, and each output channel's 16 weights another, kept in
 * a register for both pixels (as a memory operand of each multiply-add, GCC loaded it twice and
 * the loads bound: 240 GFLOP/s). Every lane of every multiply-add is used. At the strip's end
 * the 24 vectors are summed across their lanes by a tree of shuffles (about 70 operations
 * against 648 multiply-adds for 48 channels), which leaves the outputs in memory order: the two
 * pixels' channels are contiguous, 16 + 8 floats stored whole. As conv2d_direct, every output is
 * one sum in a fixed order: the result does not depend on the thread count. */
#include <stddef.h>
#include <string.h>

#include "gate.h"
#include "layers.h"

#if defined(__AVX512F__) && !defined(MR_NO_DIRECT)
#include <immintrin.h>
#define NARROW_KERNELS 1
#else
#define NARROW_KERNELS 0
#endif

/* the outputs a strip holds: P * OC */
#define STRIP_OUTPUTS 24

typedef void (*NarrowFn)(float *out, const float *x, const float *w, const float *bias_rep, int C,
                         int H, int W, int r, int q0, int sum, int relu);
/* an output channel count with strips: their pixels P (P * OC = STRIP_OUTPUTS), and the strip
 * functions by edge, [left + 2 * right] */
typedef struct {
  int OC, P;
  NarrowFn fn[4];
} NarrowRow;
static const NarrowRow *narrow_row(int OC); /* NULL: no strips for OC */

int conv2d_narrow_supported(Conv2dDims d) {
  const NarrowRow *row = narrow_row(d.OC);
  return row && d.groups == 1 && d.KH == 3 && d.KW == 3 && d.SH == 1 && d.SW == 1 && d.DH <= 1 &&
         d.DW <= 1 && d.PT == 1 && d.PB == 1 && d.PL == 1 && d.PR == 1 && d.OH == d.H &&
         d.OW == d.W && d.C % VEC == 0 && d.OW % row->P == 0;
}

size_t conv2d_narrow_packed_floats(Conv2dDims d) { return (size_t)9 * d.C * d.OC; }

/* packed[tap][c / 16][oc][c % 16] = weight[oc][c][tap]: one output channel's 16 weights of a
 * block, contiguous */
void conv2d_narrow_pack(float *packed, const float *weight, Conv2dDims d) {
  for (int t = 0; t < 9; t++)
    for (int c = 0; c < d.C; c++)
      for (int oc = 0; oc < d.OC; oc++)
        packed[(((size_t)t * (d.C / VEC) + c / VEC) * d.OC + oc) * VEC + c % VEC] =
            weight[((size_t)oc * d.C + c) * 9 + t];
}

#if NARROW_KERNELS
/* a + b's lanes: [a's quarters 0+2, 1+3 | b's 0+2, 1+3] and the like at each level below */
static inline __m512 fold_halves(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
}
static inline __m512 fold_quarters(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}
static inline __m512 fold_pairs(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
}
static inline __m512 fold_lanes(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

/* lane i: the sum of v[i]'s lanes. The four levels leave v[4i + j]'s sum in lane 4j + i, so the
 * vectors go in transposed. */
static inline __m512 sum16(const Vec *v) {
  __m512 a[16], h[8], q[4], p[2];
  for (int k = 0; k < 16; k++) a[k] = (__m512)v[(k % 4) * 4 + k / 4];
  for (int k = 0; k < 8; k++) h[k] = fold_halves(a[2 * k], a[2 * k + 1]);
  for (int k = 0; k < 4; k++) q[k] = fold_quarters(h[2 * k], h[2 * k + 1]);
  for (int k = 0; k < 2; k++) p[k] = fold_pairs(q[2 * k], q[2 * k + 1]);
  return fold_lanes(p[0], p[1]);
}

/* lanes 0 .. 7: the sums of v[0 .. 8)'s lanes. After three levels lane 4j + {0, 1} holds v[j]'s
 * two partial sums and 4j + {2, 3} v[j + 4]'s. */
static inline __m256 sum8(const Vec *v) {
  __m512 h[4], q[2];
  for (int k = 0; k < 4; k++) h[k] = fold_halves((__m512)v[2 * k], (__m512)v[2 * k + 1]);
  for (int k = 0; k < 2; k++) q[k] = fold_quarters(h[2 * k], h[2 * k + 1]);
  const __m512 p = fold_pairs(q[0], q[1]);
  const __m512 s = _mm512_add_ps(p, _mm512_permute_ps(p, 0xB1)); /* swap neighbours */
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castps512_ps256(_mm512_permutexvar_ps(order, s));
}

/* One strip: out[q0 .. q0+P) of output row r of one image (x: its first pixel), all OC
 * channels; bias_rep: the bias repeated over the strip's 24 outputs (zeros without one). */
ALWAYS_INLINE void narrow_strip(const int OC, const int P, const int left, const int right,
                                float *out, const float *x, const float *w, const float *bias_rep,
                                int C, int H, int W, int r, int q0, int sum, int relu) {
  Vec acc[STRIP_OUTPUTS];
#pragma GCC unroll 24
  for (int i = 0; i < STRIP_OUTPUTS; i++) acc[i] = (Vec){0};
  for (int kh = 0; kh < 3; kh++) {
    const int ih = r - 1 + kh;
    if (ih < 0 || ih >= H) continue;
    const float *row = x + ((ptrdiff_t)ih * W + q0 - 1) * C; /* left of the first pixel */
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; kw++) {
      const float *wk = w + (size_t)(kh * 3 + kw) * C * OC;
      for (int c = 0; c < C; c += VEC) {
        Vec xv[STRIP_OUTPUTS];
        int inside[STRIP_OUTPUTS]; /* the pixel's tap is in the image, not its padding */
#pragma GCC unroll 24
        for (int p = 0; p < P; p++) {
          inside[p] = !(left && p + kw < 1) && !(right && p + kw - 1 >= P);
          if (inside[p]) xv[p] = vec_load(row + (size_t)(p + kw) * C + c);
        }
#pragma GCC unroll 24
        for (int o = 0; o < OC; o++) {
          Vec wv = vec_load(wk + ((size_t)c * OC / VEC + o) * VEC);
          __asm__("" : "+v"(wv)); /* one load for the P multiply-adds, not one each */
#pragma GCC unroll 24
          for (int p = 0; p < P; p++)
            if (inside[p]) acc[p * OC + o] += xv[p] * wv;
        }
      }
    }
  }
  float *o = out + (size_t)q0 * OC;
  __m512 lo = _mm512_add_ps(sum16(acc), _mm512_loadu_ps(bias_rep));
  __m256 hi = _mm256_add_ps(sum8(acc + 16), _mm256_loadu_ps(bias_rep + 16));
  if (sum) {
    lo = _mm512_add_ps(lo, _mm512_loadu_ps(o));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(o + 16));
  }
  if (relu) {
    lo = _mm512_max_ps(lo, _mm512_setzero_ps());
    hi = _mm256_max_ps(hi, _mm256_setzero_ps());
  }
  _mm512_storeu_ps(o, lo);
  _mm256_storeu_ps(o + 16, hi);
}

#define NARROW_FN(OC, P, L, R)                                                                \
  static void narrow_##OC##_##L##R(float *out, const float *x, const float *w,                \
                                   const float *bias_rep, int C, int H, int W, int r, int q0, \
                                   int sum, int relu) {                                       \
    narrow_strip(OC, P, L, R, out, x, w, bias_rep, C, H, W, r, q0, sum, relu);                \
  }
#define NARROW_EDGES(OC, P) \
  NARROW_FN(OC, P, 0, 0) NARROW_FN(OC, P, 1, 0) NARROW_FN(OC, P, 0, 1) NARROW_FN(OC, P, 1, 1)
NARROW_EDGES(12, 2)
#define NARROW_ROW(OC, P)                                                             \
  {                                                                                   \
    OC, P, { narrow_##OC##_00, narrow_##OC##_10, narrow_##OC##_01, narrow_##OC##_11 } \
  }
/* 24 channels a pixel (P = 1) ran no faster than oneDNN: each weight vector serves one
 * multiply-add, and the loads bind */
static const NarrowRow narrow_table[] = {NARROW_ROW(12, 2)};

static const NarrowRow *narrow_row(int OC) {
  for (size_t i = 0; i < sizeof narrow_table / sizeof *narrow_table; i++)
    if (narrow_table[i].OC == OC) return &narrow_table[i];
  return NULL;
}

void conv2d_narrow_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu) {
  const NarrowRow *row = narrow_row(d.OC);
  const int P = row->P, strips = d.OW / P;
  const NarrowFn *fn = row->fn;
  float bias_rep[STRIP_OUTPUTS];
  for (int i = 0; i < STRIP_OUTPUTS; i++) bias_rep[i] = bias ? bias[i % d.OC] : 0.0f;
  const size_t image = (size_t)d.H * d.W * d.C, out_row = (size_t)d.OW * d.OC;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < d.B; b++)
    for (int r = 0; r < d.OH; r++)
      for (int s = 0; s < strips; s++)
        fn[(s == 0) + 2 * (s == strips - 1)](out + ((size_t)b * d.OH + r) * out_row,
                                             inp + b * image, packed, bias_rep, d.C, d.H, d.W, r,
                                             s * P, sum, relu);
}
#else
static const NarrowRow *narrow_row(int OC) {
  (void)OC;
  return NULL;
}

void conv2d_narrow_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu) {
  (void)out, (void)inp, (void)packed, (void)bias, (void)d, (void)sum, (void)relu;
}
#endif
