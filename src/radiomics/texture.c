/* What the texture families share (IBSI-1 sections 3.6-3.11): the
 * aggregation of their matrices over slices and directions, and the
 * "emphasis" features of every grey level x count matrix (run length, zone
 * size, zone distance, dependence count). A family supplies how to build
 * one matrix and its features; the aggregation is here, once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "texture.h"

static int add_all(RadiomicsFeatures *f, const TextureFamily *t, const char *label,
                   const char *suffix, const double *values) {
  char family[64], tag[48];
  snprintf(family, sizeof family, "%s (%s)", t->family, label);
  for (int k = 0; k < t->n_features; k++) {
    snprintf(tag, sizeof tag, "%s_%s_%s", t->prefix, t->tags[k], suffix);
    if (!rad_add(f, family, t->names[k], tag, values[k])) return 0;
  }
  return 1;
}

/* running mean of feature vectors over the matrices that hold any count */
typedef struct {
  double sum[TEXTURE_MAX_FEATURES];
  int n;
} Mean;

static void mean_add(Mean *m, const TextureFamily *t, const Roi *r, const double *matrix,
                     double nv) {
  double v[TEXTURE_MAX_FEATURES];
  if (!t->features(r, matrix, nv, v)) return;
  for (int k = 0; k < t->n_features; k++) m->sum[k] += v[k];
  m->n++;
}

static void mean_get(const Mean *m, int n_features, double *out) {
  for (int k = 0; k < n_features; k++) out[k] = m->n ? m->sum[k] / m->n : NAN;
}

static void accumulate(double *into, const double *m, size_t size) {
  for (size_t i = 0; i < size; i++) into[i] += m[i];
}

Status texture_directional(const Roi *r, const TextureFamily *t, RadiomicsFeatures *f,
                           MrError *err) {
  const size_t size = t->matrix_size(r);
  /* one matrix, four per-direction sums over the slices, a slice's sum, the whole sum */
  double *one = malloc(sizeof(double) * size), *per_dir = calloc(4 * size, sizeof(double));
  double *slice = malloc(sizeof(double) * size), *all = calloc(size, sizeof(double));
  double *merged3 = calloc(size, sizeof(double));
  Status s =
      one && per_dir && slice && all && merged3
          ? STATUS_OK
          : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory for %s", t->family);
  /* per_slice: each slice's directions merged; per_direction: each direction's slices
   * merged */
  Mean avg2 = {0}, per_slice = {0}, per_direction = {0}, avg3 = {0};
  double nv_dir[4] = {0}, nv_all = 0, nv3 = 0, values[TEXTURE_MAX_FEATURES];
  for (int z = 0; s == STATUS_OK && z < r->nz; z++) {
    memset(slice, 0, sizeof(double) * size);
    double nv_slice = 0;
    for (int d = 0; d < 4; d++) {
      double nv;
      t->build(r, z, rad_directions[d], one, &nv);
      mean_add(&avg2, t, r, one, nv);
      accumulate(per_dir + d * size, one, size), nv_dir[d] += nv;
      accumulate(slice, one, size), nv_slice += nv;
    }
    mean_add(&per_slice, t, r, slice, nv_slice);
    accumulate(all, slice, size), nv_all += nv_slice;
  }
  for (int d = 0; s == STATUS_OK && d < 4; d++)
    mean_add(&per_direction, t, r, per_dir + d * size, nv_dir[d]);
  for (int d = 0; s == STATUS_OK && d < 13; d++) {
    double nv;
    t->build(r, -1, rad_directions[d], one, &nv);
    mean_add(&avg3, t, r, one, nv);
    accumulate(merged3, one, size), nv3 += nv;
  }
  int ok = s == STATUS_OK;
  mean_get(&avg2, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_2D_AVG], rad_agg_suffix[AGG_2D_AVG], values);
  mean_get(&per_slice, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_2D_MERGED], rad_agg_suffix[AGG_2D_MERGED], values);
  mean_get(&per_direction, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_25D_AVG], rad_agg_suffix[AGG_25D_AVG], values);
  Mean single = {0};
  mean_add(&single, t, r, all, nv_all);
  mean_get(&single, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_25D_MERGED], rad_agg_suffix[AGG_25D_MERGED], values);
  mean_get(&avg3, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_3D_AVG], rad_agg_suffix[AGG_3D_AVG], values);
  single = (Mean){0};
  mean_add(&single, t, r, merged3, nv3);
  mean_get(&single, t->n_features, values);
  ok = ok && add_all(f, t, rad_agg_label[AGG_3D_MERGED], rad_agg_suffix[AGG_3D_MERGED], values);
  free(one), free(per_dir), free(slice), free(all), free(merged3);
  if (s == STATUS_OK && !ok) s = mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  return s;
}

Status texture_regional(const Roi *r, const TextureFamily *t, RadiomicsFeatures *f, MrError *err) {
  const size_t size = t->matrix_size(r);
  double *one = malloc(sizeof(double) * size), *all = calloc(size, sizeof(double));
  if (!one || !all) {
    free(one), free(all);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory for %s", t->family);
  }
  Mean per_slice = {0}, single = {0}, whole = {0};
  double nv_all = 0, values[TEXTURE_MAX_FEATURES];
  for (int z = 0; z < r->nz; z++) {
    double nv;
    t->build(r, z, NULL, one, &nv);
    mean_add(&per_slice, t, r, one, nv);
    accumulate(all, one, size), nv_all += nv;
  }
  mean_add(&single, t, r, all, nv_all);
  double nv3;
  t->build(r, -1, NULL, one, &nv3);
  mean_add(&whole, t, r, one, nv3);
  mean_get(&per_slice, t->n_features, values);
  int ok = add_all(f, t, "2D", "2D", values);
  mean_get(&single, t->n_features, values);
  ok = ok && add_all(f, t, "2.5D", "2_5D", values);
  mean_get(&whole, t->n_features, values);
  ok = ok && add_all(f, t, "3D", "3D", values);
  free(one), free(all);
  return ok ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
}

int texture_emphasis(const double *m, int ng, int nj, double nv, double *out) {
  double ns = 0;
  for (int i = 0; i < ng * nj; i++) ns += m[i];
  if (ns <= 0) return 0;
  double e[8] = {0}, mu_i = 0, mu_j = 0, glnu = 0, jnu = 0, entropy = 0, energy = 0;
  for (int i = 1; i <= ng; i++) {
    double row = 0;
    for (int j = 1; j <= nj; j++) {
      const double c = m[(i - 1) * nj + (j - 1)];
      if (c == 0) continue;
      const double ii = (double)i * i, jj = (double)j * j, p = c / ns;
      e[0] += c / jj, e[1] += c * jj, e[2] += c / ii, e[3] += c * ii;
      e[4] += c / (ii * jj), e[5] += c * ii / jj, e[6] += c * jj / ii, e[7] += c * ii * jj;
      mu_i += i * p, mu_j += j * p;
      entropy -= p * log2(p), energy += p * p;
      row += c;
    }
    glnu += row * row;
  }
  for (int j = 1; j <= nj; j++) {
    double col = 0;
    for (int i = 1; i <= ng; i++) col += m[(i - 1) * nj + (j - 1)];
    jnu += col * col;
  }
  double var_i = 0, var_j = 0;
  for (int i = 1; i <= ng; i++)
    for (int j = 1; j <= nj; j++) {
      const double p = m[(i - 1) * nj + (j - 1)] / ns;
      var_i += (i - mu_i) * (i - mu_i) * p, var_j += (j - mu_j) * (j - mu_j) * p;
    }
  for (int k = 0; k < 8; k++) out[k] = e[k] / ns;
  out[8] = glnu / ns, out[9] = glnu / (ns * ns), out[10] = jnu / ns, out[11] = jnu / (ns * ns);
  out[12] = nv > 0 ? ns / nv : NAN;
  out[13] = var_i, out[14] = var_j, out[15] = entropy, out[16] = energy;
  return 1;
}
