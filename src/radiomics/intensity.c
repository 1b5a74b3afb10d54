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

/* The IBSI statistics shared by the intensity statistics and the intensity histogram, of n
 * sorted values; prefix "stat" or "ih". */
static int add_statistics(RadiomicsFeatures *f, const char *family, const char *prefix,
                          const double *v, long n, int histogram) {
  double mean = 0;
  for (long i = 0; i < n; i++) mean += v[i];
  mean /= n;
  double m2 = 0, m3 = 0, m4 = 0, mad = 0, energy = 0;
  for (long i = 0; i < n; i++) {
    const double d = v[i] - mean;
    m2 += d * d, m3 += d * d * d, m4 += d * d * d * d, mad += fabs(d), energy += v[i] * v[i];
  }
  m2 /= n, m3 /= n, m4 /= n, mad /= n;
  const double median = quantile(v, n, 0.5), p10 = quantile(v, n, 0.1), p90 = quantile(v, n, 0.9),
               p25 = quantile(v, n, 0.25), p75 = quantile(v, n, 0.75);
  /* the robust mean absolute deviation: of the values between the 10th and 90th
   * percentiles, from their own mean */
  double rmean = 0, rmad = 0, medad = 0;
  long rn = 0;
  for (long i = 0; i < n; i++)
    if (v[i] >= p10 && v[i] <= p90) rmean += v[i], rn++;
  rmean /= rn ? rn : 1;
  for (long i = 0; i < n; i++) {
    if (v[i] >= p10 && v[i] <= p90) rmad += fabs(v[i] - rmean);
    medad += fabs(v[i] - median);
  }
  rmad /= rn ? rn : 1, medad /= n;
  struct {
    const char *name, *tag;
    double value;
  } rows[] = {{"Mean", "mean", mean},
              {"Variance", "var", m2},
              {"Skewness", "skew", m2 > 0 ? m3 / pow(m2, 1.5) : 0},
              {"(Excess) kurtosis", "kurt", m2 > 0 ? m4 / (m2 * m2) - 3 : 0},
              {"Median", "median", median},
              {"Minimum", "min", v[0]},
              {"10th percentile", "p10", p10},
              {"90th percentile", "p90", p90},
              {"Maximum", "max", v[n - 1]},
              {"Interquartile range", "iqr", p75 - p25},
              {"Range", "range", v[n - 1] - v[0]},
              {"Mean absolute deviation", "mad", mad},
              {"Robust mean absolute deviation", "rmad", rmad},
              {"Median absolute deviation", "medad", medad},
              {"Coefficient of variation", "cov", mean != 0 ? sqrt(m2) / mean : NAN},
              {"Quartile coefficient of dispersion", "qcod",
               p75 + p25 != 0 ? (p75 - p25) / (p75 + p25) : NAN},
              {"Energy", "energy", energy},
              {"Root mean square", "rms", sqrt(energy / n)}};
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    /* the histogram has no energy or RMS; it has a mode, after the maximum */
    if (histogram && (!strcmp(rows[i].tag, "energy") || !strcmp(rows[i].tag, "rms"))) continue;
    char tag[48];
    snprintf(tag, sizeof tag, "%s_%s", prefix, rows[i].tag);
    if (!rad_add(f, family, rows[i].name, tag, rows[i].value)) return 0;
  }
  return 1;
}

/* Mean intensity in the 1 cm^3 sphere around each ROI voxel (all image voxels whose centres
 * lie within its radius): the local peak at the ROI's maxima and the global peak. */
static int add_local_intensity(const Roi *r, RadiomicsFeatures *f) {
  const double radius = cbrt(3.0 * 1000.0 / (4.0 * M_PI)); /* mm */
  /* the sphere's reach in voxels, at most the image (a file may state any voxel size: the
   * fuzzer's 1e-37 mm overflowed an int) */
  const int ex = (int)fmin(radius / r->sx, r->nx), ey = (int)fmin(radius / r->sy, r->ny),
            ez = (int)fmin(radius / r->sz, r->nz);
  double max_x = -INFINITY, local = -INFINITY, global = -INFINITY;
  for (long i = 0; i < (long)r->nx * r->ny * r->nz; i++)
    if (r->roi[i]) max_x = fmax(max_x, r->x[i]);
  for (int z = 0; z < r->nz; z++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        const long c = roi_index(r, x, y, z);
        if (!r->roi[c]) continue;
        double sum = 0;
        long count = 0;
        for (int dz = -ez; dz <= ez; dz++)
          for (int dy = -ey; dy <= ey; dy++)
            for (int dx = -ex; dx <= ex; dx++) {
              const int xx = x + dx, yy = y + dy, zz = z + dz;
              if (xx < 0 || yy < 0 || zz < 0 || xx >= r->nx || yy >= r->ny || zz >= r->nz) continue;
              const double d2 =
                  dx * r->sx * dx * r->sx + dy * r->sy * dy * r->sy + dz * r->sz * dz * r->sz;
              if (d2 <= radius * radius) sum += r->x[roi_index(r, xx, yy, zz)], count++;
            }
        const double mean = sum / count;
        global = fmax(global, mean);
        if (r->x[c] == max_x) local = fmax(local, mean);
      }
  return rad_add(f, "Local intensity", "Local intensity peak", "loc_peak_loc", local) &&
         rad_add(f, "Local intensity", "Global intensity peak", "loc_peak_glob", global);
}

/* The histogram's own features: mode, entropy, uniformity and its gradients. */
static int add_histogram_shape(const Roi *r, const double *counts, long n, RadiomicsFeatures *f) {
  const char *fam = "Intensity histogram";
  int mode = 1;
  double entropy = 0, uniformity = 0;
  for (int i = 1; i <= r->ng; i++) {
    if (counts[i] > counts[mode]) mode = i;
    const double p = counts[i] / n;
    if (p > 0) entropy -= p * log2(p);
    uniformity += p * p;
  }
  double max_grad = -INFINITY, min_grad = INFINITY;
  int max_at = 1, min_at = 1;
  for (int i = 1; i <= r->ng; i++) {
    double g;
    if (r->ng == 1)
      g = 0;
    else if (i == 1)
      g = counts[2] - counts[1];
    else if (i == r->ng)
      g = counts[i] - counts[i - 1];
    else
      g = 0.5 * (counts[i + 1] - counts[i - 1]);
    if (g > max_grad) max_grad = g, max_at = i;
    if (g < min_grad) min_grad = g, min_at = i;
  }
  return rad_add(f, fam, "Mode", "ih_mode", mode) &&
         rad_add(f, fam, "Entropy", "ih_entropy", entropy) &&
         rad_add(f, fam, "Uniformity", "ih_uniformity", uniformity) &&
         rad_add(f, fam, "Maximum histogram gradient", "ih_max_grad", max_grad) &&
         rad_add(f, fam, "Maximum histogram gradient intensity", "ih_max_grad_g", max_at) &&
         rad_add(f, fam, "Minimum histogram gradient", "ih_min_grad", min_grad) &&
         rad_add(f, fam, "Minimum histogram gradient intensity", "ih_min_grad_g", min_at);
}

/* The intensity-volume histogram over the grey levels from the ROI's lowest to its highest:
 * v(i) the fraction of voxels at level i or above, gamma(i) = (i - min) / (max - min). */
static int add_ivh(const Roi *r, const double *counts, long n, RadiomicsFeatures *f) {
  const char *fam = "Intensity volume histogram";
  int lo = r->ng, hi = 1;
  for (int i = 1; i <= r->ng; i++)
    if (counts[i] > 0) lo = i < lo ? i : lo, hi = i;
  double above = n, v10 = 0, v90 = 0, auc = 0, prev_v = 1, prev_g = 0;
  int i10 = hi, i90 = hi, have10 = 0, have90 = 0, found_i10 = 0, found_i90 = 0;
  for (int i = lo; i <= hi; i++) {
    const double v = above / n, g = hi > lo ? (double)(i - lo) / (hi - lo) : 1.0;
    if (!have10 && g >= 0.1) v10 = v, have10 = 1;
    if (!have90 && g >= 0.9) v90 = v, have90 = 1;
    if (!found_i10 && v <= 0.1) i10 = i, found_i10 = 1;
    if (!found_i90 && v <= 0.9) i90 = i, found_i90 = 1;
    if (i > lo) auc += 0.5 * (v + prev_v) * (g - prev_g);
    prev_v = v, prev_g = g;
    above -= counts[i];
  }
  return rad_add(f, fam, "Volume fraction at 10% intensity", "ivh_v10", v10) &&
         rad_add(f, fam, "Volume fraction at 90% intensity", "ivh_v90", v90) &&
         rad_add(f, fam, "Intensity at 10% volume", "ivh_i10", i10) &&
         rad_add(f, fam, "Intensity at 90% volume", "ivh_i90", i90) &&
         rad_add(f, fam, "Volume fraction difference between 10% and 90% intensity",
                 "ivh_diff_v10_v90", v10 - v90) &&
         rad_add(f, fam, "Intensity difference between 10% and 90% volume", "ivh_diff_i10_i90",
                 i10 - i90) &&
         rad_add(f, fam, "Area under the IVH curve", "ivh_auc", auc);
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
  int ok = add_local_intensity(r, f) && add_statistics(f, "Statistics", "stat", v, n, 0);
  k = 0;
  for (long i = 0; i < total; i++)
    if (r->roi[i]) v[k++] = r->q[i], counts[r->q[i]]++;
  qsort(v, n, sizeof *v, cmp_double);
  ok = ok && add_statistics(f, "Intensity histogram", "ih", v, n, 1) &&
       add_histogram_shape(r, counts, n, f) && add_ivh(r, counts, n, f);
  free(v), free(counts);
  return ok ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
}
