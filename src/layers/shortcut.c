/* Option-A shortcut of the CIFAR ResNets (He et al. 2016, sec. 4.2):
 * subsample by the stride and zero-pad channels equally on both sides, so the
 * identity path has no parameters. Strides are per axis and the zeros may go
 * around each spatial side too, so ONNX's Slice of rows or columns and its
 * constant-zero Pad map onto the same op. */
#include <string.h>

#include "layers.h"

/* the subsampled input's extent inside the output */
static int rows_in(ShortcutDims d) { return (d.H + d.SH - 1) / d.SH; }
static int cols_in(ShortcutDims d) { return (d.W + d.SW - 1) / d.SW; }

void shortcut_pad_forward(float *out, const float *inp, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2, IH = rows_in(d), IW = cols_in(d);
  const size_t ohw = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *o = out + (size_t)b * d.OC * ohw;
    memset(o, 0, sizeof(float) * d.OC * ohw);
    for (int c = 0; c < d.C; c++) {
      const float *x = inp + ((size_t)b * d.C + c) * d.H * d.W;
      float *y = o + (size_t)(c + pad_lo) * ohw + (size_t)d.PT * d.OW + d.PL;
      for (int i = 0; i < IH; i++)
        for (int j = 0; j < IW; j++) y[i * d.OW + j] = x[(i * d.SH) * d.W + j * d.SW];
    }
  }
}

void shortcut_pad_backward(float *dinp, int accumulate, const float *dout, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2, IH = rows_in(d), IW = cols_in(d);
  const size_t ohw = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    for (int c = 0; c < d.C; c++) {
      float *dx = dinp + ((size_t)b * d.C + c) * d.H * d.W;
      const float *dy = dout + ((size_t)b * d.OC + c + pad_lo) * ohw + (size_t)d.PT * d.OW + d.PL;
      if (!accumulate) memset(dx, 0, sizeof(float) * d.H * d.W);
      for (int i = 0; i < IH; i++)
        for (int j = 0; j < IW; j++) dx[(i * d.SH) * d.W + j * d.SW] += dy[i * d.OW + j];
    }
  }
}

/* Each output pixel written once: its zeros and its input channels (zeroing the whole map first
 * and copying over it wrote the channels twice: ResNet-8 64x64's two shortcuts took 2.2 of its
 * 40.8 ms forward pass, batch 128) */
void shortcut_pad_forward_nhwc(float *out, const float *inp, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2, IH = rows_in(d), IW = cols_in(d);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < d.B; b++)
    for (int oi = 0; oi < d.OH; oi++) {
      float *y = out + ((size_t)b * d.OH + oi) * d.OW * d.OC;
      const int i = oi - d.PT;
      if (i < 0 || i >= IH) { /* a row of zeros around the map */
        memset(y, 0, sizeof(float) * d.OW * d.OC);
        continue;
      }
      const float *x = inp + ((size_t)b * d.H + (size_t)i * d.SH) * d.W * d.C;
      for (int oj = 0; oj < d.OW; oj++, y += d.OC) {
        const int j = oj - d.PL;
        if (j < 0 || j >= IW) {
          memset(y, 0, sizeof(float) * d.OC);
          continue;
        }
        memset(y, 0, sizeof(float) * pad_lo);
        memcpy(y + pad_lo, x + (size_t)j * d.SW * d.C, sizeof(float) * d.C);
        memset(y + pad_lo + d.C, 0, sizeof(float) * (d.OC - d.C - pad_lo));
      }
    }
}

void shortcut_pad_backward_nhwc(float *dinp, int accumulate, const float *dout, ShortcutDims d) {
  const int pad_lo = (d.OC - d.C) / 2, IH = rows_in(d), IW = cols_in(d);
  const size_t in_image = (size_t)d.H * d.W * d.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    if (!accumulate) memset(dinp + b * in_image, 0, sizeof(float) * in_image);
    for (int i = 0; i < IH; i++)
      for (int j = 0; j < IW; j++) {
        const float *dy = dout + (((size_t)b * d.OH + i + d.PT) * d.OW + j + d.PL) * d.OC + pad_lo;
        float *dx = dinp + (((size_t)b * d.H + i * d.SH) * d.W + j * d.SW) * d.C;
        for (int c = 0; c < d.C; c++) dx[c] += dy[c];
      }
  }
}
