/* batchnorm2d over (B,C,H,W), PyTorch semantics: biased variance to
 * normalise, unbiased variance into running_var, momentum 0.1 by default.
 * Parallel over channels, each channel's sums in a fixed order (double).
 * An optional fused ReLU saves a pass over memory: out = max(0, bn(x)), and
 * backward masks dout by out > 0. */
#include <math.h>
#include <string.h>

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

/* With g = dy masked by y > 0 (when y): s += sum(g), sx += sum(g * (x - mean)) */
static void sums_backward(const float *dy, const float *y, const float *x, size_t n, float mean,
                          double *s, double *sx) {
  float ps = 0.0f, psx = 0.0f;
  if (y) {
#pragma omp simd reduction(+ : ps, psx)
    for (size_t i = 0; i < n; i++) {
      const float g = y[i] > 0.0f ? dy[i] : 0.0f;
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
static void dx_eval(float *dx, int accumulate, const float *dy, const float *y, size_t n, float k) {
  for (size_t i = 0; i < n; i++) {
    const float v = (!y || y[i] > 0.0f) ? k * dy[i] : 0.0f;
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

static void dx_train(float *dx, int accumulate, const float *dy, const float *y, const float *x,
                     size_t n, float k, float a, float mean, float b) {
  for (size_t i = 0; i < n; i++) {
    const float g = (!y || y[i] > 0.0f) ? dy[i] : 0.0f;
    const float v = k * (g - a - (x[i] - mean) * b);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

void batchnorm2d_forward(float *out, float *save_mean, float *save_invstd, const float *inp,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                         Mode mode, int relu) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < d.C; c++) {
    double mean, var;
    if (mode != MODE_EVAL) {
      /* one pass: float partial sums per plane, shifted by the first value
       * against cancellation, accumulated in double */
      const float shift0 = inp[(size_t)c * hw];
      double s = 0.0, sq = 0.0;
      for (int b = 0; b < d.B; b++)
        sums_shifted(inp + ((size_t)b * d.C + c) * hw, hw, shift0, &s, &sq);
      const double mean_shifted = s / (double)n;
      mean = shift0 + mean_shifted;
      var = sq / (double)n - mean_shifted * mean_shifted;
      if (var < 0.0) var = 0.0;
      const double ss = var * (double)n;
      const double unbiased = n > 1 ? ss / (double)(n - 1) : var;
      if (mode == MODE_TRAIN) {
        running_mean[c] = (float)((1.0 - d.momentum) * running_mean[c] + d.momentum * mean);
        running_var[c] = (float)((1.0 - d.momentum) * running_var[c] + d.momentum * unbiased);
      }
    } else {
      mean = running_mean[c];
      var = running_var[c];
    }
    const float invstd = (float)(1.0 / sqrt(var + d.eps));
    save_mean[c] = (float)mean;
    save_invstd[c] = invstd;
    const float scale = gamma[c] * invstd, shift = beta[c] - (float)mean * scale;
    for (int b = 0; b < d.B; b++) {
      const float *x = inp + ((size_t)b * d.C + c) * hw;
      float *y = out + ((size_t)b * d.C + c) * hw;
      if (relu) {
        for (size_t i = 0; i < hw; i++) {
          const float v = x[i] * scale + shift;
          y[i] = v > 0.0f ? v : 0.0f;
        }
      } else {
        for (size_t i = 0; i < hw; i++) y[i] = x[i] * scale + shift;
      }
    }
  }
  if (mode == MODE_TRAIN && num_batches_tracked) (*num_batches_tracked)++;
}

void batchnorm2d_backward(float *dinp, int accumulate, float *dgamma, float *dbeta,
                          const float *dout, const float *out, const float *inp, const float *gamma,
                          const float *save_mean, const float *save_invstd, BatchNormDims d,
                          Mode mode) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
  const int need_sums = dgamma || dbeta || mode != MODE_EVAL;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < d.C; c++) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    double sum_dy_xc = 0.0;
    for (int b = 0; need_sums && b < d.B; b++) {
      const size_t off = ((size_t)b * d.C + c) * hw;
      sums_backward(dout + off, out ? out + off : NULL, inp + off, hw, mean, &sum_dy, &sum_dy_xc);
    }
    sum_dy_xhat = sum_dy_xc * invstd;
    if (dgamma) dgamma[c] += (float)sum_dy_xhat;
    if (dbeta) dbeta[c] += (float)sum_dy;
    if (!dinp) continue;
    const float k = gamma[c] * invstd;
    const float mean_dy = (float)(sum_dy / (double)n);
    const float mean_dy_xhat = (float)(sum_dy_xhat / (double)n);
    for (int b = 0; b < d.B; b++) {
      const size_t off = ((size_t)b * d.C + c) * hw;
      const float *y = out ? out + off : NULL;
      if (mode == MODE_EVAL)
        dx_eval(dinp + off, accumulate, dout + off, y, hw, k);
      else
        dx_train(dinp + off, accumulate, dout + off, y, inp + off, hw, k, mean_dy, mean,
                 mean_dy_xhat * invstd);
    }
  }
}
