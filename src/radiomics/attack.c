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

static const char *const attack_names[RAD_ATTACK_COUNT] = {"square", "spsa"};
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
  RadiomicsAttackOptions o = {RAD_ATTACK_SQUARE, 0.03f, 1000, 8, 0.01f, RAD_REGION_ALL, -1, 1};
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

Status radiomics_attack(const RadiomicsModel *m, const float *image, int c, int h, int w,
                        const int *mask, int label, const RadiomicsAttackOptions *o, float *adv,
                        RadiomicsAttackResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  if (!(o->eps >= 0 && o->eps <= 1) || o->queries < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics attack: eps %g (0 to 1) and %d queries",
                        o->eps, o->queries);
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
    st = o->kind == RAD_ATTACK_SPSA ? spsa_search(&s, image, adv, err)
                                    : square_search(&s, image, adv, err);
  }
  if (st == STATUS_OK && !argmax_logits(&p, adv, &r->adv_pred, &r->adv_margin, err))
    st = err->status;
  r->queries = used;
  free(allowed);
  return st;
}
