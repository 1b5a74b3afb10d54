/* Shared test helpers: seeded fills and the finite-difference gradient check
 * (central differences, sums in double, normalised error as in ggml's
 * test-backend-ops). Included by each test_*.c, which link cmocka. */
#ifndef MR_TESTUTIL_H
#define MR_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka must come after the headers above */
#include <pthread.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "medrobust.h"

/* A fresh /tmp/medrobust-TAG-XXXXXX folder for a test group, and its removal. */
/* Two threads playing two processes that share each batch (BatchShare): test_pair_sum adds
 * both sides' values, meeting at a barrier, as dist_sum_doubles adds the ranks'. */
#define TEST_PAIR_MAX 4096
typedef struct {
  pthread_barrier_t barrier;
  double slot[2][TEST_PAIR_MAX];
} TestPair;

typedef struct {
  TestPair *pair;
  int side;
} TestPairSide;

static inline void test_pair_sum(double *v, int n, void *ctx) {
  TestPairSide *s = ctx;
  assert_true(n <= TEST_PAIR_MAX);
  memcpy(s->pair->slot[s->side], v, sizeof(double) * n);
  pthread_barrier_wait(&s->pair->barrier);
  for (int i = 0; i < n; i++) v[i] = s->pair->slot[0][i] + s->pair->slot[1][i];
  pthread_barrier_wait(&s->pair->barrier); /* both have read before the next call writes */
}

static inline int make_temp_dir(char *dir, size_t n, const char *tag) {
  snprintf(dir, n, "/tmp/medrobust-%s-XXXXXX", tag);
  return mkdtemp(dir) ? 0 : -1;
}

static inline int remove_dir(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static inline void fill_uniform(float *x, size_t n, Rng *rng, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(rng);
}

/* Values at least `gap` apart in absolute value from 0 and from each other in
 * rank order: keeps ReLU and max-pool inputs away from their kinks. */
static inline void fill_distinct(float *x, size_t n, Rng *rng, float scale) {
  for (size_t i = 0; i < n; i++) x[i] = scale * ((float)i - (float)n / 2.0f + 0.5f) / (float)n;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)rng_int(rng, (int)i);
    float t = x[i - 1];
    x[i - 1] = x[j];
    x[j] = t;
  }
}

static inline double dot_double(const float *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* ||a-b|| / max(||a||, ||b||, floor) */
static inline double normalised_error(const double *a, const double *b, size_t n, double floor) {
  double d = 0.0, na = 0.0, nb = 0.0;
  for (size_t i = 0; i < n; i++) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  double den = sqrt(na > nb ? na : nb);
  if (den < floor) den = floor;
  return sqrt(d) / den;
}

/* NaN when either side holds one: the kernel tests fill outputs with NaN first, so an element a
 * kernel never wrote fails every `< tolerance` check */
static inline double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    if (isnan(d)) return NAN;
    if (d > m) m = d;
  }
  return m;
}

/* A scalar function of a float array, evaluated with that array perturbed. */
typedef double (*ScalarFn)(void *ctx);

/* Checks analytic[i] = d fn / d x[i] for the listed coordinates (all if idx
 * is NULL) by central differences. With n_steps > 1 each coordinate also
 * tries h/10, h/100, ... and keeps the closest: inside a deep ReLU/max-pool
 * net a step can straddle a kink (the difference then converges to the
 * gradient only as h shrinks), while a wrong gradient matches at no step.
 * Returns the normalised error. */
static inline double gradcheck_steps(ScalarFn fn, void *ctx, float *x, const float *analytic,
                                     const size_t *idx, size_t n, float h, int n_steps) {
  double *num = malloc(sizeof(double) * n), *ana = malloc(sizeof(double) * n);
  for (size_t k = 0; k < n; k++) {
    const size_t i = idx ? idx[k] : k;
    const float saved = x[i];
    ana[k] = analytic[i];
    float step = h;
    for (int s = 0; s < n_steps; s++, step /= 10.0f) {
      x[i] = saved + step;
      const double fp = fn(ctx);
      x[i] = saved - step;
      const double fm = fn(ctx);
      x[i] = saved;
      /* the step actually taken in float, not the nominal one */
      const double d = (fp - fm) / ((double)(saved + step) - (double)(saved - step));
      if (s == 0 || fabs(d - ana[k]) < fabs(num[k] - ana[k])) num[k] = d;
    }
  }
  double e = normalised_error(ana, num, n, 1e-6);
  if (e > 1e-3) { /* name the worst coordinate */
    size_t w = 0;
    for (size_t k = 1; k < n; k++)
      if (fabs(ana[k] - num[k]) > fabs(ana[w] - num[w])) w = k;
    fprintf(stderr, "    worst [%zu] analytic %.6g numeric %.6g\n", idx ? idx[w] : w, ana[w],
            num[w]);
  }
  free(num);
  free(ana);
  return e;
}

static inline double gradcheck(ScalarFn fn, void *ctx, float *x, const float *analytic,
                               const size_t *idx, size_t n, float h) {
  return gradcheck_steps(fn, ctx, x, analytic, idx, n, h, 1);
}

/* Directional derivative check: (f(x+hu) - f(x-hu)) / 2h against <g, u>
 * for unit directions u: first the analytic gradient's own direction, then
 * that direction mixed with random Gaussian ones. Moving every coordinate a
 * little changes f far more than float rounding does, which a single
 * coordinate's difference through a deep float32 net cannot; along g there
 * is no cancellation between coordinates. Returns the largest relative error. */
static inline double gradcheck_directional(ScalarFn fn, void *ctx, float *x, const float *g,
                                           size_t n, float h, int n_dirs, Rng *rng) {
  float *saved = malloc(sizeof(float) * n);
  double *u = malloc(sizeof(double) * n), *r = malloc(sizeof(double) * n);
  memcpy(saved, x, sizeof(float) * n);
  double gnorm = sqrt(dot_double(g, g, n)), worst = 0.0;
  if (gnorm == 0.0) gnorm = 1.0;
  for (int d = 0; d < n_dirs; d++) {
    double rnorm = 0.0, unorm = 0.0, ana = 0.0;
    for (size_t i = 0; i < n; i++) r[i] = d ? rng_normal(rng) : 0.0, rnorm += r[i] * r[i];
    rnorm = d ? sqrt(rnorm) : 1.0;
    for (size_t i = 0; i < n; i++) u[i] = g[i] / gnorm + r[i] / rnorm, unorm += u[i] * u[i];
    unorm = sqrt(unorm);
    for (size_t i = 0; i < n; i++) u[i] /= unorm, ana += g[i] * u[i];
    double num = 0.0, step = h;
    for (int s = 0; s < 4; s++, step /= 10.0) { /* closest of h .. h/1000: see gradcheck_steps */
      for (size_t i = 0; i < n; i++) x[i] = (float)(saved[i] + step * u[i]);
      const double fp = fn(ctx);
      for (size_t i = 0; i < n; i++) x[i] = (float)(saved[i] - step * u[i]);
      const double fm = fn(ctx);
      const double d = (fp - fm) / (2.0 * step);
      if (s == 0 || fabs(d - ana) < fabs(num - ana)) num = d;
    }
    memcpy(x, saved, sizeof(float) * n);
    const double e = fabs(ana - num) / fmax(fmax(fabs(ana), fabs(num)), 1e-9);
    if (e > 1e-2) fprintf(stderr, "    direction %d: analytic %.6g numeric %.6g\n", d, ana, num);
    if (e > worst) worst = e;
  }
  free(saved);
  free(u);
  free(r);
  return worst;
}

/* The k coordinates with the largest |g|: well above float noise. */
static inline void top_indices(size_t *idx, size_t k, const float *g, size_t n) {
  for (size_t j = 0; j < k; j++) idx[j] = j;
  for (size_t i = k; i < n; i++) {
    size_t smallest = 0;
    for (size_t j = 1; j < k; j++)
      if (fabsf(g[idx[j]]) < fabsf(g[idx[smallest]])) smallest = j;
    if (fabsf(g[i]) > fabsf(g[idx[smallest]])) idx[smallest] = i;
  }
}

static inline void sample_indices(size_t *idx, size_t k, size_t n, Rng *rng) {
  for (size_t i = 0; i < k; i++) idx[i] = (size_t)(rng_next(rng) % n);
}

/* A whole file (the test fails if it cannot be read). */
static inline uint8_t *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(*n ? *n : 1);
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

/* A whole text file as a NUL-terminated string (the test fails if it cannot be read). */
static inline char *read_text(const char *path) {
  size_t n;
  char *t = (char *)read_all(path, &n);
  t = realloc(t, n + 1);
  t[n] = 0;
  return t;
}

/* Copies a safetensors file with its JSON header changed by edit(header, ctx),
 * the header re-padded to 8 bytes, the data bytes as they were. */
static inline void rewrite_safetensors_header(const char *from, const char *to,
                                              void (*edit)(cJSON *header, const void *ctx),
                                              const void *ctx) {
  size_t n;
  uint8_t *b = read_all(from, &n);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
  cJSON *h = cJSON_ParseWithLength((const char *)b + 8, hlen);
  assert_non_null(h);
  edit(h, ctx);
  char *header = cJSON_PrintUnformatted(h);
  const size_t len = strlen(header), padded = (len + 7) & ~(size_t)7;
  FILE *f = fopen(to, "wb");
  assert_non_null(f);
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = (uint8_t)(padded >> (8 * i));
  fwrite(le, 1, 8, f);
  fwrite(header, 1, len, f);
  for (size_t i = len; i < padded; i++) fputc(' ', f);
  fwrite(b + 8 + hlen, 1, n - 8 - hlen, f);
  fclose(f);
  free(header);
  cJSON_Delete(h);
  free(b);
}

/* A NIfTI-1 single file (n+1): the 348-byte header, 4 bytes of extension flags, then the
 * voxels; fields at their offsets in the standard. */
static inline void write_nifti(const char *path, const short dim[8], short datatype, short bitpix,
                               const float pixdim[4], const void *data, size_t bytes) {
  unsigned char h[352] = {0};
  const int sizeof_hdr = 348;
  const float vox_offset = 352, slope = 0, inter = 0;
  memcpy(h, &sizeof_hdr, 4);
  memcpy(h + 40, dim, 16);
  memcpy(h + 70, &datatype, 2);
  memcpy(h + 72, &bitpix, 2);
  memcpy(h + 76, pixdim, 16);
  memcpy(h + 108, &vox_offset, 4);
  memcpy(h + 112, &slope, 4);
  memcpy(h + 116, &inter, 4);
  memcpy(h + 344, "n+1", 4);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fwrite(h, 1, sizeof h, f);
  if (bytes) fwrite(data, 1, bytes, f);
  fclose(f);
}

#endif
