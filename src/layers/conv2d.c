/* conv2d: im2col + OpenBLAS sgemm per image, OpenMP over the images of the
 * batch (disjoint writes; weight gradients summed per thread, then added in
 * thread order). Any kernel, stride, padding and groups (depthwise included).
 * The naive loops at the bottom are the oracle the tests compare against. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "layers.h"

/* Unset stride and dilation (0) mean 1, so a dims literal names only what differs. */
int conv2d_dims_finish(Conv2dDims *d) {
  if (d->SH < 1) d->SH = 1;
  if (d->SW < 1) d->SW = 1;
  if (d->DH < 1) d->DH = 1;
  if (d->DW < 1) d->DW = 1;
  const int span_h = d->DH * (d->KH - 1) + 1, span_w = d->DW * (d->KW - 1) + 1;
  const int ph = d->H + d->PT + d->PB, pw = d->W + d->PL + d->PR;
  if (d->KH < 1 || d->KW < 1 || d->PT < 0 || d->PB < 0 || d->PL < 0 || d->PR < 0 || ph < span_h ||
      pw < span_w)
    return 0;
  d->OH = (ph - span_h) / d->SH + 1;
  d->OW = (pw - span_w) / d->SW + 1;
  return d->OH > 0 && d->OW > 0;
}

/* (output position, kernel tap) pairs of one axis whose input lies inside the image */
static double taps_inside(int in, int out, int kernel, int stride, int pad, int dilation) {
  double n = 0;
  for (int o = 0; o < out; o++)
    for (int k = 0; k < kernel; k++) {
      const int i = o * stride - pad + k * dilation;
      n += i >= 0 && i < in;
    }
  return n;
}

double conv2d_macs_inside(Conv2dDims d) {
  return (double)d.B * d.OC * (d.C / d.groups) * taps_inside(d.H, d.OH, d.KH, d.SH, d.PT, d.DH) *
         taps_inside(d.W, d.OW, d.KW, d.SW, d.PL, d.DW);
}

static int conv2d_is_pointwise(Conv2dDims d) {
  return d.KH == 1 && d.KW == 1 && d.SH == 1 && d.SW == 1 && d.PT + d.PB + d.PL + d.PR == 0;
}

size_t conv2d_scratch_floats(Conv2dDims d) {
  size_t col = (size_t)(d.C / d.groups) * d.KH * d.KW * d.OH * d.OW;
  return 2 * col; /* column + its gradient */
}

/* inp (C,H,W) -> col (C*KH*KW, OH*OW) */
static void im2col(float *col, const float *inp, int C, Conv2dDims d) {
  const int ohw = d.OH * d.OW;
  for (int c = 0; c < C; c++) {
    const float *plane = inp + (size_t)c * d.H * d.W;
    for (int kh = 0; kh < d.KH; kh++) {
      for (int kw = 0; kw < d.KW; kw++) {
        float *row = col + ((size_t)(c * d.KH + kh) * d.KW + kw) * ohw;
        const int off_w = kw * d.DW - d.PL;
        for (int oh = 0; oh < d.OH; oh++) {
          const int ih = oh * d.SH - d.PT + kh * d.DH;
          float *dst = row + oh * d.OW;
          if (ih < 0 || ih >= d.H) {
            memset(dst, 0, sizeof(float) * d.OW);
            continue;
          }
          const float *src = plane + (size_t)ih * d.W;
          if (d.SW == 1) {
            int ow = 0;
            for (; ow < d.OW && ow + off_w < 0; ow++) dst[ow] = 0.0f;
            int end = d.OW;
            while (end > ow && end - 1 + off_w >= d.W) end--;
            memcpy(dst + ow, src + ow + off_w, sizeof(float) * (end - ow));
            for (ow = end; ow < d.OW; ow++) dst[ow] = 0.0f;
          } else {
            for (int ow = 0; ow < d.OW; ow++) {
              const int iw = ow * d.SW + off_w;
              dst[ow] = (iw >= 0 && iw < d.W) ? src[iw] : 0.0f;
            }
          }
        }
      }
    }
  }
}

/* col (C*KH*KW, OH*OW) accumulated into dinp (C,H,W) */
static void col2im_add(float *dinp, const float *col, int C, Conv2dDims d) {
  const int ohw = d.OH * d.OW;
  for (int c = 0; c < C; c++) {
    float *plane = dinp + (size_t)c * d.H * d.W;
    for (int kh = 0; kh < d.KH; kh++) {
      for (int kw = 0; kw < d.KW; kw++) {
        const float *row = col + ((size_t)(c * d.KH + kh) * d.KW + kw) * ohw;
        for (int oh = 0; oh < d.OH; oh++) {
          const int ih = oh * d.SH - d.PT + kh * d.DH;
          if (ih < 0 || ih >= d.H) continue;
          float *dst = plane + (size_t)ih * d.W;
          const float *src = row + oh * d.OW;
          for (int ow = 0; ow < d.OW; ow++) {
            const int iw = ow * d.SW - d.PL + kw * d.DW;
            if (iw >= 0 && iw < d.W) dst[iw] += src[ow];
          }
        }
      }
    }
  }
}

void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                    Conv2dDims d, float *scratch) {
  const int G = d.groups, Cg = d.C / G, OCg = d.OC / G;
  const int ohw = d.OH * d.OW, ckk = Cg * d.KH * d.KW;
  const size_t per_thread = conv2d_scratch_floats(d);
  const int pointwise = conv2d_is_pointwise(d);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++) {
    float *col = scratch + per_thread * omp_get_thread_num();
    for (int g = 0; g < G; g++) {
      const float *in_g = inp + ((size_t)b * d.C + g * Cg) * d.H * d.W;
      float *out_g = out + ((size_t)b * d.OC + g * OCg) * ohw;
      const float *src = in_g;
      if (!pointwise) {
        im2col(col, in_g, Cg, d);
        src = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OCg, ohw, ckk, 1.0f,
                  weight + (size_t)g * OCg * ckk, ckk, src, ohw, 0.0f, out_g, ohw);
    }
    if (bias) {
      for (int oc = 0; oc < d.OC; oc++) {
        float *o = out + ((size_t)b * d.OC + oc) * ohw;
        for (int i = 0; i < ohw; i++) o[i] += bias[oc];
      }
    }
  }
}

void conv2d_backward(float *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, Conv2dDims d, float *scratch,
                     float *dweight_partial) {
  const int G = d.groups, Cg = d.C / G, OCg = d.OC / G;
  const int ohw = d.OH * d.OW, ckk = Cg * d.KH * d.KW;
  const size_t per_thread = conv2d_scratch_floats(d);
  const size_t wsize = (size_t)d.OC * ckk;
  const int pointwise = conv2d_is_pointwise(d);
  int nthreads = 1;
#pragma omp parallel
  {
    const int t = omp_get_thread_num();
#pragma omp single
    nthreads = omp_get_num_threads();
    float *col = scratch + per_thread * t;
    float *dcol = col + per_thread / 2;
    float *dw = NULL;
    if (dweight) {
      dw = t == 0 ? dweight : dweight_partial + wsize * (t - 1);
      if (t > 0) memset(dw, 0, sizeof(float) * wsize);
    }
#pragma omp for schedule(static)
    for (int b = 0; b < d.B; b++) {
      for (int g = 0; g < G; g++) {
        const float *dout_g = dout + ((size_t)b * d.OC + g * OCg) * ohw;
        const float *w_g = weight + (size_t)g * OCg * ckk;
        if (dw) {
          const float *in_g = inp + ((size_t)b * d.C + g * Cg) * d.H * d.W;
          const float *src = in_g;
          if (!pointwise) {
            im2col(col, in_g, Cg, d);
            src = col;
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OCg, ckk, ohw, 1.0f, dout_g, ohw,
                      src, ohw, 1.0f, dw + (size_t)g * OCg * ckk, ckk);
        }
        if (dinp) {
          float *din_g = dinp + ((size_t)b * d.C + g * Cg) * d.H * d.W;
          if (pointwise) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, ohw, OCg, 1.0f, w_g, ckk,
                        dout_g, ohw, accumulate ? 1.0f : 0.0f, din_g, ohw);
          } else {
            if (!accumulate) memset(din_g, 0, sizeof(float) * Cg * d.H * d.W);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, ohw, OCg, 1.0f, w_g, ckk,
                        dout_g, ohw, 0.0f, dcol, ohw);
            col2im_add(din_g, dcol, Cg, d);
          }
        }
      }
    }
  }
  if (dweight) {
    for (int t = 1; t < nthreads; t++) {
      const float *p = dweight_partial + wsize * (t - 1);
      for (size_t i = 0; i < wsize; i++) dweight[i] += p[i];
    }
  }
  if (dbias) {
    /* over channels: each channel's sum keeps a fixed order */
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < d.OC; oc++) {
      double s = 0.0;
      for (int b = 0; b < d.B; b++) {
        const float *g = dout + ((size_t)b * d.OC + oc) * ohw;
        for (int i = 0; i < ohw; i++) s += g[i];
      }
      dbias[oc] += (float)s;
    }
  }
}

/* ---- naive oracle ------------------------------------------------------ */

void conv2d_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
                          Conv2dDims d) {
  const int Cg = d.C / d.groups, OCg = d.OC / d.groups;
  for (int b = 0; b < d.B; b++)
    for (int oc = 0; oc < d.OC; oc++) {
      const int g = oc / OCg;
      for (int oh = 0; oh < d.OH; oh++)
        for (int ow = 0; ow < d.OW; ow++) {
          double s = bias ? bias[oc] : 0.0;
          for (int c = 0; c < Cg; c++)
            for (int kh = 0; kh < d.KH; kh++)
              for (int kw = 0; kw < d.KW; kw++) {
                const int ih = oh * d.SH - d.PT + kh * d.DH;
                const int iw = ow * d.SW - d.PL + kw * d.DW;
                if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
                s += (double)inp[(((size_t)b * d.C + g * Cg + c) * d.H + ih) * d.W + iw] *
                     weight[(((size_t)oc * Cg + c) * d.KH + kh) * d.KW + kw];
              }
          out[(((size_t)b * d.OC + oc) * d.OH + oh) * d.OW + ow] = (float)s;
        }
    }
}

void conv2d_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, Conv2dDims d) {
  const int Cg = d.C / d.groups, OCg = d.OC / d.groups;
  for (int b = 0; b < d.B; b++)
    for (int oc = 0; oc < d.OC; oc++) {
      const int g = oc / OCg;
      for (int oh = 0; oh < d.OH; oh++)
        for (int ow = 0; ow < d.OW; ow++) {
          const float go = dout[(((size_t)b * d.OC + oc) * d.OH + oh) * d.OW + ow];
          if (dbias) dbias[oc] += go;
          for (int c = 0; c < Cg; c++)
            for (int kh = 0; kh < d.KH; kh++)
              for (int kw = 0; kw < d.KW; kw++) {
                const int ih = oh * d.SH - d.PT + kh * d.DH;
                const int iw = ow * d.SW - d.PL + kw * d.DW;
                if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
                const size_t ii = (((size_t)b * d.C + g * Cg + c) * d.H + ih) * d.W + iw;
                const size_t wi = (((size_t)oc * Cg + c) * d.KH + kh) * d.KW + kw;
                if (dinp) dinp[ii] += go * weight[wi];
                if (dweight) dweight[wi] += go * inp[ii];
              }
        }
    }
}
