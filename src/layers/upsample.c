/* Upsampling by integer factors, nearest or bilinear (align_corners=False),
 * as torch.nn.Upsample(scale_factor=s). One kernel serves both layouts: an
 * element (c, h, w) of an image sits at c*cs + (h*W + w)*ps. Backward
 * scatters each output's weights back, parallel over images (disjoint). */
#include <string.h>

#include "layers.h"

/* The two source rows (or columns) of output position o and the weight of the second. */
static void source_span(int o, int scale, int size, int bilinear, int *i0, int *i1, float *w1) {
  if (!bilinear) {
    *i0 = *i1 = o / scale;
    *w1 = 0.0f;
    return;
  }
  float src = ((float)o + 0.5f) / (float)scale - 0.5f;
  if (src < 0.0f) src = 0.0f;
  *i0 = (int)src;
  if (*i0 > size - 1) *i0 = size - 1;
  *i1 = *i0 + (*i0 < size - 1);
  *w1 = src - (float)*i0;
}

void upsample_forward(float *out, const float *inp, UpsampleDims d) {
  const int OH = d.H * d.SH, OW = d.W * d.SW;
  const size_t cs_in = d.channels_last ? 1 : (size_t)d.H * d.W, ps_in = d.channels_last ? d.C : 1;
  const size_t cs_out = d.channels_last ? 1 : (size_t)OH * OW, ps_out = d.channels_last ? d.C : 1;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    const float *x = inp + (size_t)b * d.C * d.H * d.W;
    float *y = out + (size_t)b * d.C * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      int h0, h1, w0, w1;
      float lh, lw;
      source_span(oh, d.SH, d.H, d.bilinear, &h0, &h1, &lh);
      for (int ow = 0; ow < OW; ow++) {
        source_span(ow, d.SW, d.W, d.bilinear, &w0, &w1, &lw);
        const size_t p00 = ((size_t)h0 * d.W + w0) * ps_in, p01 = ((size_t)h0 * d.W + w1) * ps_in;
        const size_t p10 = ((size_t)h1 * d.W + w0) * ps_in, p11 = ((size_t)h1 * d.W + w1) * ps_in;
        const size_t po = ((size_t)oh * OW + ow) * ps_out;
        for (int c = 0; c < d.C; c++) {
          const float *xc = x + c * cs_in;
          y[po + c * cs_out] = (1.0f - lh) * ((1.0f - lw) * xc[p00] + lw * xc[p01]) +
                               lh * ((1.0f - lw) * xc[p10] + lw * xc[p11]);
        }
      }
    }
  }
}

void upsample_backward(float *dinp, int accumulate, const float *dout, UpsampleDims d) {
  const int OH = d.H * d.SH, OW = d.W * d.SW;
  const size_t cs_in = d.channels_last ? 1 : (size_t)d.H * d.W, ps_in = d.channels_last ? d.C : 1;
  const size_t cs_out = d.channels_last ? 1 : (size_t)OH * OW, ps_out = d.channels_last ? d.C : 1;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *dx = dinp + (size_t)b * d.C * d.H * d.W;
    const float *dy = dout + (size_t)b * d.C * OH * OW;
    if (!accumulate) memset(dx, 0, sizeof(float) * d.C * d.H * d.W);
    for (int oh = 0; oh < OH; oh++) {
      int h0, h1, w0, w1;
      float lh, lw;
      source_span(oh, d.SH, d.H, d.bilinear, &h0, &h1, &lh);
      for (int ow = 0; ow < OW; ow++) {
        source_span(ow, d.SW, d.W, d.bilinear, &w0, &w1, &lw);
        const size_t p00 = ((size_t)h0 * d.W + w0) * ps_in, p01 = ((size_t)h0 * d.W + w1) * ps_in;
        const size_t p10 = ((size_t)h1 * d.W + w0) * ps_in, p11 = ((size_t)h1 * d.W + w1) * ps_in;
        const size_t po = ((size_t)oh * OW + ow) * ps_out;
        for (int c = 0; c < d.C; c++) {
          float *g = dx + c * cs_in;
          const float v = dy[po + c * cs_out];
          g[p00] += (1.0f - lh) * (1.0f - lw) * v;
          g[p01] += (1.0f - lh) * lw * v;
          g[p10] += lh * (1.0f - lw) * v;
          g[p11] += lh * lw * v;
        }
      }
    }
  }
}
