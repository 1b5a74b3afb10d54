/* Activation layouts: transposes between NCHW (what users, PyTorch and the
 * im2col kernels use) and channels-last NHWC (what oneDNN's kernels read
 * without a reorder). A net running channels-last converts only where a
 * layout meets the outside: its input, its input gradient, and a flatten. */
#include "layers.h"

void nchw_to_nhwc(float *dst, int accumulate, const float *src, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float *s = src + (size_t)b * C * HW;
    float *d = dst + (size_t)b * C * HW;
    for (int p = 0; p < HW; p++) {
      float *pixel = d + (size_t)p * C;
      if (accumulate)
        for (int c = 0; c < C; c++) pixel[c] += s[(size_t)c * HW + p];
      else
        for (int c = 0; c < C; c++) pixel[c] = s[(size_t)c * HW + p];
    }
  }
}

void nhwc_to_nchw(float *dst, int accumulate, const float *src, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float *s = src + (size_t)b * C * HW;
    float *d = dst + (size_t)b * C * HW;
    for (int c = 0; c < C; c++) {
      float *plane = d + (size_t)c * HW;
      if (accumulate)
        for (int p = 0; p < HW; p++) plane[p] += s[(size_t)p * C + c];
      else
        for (int p = 0; p < HW; p++) plane[p] = s[(size_t)p * C + c];
    }
  }
}
