/* Neighbourhood grey tone difference (IBSI-1 section 3.10) and neighbouring
 * grey level dependence (3.11) matrices, over each ROI voxel's Chebyshev
 * distance 1 neighbours in the ROI (8 in a slice, 26 in 3-D). The NGTDM
 * leaves out voxels without a neighbour in the ROI; the NGLDM counts, for
 * each voxel, 1 + its neighbours of the same grey level (coarseness alpha 0). */
#include <math.h>
#include <string.h>

#include "texture.h"

static const char *const ngt_names[] = {"Coarseness", "Contrast", "Busyness", "Complexity",
                                        "Strength"};
static const char *const ngt_tags[] = {"coarseness", "contrast", "busyness", "complexity",
                                       "strength"};
static const char *const ngl_names[] = {"Low dependence emphasis",
                                        "High dependence emphasis",
                                        "Low grey level count emphasis",
                                        "High grey level count emphasis",
                                        "Low dependence low grey level emphasis",
                                        "Low dependence high grey level emphasis",
                                        "High dependence low grey level emphasis",
                                        "High dependence high grey level emphasis",
                                        "Grey level non-uniformity",
                                        "Normalised grey level non-uniformity",
                                        "Dependence count non-uniformity",
                                        "Normalised dependence count non-uniformity",
                                        "Dependence count percentage",
                                        "Grey level variance",
                                        "Dependence count variance",
                                        "Dependence count entropy",
                                        "Dependence count energy"};
static const char *const ngl_tags[] = {
    "lde",       "hde",  "lgce",      "hgce",    "ldlge",  "ldhge",  "hdlge",   "hdhge",    "glnu",
    "glnu_norm", "dcnu", "dcnu_norm", "dc_perc", "gl_var", "dc_var", "dc_entr", "dc_energy"};

/* Calls visit(level, neighbour levels sum, neighbours, same-level neighbours) per ROI voxel
 * of slice z (-1: the volume). */
typedef void (*VisitFn)(double *m, int ng, int g, double sum, int count, int same);

static void each_voxel(const Roi *r, int z, double *m, double *nv, VisitFn visit) {
  const int z0 = z < 0 ? 0 : z, z1 = z < 0 ? r->nz : z + 1, reach = z < 0 ? 1 : 0;
  *nv = 0;
  for (int k = z0; k < z1; k++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!roi_inside(r, x, y, k)) continue;
        (*nv)++;
        const int g = r->q[roi_index(r, x, y, k)];
        double sum = 0;
        int count = 0, same = 0;
        for (int dk = -reach; dk <= reach; dk++)
          for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
              if ((!dx && !dy && !dk) || !roi_inside(r, x + dx, y + dy, k + dk)) continue;
              const int h = r->q[roi_index(r, x + dx, y + dy, k + dk)];
              sum += h, count++, same += h == g;
            }
        visit(m, r->ng, g, sum, count, same);
      }
}

/* NGTDM: row 0 the sums s_i of |i - neighbourhood mean|, row 1 the counts n_i */
static void ngt_visit(double *m, int ng, int g, double sum, int count, int same) {
  (void)same;
  if (!count) return;
  m[g - 1] += fabs(g - sum / count), m[ng + g - 1] += 1;
}

static size_t ngt_size(const Roi *r) { return 2 * (size_t)r->ng; }

static void ngt_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  (void)dir;
  memset(m, 0, sizeof(double) * ngt_size(r));
  each_voxel(r, z, m, nv, ngt_visit);
}

static int ngt_features(const Roi *r, const double *m, double nv, double *out) {
  (void)nv;
  const int ng = r->ng;
  const double *s = m, *n = m + ng;
  double nvc = 0, s_total = 0, ps = 0;
  int ngp = 0;
  for (int i = 0; i < ng; i++) nvc += n[i], s_total += s[i];
  if (nvc <= 0) return 0;
  for (int i = 0; i < ng; i++) ps += n[i] / nvc * s[i], ngp += n[i] > 0;
  double contrast = 0, busy = 0, complexity = 0, strength = 0;
  for (int i = 0; i < ng; i++) {
    const double pi = n[i] / nvc;
    if (pi <= 0) continue;
    for (int j = 0; j < ng; j++) {
      const double pj = n[j] / nvc;
      if (pj <= 0) continue;
      const double d = (double)(i - j);
      contrast += pi * pj * d * d;
      busy += fabs((i + 1) * pi - (j + 1) * pj);
      complexity += fabs(d) * (pi * s[i] + pj * s[j]) / (pi + pj);
      strength += (pi + pj) * d * d;
    }
  }
  out[0] = ps > 0 ? 1 / ps : 1e6; /* IBSI's cap for a uniform ROI */
  out[1] = ngp > 1 ? contrast / (ngp * (ngp - 1.0)) * s_total / nvc : 0;
  out[2] = busy > 0 ? ps / busy : 0;
  out[3] = complexity / nvc;
  out[4] = s_total > 0 ? strength / s_total : 0;
  return 1;
}

/* NGLDM: (level, 1 + same-level neighbours) */
#define NGL_MAX 27 /* 1 + 26 neighbours */
static void ngl_visit(double *m, int ng, int g, double sum, int count, int same) {
  (void)ng, (void)sum, (void)count;
  m[(long)(g - 1) * NGL_MAX + same] += 1;
}

static size_t ngl_size(const Roi *r) { return (size_t)r->ng * NGL_MAX; }

static void ngl_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  (void)dir;
  memset(m, 0, sizeof(double) * ngl_size(r));
  each_voxel(r, z, m, nv, ngl_visit);
}

static int ngl_features(const Roi *r, const double *m, double nv, double *out) {
  return texture_emphasis(m, r->ng, NGL_MAX, nv, out);
}

static const TextureFamily grey_tone = {"Neighbourhood grey tone difference matrix",
                                        "ngt",
                                        5,
                                        ngt_names,
                                        ngt_tags,
                                        ngt_size,
                                        ngt_build,
                                        ngt_features};
static const TextureFamily dependence = {"Neighbouring grey level dependence matrix",
                                         "ngl",
                                         17,
                                         ngl_names,
                                         ngl_tags,
                                         ngl_size,
                                         ngl_build,
                                         ngl_features};

Status rad_neighbourhood(const Roi *r, RadiomicsFeatures *f, MrError *err) {
  Status s = texture_regional(r, &grey_tone, f, err);
  return s == STATUS_OK ? texture_regional(r, &dependence, f, err) : s;
}
