/* Pooling: max (with argmax for backward; dilation per axis, as
 * nn.MaxPool2d), average (count_include_pad; no dilation, as nn.AvgPool2d)
 * and global average. Parallel over (image, channel) planes. */
#include <float.h>
#include <string.h>

#include "gate.h"
#include "layers.h"

/* The input rows (or columns) under output position o along one axis: taps
 * lo, lo + dil, ... below hi, the window clipped to the image (padding
 * contributes nothing). */
static void window_span(int o, int size, int stride, int pad, int k, int dil, int *lo, int *hi) {
  const int start = o * stride - pad;
  const int first = start < 0 ? (-start + dil - 1) / dil : 0; /* first tap inside */
  int last = k - 1;
  if (start + last * dil > size - 1) last = start > size - 1 ? -1 : (size - 1 - start) / dil;
  *lo = start + first * dil;
  *hi = last >= first ? start + last * dil + 1 : *lo;
}

/* PyTorch's rule: no side pads more than half the window. Unset strides (0)
 * default to the kernel, unset dilation to 1. Every window must reach the
 * image, so a max is always defined. */
int pool_dims_finish(PoolDims *d) {
  if (d->SH < 1) d->SH = d->KH;
  if (d->SW < 1) d->SW = d->KW;
  if (d->DH < 1) d->DH = 1;
  if (d->DW < 1) d->DW = 1;
  const int span_h = d->DH * (d->KH - 1) + 1, span_w = d->DW * (d->KW - 1) + 1;
  if (d->KH < 1 || d->KW < 1 || d->SH < 1 || d->SW < 1 || d->PT < 0 || d->PB < 0 || d->PL < 0 ||
      d->PR < 0 || 2 * d->PT > d->KH || 2 * d->PB > d->KH || 2 * d->PL > d->KW ||
      2 * d->PR > d->KW || d->H + d->PT + d->PB < span_h || d->W + d->PL + d->PR < span_w)
    return 0;
  d->OH = (d->H + d->PT + d->PB - span_h) / d->SH + 1;
  d->OW = (d->W + d->PL + d->PR - span_w) / d->SW + 1;
  int lo, hi;
  for (int o = 0; o < d->OH; o++) {
    window_span(o, d->H, d->SH, d->PT, d->KH, d->DH, &lo, &hi);
    if (lo >= hi) return 0;
  }
  for (int o = 0; o < d->OW; o++) {
    window_span(o, d->W, d->SW, d->PL, d->KW, d->DW, &lo, &hi);
    if (lo >= hi) return 0;
  }
  return 1;
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, PoolDims d) {
  const int planes = d.B * d.C;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; p++) {
    const float *x = inp + (size_t)p * d.H * d.W;
    float *y = out + (size_t)p * d.OH * d.OW;
    int32_t *am = argmax ? argmax + (size_t)p * d.OH * d.OW : NULL;
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        float best = -FLT_MAX;
        int32_t best_i = -1;
        int h0, h1, w0, w1;
        window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        for (int ih = h0; ih < h1; ih += d.DH) {
          for (int iw = w0; iw < w1; iw += d.DW) {
            const float v = x[ih * d.W + iw];
            if (best_i < 0 || v > best) {
              best = v;
              best_i = ih * d.W + iw;
            }
          }
        }
        y[oh * d.OW + ow] = best;
        if (am) am[oh * d.OW + ow] = best_i;
      }
  }
}

void maxpool2d_backward(float *dinp, int accumulate, const float *dout, const int32_t *argmax,
                        PoolDims d) {
  const int planes = d.B * d.C;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; p++) {
    float *dx = dinp + (size_t)p * d.H * d.W;
    const float *dy = dout + (size_t)p * d.OH * d.OW;
    const int32_t *am = argmax + (size_t)p * d.OH * d.OW;
    if (!accumulate) memset(dx, 0, sizeof(float) * d.H * d.W);
    for (int i = 0; i < d.OH * d.OW; i++) dx[am[i]] += dy[i];
  }
}

void avgpool2d_forward(float *out, const float *inp, PoolDims d) {
  const int planes = d.B * d.C;
  const float inv = 1.0f / (float)(d.KH * d.KW);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; p++) {
    const float *x = inp + (size_t)p * d.H * d.W;
    float *y = out + (size_t)p * d.OH * d.OW;
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        float s = 0.0f;
        int h0, h1, w0, w1;
        window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        for (int ih = h0; ih < h1; ih += d.DH) {
          for (int iw = w0; iw < w1; iw += d.DW) {
            s += x[ih * d.W + iw];
          }
        }
        y[oh * d.OW + ow] = s * inv;
      }
  }
}

void avgpool2d_backward(float *dinp, int accumulate, const float *dout, PoolDims d) {
  const int planes = d.B * d.C;
  const float inv = 1.0f / (float)(d.KH * d.KW);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; p++) {
    float *dx = dinp + (size_t)p * d.H * d.W;
    const float *dy = dout + (size_t)p * d.OH * d.OW;
    if (!accumulate) memset(dx, 0, sizeof(float) * d.H * d.W);
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        const float g = dy[oh * d.OW + ow] * inv;
        int h0, h1, w0, w1;
        window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        for (int ih = h0; ih < h1; ih += d.DH) {
          for (int iw = w0; iw < w1; iw += d.DW) {
            dx[ih * d.W + iw] += g;
          }
        }
      }
  }
}

void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
  for (int p = 0; p < B * C; p++) {
    const float *x = inp + (size_t)p * HW;
    float s = 0.0f;
    for (int i = 0; i < HW; i++) s += x[i];
    out[p] = s / (float)HW;
  }
}

void global_avgpool_backward(float *dinp, int accumulate, const float *dout, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
  for (int p = 0; p < B * C; p++) {
    float *dx = dinp + (size_t)p * HW;
    const float g = dout[p] / (float)HW;
    for (int i = 0; i < HW; i++) dx[i] = accumulate ? dx[i] + g : g;
  }
}

/* ---- channels-last (B,H,W,C): the window loops run per output pixel with
 * the channels innermost; argmax keeps the in-plane index ih*W+iw, so a tie
 * picks the same input as the planar kernels. Parallel over images. */

/* The 2x2 window at stride 2 without padding (most networks' pooling): the four taps in one
 * pass over the channels, the first of equal maxima winning as in the general kernel. Four
 * times faster than the general loop on cnn's 28x28 maps. */
static void maxpool2x2_nhwc(float *out, int32_t *argmax, const float *inp, PoolDims d) {
  const int C = d.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    const float *x = inp + (size_t)b * d.H * d.W * C;
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        const size_t o = (((size_t)b * d.OH + oh) * d.OW + ow) * C;
        const int32_t i00 = 2 * oh * d.W + 2 * ow, i01 = i00 + 1, i10 = i00 + d.W, i11 = i10 + 1;
        const float *restrict v00 = x + (size_t)i00 * C, *restrict v01 = v00 + C,
                              *restrict v10 = x + (size_t)i10 * C, *restrict v11 = v10 + C;
        float *restrict y = out + o;
        if (argmax) {
          int32_t *restrict am = argmax + o;
          for (int c = 0; c < C; c++) {
            float m = v00[c];
            int32_t at = i00;
            at = v01[c] > m ? i01 : at, m = v01[c] > m ? v01[c] : m;
            at = v10[c] > m ? i10 : at, m = v10[c] > m ? v10[c] : m;
            at = v11[c] > m ? i11 : at, m = v11[c] > m ? v11[c] : m;
            y[c] = m, am[c] = at;
          }
        } else {
          for (int c = 0; c < C; c++) {
            float m = v00[c];
            m = v01[c] > m ? v01[c] : m;
            m = v10[c] > m ? v10[c] : m;
            y[c] = v11[c] > m ? v11[c] : m;
          }
        }
      }
  }
}

static int is_2x2_stride_2(PoolDims d);

void maxpool2d_forward_nhwc(float *out, int32_t *argmax, const float *inp, PoolDims d) {
  if (is_2x2_stride_2(d)) {
    maxpool2x2_nhwc(out, argmax, inp, d);
    return;
  }
  const int C = d.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    const float *x = inp + (size_t)b * d.H * d.W * C;
    for (int oh = 0; oh < d.OH; oh++) {
      int h0, h1;
      window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
      for (int ow = 0; ow < d.OW; ow++) {
        const size_t o = (((size_t)b * d.OH + oh) * d.OW + ow) * C;
        float *restrict y = out + o;
        int w0, w1;
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        /* the window's first tap starts the max (every window reaches the image); the
         * selects below, not branches, let the channel loops vectorise */
        const int32_t first = h0 * d.W + w0;
        memcpy(y, x + (size_t)first * C, sizeof(float) * C);
        if (argmax) {
          int32_t *restrict am = argmax + o;
          for (int c = 0; c < C; c++) am[c] = first;
          for (int ih = h0; ih < h1; ih += d.DH)
            for (int iw = w0; iw < w1; iw += d.DW) {
              const int32_t at = ih * d.W + iw;
              const float *restrict v = x + (size_t)at * C;
              if (at == first) continue;
              for (int c = 0; c < C; c++) {
                const int above = v[c] > y[c];
                y[c] = above ? v[c] : y[c];
                am[c] = above ? at : am[c];
              }
            }
        } else { /* forward only: no argmax kept */
          for (int ih = h0; ih < h1; ih += d.DH)
            for (int iw = w0; iw < w1; iw += d.DW) {
              const float *restrict v = x + ((size_t)ih * d.W + iw) * C;
              for (int c = 0; c < C; c++) y[c] = v[c] > y[c] ? v[c] : y[c];
            }
        }
      }
    }
  }
}

static int is_2x2_stride_2(PoolDims d) {
  return d.KH == 2 && d.KW == 2 && d.SH == 2 && d.SW == 2 && d.DH == 1 && d.DW == 1 && !d.PT &&
         !d.PL && 2 * d.OH <= d.H && 2 * d.OW <= d.W;
}

/* 2x2 at stride 2: the windows tile the map, so each input pixel under one is written once,
 * with its window's gradient or 0, and only an odd last row or column needs zeroing. */
static void maxpool2x2_backward_nhwc(float *dinp, int accumulate, const float *dout,
                                     const int32_t *argmax, PoolDims d) {
  const int C = d.C;
  const size_t in_image = (size_t)d.H * d.W * C, out_pixels = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *dx = dinp + b * in_image;
    const float *dy = dout + b * out_pixels * C;
    const int32_t *am = argmax + b * out_pixels * C;
    if (!accumulate) {
      for (int h = 2 * d.OH; h < d.H; h++)
        memset(dx + (size_t)h * d.W * C, 0, sizeof(float) * d.W * C);
      if (2 * d.OW < d.W)
        for (int h = 0; h < 2 * d.OH; h++)
          memset(dx + ((size_t)h * d.W + 2 * d.OW) * C, 0, sizeof(float) * (d.W - 2 * d.OW) * C);
    }
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        const size_t o = ((size_t)oh * d.OW + ow) * C;
        const int32_t i00 = 2 * oh * d.W + 2 * ow, i10 = i00 + d.W;
        float *restrict g00 = dx + (size_t)i00 * C, *restrict g01 = g00 + C,
                        *restrict g10 = dx + (size_t)i10 * C, *restrict g11 = g10 + C;
        const float *restrict g = dy + o;
        const int32_t *restrict at = am + o;
        /* whole vectors of channels first (gate.h): 128x16x64x64 3.2-5.0 -> 1.2-2.2 ms */
        int c0 = 0;
        for (; c0 + VEC <= C; c0 += VEC) {
          const Vec gv = vec_load(g + c0);
          const VecBits a = vec_load_bits(at + c0), zero = {0};
          float *const taps[4] = {g00 + c0, g01 + c0, g10 + c0, g11 + c0};
          const int32_t tap_at[4] = {i00, i00 + 1, i10, i10 + 1};
          for (int k = 0; k < 4; k++) {
            const Vec v = vec_gate(gv, a == zero + tap_at[k]);
            vec_store(taps[k], accumulate ? vec_load(taps[k]) + v : v);
          }
        }
        if (accumulate)
          for (int c = c0; c < C; c++) {
            g00[c] += at[c] == i00 ? g[c] : 0.0f, g01[c] += at[c] == i00 + 1 ? g[c] : 0.0f;
            g10[c] += at[c] == i10 ? g[c] : 0.0f, g11[c] += at[c] == i10 + 1 ? g[c] : 0.0f;
          }
        else
          for (int c = c0; c < C; c++) {
            g00[c] = at[c] == i00 ? g[c] : 0.0f, g01[c] = at[c] == i00 + 1 ? g[c] : 0.0f;
            g10[c] = at[c] == i10 ? g[c] : 0.0f, g11[c] = at[c] == i10 + 1 ? g[c] : 0.0f;
          }
      }
  }
}

void maxpool2d_backward_nhwc(float *dinp, int accumulate, const float *dout, const int32_t *argmax,
                             PoolDims d) {
  if (is_2x2_stride_2(d)) {
    maxpool2x2_backward_nhwc(dinp, accumulate, dout, argmax, d);
    return;
  }
  const int C = d.C;
  const size_t in_image = (size_t)d.H * d.W * C, out_pixels = (size_t)d.OH * d.OW;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *dx = dinp + b * in_image;
    if (!accumulate) memset(dx, 0, sizeof(float) * in_image);
    const float *dy = dout + b * out_pixels * C;
    const int32_t *am = argmax + b * out_pixels * C;
    for (size_t px = 0; px < out_pixels; px++)
      for (int c = 0; c < C; c++) dx[(size_t)am[px * C + c] * C + c] += dy[px * C + c];
  }
}

void avgpool2d_forward_nhwc(float *out, const float *inp, PoolDims d) {
  const int C = d.C;
  const float inv = 1.0f / (float)(d.KH * d.KW);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    const float *x = inp + (size_t)b * d.H * d.W * C;
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        float *y = out + (((size_t)b * d.OH + oh) * d.OW + ow) * C;
        for (int c = 0; c < C; c++) y[c] = 0.0f;
        int h0, h1, w0, w1;
        window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        for (int ih = h0; ih < h1; ih += d.DH) {
          for (int iw = w0; iw < w1; iw += d.DW) {
            const float *v = x + ((size_t)ih * d.W + iw) * C;
            for (int c = 0; c < C; c++) y[c] += v[c];
          }
        }
        for (int c = 0; c < C; c++) y[c] *= inv;
      }
  }
}

void avgpool2d_backward_nhwc(float *dinp, int accumulate, const float *dout, PoolDims d) {
  const int C = d.C;
  const size_t in_image = (size_t)d.H * d.W * C;
  const float inv = 1.0f / (float)(d.KH * d.KW);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *dx = dinp + b * in_image;
    if (!accumulate) memset(dx, 0, sizeof(float) * in_image);
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        const float *dy = dout + (((size_t)b * d.OH + oh) * d.OW + ow) * C;
        int h0, h1, w0, w1;
        window_span(oh, d.H, d.SH, d.PT, d.KH, d.DH, &h0, &h1);
        window_span(ow, d.W, d.SW, d.PL, d.KW, d.DW, &w0, &w1);
        for (int ih = h0; ih < h1; ih += d.DH) {
          for (int iw = w0; iw < w1; iw += d.DW) {
            float *g = dx + ((size_t)ih * d.W + iw) * C;
            for (int c = 0; c < C; c++) g[c] += dy[c] * inv;
          }
        }
      }
  }
}

void global_avgpool_forward_nhwc(float *out, const float *inp, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float *y = out + (size_t)b * C;
    for (int c = 0; c < C; c++) y[c] = 0.0f;
    for (int p = 0; p < HW; p++) {
      const float *x = inp + ((size_t)b * HW + p) * C;
      for (int c = 0; c < C; c++) y[c] += x[c];
    }
    for (int c = 0; c < C; c++) y[c] /= (float)HW;
  }
}

void global_avgpool_backward_nhwc(float *dinp, int accumulate, const float *dout, int B, int C,
                                  int HW) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float *dy = dout + (size_t)b * C;
    for (int p = 0; p < HW; p++) {
      float *dx = dinp + ((size_t)b * HW + p) * C;
      for (int c = 0; c < C; c++) {
        const float g = dy[c] / (float)HW;
        dx[c] = accumulate ? dx[c] + g : g;
      }
    }
  }
}
