/* Elementwise ops: ReLU, residual add (with an optional fused ReLU), inverted dropout. */
#include <math.h>
#include <string.h>

#include "gate.h"
#include "layers.h"

void relu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, int accumulate, const float *dout, const float *out, size_t n) {
  add_backward(dinp, accumulate, NULL, 0, dout, out, n);
}

void add_forward(float *out, const float *a, const float *b, size_t n, int relu) {
  if (relu) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float v = a[i] + b[i];
      out[i] = v > 0.0f ? v : 0.0f;
    }
  } else {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
  }
}

/* dout, masked by out > 0 when out is given, into g[0] and g[1] (+= where acc[k]; a NULL
 * gradient is not wanted) over [lo, hi); g[0] before g[1]: if they alias (x + x) the second
 * write accumulates */
static inline void pass_gradient(float *const g[2], const int acc[2], const float *dout,
                                 const float *out, size_t lo, size_t hi) {
  for (size_t i = lo; i < hi; i++) {
    const float v = !out || out[i] > 0.0f ? dout[i] : 0.0f;
    for (int k = 0; k < 2; k++)
      if (g[k]) g[k][i] = acc[k] ? g[k][i] + v : v;
  }
}

void add_backward(float *da, int accumulate_a, float *db, int accumulate_b, const float *dout,
                  const float *out, size_t n) {
  float *const g[2] = {da, db};
  const int acc[2] = {accumulate_a, accumulate_b};
  const size_t vectors = n / VEC;
  const Vec zero = {0};
  /* the mask by vectors (gate.h): a 128x16x64x64 ReLU'd add's backward, one gradient
   * accumulated, 3.3-4.4 -> 2.7-3.6 ms; a ReLU's 2.2-3.0 -> 1.7-2.5 ms (medians of 30, three
   * rounds alternated) */
#pragma omp parallel for schedule(static)
  for (size_t v = 0; v < vectors; v++) {
    const size_t at = v * VEC;
    Vec d = vec_load(dout + at);
    if (out) d = vec_gate(d, vec_load(out + at) > zero);
    for (int k = 0; k < 2; k++)
      if (g[k]) vec_store(g[k] + at, acc[k] ? vec_load(g[k] + at) + d : d);
  }
  pass_gradient(g, acc, dout, out, vectors * VEC, n);
}

void dropout_forward(float *out, float *mask, const float *inp, size_t n, int rows, int first_row,
                     int row_stride, float p, Mode mode, Rng *rng) {
  if (mode == MODE_EVAL || p <= 0.0f) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i];
    return;
  }
  const uint64_t seed = rng_next(rng);
  const float keep = 1.0f / (1.0f - p);
  const size_t per = rows > 0 ? n / rows : 0;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < rows; b++) {
    Rng row;
    rng_seed_stream(&row, seed, (uint64_t)first_row + (uint64_t)b * row_stride);
    for (size_t i = per * b; i < per * (b + 1); i++) {
      mask[i] = rng_uniform(&row) >= p ? keep : 0.0f;
      out[i] = inp[i] * mask[i];
    }
  }
}

void dropout_backward(float *dinp, int accumulate, const float *dout, const float *mask, size_t n,
                      Mode mode) {
  const int identity = mode == MODE_EVAL || !mask;
  for (size_t i = 0; i < n; i++) {
    const float g = identity ? dout[i] : dout[i] * mask[i];
    dinp[i] = accumulate ? dinp[i] + g : g;
  }
}

void quantize_forward(float *out, const float *inp, size_t n, int levels) {
  const float q = (float)(levels - 1);
  for (size_t i = 0; i < n; i++) out[i] = roundf(inp[i] * q) / q;
}

void quantize_backward(float *dinp, int accumulate, size_t n) {
  if (!accumulate) memset(dinp, 0, sizeof(float) * n);
}

void leaky_relu_forward(float *out, const float *inp, size_t n, float slope) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : slope * inp[i];
}

void leaky_relu_backward(float *dinp, int accumulate, const float *dout, const float *inp, size_t n,
                         float slope) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float g = inp[i] > 0 ? dout[i] : slope * dout[i];
    dinp[i] = accumulate ? dinp[i] + g : g;
  }
}

void sigmoid_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = (float)(1.0 / (1.0 + exp(-(double)inp[i])));
}

void sigmoid_backward(float *dinp, int accumulate, const float *dout, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float g = dout[i] * out[i] * (1.0f - out[i]);
    dinp[i] = accumulate ? dinp[i] + g : g;
  }
}

void clip_forward(float *out, const float *inp, size_t n, float lo, float hi) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float v = inp[i];
    out[i] = v < lo ? lo : v > hi ? hi : v;
  }
}

void clip_backward(float *dinp, int accumulate, const float *dout, const float *inp, size_t n,
                   float lo, float hi) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float g = inp[i] > lo && inp[i] < hi ? dout[i] : 0.0f;
    dinp[i] = accumulate ? dinp[i] + g : g;
  }
}
