/* Triage by adversarial sensitivity (paper 001, Table 2): for every image the
 * smallest eps at which an attack changes the model's prediction, found by
 * bisection to a tolerance below an upper bound; the most fragile images are
 * flagged for human review, and the accuracy without them (the
 * "adversarially aware" set) and deferral curves say what that buys, beside
 * the same curves for the confidence baselines (softmax confidence, top-two
 * margin, entropy) that triage has to beat to be worth its cost. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

static const char *const defer_names[DEFER_COUNT] = {"adversarial", "confidence", "margin",
                                                     "entropy"};
const char *defer_name(DeferScore s) { return s >= 0 && s < DEFER_COUNT ? defer_names[s] : "?"; }

/* How doubtful an image is by a score: higher is deferred first. */
static double doubt(const TriageItem *t, DeferScore s) {
  switch (s) {
    case DEFER_ADVERSARIAL:
      return -t->min_eps; /* INFINITY (never flips): last */
    case DEFER_CONFIDENCE:
      return -t->confidence;
    case DEFER_MARGIN:
      return -t->margin;
    default:
      return t->entropy;
  }
}

typedef struct {
  double doubt;
  int at;
} Ranked;

static int cmp_ranked(const void *a, const void *b) {
  const Ranked *x = a, *y = b;
  if (x->doubt != y->doubt) return x->doubt > y->doubt ? -1 : 1;
  return x->at - y->at;
}

void triage_deferral(const TriageItem *items, int n, int k, DeferScore score, double frac,
                     double *acc, double *bal) {
  Ranked *r = malloc(sizeof(Ranked) * (n + 1));
  int *right = calloc(k + 1, sizeof(int)), *total = calloc(k + 1, sizeof(int));
  *acc = *bal = 0;
  if (!r || !right || !total) {
    free(r), free(right), free(total);
    return;
  }
  for (int i = 0; i < n; i++) r[i] = (Ranked){doubt(&items[i], score), i};
  qsort(r, n, sizeof *r, cmp_ranked);
  const int skip = (int)lround(frac * n);
  int ok = 0;
  for (int i = skip; i < n; i++) {
    const TriageItem *t = &items[r[i].at];
    if (t->label < 0 || t->label >= k) continue;
    ok += t->pred == t->label;
    total[t->label]++, right[t->label] += t->pred == t->label;
  }
  int present = 0;
  double recall = 0;
  for (int c = 0; c < k; c++)
    if (total[c]) recall += (double)right[c] / total[c], present++;
  *acc = n - skip > 0 ? (double)ok / (n - skip) : 0.0;
  *bal = present ? recall / present : 0.0;
  free(r), free(right), free(total);
}

static int cmp_fragile(const void *a, const void *b) {
  const TriageItem *x = a, *y = b;
  if (x->min_eps != y->min_eps) return x->min_eps < y->min_eps ? -1 : 1;
  if (x->confidence != y->confidence) return x->confidence < y->confidence ? -1 : 1;
  return x->index - y->index;
}

TriageOptions triage_options_default(void) {
  TriageOptions o = {.attack = attack_options_default(ATTACK_PGD),
                     .eps_max = TRIAGE_EPS_MAX,
                     .tol = TRIAGE_TOL,
                     .flag_frac = TRIAGE_FLAG_FRAC,
                     .dice_threshold = 0.5f,
                     .batch = 128};
  return o;
}

/* A batch's buffers for the bisection. */
typedef struct {
  float *probs, *adv, *lo, *hi, *mid;
  int *pred, *active;
} TriageScratch;

static void triage_scratch_free(TriageScratch *w) {
  free(w->probs), free(w->adv), free(w->lo), free(w->hi), free(w->mid), free(w->pred);
  free(w->active);
}

static Status triage_scratch_alloc(TriageScratch *w, Net *net, int batch, MrError *err) {
  const size_t k = (size_t)net_num_classes(net), per = (size_t)net_input_size(net);
  w->probs = malloc(sizeof(float) * k * batch), w->adv = malloc(sizeof(float) * per * batch);
  w->lo = malloc(sizeof(float) * batch), w->hi = malloc(sizeof(float) * batch);
  w->mid = malloc(sizeof(float) * batch);
  w->pred = malloc(sizeof(int) * batch), w->active = malloc(sizeof(int) * batch);
  if (w->probs && w->adv && w->lo && w->hi && w->mid && w->pred && w->active) return STATUS_OK;
  triage_scratch_free(w);
  memset(w, 0, sizeof *w);
  return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
}

/* The clean prediction of each image of the batch [start, start + B) into items and pred, with
 * the confidence baselines' scores. */
static void triage_clean(Net *net, const Dataset *d, int start, int B, TriageItem *items,
                         TriageScratch *w) {
  const int k = net_num_classes(net);
  const float *x = d->images + (size_t)net_input_size(net) * start;
  float *probs = w->probs;
  net_predict(net, x, B, probs);
  for (int i = 0; i < B; i++) {
    TriageItem *it = &items[i];
    it->index = start + i, it->label = d->labels[start + i];
    const float *p = probs + (size_t)i * k;
    it->pred = argmax(p, k);
    it->confidence = p[it->pred];
    float second = 0;
    double h = 0;
    for (int c = 0; c < k; c++) {
      if (c != it->pred && p[c] > second) second = p[c];
      if (p[c] > 0) h -= p[c] * log(p[c]);
    }
    /* the logit margin z1 - z2 is log(p1 / p2): softmax keeps logit differences */
    it->margin = (float)(log(p[it->pred]) - log(fmax(second, 1e-38)));
    it->entropy = (float)h;
    it->flip_class = -1;
    w->pred[i] = it->pred;
  }
}

/* One minimal-norm run (FMN) for the batch [start, start + B): each image's smallest flipping
 * eps is the norm of the adversarial point found, when it is at most eps_max. No smaller eps is
 * known not to flip it, so eps_below is 0. */
static Status triage_batch_fmn(Net *net, const Dataset *d, const TriageOptions *to, int start,
                               int B, TriageItem *items, TriageScratch *w, MrError *err) {
  const int k = net_num_classes(net);
  const size_t per = (size_t)net_input_size(net);
  const float *x = d->images + per * start;
  triage_clean(net, d, start, B, items, w);
  AttackOptions o = to->attack;
  o.index_base = start, o.eps_each = NULL, o.target = TARGET_NONE;
  const Status st = attack_run(net, &o, x, w->pred, B, w->adv, err);
  if (st != STATUS_OK) return st;
  net_predict(net, w->adv, B, w->probs);
  for (int i = 0; i < B; i++) {
    TriageItem *it = &items[i];
    const int now = argmax(w->probs + (size_t)i * k, k);
    double size = 0;
    for (size_t p = 0; p < per; p++) {
      const double dp = (double)w->adv[per * i + p] - x[per * i + p];
      size = o.norm == NORM_LINF ? fmax(size, fabs(dp)) : size + dp * dp;
    }
    if (o.norm != NORM_LINF) size = sqrt(size);
    it->eps_below = 0.0f;
    it->min_eps = now != it->pred && size <= to->eps_max ? (float)size : INFINITY;
    it->flip_class = isfinite(it->min_eps) ? now : -1;
    if (!isfinite(it->min_eps)) it->eps_below = to->eps_max; /* as bisection reports it */
  }
  return STATUS_OK;
}

/* Bisects each image of the batch [start, start + B) into items. */
static Status triage_batch(Net *net, const Dataset *d, const TriageOptions *to, int start, int B,
                           TriageItem *items, TriageScratch *w, SweepProgressFn progress, void *ctx,
                           MrError *err) {
  const int k = net_num_classes(net);
  const size_t per = (size_t)net_input_size(net);
  const float eps_max = to->eps_max, tol = to->tol;
  const float *x = d->images + per * start;
  const int passes = 2 + (int)ceil(log2(eps_max / tol));
  const double total_passes = (double)passes * (d->n ? d->n : 1);
  float *probs = w->probs, *adv = w->adv, *lo = w->lo, *hi = w->hi, *mid = w->mid;
  int *pred = w->pred, *active = w->active, pass = 0;
  triage_clean(net, d, start, B, items, w);
  for (int i = 0; i < B; i++) lo[i] = 0.0f, hi[i] = eps_max, active[i] = 1;
  AttackOptions o = to->attack;
  o.eps = eps_max, o.eps_each = mid, o.index_base = start;
  /* does eps_max flip it at all? */
  for (int i = 0; i < B; i++) mid[i] = eps_max;
  Status st = attack_run(net, &o, x, pred, B, adv, err);
  if (st != STATUS_OK) return st;
  net_predict(net, adv, B, probs);
  for (int i = 0; i < B; i++) {
    const int now = argmax(probs + (size_t)i * k, k);
    if (now == pred[i])
      active[i] = 0, hi[i] = INFINITY, lo[i] = eps_max;
    else
      items[i].flip_class = now;
  }
  for (;;) {
    int any = 0;
    for (int i = 0; i < B; i++) {
      if (active[i] && hi[i] - lo[i] <= tol) active[i] = 0;
      any |= active[i];
      mid[i] = active[i] ? 0.5f * (lo[i] + hi[i]) : 0.0f;
    }
    if (!any) break;
    if (progress && ++pass < passes)
      progress("triage: bisecting each image's smallest flipping eps",
               (int)(1e6 * ((double)start * passes + (double)pass * B) / total_passes), 1000000,
               ctx);
    st = attack_run(net, &o, x, pred, B, adv, err);
    if (st != STATUS_OK) return st;
    net_predict(net, adv, B, probs);
    for (int i = 0; i < B; i++) {
      if (!active[i]) continue;
      const int now = argmax(probs + (size_t)i * k, k);
      if (now != pred[i])
        hi[i] = mid[i], items[i].flip_class = now;
      else
        lo[i] = mid[i];
    }
  }
  for (int i = 0; i < B; i++) items[i].min_eps = hi[i], items[i].eps_below = lo[i];
  return STATUS_OK;
}

/* The argmax of the mean of volume v's slice probabilities with each slice attacked at eps
 * (0: clean) away from the volume's class, in batches; the mean probabilities into mean. */
static Status volume_prediction(Net *net, const Dataset *d, const TriageOptions *to, float eps,
                                const VolumeTriageItem *v, TriageScratch *w, int *pred,
                                double *mean, MrError *err) {
  const int k = net_num_classes(net), batch = to->batch;
  const size_t per = (size_t)net_input_size(net);
  AttackOptions o = to->attack;
  o.eps = eps, o.eps_each = NULL;
  for (int c = 0; c < k; c++) mean[c] = 0;
  for (int start = v->first; start < v->first + v->slices; start += batch) {
    const int b = v->first + v->slices - start < batch ? v->first + v->slices - start : batch;
    const float *x = d->images + per * start;
    if (eps > 0) {
      for (int i = 0; i < b; i++) w->pred[i] = v->pred;
      o.index_base = start;
      const Status st = attack_run(net, &o, x, w->pred, b, w->adv, err);
      if (st != STATUS_OK) return st;
      x = w->adv;
    }
    net_predict(net, x, b, w->probs);
    for (int i = 0; i < b; i++)
      for (int c = 0; c < k; c++) mean[c] += w->probs[(size_t)i * k + c] / v->slices;
  }
  *pred = 0;
  for (int c = 1; c < k; c++)
    if (mean[c] > mean[*pred]) *pred = c;
  return STATUS_OK;
}

/* Bisects volume v's smallest flipping eps, as triage_batch does an image's. */
static Status triage_volume(Net *net, const Dataset *d, const TriageOptions *to,
                            VolumeTriageItem *v, TriageScratch *w, MrError *err) {
  double mean[MR_MAX_CLASSES];
  Status st = volume_prediction(net, d, to, 0, v, w, &v->pred, mean, err);
  v->confidence = (float)mean[v->pred], v->flip_class = -1;
  float lo = 0, hi = to->eps_max;
  int now = v->pred;
  if (st == STATUS_OK) st = volume_prediction(net, d, to, hi, v, w, &now, mean, err);
  if (now != v->pred) v->flip_class = now;
  if (st == STATUS_OK && now == v->pred) lo = hi, hi = INFINITY; /* robust up to eps_max */
  while (st == STATUS_OK && isfinite(hi) && hi - lo > to->tol) {
    const float mid = 0.5f * (lo + hi);
    st = volume_prediction(net, d, to, mid, v, w, &now, mean, err);
    if (now != v->pred)
      hi = mid, v->flip_class = now;
    else
      lo = mid;
  }
  v->min_eps = hi, v->eps_below = lo;
  return st;
}

static int cmp_fragile_volume(const void *a, const void *b) {
  const VolumeTriageItem *x = a, *y = b;
  if (x->min_eps != y->min_eps) return x->min_eps < y->min_eps ? -1 : 1;
  if (x->confidence != y->confidence) return x->confidence < y->confidence ? -1 : 1;
  return x->first - y->first;
}

/* Every volume of d (Dataset.volume) into r->volumes, most fragile first, and the volume
 * accuracy with and without the flagged share. */
static Status triage_volumes(Net *net, const Dataset *d, const TriageOptions *image_to,
                             SweepProgressFn progress, void *ctx, TriageScratch *w, TriageResult *r,
                             MrError *err) {
  /* a volume's eps is where its mean prediction flips: bisected with a bounded attack */
  TriageOptions bounded = *image_to;
  if (!attack_is_bounded(bounded.attack.kind)) {
    AttackOptions pgd = attack_options_default(ATTACK_PGD);
    pgd.norm = bounded.attack.norm, pgd.seed = bounded.attack.seed;
    bounded.attack = pgd;
  }
  const TriageOptions *to = &bounded;
  int n = 0;
  for (int i = 0; i < d->n; i = dataset_volume_end(d, i)) n += d->volume[i] >= 0;
  r->volumes = calloc(n + 1, sizeof(VolumeTriageItem));
  if (!r->volumes) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
  Status st = STATUS_OK;
  for (int i = 0; st == STATUS_OK && i < d->n; i = dataset_volume_end(d, i)) {
    if (d->volume[i] < 0) continue;
    VolumeTriageItem *v = &r->volumes[r->n_volumes++];
    *v = (VolumeTriageItem){
        .first = i, .slices = dataset_volume_end(d, i) - i, .label = d->labels[i]};
    if (progress)
      progress("triage: bisecting each volume's smallest flipping eps", r->n_volumes - 1, n, ctx);
    const JournalPart unit = {v, sizeof *v};
    char key[96];
    snprintf(key, sizeof key, "%striage/v%d", to->scope ? to->scope : "", i);
    if (journal_restore(to->journal, key, &unit, 1)) continue;
    st = triage_volume(net, d, to, v, w, err);
    if (st == STATUS_OK) st = journal_record(to->journal, key, &unit, 1, err);
  }
  if (st != STATUS_OK) return st;
  qsort(r->volumes, r->n_volumes, sizeof *r->volumes, cmp_fragile_volume);
  r->n_volumes_flagged = (int)lround(to->flag_frac * r->n_volumes);
  int right = 0, right_kept = 0, kept = 0;
  for (int i = 0; i < r->n_volumes; i++) {
    VolumeTriageItem *v = &r->volumes[i];
    v->flagged = i < r->n_volumes_flagged;
    if (v->label < 0) continue;
    r->volumes_labelled++, right += v->pred == v->label;
    if (!v->flagged) kept++, right_kept += v->pred == v->label;
  }
  r->volume_accuracy_all = r->volumes_labelled ? (double)right / r->volumes_labelled : 0.0;
  r->volume_accuracy_aware = kept ? (double)right_kept / kept : 0.0;
  return STATUS_OK;
}

Status triage_run(Net *net, const Dataset *d, const TriageOptions *to, SweepProgressFn progress,
                  void *ctx, TriageResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  const AttackOptions *attack = &to->attack;
  const float eps_max = to->eps_max, tol = to->tol, flag_frac = to->flag_frac;
  const int batch = to->batch;
  if (!(eps_max > 0) || !(tol > 0) || tol >= eps_max)
    return mr_error_set(err, STATUS_ERR_ARG, "triage needs 0 < tol < eps_max (got %g, %g)", tol,
                        eps_max);
  if (!(flag_frac >= 0 && flag_frac <= 1))
    return mr_error_set(err, STATUS_ERR_ARG, "the flagged fraction must be in [0,1], got %g",
                        flag_frac);
  const AttackKind kind = attack->kind;
  if (kind != ATTACK_FGSM && kind != ATTACK_BIM && kind != ATTACK_PGD && kind != ATTACK_MIFGSM &&
      kind != ATTACK_FMN)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "triage bisects eps with fgsm, bim, pgd or mifgsm, or runs fmn; not %s",
                        attack_name(kind));
  if (batch < 1) return mr_error_set(err, STATUS_ERR_ARG, "triage batch must be >= 1");
  const int k = net_num_classes(net);
  r->items = calloc(d->n ? d->n : 1, sizeof(TriageItem));
  TriageScratch w;
  Status st = triage_scratch_alloc(&w, net, batch, err);
  if (st == STATUS_OK && !r->items)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
  r->n = d->n, r->eps_max = eps_max, r->tol = tol, r->flag_frac = flag_frac;
  snprintf(r->attack, sizeof r->attack, "%s", attack_name(kind));
  r->iters = attack->iters, r->one_run = kind == ATTACK_FMN;
  /* batches from a queue shared by the MPI ranks (one process: in order); a batch's results
   * do not depend on who computes it, and rank 0 gathers them */
  const int n_batches = (d->n + batch - 1) / batch;
  unsigned char *done = calloc((size_t)d->n + 1, 1);
  DistQueue *queue = dist_queue_new(n_batches, 1);
  if (st == STATUS_OK && (!done || !queue))
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
  for (int b; st == STATUS_OK && (b = dist_queue_next(queue)) < n_batches;) {
    const int start = b * batch, B = d->n - start < batch ? d->n - start : batch;
    if (progress)
      progress("triage: bisecting each image's smallest flipping eps",
               (int)(1e6 * start / (d->n ? d->n : 1)), 1000000, ctx);
    memset(done + start, 1, (size_t)B);
    const JournalPart unit = {r->items + start, sizeof(TriageItem) * B};
    char key[96];
    snprintf(key, sizeof key, "%striage/b%d", to->scope ? to->scope : "", start);
    if (journal_restore(to->journal, key, &unit, 1)) continue;
    st = kind == ATTACK_FMN
             ? triage_batch_fmn(net, d, to, start, B, r->items + start, &w, err)
             : triage_batch(net, d, to, start, B, r->items + start, &w, progress, ctx, err);
    if (st == STATUS_OK) st = journal_record(to->journal, key, &unit, 1, err);
  }
  dist_queue_free(queue, st != STATUS_OK);
  if (st == STATUS_OK) st = dist_gather(r->items, sizeof(TriageItem), d->n, done, err);
  free(done);
  /* volumes: every rank the same, rank 0's kept */
  if (st == STATUS_OK && d->volume) st = triage_volumes(net, d, to, progress, ctx, &w, r, err);
  triage_scratch_free(&w);
  if (st != STATUS_OK) {
    triage_free(r);
    return st;
  }
  qsort(r->items, r->n, sizeof(TriageItem), cmp_fragile);
  r->n_flagged = (int)lround(flag_frac * r->n);
  r->labelled = 1;
  for (int i = 0; i < r->n; i++) {
    r->items[i].flagged = i < r->n_flagged;
    r->labelled &= r->items[i].label >= 0;
    r->n_flagged_wrong +=
        r->items[i].flagged && r->items[i].label >= 0 && r->items[i].pred != r->items[i].label;
  }
  if (!r->labelled) return STATUS_OK; /* no accuracy without labels */
  triage_deferral(r->items, r->n, k, DEFER_ADVERSARIAL, 0.0, &r->accuracy_all, &r->balanced_all);
  triage_deferral(r->items, r->n, k, DEFER_ADVERSARIAL, flag_frac, &r->accuracy_aware,
                  &r->balanced_aware);
  /* deferral curves: defer the most doubtful fraction f by each score */
  for (int sc = 0; sc < DEFER_COUNT; sc++) {
    double area = 0;
    for (int p = 0; p < TRIAGE_CURVE_POINTS; p++) {
      const double f = 0.5 * p / (TRIAGE_CURVE_POINTS - 1);
      r->curve_frac[p] = f;
      triage_deferral(r->items, r->n, k, (DeferScore)sc, f, &r->curve_acc[sc][p],
                      &r->curve_bal[sc][p]);
      if (p)
        area += 0.5 * (r->curve_acc[sc][p] + r->curve_acc[sc][p - 1]) *
                (r->curve_frac[p] - r->curve_frac[p - 1]);
    }
    r->curve_auc[sc] = area / 0.5;
  }
  return STATUS_OK;
}

void triage_free(TriageResult *r) {
  free(r->items), free(r->volumes);
  memset(r, 0, sizeof *r);
}
