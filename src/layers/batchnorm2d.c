/* batchnorm2d over (B,C,H,W), PyTorch semantics: biased variance to
 * normalise, unbiased variance into running_var, momentum 0.1 by default.
 * Parallel over channels, each channel's sums in a fixed order (double). */
#include <math.h>

#include "layers.h"

void batchnorm2d_forward(float *out, float *save_mean, float *save_invstd, const float *inp,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                         Mode mode) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < d.C; c++) {
    double mean, var;
    if (mode == MODE_TRAIN) {
      double s = 0.0, ss = 0.0;
      for (int b = 0; b < d.B; b++) {
        const float *x = inp + ((size_t)b * d.C + c) * hw;
        for (size_t i = 0; i < hw; i++) s += x[i];
      }
      mean = s / (double)n;
      for (int b = 0; b < d.B; b++) {
        const float *x = inp + ((size_t)b * d.C + c) * hw;
        for (size_t i = 0; i < hw; i++) ss += (x[i] - mean) * (x[i] - mean);
      }
      var = ss / (double)n;
      const double unbiased = n > 1 ? ss / (double)(n - 1) : var;
      running_mean[c] = (float)((1.0 - d.momentum) * running_mean[c] + d.momentum * mean);
      running_var[c] = (float)((1.0 - d.momentum) * running_var[c] + d.momentum * unbiased);
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
      for (size_t i = 0; i < hw; i++) y[i] = x[i] * scale + shift;
    }
  }
  if (mode == MODE_TRAIN && num_batches_tracked) (*num_batches_tracked)++;
}

void batchnorm2d_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                          const float *inp, const float *gamma, const float *save_mean,
                          const float *save_invstd, BatchNormDims d, Mode mode) {
  const size_t hw = (size_t)d.H * d.W, n = (size_t)d.B * hw;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < d.C; c++) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int b = 0; b < d.B; b++) {
      const float *x = inp + ((size_t)b * d.C + c) * hw;
      const float *dy = dout + ((size_t)b * d.C + c) * hw;
      for (size_t i = 0; i < hw; i++) {
        sum_dy += dy[i];
        sum_dy_xhat += dy[i] * (x[i] - mean) * invstd;
      }
    }
    if (dgamma) dgamma[c] += (float)sum_dy_xhat;
    if (dbeta) dbeta[c] += (float)sum_dy;
    if (!dinp) continue;
    const float k = gamma[c] * invstd;
    /* eval mode: the statistics are constants, so d/dx is a plain scale */
    const float mean_dy = mode == MODE_TRAIN ? (float)(sum_dy / (double)n) : 0.0f;
    const float mean_dy_xhat = mode == MODE_TRAIN ? (float)(sum_dy_xhat / (double)n) : 0.0f;
    for (int b = 0; b < d.B; b++) {
      const float *x = inp + ((size_t)b * d.C + c) * hw;
      const float *dy = dout + ((size_t)b * d.C + c) * hw;
      float *dx = dinp + ((size_t)b * d.C + c) * hw;
      for (size_t i = 0; i < hw; i++) {
        const float xhat = (x[i] - mean) * invstd;
        dx[i] += k * (dy[i] - mean_dy - xhat * mean_dy_xhat);
      }
    }
  }
}
