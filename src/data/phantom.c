/* The built-in synthetic lesion phantom: CT-like patches of textured tissue
 * with one lesion each. Benign lesions are smooth, round or slightly oval;
 * malignant ones have lobulated, spiculated margins and a heterogeneous
 * interior. One latent "irregularity" s in [0,1] drives the margin; the two
 * classes' ranges of s overlap (benign 0..0.40, malignant 0.32..1), so with
 * acquisition noise a small CNN reaches roughly 85-95%, not 100%. Image i is
 * drawn from its own RNG stream (seed, i): reproducible, order-free. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

#define PI 3.14159265358979323846

static double uniform(Rng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

static void phantom_image(float *img, int size, int malignant, uint64_t seed, int index) {
  Rng r;
  rng_seed(&r, seed * 0x9E3779B97F4A7C15ULL + (uint64_t)index * 0xD1B54A32D192ED03ULL + 1);
  const double scale = size / 28.0;
  /* tissue: a few low-frequency waves plus fine blurred texture */
  double wave_amp[6], wave_fx[6], wave_fy[6], wave_ph[6];
  for (int k = 0; k < 6; k++) {
    const double wavelength = uniform(&r, size / 3.0, size * 1.2), angle = uniform(&r, 0, PI);
    wave_fx[k] = 2 * PI * cos(angle) / wavelength, wave_fy[k] = 2 * PI * sin(angle) / wavelength;
    wave_amp[k] = uniform(&r, 0.015, 0.045), wave_ph[k] = uniform(&r, 0, 2 * PI);
  }
  const double base = uniform(&r, 0.28, 0.42);
  float *fine = malloc(sizeof(float) * size * size);
  for (int i = 0; i < size * size; i++) fine[i] = rng_normal(&r);
  /* the lesion */
  const double s = malignant ? uniform(&r, 0.32, 1.0) : uniform(&r, 0.0, 0.40);
  const double cx = size / 2.0 + uniform(&r, -0.12, 0.12) * size;
  const double cy = size / 2.0 + uniform(&r, -0.12, 0.12) * size;
  const double r0 = uniform(&r, 0.14, 0.24) * size, elong = uniform(&r, 0.0, 0.25);
  const double tilt = uniform(&r, 0, PI), contrast = uniform(&r, 0.18, 0.34);
  int lobe_k[2];
  double lobe_w[2], lobe_ph[2];
  for (int k = 0; k < 2; k++)
    lobe_k[k] = 3 + rng_int(&r, 4), lobe_w[k] = uniform(&r, 0.5, 1.0),
    lobe_ph[k] = uniform(&r, 0, 2 * PI);
  const int n_spikes = s > 0.45 ? (int)lround(3 + 10 * (s - 0.45)) : 0;
  double spike_at[16], spike_len[16];
  for (int k = 0; k < n_spikes; k++)
    spike_at[k] = uniform(&r, 0, 2 * PI), spike_len[k] = uniform(&r, 0.3, 0.8) * s;
  const double edge = (1.2 - 0.6 * s) * scale, hetero = 0.10 * s;
  const double noise = uniform(&r, 0.02, 0.05);
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      double v = base;
      for (int k = 0; k < 6; k++)
        v += wave_amp[k] * cos(wave_fx[k] * x + wave_fy[k] * y + wave_ph[k]);
      /* 3x3 box blur of the fine texture */
      double t = 0;
      int cnt = 0;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          const int yy = y + dy, xx = x + dx;
          if (yy >= 0 && yy < size && xx >= 0 && xx < size) t += fine[yy * size + xx], cnt++;
        }
      v += 0.05 * t / cnt;
      /* lesion radius in this direction: ellipse, lobes, spicules */
      const double px = x + 0.5 - cx, py = y + 0.5 - cy;
      const double rx = px * cos(tilt) + py * sin(tilt), ry = -px * sin(tilt) + py * cos(tilt);
      const double dist = sqrt(rx * rx / ((1 + elong) * (1 + elong)) + ry * ry);
      const double theta = atan2(py, px);
      double radius = 1.0;
      for (int k = 0; k < 2; k++)
        radius += 0.30 * s * lobe_w[k] * sin(lobe_k[k] * theta + lobe_ph[k]) / 2;
      for (int k = 0; k < n_spikes; k++) {
        double dth = fabs(theta - spike_at[k]);
        if (dth > PI) dth = 2 * PI - dth;
        radius += spike_len[k] * exp(-(dth / 0.08) * (dth / 0.08));
      }
      radius *= r0;
      const double inside = 1.0 / (1.0 + exp(-(radius - dist) / edge));
      v += inside * (contrast + hetero * fine[(size - 1 - y) * size + x]);
      v += noise * rng_normal(&r);
      img[y * size + x] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
  free(fine);
}

DataSplits *phantom_generate(int size, int n, uint64_t seed, MrError *err) {
  if (size != 28 && size != 64) {
    mr_error_set(err, STATUS_ERR_ARG, "phantom size must be 28 or 64, not %d", size);
    return NULL;
  }
  if (n < 20 || n > 1000000) {
    mr_error_set(err, STATUS_ERR_ARG, "phantom needs 20..1000000 images, not %d", n);
    return NULL;
  }
  DataSplits *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  const int counts[SPLIT_COUNT] = {n * 7 / 10, n / 10, n - n * 7 / 10 - n / 10};
  int first = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    Dataset *ds = &d->split[s];
    if (dataset_alloc(ds, counts[s], 1, size, size, err) != STATUS_OK) {
      data_free(d);
      return NULL;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < counts[s]; i++) {
      const int global = first + i, malignant = global % 2;
      ds->labels[i] = malignant;
      phantom_image(ds->images + (size_t)i * size * size, size, malignant, seed, global);
    }
    first += counts[s];
  }
  d->n_classes = 2;
  d->bits = 0; /* generated as floats; saved as 8-bit by data phantom */
  data_name_arrays(d, "_images");
  d->class_names[0] = strdup("benign");
  d->class_names[1] = strdup("malignant");
  snprintf(d->source, sizeof d->source, "synthetic lesion phantom %dx%d, %d images, seed %llu",
           size, size, n, (unsigned long long)seed);
  return d;
}
