/* The first-order families (IBSI-1 sections 3.2-3.5): local intensity
 * peaks, intensity statistics of the ROI's intensities, the intensity
 * histogram of its discretised grey levels and the intensity-volume
 * histogram. Percentiles interpolate linearly between order statistics
 * (Hyndman and Fan's type 7, numpy's default). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radiomics.h"

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* the p-th quantile (0..1) of n sorted values */
static double quantile(const double *v, long n, double p) {
  const double h = (n - 1) * p;
  const long lo = (long)floor(h);
  return lo + 1 < n ? v[lo] + (h - lo) * (v[lo + 1] - v[lo]) : v[n - 1];
}

/* The IBSI statistics shared by the intensity statistics and the intensity histogram, in
 * this order (the histogram has no energy or RMS). */
enum {
  ST_MEAN,
  ST_VAR,
  ST_SKEW,
  ST_KURT,
  ST_MEDIAN,
  ST_MIN,
  ST_P10,
  ST_P90,
  ST_MAX,
  ST_IQR,
  ST_RANGE,
  ST_MAD,
  ST_RMAD,
  ST_MEDAD,
  ST_COV,
  ST_QCOD,
  ST_ENERGY,
  ST_RMS,
  ST_COUNT
};
static const char *const stat_names[ST_COUNT][2] = {{"Mean", "mean"},
                                                    {"Variance", "var"},
                                                    {"Skewness", "skew"},
                                                    {"(Excess) kurtosis", "kurt"},
                                                    {"Median", "median"},
                                                    {"Minimum", "min"},
                                                    {"10th percentile", "p10"},
                                                    {"90th percentile", "p90"},
                                                    {"Maximum", "max"},
                                                    {"Interquartile range", "iqr"},
                                                    {"Range", "range"},
                                                    {"Mean absolute deviation", "mad"},
                                                    {"Robust mean absolute deviation", "rmad"},
                                                    {"Median absolute deviation", "medad"},
                                                    {"Coefficient of variation", "cov"},
                                                    {"Quartile coefficient of dispersion", "qcod"},
                                                    {"Energy", "energy"},
                                                    {"Root mean square", "rms"}};

/* The moments and order statistics every statistic derives from, of n sorted values. */
typedef struct {
  double mean, m2, m3, m4, mad, energy, median, p10, p90, p25, p75, rmean, rmad, medad;
  long rn; /* values between the 10th and 90th percentiles */
} Moments;

/* Whether sorted value i is in the robust set: between the 10th and 90th percentiles, or as
 * robust[] says (the surrogate's soft levels take the set of the hard ones: ties at the
 * percentiles would otherwise split at random). */
static int robust_member(const double *v, const unsigned char *robust, const Moments *m, long i) {
  return robust ? robust[i] : v[i] >= m->p10 && v[i] <= m->p90;
}

static Moments moments(const double *v, long n, const unsigned char *robust) {
  Moments m = {0};
  for (long i = 0; i < n; i++) m.mean += v[i];
  m.mean /= n;
  for (long i = 0; i < n; i++) {
    const double d = v[i] - m.mean;
    m.m2 += d * d, m.m3 += d * d * d, m.m4 += d * d * d * d, m.mad += fabs(d);
    m.energy += v[i] * v[i];
  }
  m.m2 /= n, m.m3 /= n, m.m4 /= n, m.mad /= n;
  m.median = quantile(v, n, 0.5), m.p10 = quantile(v, n, 0.1), m.p90 = quantile(v, n, 0.9);
  m.p25 = quantile(v, n, 0.25), m.p75 = quantile(v, n, 0.75);
  /* the robust mean absolute deviation: of the values between the 10th and 90th
   * percentiles, from their own mean */
  for (long i = 0; i < n; i++)
    if (robust_member(v, robust, &m, i)) m.rmean += v[i], m.rn++;
  m.rmean /= m.rn ? m.rn : 1;
  for (long i = 0; i < n; i++) {
    if (robust_member(v, robust, &m, i)) m.rmad += fabs(v[i] - m.rmean);
    m.medad += fabs(v[i] - m.median);
  }
  m.rmad /= m.rn ? m.rn : 1, m.medad /= n;
  return m;
}

static void statistics(const double *v, long n, const unsigned char *robust, double out[ST_COUNT]) {
  const Moments m = moments(v, n, robust);
  out[ST_MEAN] = m.mean, out[ST_VAR] = m.m2;
  out[ST_SKEW] = m.m2 > 0 ? m.m3 / pow(m.m2, 1.5) : 0;
  out[ST_KURT] = m.m2 > 0 ? m.m4 / (m.m2 * m.m2) - 3 : 0;
  out[ST_MEDIAN] = m.median, out[ST_MIN] = v[0], out[ST_P10] = m.p10, out[ST_P90] = m.p90;
  out[ST_MAX] = v[n - 1], out[ST_IQR] = m.p75 - m.p25, out[ST_RANGE] = v[n - 1] - v[0];
  out[ST_MAD] = m.mad, out[ST_RMAD] = m.rmad, out[ST_MEDAD] = m.medad;
  out[ST_COV] = m.mean != 0 ? sqrt(m.m2) / m.mean : NAN;
  out[ST_QCOD] = m.p75 + m.p25 != 0 ? (m.p75 - m.p25) / (m.p75 + m.p25) : NAN;
  out[ST_ENERGY] = m.energy, out[ST_RMS] = sqrt(m.energy / n);
}

static int add_statistics(RadiomicsFeatures *f, const char *family, const char *prefix,
                          const double *v, long n, int histogram, const unsigned char *robust) {
  double values[ST_COUNT];
  statistics(v, n, robust, values);
  for (int i = 0; i < ST_COUNT; i++) {
    if (histogram && (i == ST_ENERGY || i == ST_RMS)) continue;
    char tag[48];
    snprintf(tag, sizeof tag, "%s_%s", prefix, stat_names[i][1]);
    if (!rad_add(f, family, stat_names[i][0], tag, values[i])) return 0;
  }
  return 1;
}

/* The 1 cm^3 sphere around a voxel: its reach in voxels, at most the image (a file may
 * state any voxel size: the fuzzer's 1e-37 mm overflowed an int). */
typedef struct {
  int ex, ey, ez;
  double radius2;
} Sphere;

static Sphere sphere_of(const Roi *r) {
  const double radius = cbrt(3.0 * 1000.0 / (4.0 * M_PI)); /* mm */
  Sphere s = {(int)fmin(radius / r->sx, r->nx), (int)fmin(radius / r->sy, r->ny),
              (int)fmin(radius / r->sz, r->nz), radius * radius};
  return s;
}

/* The mean intensity of every image voxel whose centre lies in the sphere around voxel c;
 * with spread, `weight` is shared out over those voxels (the mean's gradient). */
static double sphere_mean(const Roi *r, const Sphere *s, long c, double *spread, double weight) {
  const int x = (int)(c % r->nx), y = (int)(c / r->nx % r->ny), z = (int)(c / r->nx / r->ny);
  double sum = 0;
  long count = 0;
  for (int pass = 0; pass < (spread ? 2 : 1); pass++)
    for (int dz = -s->ez; dz <= s->ez; dz++)
      for (int dy = -s->ey; dy <= s->ey; dy++)
        for (int dx = -s->ex; dx <= s->ex; dx++) {
          const int xx = x + dx, yy = y + dy, zz = z + dz;
          if (xx < 0 || yy < 0 || zz < 0 || xx >= r->nx || yy >= r->ny || zz >= r->nz) continue;
          const double d2 =
              dx * r->sx * dx * r->sx + dy * r->sy * dy * r->sy + dz * r->sz * dz * r->sz;
          if (d2 > s->radius2) continue;
          if (pass == 0)
            sum += r->x[roi_index(r, xx, yy, zz)], count++;
          else
            spread[roi_index(r, xx, yy, zz)] += weight / count;
        }
  return sum / count;
}

/* The local peak (the sphere mean at the ROI's maxima, the highest if several) and the
 * global peak (the highest sphere mean over the ROI), with the voxels they centre on. */
static void local_peaks(const Roi *r, double peak[2], long at[2]) {
  const Sphere s = sphere_of(r);
  const long total = (long)r->nx * r->ny * r->nz;
  double max_x = -INFINITY;
  for (long i = 0; i < total; i++)
    if (r->roi[i]) max_x = fmax(max_x, r->x[i]);
  peak[0] = peak[1] = -INFINITY, at[0] = at[1] = -1;
  for (long c = 0; c < total; c++) {
    if (!r->roi[c]) continue;
    const double mean = sphere_mean(r, &s, c, NULL, 0);
    if (mean > peak[1]) peak[1] = mean, at[1] = c;
    if (r->x[c] == max_x && mean > peak[0]) peak[0] = mean, at[0] = c;
  }
}

static const char *const peak_names[2][2] = {{"Local intensity peak", "loc_peak_loc"},
                                             {"Global intensity peak", "loc_peak_glob"}};

static int add_local_intensity(const Roi *r, RadiomicsFeatures *f) {
  double peak[2];
  long at[2];
  local_peaks(r, peak, at);
  return rad_add(f, "Local intensity", peak_names[0][0], peak_names[0][1], peak[0]) &&
         rad_add(f, "Local intensity", peak_names[1][0], peak_names[1][1], peak[1]);
}

/* The histogram's own features: mode, entropy, uniformity and its gradients. */
typedef struct {
  int mode, max_at, min_at;
  double entropy, uniformity, max_grad, min_grad;
} HistogramShape;

/* the histogram's gradient at level i (1..ng) of counts[1..ng] */
static double histogram_gradient(const double *counts, int ng, int i) {
  if (ng == 1) return 0;
  if (i == 1) return counts[2] - counts[1];
  if (i == ng) return counts[i] - counts[i - 1];
  return 0.5 * (counts[i + 1] - counts[i - 1]);
}

static HistogramShape histogram_shape(const double *counts, int ng, long n) {
  HistogramShape h = {1, 1, 1, 0, 0, -INFINITY, INFINITY};
  for (int i = 1; i <= ng; i++) {
    if (counts[i] > counts[h.mode]) h.mode = i;
    const double p = counts[i] / n;
    if (p > 0) h.entropy -= p * log2(p);
    h.uniformity += p * p;
    const double g = histogram_gradient(counts, ng, i);
    if (g > h.max_grad) h.max_grad = g, h.max_at = i;
    if (g < h.min_grad) h.min_grad = g, h.min_at = i;
  }
  return h;
}

static int add_histogram_shape(const Roi *r, const double *counts, long n, RadiomicsFeatures *f) {
  const char *fam = "Intensity histogram";
  const HistogramShape h = histogram_shape(counts, r->ng, n);
  return rad_add(f, fam, "Mode", "ih_mode", h.mode) &&
         rad_add(f, fam, "Entropy", "ih_entropy", h.entropy) &&
         rad_add(f, fam, "Uniformity", "ih_uniformity", h.uniformity) &&
         rad_add(f, fam, "Maximum histogram gradient", "ih_max_grad", h.max_grad) &&
         rad_add(f, fam, "Maximum histogram gradient intensity", "ih_max_grad_g", h.max_at) &&
         rad_add(f, fam, "Minimum histogram gradient", "ih_min_grad", h.min_grad) &&
         rad_add(f, fam, "Minimum histogram gradient intensity", "ih_min_grad_g", h.min_at);
}

/* The intensity-volume histogram over the grey levels lo..hi (the ROI's lowest to its
 * highest): v(i) the fraction of voxels at level i or above, gamma(i) = (i - lo) / (hi - lo).
 * at[0], at[1]: the levels v10 and v90 are read at. */
enum { IVH_V10, IVH_V90, IVH_I10, IVH_I90, IVH_DIFF_V, IVH_DIFF_I, IVH_AUC, IVH_COUNT };
static const char *const ivh_names[IVH_COUNT][2] = {
    {"Volume fraction at 10% intensity", "ivh_v10"},
    {"Volume fraction at 90% intensity", "ivh_v90"},
    {"Intensity at 10% volume", "ivh_i10"},
    {"Intensity at 90% volume", "ivh_i90"},
    {"Volume fraction difference between 10% and 90% intensity", "ivh_diff_v10_v90"},
    {"Intensity difference between 10% and 90% volume", "ivh_diff_i10_i90"},
    {"Area under the IVH curve", "ivh_auc"}};

static double ivh_gamma(int i, int lo, int hi) {
  return hi > lo ? (double)(i - lo) / (hi - lo) : 1.0;
}

static void ivh(const double *counts, long n, int lo, int hi, double out[IVH_COUNT], int at[2]) {
  double above = n, v10 = 0, v90 = 0, auc = 0, prev_v = 1, prev_g = 0;
  int i10 = hi, i90 = hi, have10 = 0, have90 = 0, found_i10 = 0, found_i90 = 0;
  at[0] = at[1] = lo;
  for (int i = lo; i <= hi; i++) {
    const double v = above / n, g = ivh_gamma(i, lo, hi);
    if (!have10 && g >= 0.1) v10 = v, have10 = 1, at[0] = i;
    if (!have90 && g >= 0.9) v90 = v, have90 = 1, at[1] = i;
    if (!found_i10 && v <= 0.1) i10 = i, found_i10 = 1;
    if (!found_i90 && v <= 0.9) i90 = i, found_i90 = 1;
    if (i > lo) auc += 0.5 * (v + prev_v) * (g - prev_g);
    prev_v = v, prev_g = g;
    above -= counts[i];
  }
  out[IVH_V10] = v10, out[IVH_V90] = v90, out[IVH_I10] = i10, out[IVH_I90] = i90;
  out[IVH_DIFF_V] = v10 - v90, out[IVH_DIFF_I] = i10 - i90, out[IVH_AUC] = auc;
}

/* the levels holding any voxel, from r's hard levels */
static void ivh_range(const Roi *r, const double *counts, int *lo, int *hi) {
  *lo = r->ng, *hi = 1;
  for (int i = 1; i <= r->ng; i++)
    if (counts[i] > 0) *lo = i < *lo ? i : *lo, *hi = i;
}

static int add_ivh_values(const double *values, RadiomicsFeatures *f) {
  for (int k = 0; k < IVH_COUNT; k++)
    if (!rad_add(f, "Intensity volume histogram", ivh_names[k][0], ivh_names[k][1], values[k]))
      return 0;
  return 1;
}

static int add_ivh(const Roi *r, const double *counts, long n, RadiomicsFeatures *f) {
  int lo, hi, at[2];
  double values[IVH_COUNT];
  ivh_range(r, counts, &lo, &hi);
  ivh(counts, n, lo, hi, values, at);
  return add_ivh_values(values, f);
}

Status rad_intensity(const Roi *r, const RadiomicsOptions *o, RadiomicsFeatures *f, MrError *err) {
  (void)o;
  const long n = r->n_roi, total = (long)r->nx * r->ny * r->nz;
  double *v = malloc(sizeof(double) * n), *counts = calloc(r->ng + 2, sizeof(double));
  if (!v || !counts) {
    free(v), free(counts);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  }
  long k = 0;
  for (long i = 0; i < total; i++)
    if (r->roi[i]) v[k++] = r->x[i];
  qsort(v, n, sizeof *v, cmp_double);
  int ok = add_local_intensity(r, f) && add_statistics(f, "Statistics", "stat", v, n, 0, NULL);
  k = 0;
  for (long i = 0; i < total; i++)
    if (r->roi[i]) v[k++] = r->q[i], counts[r->q[i]]++;
  qsort(v, n, sizeof *v, cmp_double);
  ok = ok && add_statistics(f, "Intensity histogram", "ih", v, n, 1, NULL) &&
       add_histogram_shape(r, counts, n, f) && add_ivh(r, counts, n, f);
  free(v), free(counts);
  return ok ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
}

/* ---- the surrogate: the same features, differentiable in the intensities --------------- */

/* shares weight w over the order statistics the p-th quantile interpolates */
static void quantile_grad(double *g, long n, double p, double w) {
  const double h = (n - 1) * p;
  const long lo = (long)floor(h);
  if (lo + 1 < n)
    g[lo] += w * (1 - (h - lo)), g[lo + 1] += w * (h - lo);
  else
    g[n - 1] += w;
}

static double sign(double x) { return (x > 0) - (x < 0); }

/* g (n, added to) = d objective / d each of n sorted values, for ct[ST_*] = d objective /
 * d each statistic. Exact wherever the statistics are differentiable (away from ties and
 * the robust set's edges). */
static void statistics_vjp(const double *v, long n, const unsigned char *robust, const double *ct,
                           double *g) {
  const Moments m = moments(v, n, robust);
  double g_mean = ct[ST_MEAN], g_m2 = ct[ST_VAR], g_m3 = 0, g_m4 = 0, g_energy = ct[ST_ENERGY];
  double g_median = ct[ST_MEDIAN], g_p25 = -ct[ST_IQR], g_p75 = ct[ST_IQR];
  if (m.m2 > 0) {
    g_m3 += ct[ST_SKEW] / pow(m.m2, 1.5), g_m2 -= ct[ST_SKEW] * 1.5 * m.m3 / pow(m.m2, 2.5);
    g_m4 += ct[ST_KURT] / (m.m2 * m.m2), g_m2 -= ct[ST_KURT] * 2 * m.m4 / pow(m.m2, 3);
  }
  if (m.mean != 0) {
    if (m.m2 > 0) g_m2 += ct[ST_COV] / (2 * sqrt(m.m2) * m.mean);
    g_mean -= ct[ST_COV] * sqrt(m.m2) / (m.mean * m.mean);
  }
  const double s = m.p75 + m.p25;
  if (s != 0)
    g_p75 += ct[ST_QCOD] * 2 * m.p25 / (s * s), g_p25 -= ct[ST_QCOD] * 2 * m.p75 / (s * s);
  if (m.energy > 0) g_energy += ct[ST_RMS] / (2 * n * sqrt(m.energy / n));
  g[0] += ct[ST_MIN] - ct[ST_RANGE], g[n - 1] += ct[ST_MAX] + ct[ST_RANGE];
  /* sums over the values that the per-value terms need */
  double sum_d = 0, sum_d2 = 0, sum_d3 = 0, sum_sign = 0, sum_rsign = 0, sum_msign = 0;
  for (long i = 0; i < n; i++) {
    const double d = v[i] - m.mean;
    sum_d += d, sum_d2 += d * d, sum_d3 += d * d * d, sum_sign += sign(d);
    sum_msign += sign(v[i] - m.median);
    if (robust_member(v, robust, &m, i)) sum_rsign += sign(v[i] - m.rmean);
  }
  for (long j = 0; j < n; j++) {
    const double d = v[j] - m.mean;
    g[j] += g_mean / n + g_energy * 2 * v[j];
    g[j] += g_m2 * (2 * d - 2 * sum_d / n) / n;
    g[j] += g_m3 * (3 * d * d - 3 * sum_d2 / n) / n;
    g[j] += g_m4 * (4 * d * d * d - 4 * sum_d3 / n) / n;
    g[j] += ct[ST_MAD] * (sign(d) - sum_sign / n) / n;
    g[j] += ct[ST_MEDAD] * sign(v[j] - m.median) / n;
    if (m.rn && robust_member(v, robust, &m, j))
      g[j] += ct[ST_RMAD] * (sign(v[j] - m.rmean) - sum_rsign / m.rn) / m.rn;
  }
  g_median -= ct[ST_MEDAD] * sum_msign / n;
  quantile_grad(g, n, 0.5, g_median), quantile_grad(g, n, 0.1, ct[ST_P10]);
  quantile_grad(g, n, 0.9, ct[ST_P90]), quantile_grad(g, n, 0.25, g_p25);
  quantile_grad(g, n, 0.75, g_p75);
}

/* g_counts[1..ng] (added to) = d objective / d each count of the histogram shape */
static void histogram_shape_vjp(const SoftLevels *s, const double *counts, int ng, long n,
                                double *g_counts) {
  const HistogramShape h = histogram_shape(counts, ng, n);
  const double c_entropy = rad_cotangent(s, "ih_entropy"),
               c_uniformity = rad_cotangent(s, "ih_uniformity");
  for (int i = 1; i <= ng; i++) {
    const double p = counts[i] / n;
    if (p > 0) g_counts[i] -= c_entropy * (log2(p) + 1 / M_LN2) / n;
    g_counts[i] += c_uniformity * 2 * p / n;
  }
  /* the extreme gradients move with the counts either side of where they are */
  const struct {
    const char *tag;
    int at;
  } grads[2] = {{"ih_max_grad", h.max_at}, {"ih_min_grad", h.min_at}};
  for (int k = 0; k < 2 && ng > 1; k++) {
    const double c = rad_cotangent(s, grads[k].tag);
    const int i = grads[k].at;
    if (i == 1)
      g_counts[2] += c, g_counts[1] -= c;
    else if (i == ng)
      g_counts[ng] += c, g_counts[ng - 1] -= c;
    else
      g_counts[i + 1] += 0.5 * c, g_counts[i - 1] -= 0.5 * c;
  }
}

/* g_counts[lo..hi] (added to) = d objective / d each count of the volume fractions' features
 * (the intensities at 10% and 90% volume are levels: constant); v(i) = 1 - (counts below i)
 * / n. */
static void ivh_vjp(const SoftLevels *s, long n, int lo, int hi, const int at[2],
                    double *g_counts) {
  double g_v[RADIOMICS_MAX_LEVELS + 2] = {0};
  const double c_diff = rad_cotangent(s, "ivh_diff_v10_v90"), c_auc = rad_cotangent(s, "ivh_auc");
  g_v[at[0]] += rad_cotangent(s, "ivh_v10") + c_diff;
  g_v[at[1]] += rad_cotangent(s, "ivh_v90") - c_diff;
  for (int i = lo + 1; i <= hi; i++) {
    const double width = ivh_gamma(i, lo, hi) - ivh_gamma(i - 1, lo, hi);
    g_v[i] += 0.5 * width * c_auc, g_v[i - 1] += 0.5 * width * c_auc;
  }
  double below = 0; /* the sum of g_v over the levels above l */
  for (int l = hi; l >= lo; l--) {
    g_counts[l] -= below / n;
    below += g_v[l];
  }
}

static int cmp_by_value(const void *a, const void *b, void *values) {
  const double x = ((const double *)values)[*(const long *)a],
               y = ((const double *)values)[*(const long *)b];
  return (x > y) - (x < y);
}

/* The statistics of per-voxel values (voxel indices idx[n]) under prefix, and their
 * gradient into g (per voxel). With hard (per voxel: the hard levels the values soften), the
 * robust set is the hard levels'. */
static int statistics_surrogate(const SoftLevels *s, const char *family, const char *prefix,
                                const double *value, const int *hard, const long *idx, long n,
                                RadiomicsFeatures *f, double *g) {
  const int histogram = hard != NULL;
  long *order = malloc(sizeof(long) * n);
  double *v = malloc(sizeof(double) * n), *gv = calloc(n, sizeof(double));
  double *h = hard ? malloc(sizeof(double) * n) : NULL;
  unsigned char *robust = hard ? malloc(n) : NULL;
  int ok = order && v && gv && (!hard || (h && robust));
  for (long k = 0; ok && k < n; k++) order[k] = idx[k];
  if (ok) qsort_r(order, n, sizeof(long), cmp_by_value, (void *)value);
  for (long k = 0; ok && k < n; k++) v[k] = value[order[k]];
  if (ok && hard) { /* the soft levels rise with the hard ones: the same order sorts both */
    for (long k = 0; k < n; k++) h[k] = hard[order[k]];
    const double p10 = quantile(h, n, 0.1), p90 = quantile(h, n, 0.9);
    for (long k = 0; k < n; k++) robust[k] = h[k] >= p10 && h[k] <= p90;
  }
  ok = ok && add_statistics(f, family, prefix, v, n, histogram, robust);
  double ct[ST_COUNT] = {0};
  int any = 0;
  for (int i = 0; ok && s->ct && i < ST_COUNT; i++) {
    char tag[48];
    snprintf(tag, sizeof tag, "%s_%s", prefix, stat_names[i][1]);
    ct[i] = histogram && (i == ST_ENERGY || i == ST_RMS) ? 0 : rad_cotangent(s, tag);
    any |= ct[i] != 0;
  }
  if (ok && any) {
    statistics_vjp(v, n, robust, ct, gv);
    for (long k = 0; k < n; k++) g[order[k]] += gv[k];
  }
  free(order), free(v), free(gv), free(h), free(robust);
  return ok;
}

Status rad_intensity_surrogate(const Roi *r, SoftLevels *s, RadiomicsFeatures *f, MrError *err) {
  const long n = r->n_roi, total = (long)r->nx * r->ny * r->nz;
  const int ng = s->ng;
  long *idx = malloc(sizeof(long) * n);
  double *x = malloc(sizeof(double) * total), *level = calloc(total, sizeof(double));
  double *g_level = calloc(total, sizeof(double)), *counts = calloc(ng + 2, sizeof(double));
  double *g_counts = calloc(ng + 2, sizeof(double));
  if (!idx || !x || !level || !g_level || !counts || !g_counts) {
    free(idx), free(x), free(level), free(g_level), free(counts), free(g_counts);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  }
  int ok = 1;
  long k = 0;
  for (long i = 0; i < total; i++) {
    x[i] = r->x[i];
    if (!r->roi[i]) continue;
    idx[k++] = i;
    for (int l = 1; l <= ng; l++) { /* the soft level and the soft histogram */
      const double mu = s->mu[i * ng + l - 1];
      level[i] += l * mu, counts[l] += mu;
    }
  }
  /* the peaks are sphere means around a voxel the maxima choose: exact, their gradient
   * the mean's */
  double peak[2];
  long at[2];
  local_peaks(r, peak, at);
  for (int p = 0; ok && p < 2; p++) {
    ok = rad_add(f, "Local intensity", peak_names[p][0], peak_names[p][1], peak[p]);
    const double c = s->ct ? rad_cotangent(s, peak_names[p][1]) : 0;
    if (c != 0) {
      const Sphere sphere = sphere_of(r);
      sphere_mean(r, &sphere, at[p], s->g_x, c);
    }
  }
  ok = ok && statistics_surrogate(s, "Statistics", "stat", x, NULL, idx, n, f, s->g_x);
  ok = ok && statistics_surrogate(s, "Intensity histogram", "ih", level, r->q, idx, n, f, g_level);
  ok = ok && add_histogram_shape(r, counts, n, f);
  /* the intensity-volume histogram of the soft counts, over the hard levels' range */
  int lo = ng, hi = 1, ivh_at[2];
  for (long j = 0; j < n; j++) {
    const int q = r->q[idx[j]];
    lo = q < lo ? q : lo, hi = q > hi ? q : hi;
  }
  double ivh_values[IVH_COUNT];
  ivh(counts, n, lo, hi, ivh_values, ivh_at);
  ok = ok && add_ivh_values(ivh_values, f);
  if (ok && s->ct) {
    histogram_shape_vjp(s, counts, ng, n, g_counts);
    ivh_vjp(s, n, lo, hi, ivh_at, g_counts);
    for (long j = 0; j < n; j++)
      for (int l = 1; l <= ng; l++)
        s->g_mu[idx[j] * ng + l - 1] += l * g_level[idx[j]] + g_counts[l];
  }
  free(idx), free(x), free(level), free(g_level), free(counts), free(g_counts);
  return ok ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
}
