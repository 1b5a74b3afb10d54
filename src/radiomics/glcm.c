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

/* g (ng x ng, added to) = d objective / d each count of the co-occurrence matrix m, for
 * ct[25] = d objective / d each of cm_features' values: each feature differentiated by
 * hand in the joint probabilities p = m / total, then through the normalisation. Exact
 * wherever the features are differentiable (the joint maximum: at its argmax). */
static void cm_vjp(int ng, const double *m, const double *ct, double *g) {
  double total = 0;
  for (int i = 0; i < ng * ng; i++) total += m[i];
  if (total <= 0) return;
  double px[ng + 1], py[ng + 1], diff[ng], sum[2 * ng + 1];
  memset(px, 0, sizeof px), memset(py, 0, sizeof py), memset(diff, 0, sizeof diff);
  memset(sum, 0, sizeof sum);
  double mu = 0, entropy = 0, auto_corr = 0, jmax = -1;
  int max_i = 1, max_j = 1;
  for (int i = 1; i <= ng; i++)
    for (int j = 1; j <= ng; j++) {
      const double p = m[(i - 1) * ng + (j - 1)] / total;
      if (p > jmax) jmax = p, max_i = i, max_j = j;
      if (p == 0) continue;
      px[i] += p, py[j] += p, diff[abs(i - j)] += p, sum[i + j] += p;
      mu += i * p, auto_corr += (double)i * j * p, entropy -= p * log2(p);
    }
  double var = 0, dev = 0, c1 = 0, c2 = 0, c3 = 0, hx = 0, hxy1 = 0, hxy2 = 0;
  for (int i = 1; i <= ng; i++) {
    if (px[i] > 0) hx -= px[i] * log2(px[i]);
    for (int j = 1; j <= ng; j++) {
      const double p = m[(i - 1) * ng + (j - 1)] / total, pp = px[i] * px[j];
      const double c = i + j - 2 * mu;
      var += (i - mu) * (i - mu) * p, dev += (i - mu) * p;
      c1 += c * p, c2 += c * c * p, c3 += c * c * c * p;
      if (pp > 0) hxy1 -= p * log2(pp), hxy2 -= pp * log2(pp);
    }
  }
  double d_avg = 0, d_dev = 0, s_avg = 0, s_dev = 0;
  for (int k = 0; k < ng; k++) d_avg += k * diff[k];
  for (int k = 0; k < ng; k++) d_dev += (k - d_avg) * diff[k];
  for (int k = 2; k <= 2 * ng; k++) s_avg += k * sum[k];
  for (int k = 2; k <= 2 * ng; k++) s_dev += (k - s_avg) * sum[k];
  const double corr = var > 0 ? (auto_corr - mu * mu) / var : 0;
  const double ic1 = hx > 0 ? (entropy - hxy1) / hx : 0;
  const double e2 = exp(-2 * (hxy2 - entropy)), ic2 = sqrt(fmax(0, 1 - e2));
  double *gp = malloc(sizeof(double) * ng * ng);
  if (!gp) return;
  double projected = 0;
  for (int i = 1; i <= ng; i++)
    for (int j = 1; j <= ng; j++) {
      const double p = m[(i - 1) * ng + (j - 1)] / total;
      const int k = abs(i - j), s = i + j;
      const double c = s - 2 * mu, d_var = (i - mu) * (i - mu) - 2 * i * dev;
      double v = ct[1] * i + ct[2] * d_var + ct[4] * k;
      if (i == max_i && j == max_j) v += ct[0];
      const double d_hxy = p > 0 ? -(log2(p) + 1 / M_LN2) : 0;
      v += ct[3] * d_hxy;
      v += ct[5] * ((k - d_avg) * (k - d_avg) - 2 * k * d_dev);
      if (diff[k] > 0) v -= ct[6] * (log2(diff[k]) + 1 / M_LN2);
      v += ct[7] * s + ct[8] * ((s - s_avg) * (s - s_avg) - 2 * s * s_dev);
      if (sum[s] > 0) v -= ct[9] * (log2(sum[s]) + 1 / M_LN2);
      v += ct[10] * 2 * p + ct[11] * k * k + ct[12] * k + ct[13] / (1.0 + k) +
           ct[14] / (1.0 + (double)k / ng) + ct[15] / (1.0 + (double)k * k) +
           ct[16] / (1.0 + (double)k * k / ((double)ng * ng));
      if (k > 0) v += ct[17] / ((double)k * k);
      if (var > 0) v += ct[18] * ((double)i * j - 2 * mu * i - corr * d_var) / var;
      v += ct[19] * i * j + ct[20] * (c * c - 4 * i * c1) + ct[21] * (c * c * c - 6 * i * c2) +
           ct[22] * (c * c * c * c - 8 * i * c3);
      if (px[i] > 0 && px[j] > 0) { /* the information correlations, through the marginals */
        const double d_hx = -(log2(px[i]) + 1 / M_LN2);
        const double d_hxy1 = -log2(px[i] * px[j]) - (1 + py[i] / px[i]) / M_LN2;
        const double d_hxy2 = 2 * (hx + d_hx); /* hxy2 = 2 hx when the marginals sum to 1 */
        if (hx > 0) v += ct[23] * ((d_hxy - d_hxy1) - ic1 * d_hx) / hx;
        if (ic2 > 0) v += ct[24] * e2 * (d_hxy2 - d_hxy) / ic2;
      }
      gp[(i - 1) * ng + (j - 1)] = v, projected += v * p;
    }
  for (int i = 0; i < ng * ng; i++) g[i] += (gp[i] - projected) / total;
  free(gp);
}

/* The soft co-occurrence matrix of slice z (-1: the volume) along dir: every pair of ROI
 * neighbours adds the outer product of their level weights, both orders. */
static void cm_soft_build(const Roi *r, const SoftLevels *s, int z, const int *dir, double *m) {
  const int ng = s->ng;
  memset(m, 0, sizeof(double) * ng * ng);
  const int z0 = z < 0 ? 0 : z, z1 = z < 0 ? r->nz : z + 1;
  for (int k = z0; k < z1; k++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!roi_inside(r, x, y, k) || !roi_inside(r, x + dir[0], y + dir[1], k + dir[2])) continue;
        const double *a = s->mu + roi_index(r, x, y, k) * ng,
                     *b = s->mu + roi_index(r, x + dir[0], y + dir[1], k + dir[2]) * ng;
        for (int i = 0; i < ng; i++)
          for (int j = 0; j < ng; j++) m[i * ng + j] += a[i] * b[j] + b[i] * a[j];
      }
}

/* d objective / d the level weights, from g = d objective / d that matrix */
static void cm_soft_vjp(const Roi *r, SoftLevels *s, int z, const int *dir, const double *g) {
  const int ng = s->ng;
  const int z0 = z < 0 ? 0 : z, z1 = z < 0 ? r->nz : z + 1;
  for (int k = z0; k < z1; k++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!roi_inside(r, x, y, k) || !roi_inside(r, x + dir[0], y + dir[1], k + dir[2])) continue;
        const long u = roi_index(r, x, y, k), v = roi_index(r, x + dir[0], y + dir[1], k + dir[2]);
        const double *a = s->mu + u * ng, *b = s->mu + v * ng;
        double *ga = s->g_mu + u * ng, *gb = s->g_mu + v * ng;
        for (int i = 0; i < ng; i++)
          for (int j = 0; j < ng; j++) {
            const double h = g[i * ng + j] + g[j * ng + i];
            ga[i] += h * b[j], gb[i] += h * a[j];
          }
      }
}

/* The matrices of one aggregation's group g: the in-plane matrix of slice z and direction
 * d is z * 4 + d; the 3-D matrix of direction d is nz * 4 + d. Returns how many. */
static int group_members(Aggregation agg, int nz, int g, int *out) {
  int n = 0;
  switch (agg) {
    case AGG_2D_AVG:
      out[n++] = g;
      break;
    case AGG_2D_MERGED:
      for (int d = 0; d < 4; d++) out[n++] = g * 4 + d;
      break;
    case AGG_25D_AVG:
      for (int z = 0; z < nz; z++) out[n++] = z * 4 + g;
      break;
    case AGG_25D_MERGED:
      for (int i = 0; i < nz * 4; i++) out[n++] = i;
      break;
    case AGG_3D_AVG:
      out[n++] = nz * 4 + g;
      break;
    default: /* AGG_3D_MERGED */
      for (int d = 0; d < 13; d++) out[n++] = nz * 4 + d;
  }
  return n;
}

static int group_count(Aggregation agg, int nz) {
  static const int per[AGG_COUNT] = {0, 0, 4, 1, 13, 1};
  return agg == AGG_2D_AVG ? nz * 4 : agg == AGG_2D_MERGED ? nz : per[agg];
}

Status rad_cooccurrence_surrogate(const Roi *r, SoftLevels *s, RadiomicsFeatures *f, MrError *err) {
  const int ng = s->ng, n_mat = r->nz * 4 + 13;
  const size_t size = (size_t)ng * ng;
  double *mats = malloc(sizeof(double) * size * n_mat),
         *grads = calloc(size * n_mat, sizeof(double));
  double *merged = malloc(sizeof(double) * size), *g_merged = malloc(sizeof(double) * size);
  int *members = malloc(sizeof(int) * n_mat);
  if (!mats || !grads || !merged || !g_merged || !members) {
    free(mats), free(grads), free(merged), free(g_merged), free(members);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory for soft co-occurrences");
  }
  for (int i = 0; i < n_mat; i++) {
    const int in_plane = i < r->nz * 4;
    cm_soft_build(r, s, in_plane ? i / 4 : -1, rad_directions[in_plane ? i % 4 : i - r->nz * 4],
                  mats + size * i);
  }
  int ok = 1;
  for (int agg = 0; ok && agg < AGG_COUNT; agg++) {
    double sums[TEXTURE_MAX_FEATURES] = {0}, values[TEXTURE_MAX_FEATURES];
    int used = 0;
    const int groups = group_count(agg, r->nz);
    for (int pass = 0; pass < 2; pass++) {
      double ct[TEXTURE_MAX_FEATURES] = {0};
      int any = 0;
      if (pass == 1) { /* each non-empty group's share of the average */
        for (int k = 0; k < 25; k++) {
          char tag[48];
          snprintf(tag, sizeof tag, "cm_%s_%s", cm_tags[k], rad_agg_suffix[agg]);
          ct[k] = s->ct && used ? rad_cotangent(s, tag) / used : 0;
          any |= ct[k] != 0;
        }
        if (!any) break;
      }
      for (int g = 0; g < groups; g++) {
        const int n = group_members(agg, r->nz, g, members);
        memset(merged, 0, sizeof(double) * size);
        for (int i = 0; i < n; i++)
          for (size_t e = 0; e < size; e++) merged[e] += mats[size * members[i] + e];
        if (pass == 0) {
          if (!cm_features(r, merged, 0, values)) continue;
          for (int k = 0; k < 25; k++) sums[k] += values[k];
          used++;
          continue;
        }
        memset(g_merged, 0, sizeof(double) * size);
        cm_vjp(ng, merged, ct, g_merged);
        for (int i = 0; i < n; i++)
          for (size_t e = 0; e < size; e++) grads[size * members[i] + e] += g_merged[e];
      }
      if (pass == 0) {
        char family[64], tag[48];
        snprintf(family, sizeof family, "%s (%s)", cooccurrence.family, rad_agg_label[agg]);
        for (int k = 0; ok && k < 25; k++) {
          snprintf(tag, sizeof tag, "cm_%s_%s", cm_tags[k], rad_agg_suffix[agg]);
          ok = rad_add(f, family, cm_names[k], tag, used ? sums[k] / used : NAN);
        }
      }
    }
  }
  for (int i = 0; ok && s->ct && i < n_mat; i++) {
    int any = 0;
    for (size_t e = 0; e < size && !any; e++) any = grads[size * i + e] != 0;
    const int in_plane = i < r->nz * 4;
    if (any)
      cm_soft_vjp(r, s, in_plane ? i / 4 : -1, rad_directions[in_plane ? i % 4 : i - r->nz * 4],
                  grads + size * i);
  }
  free(mats), free(grads), free(merged), free(g_merged), free(members);
  return ok ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
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
