/* Option-A shortcut of the CIFAR ResNets (He et al. 2016, sec. 4.2):
 * subsample by the stride and zero-pad channels equally on both sides, so the
 * identity path has no parameters. Strides are per axis, so ONNX's Slice of
 * rows or columns alone and its channel Pad map onto it too. */
#include <string.h>

#include "layers.h"

void shortcut_pad_forward(float *out, const float *inp, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2;
  const size_t ohw = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *o = out + (size_t)b * d.OC * ohw;
    memset(o, 0, sizeof(float) * d.OC * ohw);
    for (int c = 0; c < d.C; c++) {
      const float *x = inp + ((size_t)b * d.C + c) * d.H * d.W;
      float *y = o + (size_t)(c + pad_lo) * ohw;
      for (int oh = 0; oh < d.OH; oh++)
        for (int ow = 0; ow < d.OW; ow++) y[oh * d.OW + ow] = x[(oh * d.SH) * d.W + ow * d.SW];
    }
  }
}

void shortcut_pad_backward(float *dinp, int accumulate, const float *dout, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2;
  const size_t ohw = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    for (int c = 0; c < d.C; c++) {
      float *dx = dinp + ((size_t)b * d.C + c) * d.H * d.W;
      const float *dy = dout + ((size_t)b * d.OC + c + pad_lo) * ohw;
      if (!accumulate) memset(dx, 0, sizeof(float) * d.H * d.W);
      for (int oh = 0; oh < d.OH; oh++)
        for (int ow = 0; ow < d.OW; ow++) dx[(oh * d.SH) * d.W + ow * d.SW] += dy[oh * d.OW + ow];
    }
  }
}

void shortcut_pad_forward_nhwc(float *out, const float *inp, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++)
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        float *y = out + (((size_t)b * d.OH + oh) * d.OW + ow) * d.OC;
        const float *x = inp + (((size_t)b * d.H + oh * d.SH) * d.W + ow * d.SW) * d.C;
        memset(y, 0, sizeof(float) * d.OC);
        memcpy(y + pad_lo, x, sizeof(float) * d.C);
      }
}

void shortcut_pad_backward_nhwc(float *dinp, int accumulate, const float *dout, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2;
  const size_t in_image = (size_t)d.H * d.W * d.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    if (!accumulate) memset(dinp + b * in_image, 0, sizeof(float) * in_image);
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        const float *dy = dout + (((size_t)b * d.OH + oh) * d.OW + ow) * d.OC + pad_lo;
        float *dx = dinp + (((size_t)b * d.H + oh * d.SH) * d.W + ow * d.SW) * d.C;
        for (int c = 0; c < d.C; c++) dx[c] += dy[c];
      }
  }
}
