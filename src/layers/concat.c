/* Concatenation along channels, planar (one block per input and image) or
 * channels-last (one run per input and pixel). Parallel over images. */
#include <string.h>

#include "layers.h"

void concat_forward(float *out, const float *const *in, const int *C, int n, int B, int HW,
                    int channels_last) {
  int OC = 0;
  for (int i = 0; i < n; i++) OC += C[i];
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float *o = out + (size_t)b * OC * HW;
    if (!channels_last) {
      for (int i = 0; i < n; i++) {
        memcpy(o, in[i] + (size_t)b * C[i] * HW, sizeof(float) * C[i] * HW);
        o += (size_t)C[i] * HW;
      }
      continue;
    }
    for (int p = 0; p < HW; p++)
      for (int i = 0; i < n; i++) {
        memcpy(o, in[i] + ((size_t)b * HW + p) * C[i], sizeof(float) * C[i]);
        o += C[i];
      }
  }
}

static void slice_into(float *dst, int acc, const float *src, size_t n) {
  if (!acc) {
    memcpy(dst, src, sizeof(float) * n);
    return;
  }
  for (size_t j = 0; j < n; j++) dst[j] += src[j];
}

void concat_backward(float *const *din, const unsigned char *acc, const float *dout, const int *C,
                     int n, int B, int HW, int channels_last) {
  int OC = 0;
  for (int i = 0; i < n; i++) OC += C[i];
    /* inputs in order: a tensor listed twice gets its first slice written,
     * then the second added (acc of the later one is set) */
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float *g = dout + (size_t)b * OC * HW;
    if (!channels_last) {
      for (int i = 0; i < n; i++) {
        if (din[i]) slice_into(din[i] + (size_t)b * C[i] * HW, acc[i], g, (size_t)C[i] * HW);
        g += (size_t)C[i] * HW;
      }
      continue;
    }
    for (int p = 0; p < HW; p++)
      for (int i = 0; i < n; i++) {
        if (din[i]) slice_into(din[i] + ((size_t)b * HW + p) * C[i], acc[i], g, (size_t)C[i]);
        g += C[i];
      }
  }
}
