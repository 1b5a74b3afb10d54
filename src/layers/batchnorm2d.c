/* batchnorm2d over (B,C,H,W), PyTorch semantics: biased variance to
 * normalise, unbiased variance into running_var, momentum 0.1 by default.
 * Parallel over channels, each channel's sums in a fixed order (double).
 * An optional fused ReLU saves a pass over memory: out = max(0, bn(x)), and
 * backward masks dout by out > 0. */
#include <math.h>
#include <string.h>

#include "layers.h"

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
      for (int b = 0; b < d.B; b++) {
        const float *x = inp + ((size_t)b * d.C + c) * hw;
        float ps = 0.0f, psq = 0.0f;
        for (size_t i = 0; i < hw; i++) {
          const float v = x[i] - shift0;
          ps += v;
          psq += v * v;
        }
        s += ps;
        sq += psq;
      }
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
    for (int b = 0; need_sums && b < d.B; b++) {
      const float *x = inp + ((size_t)b * d.C + c) * hw;
      const float *dy = dout + ((size_t)b * d.C + c) * hw;
      const float *y = out ? out + ((size_t)b * d.C + c) * hw : NULL;
      float ps = 0.0f, psx = 0.0f;
      for (size_t i = 0; i < hw; i++) {
        const float g = (!y || y[i] > 0.0f) ? dy[i] : 0.0f;
        ps += g;
        psx += g * (x[i] - mean);
      }
      sum_dy += ps;
      sum_dy_xhat += (double)psx * invstd;
    }
    if (dgamma) dgamma[c] += (float)sum_dy_xhat;
    if (dbeta) dbeta[c] += (float)sum_dy;
    if (!dinp) continue;
    const float k = gamma[c] * invstd;
    const float mean_dy = (float)(sum_dy / (double)n);
    const float mean_dy_xhat = (float)(sum_dy_xhat / (double)n);
    for (int b = 0; b < d.B; b++) {
      const float *dy = dout + ((size_t)b * d.C + c) * hw;
      const float *y = out ? out + ((size_t)b * d.C + c) * hw : NULL;
      float *dx = dinp + ((size_t)b * d.C + c) * hw;
      if (!accumulate) memset(dx, 0, sizeof(float) * hw);
      if (mode == MODE_EVAL) {
        /* the statistics are constants, so d/dx is a plain scale */
        for (size_t i = 0; i < hw; i++) dx[i] += (!y || y[i] > 0.0f) ? k * dy[i] : 0.0f;
        continue;
      }
      const float *x = inp + ((size_t)b * d.C + c) * hw;
      for (size_t i = 0; i < hw; i++) {
        const float xhat = (x[i] - mean) * invstd;
        const float g = (!y || y[i] > 0.0f) ? dy[i] : 0.0f;
        dx[i] += k * (g - mean_dy - xhat * mean_dy_xhat);
      }
    }
  }
}
