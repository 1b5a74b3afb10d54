/* Attacks on a radiomics pipeline: the pixels of an image move within an
 * L-inf ball while its ROI (the radiologist's mask) stays as drawn; the exact
 * features are recomputed at every query and the model scores them. The
 * searches are the query-only ones every scorer shares (square_search,
 * spsa_search); the perturbation may be confined to the ROI (an edit of the
 * lesion) or to its outside (the lesion untouched). Only the feature families
 * the model reads are computed per query. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

static const char *const attack_names[RAD_ATTACK_COUNT] = {"square", "spsa", "surrogate"};
static const char *const region_names[RAD_REGION_COUNT] = {"all", "roi", "background"};

const char *radiomics_attack_name(RadiomicsAttackKind k) {
  return k >= 0 && k < RAD_ATTACK_COUNT ? attack_names[k] : "?";
}
int radiomics_attack_parse(const char *name) {
  for (int k = 0; k < RAD_ATTACK_COUNT; k++)
    if (!strcmp(name, attack_names[k])) return k;
  return -1;
}
const char *radiomics_region_name(RadiomicsRegion r) {
  return r >= 0 && r < RAD_REGION_COUNT ? region_names[r] : "?";
}
int radiomics_region_parse(const char *name) {
  for (int r = 0; r < RAD_REGION_COUNT; r++)
    if (!strcmp(name, region_names[r])) return r;
  return -1;
}

RadiomicsAttackOptions radiomics_attack_options_default(void) {
  RadiomicsAttackOptions o = {.kind = RAD_ATTACK_SQUARE,
                              .eps = 0.03f,
                              .queries = 1000,
                              .samples = 8,
                              .delta = 0.01f,
                              .region = RAD_REGION_ALL,
                              .target = -1,
                              .seed = 1,
                              .norm = NORM_LINF,
                              .temperature = 0.1f};
  return o;
}

/* The model with only the families it reads computed. */
static RadiomicsSetup lean_setup(const RadiomicsModel *m) {
  RadiomicsSetup s = m->setup;
  s.extraction.families = 0;
  for (int f = 0; f < m->n_features; f++) s.extraction.families |= radiomics_family_of(m->tags[f]);
  return s;
}

Status radiomics_model_zscores(const RadiomicsModel *m, const float *image, int c, int h, int w,
                               const int *mask, double *z, MrError *err) {
  const RadiomicsSetup s = lean_setup(m);
  RadiomicsFeatures f;
  Status st = radiomics_image_features(image, c, h, w, mask, &s, &f, err);
  for (int k = 0; st == STATUS_OK && k < m->n_features; k++) {
    const RadiomicsFeature *v = radiomics_find(&f, m->tags[k]);
    if (!v)
      st = mr_error_set(err, STATUS_ERR_ARG, "radiomics: the model needs feature %s", m->tags[k]);
    else
      z[k] = (v->value - m->mean[k]) / m->scale[k];
  }
  radiomics_features_free(&f);
  return st;
}

typedef struct {
  const RadiomicsModel *m;
  RadiomicsSetup setup;
  int c, h, w;
  const int *mask;
  int label, target;
} Pipeline;

/* margin of one image: z_label - max other (targeted: max other - z_target) */
static Status pipeline_margin(void *ctx, const float *x, int n, float *margin, MrError *err) {
  const Pipeline *p = ctx;
  const size_t per = (size_t)p->c * p->h * p->w;
  double z[MR_MAX_CLASSES];
  for (int i = 0; i < n; i++) {
    RadiomicsFeatures f;
    Status st =
        radiomics_image_features(x + per * i, p->c, p->h, p->w, p->mask, &p->setup, &f, err);
    if (st == STATUS_OK) st = radiomics_model_logits(p->m, &f, z, err);
    radiomics_features_free(&f);
    if (st != STATUS_OK) return st;
    const int t = p->target >= 0 ? p->target : p->label;
    int other = -1;
    for (int j = 0; j < p->m->k; j++)
      if (j != t && (other < 0 || z[j] > z[other])) other = j;
    margin[i] = (float)(p->target >= 0 ? z[other] - z[t] : z[t] - z[other]);
  }
  return STATUS_OK;
}

static int argmax_logits(const Pipeline *p, const float *x, int *pred, double *margin,
                         MrError *err) {
  RadiomicsFeatures f;
  double z[MR_MAX_CLASSES];
  Status st = radiomics_image_features(x, p->c, p->h, p->w, p->mask, &p->setup, &f, err);
  if (st == STATUS_OK) st = radiomics_model_logits(p->m, &f, z, err);
  radiomics_features_free(&f);
  if (st != STATUS_OK) return 0;
  *pred = 0;
  for (int j = 1; j < p->m->k; j++)
    if (z[j] > z[*pred]) *pred = j;
  float mg;
  if (pipeline_margin((void *)p, x, 1, &mg, err) != STATUS_OK) return 0;
  *margin = mg;
  return 1;
}

/* White-box: projected gradient descent on the surrogate's cross-entropy (Madry et al.'s
 * step, 2.5 eps / steps: signed for L-inf, normalised for L2), each iterate re-scored on the
 * exact features, the lowest exact margin kept; stops once the exact pipeline is fooled.
 * The cross-entropy weighs every rival class, where the margin's gradient would flip
 * between two rivals and oscillate; after SURROGATE_PATIENCE steps without a better exact
 * margin the step halves and the search restarts from the best point (APGD's schedule,
 * Croce and Hein 2020, in its simplest form). */
#define SURROGATE_PATIENCE 5
static Status surrogate_search(const Pipeline *p, const RadiomicsAttackOptions *o,
                               const unsigned char *allowed, const float *x, float *x_adv,
                               int *used, MrError *err) {
  const size_t plane = (size_t)p->h * p->w, per = plane * p->c;
  /* the budget counts exact evaluations, the clean image's first */
  const int steps = o->queries - 1;
  double alpha = 2.5 * o->eps / (steps > 0 ? steps : 1);
  float *cur = malloc(sizeof(float) * per), *grad = malloc(sizeof(float) * per);
  if (!cur || !grad) {
    free(cur), free(grad);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  memcpy(cur, x, sizeof(float) * per), memcpy(x_adv, x, sizeof(float) * per);
  float best;
  Status st = pipeline_margin((void *)p, x, 1, &best, err);
  *used = 1;
  int stalled = 0;
  for (int step = 0; st == STATUS_OK && step < steps && best >= 0; step++) {
    double z[MR_MAX_CLASSES], dz[MR_MAX_CLASSES];
    float prob[MR_MAX_CLASSES];
    st = radiomics_surrogate_logits(p->m, cur, p->c, p->h, p->w, p->mask, o->temperature, NULL, z,
                                    NULL, err);
    if (st != STATUS_OK) break;
    /* descend log p(label) (untargeted) or -log p(target): d/dz = +-(onehot - softmax) */
    radiomics_softmax(z, p->m->k, prob);
    const int t = p->target >= 0 ? p->target : p->label;
    for (int j = 0; j < p->m->k; j++)
      dz[j] = (p->target >= 0 ? -1 : 1) * ((j == t) - (double)prob[j]);
    st = radiomics_surrogate_logits(p->m, cur, p->c, p->h, p->w, p->mask, o->temperature, dz, z,
                                    grad, err);
    if (st != STATUS_OK) break;
    double norm = 0;
    for (size_t i = 0; i < per; i++) {
      if (allowed && !allowed[i % plane]) grad[i] = 0;
      norm += (double)grad[i] * grad[i];
    }
    if (norm == 0) break; /* nothing the surrogate sees can move */
    norm = sqrt(norm);
    for (size_t i = 0; i < per; i++)
      cur[i] -= (float)(o->norm == NORM_L2 ? alpha * grad[i] / norm
                                           : alpha * ((grad[i] > 0) - (grad[i] < 0)));
    /* back into the ball around x and into [0,1] */
    if (o->norm == NORM_L2) {
      double d2 = 0;
      for (size_t i = 0; i < per; i++) d2 += (double)(cur[i] - x[i]) * (cur[i] - x[i]);
      const double shrink = d2 > (double)o->eps * o->eps ? o->eps / sqrt(d2) : 1;
      for (size_t i = 0; i < per; i++) cur[i] = x[i] + (float)((cur[i] - x[i]) * shrink);
    }
    for (size_t i = 0; i < per; i++) {
      const float lo = fmaxf(0, x[i] - o->eps), hi = fminf(1, x[i] + o->eps);
      cur[i] = fminf(hi, fmaxf(lo, cur[i]));
    }
    float margin;
    st = pipeline_margin((void *)p, cur, 1, &margin, err);
    ++*used;
    if (st != STATUS_OK) break;
    if (margin < best) {
      best = margin, stalled = 0;
      memcpy(x_adv, cur, sizeof(float) * per);
    } else if (++stalled == SURROGATE_PATIENCE) {
      alpha /= 2, stalled = 0;
      memcpy(cur, x_adv, sizeof(float) * per);
    }
  }
  free(cur), free(grad);
  return st;
}

Status radiomics_attack(const RadiomicsModel *m, const float *image, int c, int h, int w,
                        const int *mask, int label, const RadiomicsAttackOptions *o, float *adv,
                        RadiomicsAttackResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  if (!(o->eps >= 0 && o->eps <= (o->norm == NORM_L2 ? 1e4f : 1)) || o->queries < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics attack: eps %g and %d queries", o->eps,
                        o->queries);
  if (o->norm == NORM_L2 && o->kind != RAD_ATTACK_SURROGATE)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "radiomics attack: %s searches the L-inf ball; L2 is the surrogate's",
                        radiomics_attack_name(o->kind));
  if (o->kind == RAD_ATTACK_SURROGATE) {
    const Status s = radiomics_surrogate_check(m, err);
    if (s != STATUS_OK) return s;
  }
  if (label < 0 || label >= m->k || o->target >= m->k)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "radiomics attack: class %d or target %d is not one of %d", label,
                        o->target, m->k);
  const size_t plane = (size_t)h * w, per = plane * c;
  unsigned char *allowed = NULL;
  if (o->region != RAD_REGION_ALL) {
    allowed = malloc(plane);
    if (!allowed) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    size_t count = 0;
    for (size_t i = 0; i < plane; i++) {
      const int in = !mask || m->setup.whole_image ||
                     (m->setup.roi_label >= 0 ? mask[i] == m->setup.roi_label : mask[i] > 0);
      allowed[i] = o->region == RAD_REGION_ROI ? in : !in;
      count += allowed[i];
    }
    if (!count) {
      free(allowed);
      return mr_error_set(err, STATUS_ERR_ARG, "radiomics attack: no pixel %s the ROI to change",
                          o->region == RAD_REGION_ROI ? "inside" : "outside");
    }
  }
  Pipeline p = {m, lean_setup(m), c, h, w, mask, label, o->target};
  Status st =
      argmax_logits(&p, image, &r->clean_pred, &r->clean_margin, err) ? STATUS_OK : err->status;
  const float eps = o->eps;
  int used = 0;
  QuerySearch s = {.batch = 1,
                   .c = c,
                   .h = h,
                   .w = w,
                   .eps = &eps,
                   .allowed = allowed,
                   .queries = o->queries,
                   .p_init = 0.05f,
                   .samples = o->samples,
                   .delta = o->delta,
                   .seed = o->seed,
                   .margin = pipeline_margin,
                   .ctx = &p,
                   .queries_used = &used};
  if (st == STATUS_OK && r->clean_margin < 0) {
    memcpy(adv, image, sizeof(float) * per); /* already wrong (or at the target): nothing to do */
  } else if (st == STATUS_OK) {
    st = o->kind == RAD_ATTACK_SURROGATE ? surrogate_search(&p, o, allowed, image, adv, &used, err)
         : o->kind == RAD_ATTACK_SPSA    ? spsa_search(&s, image, adv, err)
                                         : square_search(&s, image, adv, err);
  }
  if (st == STATUS_OK && !argmax_logits(&p, adv, &r->adv_pred, &r->adv_margin, err))
    st = err->status;
  r->queries = used;
  free(allowed);
  return st;
}
