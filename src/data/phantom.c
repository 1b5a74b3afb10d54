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

/* One lesion's shape and look, drawn from the image's stream. */
typedef struct {
  int malignant;
  double s, cx, cy, r0, elong, tilt, contrast, edge, hetero;
  int lobe_k[2], n_spikes;
  double lobe_w[2], lobe_ph[2], spike_at[16], spike_len[16];
} Lesion;

/* separable: the segmentation phantom's kinds do not overlap (its task is
 * finding and naming each lesion, the pixels of one lesion share a kind) */
static void lesion_draw(Lesion *l, Rng *r, int size, int malignant, double cx, double cy,
                        double r_lo, double r_hi, int separable) {
  const double scale = size / 28.0;
  l->malignant = malignant;
  if (separable)
    l->s = malignant ? uniform(r, 0.55, 1.0) : uniform(r, 0.0, 0.25);
  else
    l->s = malignant ? uniform(r, 0.32, 1.0) : uniform(r, 0.0, 0.40);
  l->cx = cx + uniform(r, -0.12, 0.12) * size;
  l->cy = cy + uniform(r, -0.12, 0.12) * size;
  l->r0 = uniform(r, r_lo, r_hi) * size, l->elong = uniform(r, 0.0, 0.25);
  l->tilt = uniform(r, 0, PI), l->contrast = uniform(r, 0.18, 0.34);
  for (int k = 0; k < 2; k++)
    l->lobe_k[k] = 3 + rng_int(r, 4), l->lobe_w[k] = uniform(r, 0.5, 1.0),
    l->lobe_ph[k] = uniform(r, 0, 2 * PI);
  l->n_spikes = l->s > 0.45 ? (int)lround(3 + 10 * (l->s - 0.45)) : 0;
  for (int k = 0; k < l->n_spikes; k++)
    l->spike_at[k] = uniform(r, 0, 2 * PI), l->spike_len[k] = uniform(r, 0.3, 0.8) * l->s;
  l->edge = (1.2 - 0.6 * l->s) * scale, l->hetero = 0.10 * l->s;
}

/* How much pixel (x, y) is inside the lesion: a sigmoid of the margin. */
static double lesion_inside(const Lesion *l, int x, int y) {
  const double px = x + 0.5 - l->cx, py = y + 0.5 - l->cy;
  const double rx = px * cos(l->tilt) + py * sin(l->tilt),
               ry = -px * sin(l->tilt) + py * cos(l->tilt);
  const double dist = sqrt(rx * rx / ((1 + l->elong) * (1 + l->elong)) + ry * ry);
  const double theta = atan2(py, px);
  double radius = 1.0;
  for (int k = 0; k < 2; k++)
    radius += 0.30 * l->s * l->lobe_w[k] * sin(l->lobe_k[k] * theta + l->lobe_ph[k]) / 2;
  for (int k = 0; k < l->n_spikes; k++) {
    double dth = fabs(theta - l->spike_at[k]);
    if (dth > PI) dth = 2 * PI - dth;
    radius += l->spike_len[k] * exp(-(dth / 0.08) * (dth / 0.08));
  }
  radius *= l->r0;
  return 1.0 / (1.0 + exp(-(radius - dist) / l->edge));
}

/* Image `index` of the set: one lesion of the given kind (classification),
 * or, with mask, one or two lesions of random kinds and their label map
 * (background 0, benign 1, malignant 2; a pixel more than half inside). */
static void phantom_image(float *img, int *mask, int size, int malignant, uint64_t seed,
                          int index) {
  Rng r;
  rng_seed(&r, seed * 0x9E3779B97F4A7C15ULL + (uint64_t)index * 0xD1B54A32D192ED03ULL + 1);
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
  Lesion lesions[2];
  int n_lesions = 1;
  if (!mask) {
    lesion_draw(&lesions[0], &r, size, malignant, size / 2.0, size / 2.0, 0.14, 0.24, 0);
  } else {
    /* two lesions sit in opposite halves so they rarely touch */
    n_lesions = 1 + rng_int(&r, 2);
    const double angle = uniform(&r, 0, 2 * PI);
    for (int k = 0; k < n_lesions; k++) {
      const double off = n_lesions == 1 ? 0.0 : (k ? -0.22 : 0.22) * size;
      lesion_draw(&lesions[k], &r, size, rng_int(&r, 2), size / 2.0 + off * cos(angle),
                  size / 2.0 + off * sin(angle), n_lesions == 1 ? 0.14 : 0.09,
                  n_lesions == 1 ? 0.24 : 0.15, 1);
    }
  }
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
      int label = 0;
      double most = 0.5;
      for (int k = 0; k < n_lesions; k++) {
        const Lesion *l = &lesions[k];
        const double inside = lesion_inside(l, x, y);
        v += inside * (l->contrast + l->hetero * fine[(size - 1 - y) * size + x]);
        if (inside > most) most = inside, label = 1 + l->malignant;
      }
      v += noise * rng_normal(&r);
      img[y * size + x] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
      if (mask) mask[y * size + x] = label;
    }
  free(fine);
}

static DataSplits *generate(int size, int n, uint64_t seed, int segment, MrError *err) {
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
    if (dataset_alloc(ds, counts[s], 1, size, size, err) != STATUS_OK ||
        (segment && !(ds->masks = malloc(sizeof(int) * ((size_t)counts[s] * size * size + 1))))) {
      if (ds->images && segment) mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
      data_free(d);
      return NULL;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < counts[s]; i++) {
      const int global = first + i, malignant = global % 2;
      ds->labels[i] = segment ? 0 : malignant;
      phantom_image(ds->images + (size_t)i * size * size,
                    segment ? ds->masks + (size_t)i * size * size : NULL, size, malignant, seed,
                    global);
    }
    first += counts[s];
  }
  d->bits = 0; /* generated as floats; saved as 8-bit by data phantom */
  data_name_arrays(d, "_images");
  const char *names[3] = {"benign", "malignant", NULL};
  if (segment) names[0] = "background", names[1] = "benign", names[2] = "malignant";
  d->n_classes = segment ? 3 : 2;
  d->segment = segment;
  for (int k = 0; k < d->n_classes; k++) d->class_names[k] = strdup(names[k]);
  snprintf(d->source, sizeof d->source, "synthetic lesion phantom%s %dx%d, %d images, seed %llu",
           segment ? " (segmentation)" : "", size, size, n, (unsigned long long)seed);
  return d;
}

DataSplits *phantom_generate(int size, int n, uint64_t seed, MrError *err) {
  return generate(size, n, seed, 0, err);
}

DataSplits *phantom_generate_segment(int size, int n, uint64_t seed, MrError *err) {
  return generate(size, n, seed, 1, err);
}
