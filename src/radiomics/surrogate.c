/* The white-box route into a radiomics pipeline: a differentiable stand-in
 * for the features a model reads, so that gradient attacks can aim at it.
 * Features smooth in the intensities (statistics, local peaks) are the exact
 * ones with their exact gradients; the discretisation's hard bins become soft
 * level weights (logistic edges of width `temperature` bins) wherever a family
 * counts grey levels (the intensity and intensity-volume histograms, the
 * co-occurrence matrices); morphology reads only the mask, so its gradient is
 * exactly zero. The families whose matrices count runs or zones (GLRLM, GLSZM,
 * GLDZM, NGTDM, NGLDM) have no surrogate: a model that reads them is refused
 * rather than attacked through a silent zero. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radiomics.h"

/* co-occurrence matrices above this many levels would take (levels^2 x 17) doubles */
#define SURROGATE_MAX_LEVELS 256

double rad_cotangent(const SoftLevels *s, const char *tag) {
  if (!s->ct) return 0;
  for (int k = 0; k < s->ct->n; k++)
    if (!strcmp(s->ct->tags[k], tag)) return s->ct->values[k];
  return 0;
}

int radiomics_surrogate_supports(const char *tag) {
  static const char *const prefixes[] = {"morph_", "loc_", "stat_", "ih_", "ivh_", "cm_"};
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
    if (!strncmp(tag, prefixes[i], strlen(prefixes[i]))) return 1;
  return 0;
}

Status radiomics_surrogate_check(const RadiomicsModel *m, MrError *err) {
  char names[400] = "";
  int unsupported = 0;
  for (int k = 0; k < m->n_features; k++)
    if (!radiomics_surrogate_supports(m->tags[k]) && unsupported++ < 4)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
               unsupported > 1 ? ", " : "", m->tags[k]);
  if (unsupported)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the white-box surrogate has no gradient for %d of the model's features "
                        "(%s%s): it covers morphology, local intensity, statistics, the "
                        "intensity and intensity-volume histograms and GLCM; train with "
                        "--families morphology,intensity,glcm, or attack with square or spsa",
                        unsupported, names, unsupported > 4 ? ", ..." : "");
  if (m->setup.extraction.binning == RAD_BIN_NONE)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the white-box surrogate needs a bin count or width (the model keeps "
                        "the stored grey levels, which no pixel change can move smoothly)");
  if (m->setup.extraction.resample > 0)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the white-box surrogate does not differentiate resampling (the model "
                        "resamples to %g mm)",
                        m->setup.extraction.resample);
  return STATUS_OK;
}

static double logistic(double z) { return 1 / (1 + exp(-z)); }

/* Each ROI voxel's continuous level position t (bin i spans [i - 1, i)) and its derivatives:
 * by x itself, and by the ROI's minimum and maximum voxels that fixed bin numbers scale by. */
typedef struct {
  double *t, *dt_dx, *dt_dlo, *dt_dhi;
  long lo_at, hi_at;
} Positions;

static void level_positions(const Roi *r, const RadiomicsOptions *o, Positions *p) {
  const long total = (long)r->nx * r->ny * r->nz;
  p->lo_at = p->hi_at = -1;
  for (long i = 0; i < total; i++) {
    if (!r->roi[i]) continue;
    if (p->lo_at < 0 || r->x[i] < r->x[p->lo_at]) p->lo_at = i;
    if (p->hi_at < 0 || r->x[i] > r->x[p->hi_at]) p->hi_at = i;
  }
  const double lo = r->x[p->lo_at], hi = r->x[p->hi_at];
  for (long i = 0; i < total; i++) {
    p->t[i] = p->dt_dx[i] = p->dt_dlo[i] = p->dt_dhi[i] = 0;
    if (!r->roi[i]) continue;
    const double x = r->x[i];
    if (o->binning == RAD_BIN_COUNT) {
      if (hi > lo) {
        const double range = hi - lo, n = o->bin_count;
        p->t[i] = n * (x - lo) / range, p->dt_dx[i] = n / range;
        p->dt_dlo[i] = n * (x - hi) / (range * range),
        p->dt_dhi[i] = -n * (x - lo) / (range * range);
      } else {
        p->t[i] = 0.5; /* one level */
      }
    } else { /* RAD_BIN_WIDTH */
      const double from = isnan(o->bin_min) ? lo : o->bin_min;
      p->t[i] = (x - from) / o->bin_width, p->dt_dx[i] = 1 / o->bin_width;
      if (isnan(o->bin_min)) p->dt_dlo[i] = -1 / o->bin_width;
    }
  }
}

/* level weights of position t over ng levels, and their derivatives by t */
static void soft_weights(double t, int ng, double tau, double *mu, double *dmu) {
  if (ng == 1) {
    mu[0] = 1, dmu[0] = 0;
    return;
  }
  /* the step up into level i + 1 at edge i (i = 1..ng-1) */
  double prev = 1, prev_d = 0;
  for (int i = 1; i <= ng; i++) {
    double step = 0, step_d = 0;
    if (i < ng) {
      step = logistic((t - i) / tau);
      step_d = step * (1 - step) / tau;
    }
    mu[i - 1] = prev - step, dmu[i - 1] = prev_d - step_d;
    prev = step, prev_d = step_d;
  }
}

Status radiomics_surrogate_extract(const Volume *image, const Volume *mask,
                                   const RadiomicsOptions *o, double temperature,
                                   const RadCotangents *ct, RadiomicsFeatures *out, double *grad,
                                   MrError *err) {
  memset(out, 0, sizeof *out);
  if (!(temperature > 0 && temperature <= 100))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "surrogate temperature %g: a positive width in bins, at most 100",
                        temperature);
  if (o->binning == RAD_BIN_NONE || o->resample > 0)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the surrogate needs a bin count or width, and no resampling");
  Roi r;
  Status st = roi_prepare(image, mask, o, &r, err);
  if (st != STATUS_OK) return st;
  if (r.ng > SURROGATE_MAX_LEVELS) {
    roi_release(&r);
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the surrogate takes at most %d grey levels; the ROI spans %d (use a "
                        "smaller bin count or a larger bin width)",
                        SURROGATE_MAX_LEVELS, r.ng);
  }
  const long total = (long)r.nx * r.ny * r.nz;
  const int ng = r.ng;
  SoftLevels s = {ng, malloc(sizeof(double) * total * ng), calloc(total * ng, sizeof(double)),
                  calloc(total, sizeof(double)), ct};
  double *dmu = malloc(sizeof(double) * total * ng);
  Positions p = {malloc(sizeof(double) * total),
                 malloc(sizeof(double) * total),
                 malloc(sizeof(double) * total),
                 malloc(sizeof(double) * total),
                 -1,
                 -1};
  if (!s.mu || !s.g_mu || !s.g_x || !dmu || !p.t || !p.dt_dx || !p.dt_dlo || !p.dt_dhi)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "radiomics surrogate: out of memory");
  if (st == STATUS_OK) {
    level_positions(&r, o, &p);
    for (long i = 0; i < total; i++)
      if (r.roi[i]) soft_weights(p.t[i], ng, temperature, s.mu + i * ng, dmu + i * ng);
  }
#define WANT(bit) (st == STATUS_OK && (!o->families || (o->families & (bit))))
  if (WANT(RAD_FAMILY_MORPHOLOGY)) st = rad_morphology(&r, out, err); /* the mask's: no gradient */
  if (WANT(RAD_FAMILY_INTENSITY)) st = rad_intensity_surrogate(&r, &s, out, err);
  if (WANT(RAD_FAMILY_GLCM)) st = rad_cooccurrence_surrogate(&r, &s, out, err);
#undef WANT
  if (st == STATUS_OK && ct && grad) {
    /* level weights -> positions -> intensities, the ROI's extremes included */
    double g_lo = 0, g_hi = 0;
    for (long i = 0; i < total; i++) {
      grad[i] = s.g_x[i];
      if (!r.roi[i]) continue;
      double g_t = 0;
      for (int l = 0; l < ng; l++) g_t += s.g_mu[i * ng + l] * dmu[i * ng + l];
      grad[i] += g_t * p.dt_dx[i], g_lo += g_t * p.dt_dlo[i], g_hi += g_t * p.dt_dhi[i];
    }
    grad[p.lo_at] += g_lo, grad[p.hi_at] += g_hi;
  }
  if (st != STATUS_OK) radiomics_features_free(out);
  free(s.mu), free(s.g_mu), free(s.g_x), free(dmu);
  free(p.t), free(p.dt_dx), free(p.dt_dlo), free(p.dt_dhi);
  roi_release(&r);
  return st;
}

Status radiomics_surrogate_logits(const RadiomicsModel *m, const float *image, int c, int h, int w,
                                  const int *mask, double temperature, const double *dlogits,
                                  double *logits, float *grad, MrError *err) {
  RadiomicsSetup setup = m->setup;
  setup.extraction.families = 0; /* only what the model reads */
  for (int k = 0; k < m->n_features; k++)
    setup.extraction.families |= radiomics_family_of(m->tags[k]);
  /* d objective / d feature through the standardisation and the linear model */
  double *values = calloc(m->n_features > 0 ? (size_t)m->n_features : 1, sizeof(double));
  if (!values) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int k = 0; dlogits && k < m->n_features; k++)
    for (int j = 0; j < m->k; j++)
      values[k] += dlogits[j] * m->weights[j * m->n_features + k] / m->scale[k];
  const RadCotangents ct = {m->n_features, (const char(*)[48])m->tags, values};
  Volume grey, roi;
  Status st = rad_image_volumes(image, c, h, w, mask, &setup, &grey, &roi, err);
  const size_t plane = (size_t)h * w;
  double *g = st == STATUS_OK && dlogits ? malloc(sizeof(double) * plane) : NULL;
  if (st == STATUS_OK && dlogits && !g) st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  RadiomicsFeatures f = {0};
  if (st == STATUS_OK)
    st = radiomics_surrogate_extract(&grey, &roi, &setup.extraction, temperature,
                                     dlogits ? &ct : NULL, &f, g, err);
  if (st == STATUS_OK) st = radiomics_model_logits(m, &f, logits, err);
  for (size_t i = 0; st == STATUS_OK && g && i < plane; i++) /* the grey level is the mean */
    for (int ch = 0; ch < c; ch++) grad[(size_t)ch * plane + i] = (float)(g[i] / c);
  radiomics_features_free(&f);
  if (grey.data) volume_free(&grey), volume_free(&roi);
  free(values), free(g);
  return st;
}
