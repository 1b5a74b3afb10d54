/* Grey level co-occurrence (IBSI-1 section 3.6) and run length (3.7)
 * matrices: both are built along one direction at a time, at distance 1,
 * from pairs / runs of ROI voxels, and aggregated by texture.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "texture.h"

/* ---- co-occurrence --------------------------------------------------------- */

static const char *const cm_names[] = {"Joint maximum",
                                       "Joint average",
                                       "Joint variance",
                                       "Joint entropy",
                                       "Difference average",
                                       "Difference variance",
                                       "Difference entropy",
                                       "Sum average",
                                       "Sum variance",
                                       "Sum entropy",
                                       "Angular second moment",
                                       "Contrast",
                                       "Dissimilarity",
                                       "Inverse difference",
                                       "Normalised inverse difference",
                                       "Inverse difference moment",
                                       "Normalised inverse difference moment",
                                       "Inverse variance",
                                       "Correlation",
                                       "Autocorrelation",
                                       "Cluster tendency",
                                       "Cluster shade",
                                       "Cluster prominence",
                                       "Information correlation 1",
                                       "Information correlation 2"};
static const char *const cm_tags[] = {
    "joint_max",    "joint_avg",         "joint_var",     "joint_entr", "diff_avg",
    "diff_var",     "diff_entr",         "sum_avg",       "sum_var",    "sum_entr",
    "energy",       "contrast",          "dissimilarity", "inv_diff",   "inv_diff_norm",
    "inv_diff_mom", "inv_diff_mom_norm", "inv_var",       "corr",       "auto_corr",
    "clust_tend",   "clust_shade",       "clust_prom",    "info_corr1", "info_corr2"};

static size_t cm_size(const Roi *r) { return (size_t)r->ng * r->ng; }

static void cm_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  memset(m, 0, sizeof(double) * cm_size(r));
  *nv = 0;
  const int z0 = z < 0 ? 0 : z, z1 = z < 0 ? r->nz : z + 1;
  for (int k = z0; k < z1; k++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!roi_inside(r, x, y, k)) continue;
        (*nv)++;
        if (!roi_inside(r, x + dir[0], y + dir[1], k + dir[2])) continue;
        const int a = r->q[roi_index(r, x, y, k)] - 1,
                  b = r->q[roi_index(r, x + dir[0], y + dir[1], k + dir[2])] - 1;
        m[a * r->ng + b] += 1, m[b * r->ng + a] += 1; /* symmetric: both orders */
      }
}

static int cm_features(const Roi *r, const double *m, double nv, double *out) {
  (void)nv;
  const int ng = r->ng;
  double total = 0;
  for (int i = 0; i < ng * ng; i++) total += m[i];
  if (total <= 0) return 0;
  double px[ng + 1], diff[ng], sum[2 * ng + 1];
  memset(px, 0, sizeof px), memset(diff, 0, sizeof diff), memset(sum, 0, sizeof sum);
  double jmax = 0, mu = 0, entropy = 0, asm_ = 0, contrast = 0, dissim = 0, id = 0, idn = 0,
         idm = 0, idmn = 0, auto_corr = 0;
  for (int i = 1; i <= ng; i++)
    for (int j = 1; j <= ng; j++) {
      const double p = m[(i - 1) * ng + (j - 1)] / total;
      if (p == 0) continue;
      const int k = abs(i - j);
      px[i] += p, diff[k] += p, sum[i + j] += p;
      jmax = fmax(jmax, p), mu += i * p, entropy -= p * log2(p), asm_ += p * p;
      contrast += (double)k * k * p, dissim += k * p;
      id += p / (1.0 + k), idn += p / (1.0 + (double)k / ng);
      idm += p / (1.0 + (double)k * k), idmn += p / (1.0 + (double)k * k / ((double)ng * ng));
      auto_corr += (double)i * j * p;
    }
  double var = 0, tend = 0, shade = 0, prom = 0, hxy1 = 0, hxy2 = 0, hx = 0;
  for (int i = 1; i <= ng; i++) {
    if (px[i] > 0) hx -= px[i] * log2(px[i]);
    for (int j = 1; j <= ng; j++) {
      const double p = m[(i - 1) * ng + (j - 1)] / total, pp = px[i] * px[j];
      const double c = i + j - 2 * mu;
      var += (i - mu) * (i - mu) * p;
      tend += c * c * p, shade += c * c * c * p, prom += c * c * c * c * p;
      if (pp > 0) hxy1 -= p * log2(pp), hxy2 -= pp * log2(pp);
    }
  }
  double d_avg = 0, d_var = 0, d_entr = 0, inv_var = 0, s_avg = 0, s_var = 0, s_entr = 0;
  for (int k = 0; k < ng; k++) {
    d_avg += k * diff[k];
    if (diff[k] > 0) d_entr -= diff[k] * log2(diff[k]);
    if (k > 0) inv_var += diff[k] / ((double)k * k);
  }
  for (int k = 0; k < ng; k++) d_var += (k - d_avg) * (k - d_avg) * diff[k];
  for (int k = 2; k <= 2 * ng; k++) {
    s_avg += k * sum[k];
    if (sum[k] > 0) s_entr -= sum[k] * log2(sum[k]);
  }
  for (int k = 2; k <= 2 * ng; k++) s_var += (k - s_avg) * (k - s_avg) * sum[k];
  const double values[25] = {jmax,
                             mu,
                             var,
                             entropy,
                             d_avg,
                             d_var,
                             d_entr,
                             s_avg,
                             s_var,
                             s_entr,
                             asm_,
                             contrast,
                             dissim,
                             id,
                             idn,
                             idm,
                             idmn,
                             inv_var,
                             var > 0 ? (auto_corr - mu * mu) / var : NAN,
                             auto_corr,
                             tend,
                             shade,
                             prom,
                             hx > 0 ? (entropy - hxy1) / hx : NAN,
                             sqrt(fmax(0, 1 - exp(-2 * (hxy2 - entropy))))};
  memcpy(out, values, sizeof values);
  return 1;
}

static const TextureFamily cooccurrence = {
    "Co-occurrence matrix", "cm", 25, cm_names, cm_tags, cm_size, cm_build, cm_features};

Status rad_cooccurrence(const Roi *r, RadiomicsFeatures *f, MrError *err) {
  return texture_directional(r, &cooccurrence, f, err);
}

/* ---- run length ------------------------------------------------------------ */

static const char *const rlm_names[] = {"Short runs emphasis",
                                        "Long runs emphasis",
                                        "Low grey level run emphasis",
                                        "High grey level run emphasis",
                                        "Short run low grey level emphasis",
                                        "Short run high grey level emphasis",
                                        "Long run low grey level emphasis",
                                        "Long run high grey level emphasis",
                                        "Grey level non-uniformity",
                                        "Normalised grey level non-uniformity",
                                        "Run length non-uniformity",
                                        "Normalised run length non-uniformity",
                                        "Run percentage",
                                        "Grey level variance",
                                        "Run length variance",
                                        "Run entropy"};
static const char *const rlm_tags[] = {
    "sre",  "lre",       "lgre", "hgre",      "srlge",  "srhge",  "lrlge",  "lrhge",
    "glnu", "glnu_norm", "rlnu", "rlnu_norm", "r_perc", "gl_var", "rl_var", "rl_entr"};

static size_t rlm_size(const Roi *r) { return (size_t)r->ng * roi_longest(r); }

static void rlm_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  const int nj = roi_longest(r);
  memset(m, 0, sizeof(double) * rlm_size(r));
  *nv = 0;
  const int z0 = z < 0 ? 0 : z, z1 = z < 0 ? r->nz : z + 1;
  for (int k = z0; k < z1; k++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!roi_inside(r, x, y, k)) continue;
        (*nv)++;
        const int g = r->q[roi_index(r, x, y, k)];
        const int px = x - dir[0], py = y - dir[1], pk = k - dir[2];
        if (roi_inside(r, px, py, pk) && r->q[roi_index(r, px, py, pk)] == g)
          continue; /* not a start */
        int len = 1;
        while (roi_inside(r, x + len * dir[0], y + len * dir[1], k + len * dir[2]) &&
               r->q[roi_index(r, x + len * dir[0], y + len * dir[1], k + len * dir[2])] == g)
          len++;
        m[(g - 1) * nj + (len - 1)] += 1;
      }
}

static int rlm_features(const Roi *r, const double *m, double nv, double *out) {
  return texture_emphasis(m, r->ng, roi_longest(r), nv, out);
}

static const TextureFamily run_length = {
    "Run length matrix", "rlm", 16, rlm_names, rlm_tags, rlm_size, rlm_build, rlm_features};

Status rad_run_length(const Roi *r, RadiomicsFeatures *f, MrError *err) {
  return texture_directional(r, &run_length, f, err);
}
