/* batchnorm2d over (B,C,H,W), PyTorch semantics: biased variance to
 * normalise, unbiased variance into running_var, momentum 0.1 by default.
 * Parallel over channels, each channel's sums in a fixed order (double).
 * An optional fused ReLU saves a pass over memory: out = max(0, bn(x)), and
 * backward masks dout by bn(x) > 0, recomputed from x with forward's own float
 * operations (so the same bits): backward reads x anyway, and reading out for
 * the mask cost a stream (a 128x16x64x64 channels-last backward with the ReLU:
 * 6.6 -> 4.0-4.5 ms, against 3.0-3.4 ms without it). */
#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "gate.h"
#include "layers.h"

/* The sums below are `omp simd` reductions: the compiler may keep partial
 * sums in vector lanes (one running float sum cannot be vectorised without
 * reassociation), in an order fixed at compile time, so results stay
 * deterministic and independent of the thread count. */

/* s += sum(x - shift), sq += sum((x - shift)^2) over n values */
static void sums_shifted(const float *x, size_t n, float shift, double *s, double *sq) {
  float ps = 0.0f, psq = 0.0f;
#pragma omp simd reduction(+ : ps, psq)
  for (size_t i = 0; i < n; i++) {
    const float v = x[i] - shift;
    ps += v;
    psq += v * v;
  }
  *s += ps, *sq += psq;
}

/* dy where the fused ReLU passed forward's output x * scale + shift, else 0. Forward computes
 * the same expression from the same scale and shift (bn_affine), and -std=c11 contracts no
 * multiply-add, so the test gives forward's bits. A product rather than a select: GCC made the
 * select a masked load (a 128x16x64x64 channels-last backward measured 4.2-5.3 ms with the
 * select, 4.0 with the product, on a noisy machine); a NaN or infinite dy under the mask gives
 * NaN, not 0, but the loss is not finite then anyway. */
static inline float relu_gate(float dy, float x, float scale, float shift) {
  return dy * (float)(x * scale + shift > 0.0f);
}

/* y = x * scale + shift is bn(x): scale = gamma / std, shift = beta - mean * scale */
static void bn_affine(float gamma, float beta, float mean, float invstd, float *scale,
                      float *shift) {
  *scale = gamma * invstd;
  *shift = beta - mean * *scale;
}

/* With g = dy masked by the fused ReLU (when relu): s += sum(g), sx += sum(g * (x - mean)) */
static void sums_backward(const float *dy, const float *x, size_t n, float mean, int relu,
                          float scale, float shift, double *s, double *sx) {
  float ps = 0.0f, psx = 0.0f;
  if (relu) {
#pragma omp simd reduction(+ : ps, psx)
    for (size_t i = 0; i < n; i++) {
      const float g = relu_gate(dy[i], x[i], scale, shift);
      ps += g;
      psx += g * (x[i] - mean);
    }
  } else {
#pragma omp simd reduction(+ : ps, psx)
    for (size_t i = 0; i < n; i++) {
      ps += dy[i];
      psx += dy[i] * (x[i] - mean);
    }
  }
  *s += ps, *sx += psx;
}

/* eval mode: the statistics are constants, so d/dx is a plain scale of g */
static void dx_eval(float *dx, int accumulate, const float *dy, const float *x, size_t n, float k,
                    int relu, float scale, float shift) {
  for (size_t i = 0; i < n; i++) {
    const float v = k * (relu ? relu_gate(dy[i], x[i], scale, shift) : dy[i]);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

static void dx_train(float *dx, int accumulate, const float *dy, const float *x, size_t n, float k,
                     float a, float mean, float b, int relu, float scale, float shift) {
  for (size_t i = 0; i < n; i++) {
    const float g = relu ? relu_gate(dy[i], x[i], scale, shift) : dy[i];
    const float v = k * (g - a - (x[i] - mean) * b);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

/* ---- statistics, alone or over a batch shared by several processes ------
 * Alone, the sums are shifted by the batch's first value. Shared (BatchShare, train mode
 * only), the process holding the batch's row 0 offers its first values as everyone's shift,
 * so each process's shifted sums add up to the whole batch's, the same shift as alone. */

/* shift[c]: the first value of channel c in the shared batch */
static void shared_shift(const BatchShare *share, float *shift, int C) {
  double v[C];
  for (int c = 0; c < C; c++) v[c] = share->first_row == 0 ? shift[c] : 0.0;
  share->sum(v, C, share->ctx);
  for (int c = 0; c < C; c++) shift[c] = (float)v[c];
}

/* Adds every process's sums a[0..C), b[0..C) and value count *n. */
static void shared_sums(const BatchShare *share, double *a, double *b, int C, double *n) {
  double v[2 * C + 1];
  memcpy(v, a, sizeof(double) * C), memcpy(v + C, b, sizeof(double) * C), v[2 * C] = *n;
  share->sum(v, 2 * C + 1, share->ctx);
  memcpy(a, v, sizeof(double) * C), memcpy(b, v + C, sizeof(double) * C), *n = v[2 * C];
}

/* Train: each channel's batch mean and 1/std from its sums of (x - shift) and (x - shift)^2
 * over n values (made the whole batch's when shared), and in MODE_TRAIN the running
 * statistics' update. Eval: from the running statistics. */
static void batch_moments(const BatchNormDims *d, double n, double *s, double *sq,
                          const float *shift, float *save_mean, float *save_invstd,
                          float *running_mean, float *running_var, Mode mode) {
  if (mode == MODE_EVAL) {
    for (int c = 0; c < d->C; c++) {
      save_mean[c] = running_mean[c];
      save_invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + d->eps));
    }
    return;
  }
  if (d->share) shared_sums(d->share, s, sq, d->C, &n);
  for (int c = 0; c < d->C; c++) {
    const double mean_shifted = s[c] / n;
    const double mean = shift[c] + mean_shifted;
    double var = sq[c] / n - mean_shifted * mean_shifted;
    if (var < 0.0) var = 0.0;
    const double unbiased = n > 1 ? var * n / (n - 1) : var;
    if (mode == MODE_TRAIN) {
      running_mean[c] = (float)((1.0 - d->momentum) * running_mean[c] + d->momentum * mean);
      running_var[c] = (float)((1.0 - d->momentum) * running_var[c] + d->momentum * unbiased);
    }
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)(1.0 / sqrt(var + d->eps));
  }
}

/* Backward: from this process's sum_dy and sum_dy * (x - mean), dgamma and dbeta get this
 * process's share (the caller adds the processes' parameter gradients), and a = mean(dy),
 * b = mean(dy * xhat) * invstd and k = gamma * invstd, over the whole batch. */
static void backward_terms(const BatchNormDims *d, double n, double *sum_dy, double *sum_dy_xc,
                           const float *gamma, const float *save_invstd, float *dgamma,
                           float *dbeta, float *k, float *a, float *b) {
  for (int c = 0; c < d->C; c++) {
    if (dgamma) dgamma[c] += (float)(sum_dy_xc[c] * save_invstd[c]);
    if (dbeta) dbeta[c] += (float)sum_dy[c];
  }
  if (d->share) shared_sums(d->share, sum_dy, sum_dy_xc, d->C, &n);
  for (int c = 0; c < d->C; c++) {
    const double sum_dy_xhat = sum_dy_xc[c] * save_invstd[c];
    k[c] = gamma[c] * save_invstd[c];
    a[c] = (float)(sum_dy[c] / n);
    b[c] = (float)(sum_dy_xhat / n) * save_invstd[c];
  }
}

void batchnorm2d_forward(float *out, float *save_mean, float *save_invstd, const float *inp,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                         Mode mode, int relu) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
  const int C = d.C;
  double s[C], sq[C];
  float shift[C];
  for (int c = 0; c < C; c++) s[c] = sq[c] = 0.0, shift[c] = inp[(size_t)c * hw];
  if (mode != MODE_EVAL) {
    /* one pass: float partial sums per plane, shifted against cancellation, accumulated in
     * double */
    if (d.share) shared_shift(d.share, shift, C);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
      for (int b = 0; b < d.B; b++)
        sums_shifted(inp + ((size_t)b * C + c) * hw, hw, shift[c], &s[c], &sq[c]);
    }
  }
  batch_moments(&d, (double)n, s, sq, shift, save_mean, save_invstd, running_mean, running_var,
                mode);
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    float scale, bias;
    bn_affine(gamma[c], beta[c], save_mean[c], save_invstd[c], &scale, &bias);
    for (int b = 0; b < d.B; b++) {
      const float *x = inp + ((size_t)b * C + c) * hw;
      float *y = out + ((size_t)b * C + c) * hw;
      if (relu) {
        for (size_t i = 0; i < hw; i++) {
          const float v = x[i] * scale + bias;
          y[i] = v > 0.0f ? v : 0.0f;
        }
      } else {
        for (size_t i = 0; i < hw; i++) y[i] = x[i] * scale + bias;
      }
    }
  }
  if (mode == MODE_TRAIN && num_batches_tracked) (*num_batches_tracked)++;
}

void batchnorm2d_backward(float *dinp, int accumulate, float *dgamma, float *dbeta,
                          const float *dout, const float *inp, const float *gamma,
                          const float *beta, const float *save_mean, const float *save_invstd,
                          BatchNormDims d, Mode mode, int relu) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
  const int C = d.C, need_sums = dgamma || dbeta || mode != MODE_EVAL;
  double sum_dy[C], sum_dy_xc[C];
  float k[C], a[C], b_term[C], scale[C], shift[C];
  for (int c = 0; c < C; c++)
    bn_affine(gamma[c], beta[c], save_mean[c], save_invstd[c], &scale[c], &shift[c]);
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    sum_dy[c] = sum_dy_xc[c] = 0.0;
    for (int b = 0; need_sums && b < d.B; b++) {
      const size_t off = ((size_t)b * C + c) * hw;
      sums_backward(dout + off, inp + off, hw, save_mean[c], relu, scale[c], shift[c], &sum_dy[c],
                    &sum_dy_xc[c]);
    }
  }
  backward_terms(&d, (double)n, sum_dy, sum_dy_xc, gamma, save_invstd, dgamma, dbeta, k, a, b_term);
  if (!dinp) return;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    for (int b = 0; b < d.B; b++) {
      const size_t off = ((size_t)b * C + c) * hw;
      if (mode == MODE_EVAL)
        dx_eval(dinp + off, accumulate, dout + off, inp + off, hw, k[c], relu, scale[c], shift[c]);
      else
        dx_train(dinp + off, accumulate, dout + off, inp + off, hw, k[c], a[c], save_mean[c],
                 b_term[c], relu, scale[c], shift[c]);
    }
}

/* ---- channels-last (B,H,W,C) ---------------------------------------------
 * Rows of C contiguous values, so every loop vectorises across channels.
 * The rows split into a fixed number of chunks; each sums blocks of rows in
 * float and adds the block sums into double partials, and the partials are
 * added in chunk order: results do not depend on the thread count. The row
 * loops are inlined for the common channel counts, so the compiler keeps a
 * row's accumulators in registers instead of a runtime-length array. */
#define BN_CHUNKS 16
#define BN_BLOCK 64 /* rows summed in float before a double add */
/* calls f(C, args) with C a literal for 16, 32, 64 (also a period P, below) */
#define BY_CHANNELS(f, C, ...) \
  switch (C) {                 \
    case 16:                   \
      f(16, __VA_ARGS__);      \
      break;                   \
    case 32:                   \
      f(32, __VA_ARGS__);      \
      break;                   \
    case 64:                   \
      f(64, __VA_ARGS__);      \
      break;                   \
    default:                   \
      f(C, __VA_ARGS__);       \
  }

/* chunk k's rows, whole units of `unit` rows but for the last chunk's tail */
static void chunk_rows(size_t rows, size_t unit, int k, size_t *lo, size_t *hi) {
  const size_t units = rows / unit;
  *lo = units * (size_t)k / BN_CHUNKS * unit;
  *hi = k == BN_CHUNKS - 1 ? rows : units * (size_t)(k + 1) / BN_CHUNKS * unit;
}

/* Adds chunk k's partials (2C doubles each) into the first chunk's, in order. */
static void chunks_total(double *part, int C) {
  for (int k = 1; k < BN_CHUNKS; k++)
    for (int c = 0; c < 2 * C; c++) part[c] += part[(size_t)2 * k * C + c];
}

/* s[c] = sum(x - shift), sq[c] = sum((x - shift)^2) over rows */
ALWAYS_INLINE void rows_sums_shifted(const int C, const float *x, size_t rows, const float *shift,
                                     double *s, double *sq) {
  float bs[C], bsq[C];
  for (int c = 0; c < C; c++) s[c] = sq[c] = 0.0;
  for (size_t r0 = 0; r0 < rows; r0 += BN_BLOCK) {
    const size_t r1 = r0 + BN_BLOCK < rows ? r0 + BN_BLOCK : rows;
    for (int c = 0; c < C; c++) bs[c] = bsq[c] = 0.0f;
    for (size_t r = r0; r < r1; r++) {
      const float *row = x + r * C;
#pragma omp simd
      for (int c = 0; c < C; c++) {
        const float v = row[c] - shift[c];
        bs[c] += v;
        bsq[c] += v * v;
      }
    }
    for (int c = 0; c < C; c++) s[c] += bs[c], sq[c] += bsq[c];
  }
}

/* with g = dy masked by the fused ReLU (when scale, shift: bn(x) > 0): s[c] = sum(g),
 * sx[c] = sum(g * (x - mean)) */
ALWAYS_INLINE void rows_sums_backward(const int C, const float *dy, const float *x, size_t rows,
                                      const float *mean, const float *scale, const float *shift,
                                      double *s, double *sx) {
  float bs[C], bsx[C];
  for (int c = 0; c < C; c++) s[c] = sx[c] = 0.0;
  for (size_t r0 = 0; r0 < rows; r0 += BN_BLOCK) {
    const size_t r1 = r0 + BN_BLOCK < rows ? r0 + BN_BLOCK : rows;
    for (int c = 0; c < C; c++) bs[c] = bsx[c] = 0.0f;
    for (size_t r = r0; r < r1; r++) {
      const float *g_row = dy + r * C, *x_row = x + r * C;
      /* the test of scale out of the loops, so each vectorises on its own */
      if (scale) {
#pragma omp simd
        for (int c = 0; c < C; c++) {
          const float g = relu_gate(g_row[c], x_row[c], scale[c], shift[c]);
          bs[c] += g;
          bsx[c] += g * (x_row[c] - mean[c]);
        }
      } else {
#pragma omp simd
        for (int c = 0; c < C; c++) {
          bs[c] += g_row[c];
          bsx[c] += g_row[c] * (x_row[c] - mean[c]);
        }
      }
    }
    for (int c = 0; c < C; c++) s[c] += bs[c], sx[c] += bsx[c];
  }
}

/* y = x * scale + shift, then max(0, y) if relu, over C channels */
ALWAYS_INLINE void normalise(const int C, float *y, const float *x, const float *scale,
                             const float *shift, int relu) {
#pragma omp simd
  for (int c = 0; c < C; c++) {
    const float v = x[c] * scale[c] + shift[c];
    y[c] = !relu || v > 0.0f ? v : 0.0f;
  }
}

ALWAYS_INLINE void rows_normalise(const int C, float *out, const float *inp, size_t lo, size_t hi,
                                  const float *scale, const float *shift, int relu) {
  for (size_t r = lo; r < hi; r++) normalise(C, out + r * C, inp + r * C, scale, shift, relu);
}

#define CONCAT_BLOCK_ROWS 64

/* rows_normalise from rows of C into rows of out_pitch floats (one input of a concatenation).
 * A DenseNet's inputs are 12 channels wide: in masked vectors (GCC's loop did them one at a time),
 * each input prefetched two blocks ahead: the hardware's prefetch did not keep up with eight
 * inputs read 48 bytes a row. DenseNet 128x128's batchnorms over concatenations, batch 32: 134 ms
 * one at a time, 93-122 in vectors, 63-84 prefetched, against 92-132 for the concatenations and
 * batchnorms they replace (alternated runs of a drifting machine). Whole-vector stores running
 * into the next input's channels, instead of masked ones, measured no faster. */
static void rows_concat_normalise(int C, int out_pitch, float *out, const float *inp, size_t lo,
                                  size_t hi, const float *scale, const float *shift, int relu) {
#if defined(__AVX512F__)
  const __m512 zero = _mm512_setzero_ps();
  for (int c = 0; c < C; c += VEC) {
    const __mmask16 m = C - c >= VEC ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c)) - 1);
    const __m512 s = _mm512_maskz_loadu_ps(m, scale + c), t = _mm512_maskz_loadu_ps(m, shift + c);
    for (size_t r = lo; r < hi; r++) {
      /* x * scale + shift unfused, as rows_normalise */
      _mm_prefetch((const char *)(inp + (r + 2 * CONCAT_BLOCK_ROWS) * C + c), _MM_HINT_T0);
      __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, inp + r * C + c), s), t);
      if (relu) v = _mm512_max_ps(v, zero); /* NaN gives 0, as rows_normalise's test */
      _mm512_mask_storeu_ps(out + r * out_pitch + c, m, v);
    }
  }
#else
  for (size_t r = lo; r < hi; r++)
    normalise(C, out + r * out_pitch, inp + r * C, scale, shift, relu);
#endif
}

/* rows_dx with its three choices as compile-time constants, so the vectorised loop holds no
 * test (not timed on its own: it came with the mask change above) */
ALWAYS_INLINE void rows_dx_kind(const int C, const int relu, const int train, const int accumulate,
                                float *dinp, const float *dout, const float *inp, size_t lo,
                                size_t hi, const float *mean, const float *k, const float *a,
                                const float *b, const float *scale, const float *shift) {
  for (size_t r = lo; r < hi; r++) {
    const float *dy = dout + r * C, *x = inp + r * C;
    float *dx = dinp + r * C;
#pragma omp simd
    for (int c = 0; c < C; c++) {
      const float g = relu ? relu_gate(dy[c], x[c], scale[c], shift[c]) : dy[c];
      const float v = train ? k[c] * (g - a[c] - (x[c] - mean[c]) * b[c]) : k[c] * g;
      dx[c] = accumulate ? dx[c] + v : v;
    }
  }
}

/* train: dx = k (g - a - (x - mean) b); eval (a == NULL): dx = k g; g as rows_sums_backward */
ALWAYS_INLINE void rows_dx(const int C, float *dinp, int accumulate, const float *dout,
                           const float *inp, size_t lo, size_t hi, const float *mean,
                           const float *k, const float *a, const float *b, const float *scale,
                           const float *shift) {
#define BN_DX(relu, train)                                                                     \
  (accumulate                                                                                  \
       ? rows_dx_kind(C, relu, train, 1, dinp, dout, inp, lo, hi, mean, k, a, b, scale, shift) \
       : rows_dx_kind(C, relu, train, 0, dinp, dout, inp, lo, hi, mean, k, a, b, scale, shift))
  if (scale)
    a ? BN_DX(1, 1) : BN_DX(1, 0);
  else
    a ? BN_DX(0, 1) : BN_DX(0, 0);
#undef BN_DX
}

/* ---- the fused ReLU's backward in whole vectors -----------------------------
 * The mask by vectors (gate.h says why). A row of C values is a whole number of vectors only
 * when C is a multiple of 16, so these loops run over periods of P = lcm(C, 16) values (P / C
 * rows) with each channel's parameters spread along the period; rows past the last whole
 * period go through rows_sums_backward and rows_dx_kind. When P == C (C a multiple of 16),
 * lane j of accumulator j / 16 is channel j, and the sums add in rows_sums_backward's order.
 * A 128x16x64x64 backward with the ReLU: 3.6-3.7 -> 2.0-2.1 ms (the same as without it),
 * 128x36x64x64: 17.5-17.8 -> 8.5-8.8 ms (6.2-6.3 without it). */
/* relu_gate in vectors: dy where x * scale + shift > 0 (forward's bits), else +0 */
static inline Vec gate_vec(Vec dy, Vec x, Vec scale, Vec shift) {
  const Vec zero = {0};
  return vec_gate(dy, x * scale + shift > zero);
}

/* lcm(C, VEC): values in a whole number of rows and of vectors; 0 past GATE_MAX_PERIOD, where
 * the loops' per-period arrays (on a thread's stack) would grow large, and the scalar loops
 * serve (C = 65 to 1008 and not a multiple of 16 or its halves and quarters, none of the
 * models here) */
#define GATE_MAX_PERIOD 1024
static size_t gate_period(int C) {
  int a = C, b = VEC;
  while (b) {
    const int t = a % b;
    a = b, b = t;
  }
  const size_t P = (size_t)C / (size_t)a * VEC;
  return P <= GATE_MAX_PERIOD ? P : 0;
}

/* the per-channel parameters spread along a period (out[j] = p[j % C]) */
typedef struct {
  float *mean, *scale, *shift, *k, *a, *b;
} GateParams;

static void spread(float *out, const float *per_channel, int C, size_t P) {
  for (size_t j = 0; j < P; j++) out[j] = per_channel[j % (size_t)C];
}

size_t batchnorm2d_nhwc_scratch_bytes(int C) {
  return sizeof(double) * 2 * BN_CHUNKS * (size_t)C + sizeof(float) * 5 * (size_t)C +
         sizeof(float) * 6 * gate_period(C);
}

/* the ReLU case of rows_sums_backward over `rows` rows from a period's start */
ALWAYS_INLINE void gated_sums(const size_t P, const int C, const float *dy, const float *x,
                              size_t rows, const GateParams *gp, const float *mean,
                              const float *scale, const float *shift, double *s, double *sx) {
  const size_t n_vec = P / VEC, rows_per = P / (size_t)C, periods = rows / rows_per;
  const size_t block = BN_BLOCK > rows_per ? BN_BLOCK / rows_per : 1;
  Vec bs[n_vec], bsx[n_vec], vmean[n_vec], vscale[n_vec], vshift[n_vec];
  float lanes_s[P], lanes_sx[P];
  for (size_t j = 0; j < n_vec; j++) {
    vmean[j] = vec_load(gp->mean + j * VEC), vscale[j] = vec_load(gp->scale + j * VEC);
    vshift[j] = vec_load(gp->shift + j * VEC);
  }
  for (int c = 0; c < C; c++) s[c] = sx[c] = 0.0;
  for (size_t p0 = 0; p0 < periods; p0 += block) {
    const size_t p1 = p0 + block < periods ? p0 + block : periods;
    for (size_t j = 0; j < n_vec; j++) bs[j] = bsx[j] = (Vec){0};
    for (size_t p = p0; p < p1; p++)
      for (size_t j = 0; j < n_vec; j++) {
        const Vec xv = vec_load(x + p * P + j * VEC);
        const Vec g = gate_vec(vec_load(dy + p * P + j * VEC), xv, vscale[j], vshift[j]);
        bs[j] += g;
        bsx[j] += g * (xv - vmean[j]);
      }
    memcpy(lanes_s, bs, sizeof lanes_s), memcpy(lanes_sx, bsx, sizeof lanes_sx);
    for (size_t j = 0, c = 0; j < P; j++, c = c + 1 == (size_t)C ? 0 : c + 1)
      s[c] += lanes_s[j], sx[c] += lanes_sx[j];
  }
  const size_t done = periods * rows_per;
  if (done == rows) return;
  double ts[C], tsx[C];
  rows_sums_backward(C, dy + done * C, x + done * C, rows - done, mean, scale, shift, ts, tsx);
  for (int c = 0; c < C; c++) s[c] += ts[c], sx[c] += tsx[c];
}

/* the ReLU case of rows_dx_kind over rows [lo, hi), lo a period's start */
ALWAYS_INLINE void gated_dx_kind(const size_t P, const int C, const int train, const int accumulate,
                                 float *dinp, const float *dout, const float *inp, size_t lo,
                                 size_t hi, const GateParams *gp, const float *mean, const float *k,
                                 const float *a, const float *b, const float *scale,
                                 const float *shift) {
  const size_t n_vec = P / VEC, rows_per = P / (size_t)C, periods = (hi - lo) / rows_per;
  Vec vmean[n_vec], vscale[n_vec], vshift[n_vec], vk[n_vec], va[n_vec], vb[n_vec];
  for (size_t j = 0; j < n_vec; j++) {
    vmean[j] = vec_load(gp->mean + j * VEC), vscale[j] = vec_load(gp->scale + j * VEC);
    vshift[j] = vec_load(gp->shift + j * VEC), vk[j] = vec_load(gp->k + j * VEC);
    va[j] = train ? vec_load(gp->a + j * VEC) : vk[j];
    vb[j] = train ? vec_load(gp->b + j * VEC) : vk[j];
  }
  for (size_t p = 0; p < periods; p++)
    for (size_t j = 0; j < n_vec; j++) {
      const size_t at = lo * C + p * P + j * VEC;
      const Vec xv = vec_load(inp + at);
      const Vec g = gate_vec(vec_load(dout + at), xv, vscale[j], vshift[j]);
      const Vec v = train ? vk[j] * (g - va[j] - (xv - vmean[j]) * vb[j]) : vk[j] * g;
      vec_store(dinp + at, accumulate ? vec_load(dinp + at) + v : v);
    }
  const size_t done = lo + periods * rows_per;
  if (done < hi)
    rows_dx_kind(C, 1, train, accumulate, dinp, dout, inp, done, hi, mean, k, a, b, scale, shift);
}

ALWAYS_INLINE void gated_dx(const size_t P, const int C, float *dinp, int accumulate,
                            const float *dout, const float *inp, size_t lo, size_t hi,
                            const GateParams *gp, const float *mean, const float *k, const float *a,
                            const float *b, const float *scale, const float *shift) {
#define BN_GATED(train)                                                                          \
  (accumulate                                                                                    \
       ? gated_dx_kind(P, C, train, 1, dinp, dout, inp, lo, hi, gp, mean, k, a, b, scale, shift) \
       : gated_dx_kind(P, C, train, 0, dinp, dout, inp, lo, hi, gp, mean, k, a, b, scale, shift))
  a ? BN_GATED(1) : BN_GATED(0);
#undef BN_GATED
}

/* the row range of thread t of n over `rows`, whole units of `unit` rows but for the last
 * thread's tail */
static void thread_rows(size_t rows, size_t unit, size_t *lo, size_t *hi) {
  const size_t n = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
  const size_t units = rows / unit;
  *lo = units * t / n * unit;
  *hi = t == n - 1 ? rows : units * (t + 1) / n * unit;
}

/* ---- the fused ReLU with a 2x2 max-pool at stride 2 after it ----------------------------
 * Channels-last, C a whole number of vectors, H and W even. Forward writes only the pooled map;
 * backward takes the pooled map's gradient and finds each window's maximum again from x, with
 * forward's float operations and maxpool2d's rule (the first of equal maxima wins), so neither
 * the full-size map, nor its gradient, nor an argmax is ever stored: of the passes batchnorm,
 * ReLU and max-pool made over a 16x64x64 map (normalise, pool, pool's backward, two backward
 * passes), each full-size write and re-read is gone. */
int batchnorm2d_pool2_supported(int C, int H, int W) {
  return C > 0 && C % VEC == 0 && H > 0 && W > 0 && H % 2 == 0 && W % 2 == 0;
}

/* relu(x * scale + shift), and whether x * scale + shift > 0 */
static inline Vec relu_vec(Vec x, Vec scale, Vec shift, VecBits *pass) {
  const Vec zero = {0}, v = x * scale + shift;
  *pass = v > zero;
  return (Vec)((VecBits)v & *pass);
}

/* One window's four pixels (x00 and the pixels `right` and `down` values on) of one vector of
 * channels: their x, and the gradient each gets: dp at the window's first maximum when that
 * pixel's batchnorm output is above 0, else 0. Returns the maximum (the pooled output). */
ALWAYS_INLINE Vec window_gates(const float *x00, size_t right, size_t down, Vec dp, Vec scale,
                               Vec shift, Vec x[4], Vec g[4]) {
  const float *at[4] = {x00, x00 + right, x00 + down, x00 + down + right};
  VecBits pass[4], first[4];
  x[0] = vec_load(at[0]);
  Vec m = relu_vec(x[0], scale, shift, &pass[0]);
  first[0] = pass[0] | ~pass[0]; /* all ones */
  for (int k = 1; k < 4; k++) {
    x[k] = vec_load(at[k]);
    const Vec y = relu_vec(x[k], scale, shift, &pass[k]);
    const VecBits above = y > m;
    for (int j = 0; j < k; j++) first[j] &= ~above;
    first[k] = above;
    m = (Vec)(((VecBits)y & above) | ((VecBits)m & ~above));
  }
  for (int k = 0; k < 4; k++) g[k] = vec_gate(dp, first[k] & pass[k]);
  return m;
}

/* chunk k's window rows: s[c] = sum(g), sx[c] = sum(g * (x - mean)), in float over a window row
 * then in double */
ALWAYS_INLINE void pool2_sums(const int C, const float *dpool, const float *inp,
                              const BatchNormDims *d, int k, const float *mean, const float *scale,
                              const float *shift, double *s, double *sx) {
  const int OW = d->W / 2;
  const size_t down = (size_t)d->W * C;
  size_t lo, hi;
  chunk_rows((size_t)d->B * (d->H / 2), 1, k, &lo, &hi);
  Vec bs[C / VEC], bsx[C / VEC];
  float lanes_s[C], lanes_sx[C];
  for (int c = 0; c < C; c++) s[c] = sx[c] = 0.0;
  for (size_t r = lo; r < hi; r++) {
    for (int j = 0; j < C / VEC; j++) bs[j] = bsx[j] = (Vec){0};
    for (int ow = 0; ow < OW; ow++)
      for (int j = 0; j < C / VEC; j++) {
        Vec x[4], g[4];
        window_gates(inp + r * 2 * down + (size_t)2 * ow * C + j * VEC, C, down,
                     vec_load(dpool + (r * OW + ow) * C + j * VEC), vec_load(scale + j * VEC),
                     vec_load(shift + j * VEC), x, g);
        const Vec mv = vec_load(mean + j * VEC);
        bs[j] += (g[0] + g[1]) + (g[2] + g[3]);
        bsx[j] +=
            (g[0] * (x[0] - mv) + g[1] * (x[1] - mv)) + (g[2] * (x[2] - mv) + g[3] * (x[3] - mv));
      }
    memcpy(lanes_s, bs, sizeof lanes_s), memcpy(lanes_sx, bsx, sizeof lanes_sx);
    for (int c = 0; c < C; c++) s[c] += lanes_s[c], sx[c] += lanes_sx[c];
  }
}

/* Every window, in parallel: POOL2_FORWARD writes the pooled map (out); the others write dx
 * over every pixel (the windows tile the map), train k (g - a - (x - mean) b), eval k g. The
 * pass and accumulate are literal at each call, so the loop holds no test. */
enum { POOL2_FORWARD, POOL2_DX_EVAL, POOL2_DX_TRAIN };
ALWAYS_INLINE void pool2_windows(const int pass, const int accumulate, float *out,
                                 const float *dpool, const float *inp, const BatchNormDims *d,
                                 const float *mean, const float *kk, const float *a, const float *b,
                                 const float *scale, const float *shift) {
  const int C = d->C, OW = d->W / 2, train = pass == POOL2_DX_TRAIN;
  const size_t down = (size_t)d->W * C, window_rows = (size_t)d->B * (d->H / 2);
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < window_rows; r++)
    for (int ow = 0; ow < OW; ow++)
      for (int j = 0; j < C; j += VEC) {
        const size_t at = r * 2 * down + (size_t)2 * ow * C + j, pooled = (r * OW + ow) * C + j;
        Vec x[4], g[4];
        const Vec dp = pass == POOL2_FORWARD ? (Vec){0} : vec_load(dpool + pooled);
        const Vec m =
            window_gates(inp + at, C, down, dp, vec_load(scale + j), vec_load(shift + j), x, g);
        if (pass == POOL2_FORWARD) {
          vec_store(out + pooled, m);
          continue;
        }
        const Vec vk = vec_load(kk + j), va = train ? vec_load(a + j) : vk;
        const Vec vb = train ? vec_load(b + j) : vk, vmean = vec_load(mean + j);
        const size_t pix[4] = {at, at + C, at + down, at + down + C};
        for (int q = 0; q < 4; q++) {
          const Vec v = train ? vk * (g[q] - va - (x[q] - vmean) * vb) : vk * g[q];
          vec_store(out + pix[q], accumulate ? vec_load(out + pix[q]) + v : v);
        }
      }
}

static void pool2_dx(float *dinp, int accumulate, const float *dpool, const float *inp,
                     const BatchNormDims *d, const float *mean, const float *kk, const float *a,
                     const float *b, const float *scale, const float *shift) {
#define BN_POOL2_DX(pass, acc) \
  pool2_windows(pass, acc, dinp, dpool, inp, d, mean, kk, a, b, scale, shift)
  if (a)
    accumulate ? BN_POOL2_DX(POOL2_DX_TRAIN, 1) : BN_POOL2_DX(POOL2_DX_TRAIN, 0);
  else
    accumulate ? BN_POOL2_DX(POOL2_DX_EVAL, 1) : BN_POOL2_DX(POOL2_DX_EVAL, 0);
#undef BN_POOL2_DX
}

void batchnorm2d_forward_nhwc(float *out, float *save_mean, float *save_invstd, const float *inp,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                              Mode mode, int relu, void *scratch) {
  const int C = d.C;
  const size_t rows = (size_t)d.B * d.H * d.W;
  double *part = scratch;
  float *scale = (float *)(part + (size_t)2 * BN_CHUNKS * C), *shift = scale + C;
  if (mode != MODE_EVAL) {
    /* the first pixel's values, against cancellation (shift is free until the scale) */
    memcpy(shift, inp, sizeof(float) * C);
    if (d.share) shared_shift(d.share, shift, C);
#pragma omp parallel for schedule(static)
    for (int k = 0; k < BN_CHUNKS; k++) {
      double *s = part + (size_t)2 * k * C;
      size_t lo, hi;
      chunk_rows(rows, 1, k, &lo, &hi);
      BY_CHANNELS(rows_sums_shifted, C, inp + lo * C, hi - lo, shift, s, s + C);
    }
    chunks_total(part, C);
  }
  batch_moments(&d, (double)rows, part, part + C, shift, save_mean, save_invstd, running_mean,
                running_var, mode);
  for (int c = 0; c < C; c++)
    bn_affine(gamma[c], beta[c], save_mean[c], save_invstd[c], &scale[c], &shift[c]);
  if (d.pool2) {
    pool2_windows(POOL2_FORWARD, 0, out, NULL, inp, &d, NULL, NULL, NULL, NULL, scale, shift);
  } else {
#pragma omp parallel
    {
      size_t lo, hi;
      thread_rows(rows, 1, &lo, &hi);
      BY_CHANNELS(rows_normalise, C, out, inp, lo, hi, scale, shift, relu);
    }
  }
  if (mode == MODE_TRAIN && num_batches_tracked) (*num_batches_tracked)++;
}

/* Each row's channels side by side from the n inputs, normalised: the concatenation is read
 * where its inputs are (rows of C[i] floats each) and never stored. A DenseNet layer's
 * concatenation and its batchnorm were two passes over the growing input, each reading and
 * writing it all: 53 and 45 ms of DenseNet 128x128's 406 ms forward pass, batch 32 (session
 * 20). */
void batchnorm2d_eval_concat_nhwc(float *out, float *save_mean, float *save_invstd,
                                  const float *const *in, const int *C, int n, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var,
                                  BatchNormDims d, int relu, void *scratch) {
  const size_t rows = (size_t)d.B * d.H * d.W;
  float *scale = scratch, *shift = scale + d.C;
  batch_moments(&d, (double)rows, NULL, NULL, NULL, save_mean, save_invstd, running_mean,
                running_var, MODE_EVAL);
  for (int c = 0; c < d.C; c++)
    bn_affine(gamma[c], beta[c], save_mean[c], save_invstd[c], &scale[c], &shift[c]);
#pragma omp parallel
  {
    size_t lo, hi;
    thread_rows(rows, 1, &lo, &hi);
    /* in blocks of rows whose output stays in cache while every input adds its channels */
    for (size_t r0 = lo; r0 < hi; r0 += CONCAT_BLOCK_ROWS) {
      const size_t r1 = r0 + CONCAT_BLOCK_ROWS < hi ? r0 + CONCAT_BLOCK_ROWS : hi;
      for (int i = 0, at = 0; i < n; at += C[i], i++)
        rows_concat_normalise(C[i], d.C, out + at, in[i], r0, r1, scale + at, shift + at, relu);
    }
  }
}

void batchnorm2d_backward_nhwc(float *dinp, int accumulate, float *dgamma, float *dbeta,
                               const float *dout, const float *inp, const float *gamma,
                               const float *beta, const float *save_mean, const float *save_invstd,
                               BatchNormDims d, Mode mode, int relu, void *scratch) {
  const int C = d.C;
  const size_t rows = (size_t)d.B * d.H * d.W;
  double *part = scratch;
  float *k = (float *)(part + (size_t)2 * BN_CHUNKS * C), *a = k + C, *b = a + C;
  float *relu_scale = relu ? b + C : NULL, *relu_shift = b + 2 * C;
  /* with the ReLU, rows go in periods of P values (the vector loops above) */
  const size_t P = relu && !d.pool2 ? gate_period(C) : 0, unit = P ? P / (size_t)C : 1;
  const int gated = P != 0;
  float *spread_at = relu_shift + C;
  const GateParams gp = {spread_at,         spread_at + P,     spread_at + 2 * P,
                         spread_at + 3 * P, spread_at + 4 * P, spread_at + 5 * P};
  for (int c = 0; relu && c < C; c++)
    bn_affine(gamma[c], beta[c], save_mean[c], save_invstd[c], &relu_scale[c], &relu_shift[c]);
  if (gated) {
    spread(gp.mean, save_mean, C, P), spread(gp.scale, relu_scale, C, P);
    spread(gp.shift, relu_shift, C, P);
  }
  const int need_sums = dgamma || dbeta || mode != MODE_EVAL;
  if (need_sums) {
#pragma omp parallel for schedule(static)
    for (int chunk = 0; chunk < BN_CHUNKS; chunk++) {
      double *s = part + (size_t)2 * chunk * C;
      size_t lo, hi;
      chunk_rows(rows, unit, chunk, &lo, &hi);
      if (d.pool2) {
        BY_CHANNELS(pool2_sums, C, dout, inp, &d, chunk, save_mean, relu_scale, relu_shift, s,
                    s + C);
      } else if (gated) {
        BY_CHANNELS(gated_sums, P, C, dout + lo * C, inp + lo * C, hi - lo, &gp, save_mean,
                    relu_scale, relu_shift, s, s + C);
      } else {
        BY_CHANNELS(rows_sums_backward, C, dout + lo * C, inp + lo * C, hi - lo, save_mean,
                    relu_scale, relu_shift, s, s + C);
      }
    }
    chunks_total(part, C);
  } else {
    memset(part, 0, sizeof(double) * 2 * C);
  }
  backward_terms(&d, (double)rows, part, part + C, gamma, save_invstd, dgamma, dbeta, k, a, b);
  if (!dinp) return;
  const float *a_or_eval = mode == MODE_EVAL ? NULL : a;
  if (d.pool2) {
    pool2_dx(dinp, accumulate, dout, inp, &d, save_mean, k, a_or_eval, b, relu_scale, relu_shift);
    return;
  }
  if (gated) spread(gp.k, k, C, P), spread(gp.a, a, C, P), spread(gp.b, b, C, P);
#pragma omp parallel
  {
    size_t lo, hi;
    thread_rows(rows, unit, &lo, &hi);
    if (gated) {
      BY_CHANNELS(gated_dx, P, C, dinp, accumulate, dout, inp, lo, hi, &gp, save_mean, k, a_or_eval,
                  b, relu_scale, relu_shift);
    } else {
      BY_CHANNELS(rows_dx, C, dinp, accumulate, dout, inp, lo, hi, save_mean, k, a_or_eval, b,
                  relu_scale, relu_shift);
    }
  }
}
