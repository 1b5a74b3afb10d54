/* Adversarial vs irreproducible (the perspective paper's question, made
 * measurable): for every IBSI feature, how well its values on perturbed
 * images agree with the clean ones, as the intraclass correlation ICC(3,1)
 * (two-way mixed, consistency, single measurement; Shrout and Fleiss 1979)
 * over the images, under realistic noise (Gaussian, Rician, Poisson) and
 * under the adversarial perturbation of the same SSIM, image by image. The
 * noise level is bisected per image to the SSIM its adversarial example has,
 * so both perturbations are equally visible; and the features an attacker
 * moves most per unit of SSIM lost are ranked. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

double radiomics_icc31(const double *a, const double *b, int n) {
  if (n < 2) return NAN;
  double grand = 0, mean_a = 0, mean_b = 0;
  for (int i = 0; i < n; i++) grand += a[i] + b[i], mean_a += a[i], mean_b += b[i];
  grand /= 2.0 * n, mean_a /= n, mean_b /= n;
  double ss_rows = 0, ss_cols = 0, ss_total = 0;
  for (int i = 0; i < n; i++) {
    const double row = 0.5 * (a[i] + b[i]);
    ss_rows += 2 * (row - grand) * (row - grand);
    ss_total += (a[i] - grand) * (a[i] - grand) + (b[i] - grand) * (b[i] - grand);
  }
  ss_cols = n * ((mean_a - grand) * (mean_a - grand) + (mean_b - grand) * (mean_b - grand));
  const double ms_rows = ss_rows / (n - 1), ms_error = (ss_total - ss_rows - ss_cols) / (n - 1);
  const double denom = ms_rows + ms_error;
  return denom > 0 ? (ms_rows - ms_error) / denom : NAN;
}

/* noise of `kind` on a copy of x at the level whose SSIM is closest to target (bisection:
 * SSIM falls as the level grows) */
static void matched_noise(const float *x, int c, int h, int w, NoiseKind kind, double target,
                          uint64_t seed, float *out) {
  const size_t n = (size_t)c * h * w;
  double lo = 0, hi = 1;
  for (int it = 0; it < 24; it++) {
    const double mid = 0.5 * (lo + hi);
    Rng rng;
    rng_seed(&rng, seed);
    memcpy(out, x, sizeof(float) * n);
    noise_apply(out, n, kind, (float)mid, &rng);
    if (image_ssim(x, out, c, h, w) > target)
      lo = mid;
    else
      hi = mid;
  }
  Rng rng;
  rng_seed(&rng, seed);
  memcpy(out, x, sizeof(float) * n);
  noise_apply(out, n, kind, (float)(0.5 * (lo + hi)), &rng);
}

static const NoiseKind kinds[RAD_STABILITY_NOISES] = {NOISE_GAUSSIAN, NOISE_RICIAN, NOISE_POISSON};

void radiomics_stability_free(RadiomicsStability *s) {
  free(s->tags), free(s->names), free(s->icc), free(s->moved_per_ssim), free(s->in_model);
  memset(s, 0, sizeof *s);
}

static int usable(const RadiomicsModel *m, const Dataset *d, int i) {
  const size_t plane = (size_t)d->h * d->w;
  const int *mask = d->masks && !m->setup.whole_image ? d->masks + plane * i : NULL;
  return (!mask || radiomics_roi_pixels(mask, plane, &m->setup)) && d->labels[i] >= 0 &&
         d->labels[i] < m->k;
}

Status radiomics_stability(const RadiomicsModel *m, const Dataset *d, int count,
                           const RadiomicsAttackOptions *o, Journal *journal,
                           SweepProgressFn progress, void *ctx, RadiomicsStability *out,
                           MrError *err) {
  memset(out, 0, sizeof *out);
  const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
  const int kinds_all = RAD_STABILITY_NOISES + 1; /* the noises, then the attack */
  float *adv = malloc(sizeof(float) * per), *noisy = malloc(sizeof(float) * per);
  double *values = NULL; /* (images, kinds_all + 1 [clean first], features) */
  int nf = 0, n = 0;
  double ssim_sum = 0;
  Status st = adv && noisy ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  /* the feature list, from the first usable image */
  for (int i = 0; st == STATUS_OK && i < count && !values; i++) {
    if (!usable(m, d, i)) continue;
    const int *mask = d->masks && !m->setup.whole_image ? d->masks + plane * i : NULL;
    RadiomicsFeatures f;
    st = radiomics_image_features(d->images + per * i, d->c, d->h, d->w, mask, &m->setup, &f, err);
    if (st != STATUS_OK) break;
    nf = f.n;
    values = malloc(sizeof(double) * (size_t)count * (kinds_all + 1) * nf);
    out->tags = calloc(nf, sizeof *out->tags), out->names = calloc(nf, sizeof *out->names);
    if (!values || !out->tags || !out->names)
      st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    for (int k = 0; st == STATUS_OK && k < nf; k++) {
      snprintf(out->tags[k], sizeof out->tags[k], "%s", f.items[k].tag);
      snprintf(out->names[k], sizeof out->names[k], "%s: %s", f.items[k].family, f.items[k].name);
    }
    radiomics_features_free(&f);
  }
  for (int i = 0; st == STATUS_OK && values && i < count; i++) {
    if (progress) progress("radiomics stability", i, count, ctx);
    if (!usable(m, d, i)) continue;
    const int *mask = d->masks && !m->setup.whole_image ? d->masks + plane * i : NULL;
    /* an image is a unit of the journal: its features under every perturbation, its SSIM */
    double ssim = 0;
    const JournalPart unit[2] = {
        {values + (size_t)n * (kinds_all + 1) * nf, sizeof(double) * (kinds_all + 1) * nf},
        {&ssim, sizeof ssim}};
    char key[32];
    snprintf(key, sizeof key, "image%d", i);
    if (journal_restore(journal, key, unit, 2)) {
      n++, ssim_sum += ssim;
      continue;
    }
    const float *x = d->images + per * i;
    RadiomicsAttackResult r;
    st = radiomics_attack(m, x, d->c, d->h, d->w, mask, d->labels[i], o, adv, &r, err);
    if (st != STATUS_OK) break;
    ssim = image_ssim(x, adv, d->c, d->h, d->w);
    for (int v = 0; st == STATUS_OK && v <= kinds_all; v++) {
      const float *img = x;
      if (v >= 1 && v <= RAD_STABILITY_NOISES) {
        matched_noise(x, d->c, d->h, d->w, kinds[v - 1], ssim, o->seed + 7919u * i + v, noisy);
        img = noisy;
      } else if (v == kinds_all) {
        img = adv;
      }
      RadiomicsFeatures f;
      st = radiomics_image_features(img, d->c, d->h, d->w, mask, &m->setup, &f, err);
      for (int k = 0; st == STATUS_OK && k < nf && k < f.n; k++)
        values[((size_t)n * (kinds_all + 1) + v) * nf + k] = f.items[k].value;
      radiomics_features_free(&f);
    }
    if (st == STATUS_OK) st = journal_record(journal, key, unit, 2, err);
    if (st == STATUS_OK) n++, ssim_sum += ssim;
  }
  if (st == STATUS_OK && n < 3)
    st = mr_error_set(err, STATUS_ERR_ARG,
                      "radiomics stability: %d usable images; 3 or more needed", n);
  out->n_features = nf, out->n_images = n, out->mean_ssim = n ? ssim_sum / n : NAN;
  if (st == STATUS_OK) {
    out->icc = malloc(sizeof(double) * nf * kinds_all);
    out->moved_per_ssim = malloc(sizeof(double) * nf);
    out->in_model = calloc(nf, 1);
    double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    if (!out->icc || !out->moved_per_ssim || !out->in_model || !a || !b)
      st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    for (int k = 0; st == STATUS_OK && k < nf; k++) {
      for (int s = 0; s < m->n_features; s++) out->in_model[k] |= !strcmp(m->tags[s], out->tags[k]);
      double mean = 0, var = 0;
      for (int i = 0; i < n; i++) mean += values[((size_t)i * (kinds_all + 1)) * nf + k] / n;
      for (int i = 0; i < n; i++)
        var += pow(values[((size_t)i * (kinds_all + 1)) * nf + k] - mean, 2) / n;
      for (int v = 1; v <= kinds_all; v++) {
        for (int i = 0; i < n; i++) {
          a[i] = values[((size_t)i * (kinds_all + 1)) * nf + k];
          b[i] = values[((size_t)i * (kinds_all + 1) + v) * nf + k];
        }
        out->icc[(size_t)k * kinds_all + (v - 1)] = radiomics_icc31(a, b, n);
      }
      /* the attack's mean move in clean standard deviations, per unit of SSIM lost */
      double moved = 0;
      for (int i = 0; i < n; i++)
        moved += fabs(values[((size_t)i * (kinds_all + 1) + kinds_all) * nf + k] -
                      values[((size_t)i * (kinds_all + 1)) * nf + k]);
      const double lost = 1 - out->mean_ssim;
      out->moved_per_ssim[k] = var > 0 && lost > 0 ? moved / n / sqrt(var) / lost : NAN;
    }
    free(a), free(b);
  }
  free(adv), free(noisy), free(values);
  if (st != STATUS_OK) radiomics_stability_free(out);
  return st;
}

const char *radiomics_stability_kind(int v) {
  return v < RAD_STABILITY_NOISES    ? noise_name(kinds[v])
         : v == RAD_STABILITY_NOISES ? "adversarial"
                                     : "?";
}
