/* Inference's first convolution when the image has few channels (1 to 3: grey-level X-ray,
 * CT or MRI slices, colour photographs), channels-last, with the batchnorm folded in, its
 * ReLU, and optionally the 2x2 max-pool after it, so the full-size map is never written.
 * Why by hand: no library pools inside a convolution, and oneDNN runs a 1-channel 3x3 one far
 * from its FMA bound (cnn 28x28, 16 channels, batch 128: 0.34 ms, 85 GFLOP/s). cnn's first
 * convolution and pool: 28x28 0.34 + 0.14 -> 0.32-0.34 ms, 64x64 1.27 + 1.28 -> 1.42 ms
 * (bench_engine --profile). Unpooled it is no faster than oneDNN (memory-bound), so the net
 * uses it only with the pool. Output pixels go in strips of STRIP along a row (two
 * rows when pooling), each pixel's 16 channels one vector: 8 or 16 independent sums in
 * registers, each tap's weights loaded once per strip. The input is first copied with its
 * zero padding (and room for the last strip's columns past the edge), so the tap loops hold
 * no test. Built with -ffp-contract=fast (Makefile): the sums are multiply-adds. */
#include <string.h>

#include "gate.h"
#include "layers.h"

#define STRIP 8

int conv2d_few_supported(Conv2dDims d) {
  return d.C >= 1 && d.C <= CONV_FEW_MAX_CHANNELS && d.groups == 1 && d.OC % VEC == 0 &&
         d.OC <= CONV_FEW_MAX_OUT && d.DH <= 1 && d.DW <= 1 &&
         d.KH * d.KW * d.C <= CONV_FEW_MAX_TAPS;
}

/* the padded input's extent for `rows` x `cols` outputs */
static void padded_extent(Conv2dDims d, int *ph, int *pw) {
  const int cols = (d.OW + STRIP - 1) / STRIP * STRIP;
  *ph = (d.OH - 1) * d.SH + d.KH;
  *pw = (cols - 1) * d.SW + d.KW;
}

size_t conv2d_few_scratch_floats(Conv2dDims d) {
  int ph, pw;
  padded_extent(d, &ph, &pw);
  return (size_t)d.B * ph * pw * d.C;
}

/* weights [OC][C][KH][KW] into [OC/16][KH][KW][C][16]: a tap's 16 output channels contiguous */
static void pack_weights(float *packed, const float *w, Conv2dDims d) {
  for (int oc = 0; oc < d.OC; oc++)
    for (int c = 0; c < d.C; c++)
      for (int kh = 0; kh < d.KH; kh++)
        for (int kw = 0; kw < d.KW; kw++)
          packed[((((size_t)(oc / VEC) * d.KH + kh) * d.KW + kw) * d.C + c) * VEC + oc % VEC] =
              w[(((size_t)oc * d.C + c) * d.KH + kh) * d.KW + kw];
}

static void pad_input(float *xp, const float *inp, Conv2dDims d, int ph, int pw) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < d.B; b++)
    for (int h = 0; h < ph; h++) {
      float *dst = xp + ((size_t)b * ph + h) * pw * d.C;
      const int ih = h - d.PT, n = d.W < pw - d.PL ? d.W : pw - d.PL;
      memset(dst, 0, sizeof(float) * pw * d.C);
      if (ih >= 0 && ih < d.H)
        memcpy(dst + (size_t)d.PL * d.C, inp + ((size_t)b * d.H + ih) * d.W * d.C,
               sizeof(float) * n * d.C);
    }
}

/* acc[k][j]: the convolution at output row r0 + k, column q0 + j (n_rows and dense literals at
 * each call, so the sums stay in registers); x: the image's padded input, row pitch pw */
ALWAYS_INLINE void strip(Vec acc[2][STRIP], const int n_rows, const int dense, const float *x,
                         int pw, const float *w, Vec bias, Conv2dDims d, int r0, int q0) {
  const size_t step = dense ? 1 : (size_t)d.SW * d.C; /* between a strip's pixels */
  Vec s[2][STRIP]; /* local, whole loops of literal length: GCC keeps it in registers */
#pragma GCC unroll 16
  for (int k = 0; k < 2; k++)
#pragma GCC unroll 16
    for (int j = 0; j < STRIP; j++) s[k][j] = bias;
  for (int kh = 0; kh < d.KH; kh++)
    for (int kw = 0; kw < d.KW; kw++)
      for (int c = 0; c < d.C; c++) {
        const Vec wv = vec_load(w + ((size_t)(kh * d.KW + kw) * d.C + c) * VEC);
#pragma GCC unroll 16
        for (int k = 0; k < n_rows; k++) {
          const float *xq =
              x + ((size_t)((r0 + k) * d.SH + kh) * pw + (size_t)q0 * d.SW + kw) * d.C + c;
#pragma GCC unroll 16
          for (int j = 0; j < STRIP; j++) s[k][j] += xq[j * step] * wv;
        }
      }
  memcpy(acc, s, sizeof s);
}

void conv2d_few_forward_nhwc(float *out, float *scratch, const float *inp, const float *weight,
                             const float *bias, Conv2dDims d, int relu, int pool2) {
  float packed[CONV_FEW_MAX_OUT * CONV_FEW_MAX_TAPS];
  int ph, pw;
  pack_weights(packed, weight, d);
  padded_extent(d, &ph, &pw);
  pad_input(scratch, inp, d, ph, pw);
  const int n_vec = d.OC / VEC, out_h = pool2 ? d.OH / 2 : d.OH, out_w = pool2 ? d.OW / 2 : d.OW;
  const int per_strip = pool2 ? STRIP / 2 : STRIP, dense = d.SW == 1 && d.C == 1;
  const size_t per_image = (size_t)ph * pw * d.C, taps = (size_t)d.KH * d.KW * d.C * VEC;
  const Vec zero = {0};
#pragma omp parallel for collapse(3) schedule(static)
  for (int b = 0; b < d.B; b++)
    for (int ob = 0; ob < n_vec; ob++)
      for (int r = 0; r < out_h; r++) {
        const float *x = scratch + b * per_image, *w = packed + ob * taps;
        const Vec bv = vec_load(bias + ob * VEC);
        Vec acc[2][STRIP];
        for (int q0 = 0; q0 < out_w; q0 += per_strip) {
          /* literal shapes for the common cases: one channel at stride 1, pooled or not */
          if (pool2 && dense)
            strip(acc, 2, 1, x, pw, w, bv, d, 2 * r, 2 * q0);
          else if (pool2)
            strip(acc, 2, 0, x, pw, w, bv, d, 2 * r, 2 * q0);
          else if (dense)
            strip(acc, 1, 1, x, pw, w, bv, d, r, q0);
          else
            strip(acc, 1, 0, x, pw, w, bv, d, r, q0);
          const int n = out_w - q0 < per_strip ? out_w - q0 : per_strip;
          for (int j = 0; j < n; j++) {
            Vec best = acc[0][pool2 ? 2 * j : j];
            for (int k = 1; pool2 && k < 4; k++) /* the first of equal maxima, as maxpool2d */
              best = vec_max(best, acc[k / 2][2 * j + k % 2]);
            if (relu) best = vec_gate(best, best > zero);
            vec_store(out + (((size_t)b * out_h + r) * out_w + q0 + j) * d.OC + ob * VEC, best);
          }
        }
      }
}
