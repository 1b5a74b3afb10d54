/* Elementwise multiply / subtract / divide of a tensor by a constant or by a
 * broadcast tensor (each of its dims equal to the first's or 1), in either
 * layout. Loops run in the output's memory order; b is reached through
 * strides that are 0 along its broadcast dims. Parallel over images. */
#include <string.h>

#include "layers.h"

typedef struct {
  size_t c, h, w; /* element strides of b (0 = broadcast) */
} BStrides;

static BStrides b_strides(BinaryDims d) {
  BStrides s;
  const size_t hw = (size_t)d.bH * d.bW;
  if (d.channels_last) {
    s.c = d.bC > 1 ? 1 : 0;
    s.w = d.bW > 1 ? (size_t)d.bC : 0;
    s.h = d.bH > 1 ? (size_t)d.bW * d.bC : 0;
  } else {
    s.w = d.bW > 1 ? 1 : 0;
    s.h = d.bH > 1 ? (size_t)d.bW : 0;
    s.c = d.bC > 1 ? hw : 0;
  }
  return s;
}

static inline float apply(BinaryOp op, float a, float b) {
  return op == BINARY_MUL ? a * b : op == BINARY_SUB ? a - b : a / b;
}

/* calls body(i, j) for every element i of image b of a, j its partner in b */
#define FOR_EACH(d, s, img, body)                                        \
  do {                                                                   \
    const size_t a0 = (size_t)(img) * (d).C * (d).H * (d).W;             \
    const size_t b0 = (size_t)(img) * (d).bC * (d).bH * (d).bW;          \
    if ((d).channels_last) {                                             \
      for (int h = 0; h < (d).H; h++)                                    \
        for (int w = 0; w < (d).W; w++)                                  \
          for (int c = 0; c < (d).C; c++) {                              \
            const size_t i = a0 + (((size_t)h * (d).W + w) * (d).C + c); \
            const size_t j = b0 + h * (s).h + w * (s).w + c * (s).c;     \
            body;                                                        \
          }                                                              \
    } else {                                                             \
      for (int c = 0; c < (d).C; c++)                                    \
        for (int h = 0; h < (d).H; h++)                                  \
          for (int w = 0; w < (d).W; w++) {                              \
            const size_t i = a0 + (((size_t)c * (d).H + h) * (d).W + w); \
            const size_t j = b0 + c * (s).c + h * (s).h + w * (s).w;     \
            body;                                                        \
          }                                                              \
    }                                                                    \
  } while (0)

void binary_forward(float *out, const float *a, const float *b, BinaryDims d) {
  const size_t n = (size_t)d.C * d.H * d.W;
  if (!b) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n * d.B; i++) out[i] = apply(d.op, a[i], d.value);
    return;
  }
  const BStrides s = b_strides(d);
#pragma omp parallel for schedule(static)
  for (int img = 0; img < d.B; img++) FOR_EACH(d, s, img, out[i] = apply(d.op, a[i], b[j]));
}

void binary_backward(float *da, int accumulate_a, float *db, const float *dout, const float *a,
                     const float *b, BinaryDims d) {
  const size_t n = (size_t)d.C * d.H * d.W;
  if (!b) {
    const float k = d.op == BINARY_MUL ? d.value : d.op == BINARY_SUB ? 1.0f : 1.0f / d.value;
    if (!da) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n * d.B; i++) {
      const float g = d.op == BINARY_DIV ? dout[i] / d.value : dout[i] * k;
      da[i] = accumulate_a ? da[i] + g : g;
    }
    return;
  }
  const BStrides s = b_strides(d);
  const BinaryOp op = d.op;
#pragma omp parallel for schedule(static)
  for (int img = 0; img < d.B; img++) {
    FOR_EACH(d, s, img, {
      const float g = dout[i];
      if (da) {
        const float v = op == BINARY_MUL ? g * b[j] : op == BINARY_SUB ? g : g / b[j];
        da[i] = accumulate_a ? da[i] + v : v;
      }
      if (db)
        db[j] += op == BINARY_MUL ? g * a[i] : op == BINARY_SUB ? -g : -g * a[i] / (b[j] * b[j]);
    });
  }
}
