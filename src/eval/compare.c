/* Several models on the same images: each one's sweep and triage summary
 * (paper 004's complexity study, paper 002's Table 1) and the transfer matrix
 * of adversarial examples crafted on one model and shown to another (paper
 * 002's Table 2). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

/* names[i], or "model i+1" without names */
static const char *label(const char *const *names, int i, char buf[32]) {
  if (names) return names[i];
  snprintf(buf, 32, "model %d", i + 1);
  return buf;
}

Status compare_check_models(Net *const *nets, const char *const *names, int n, MrError *err) {
  if (n < 1) return mr_error_set(err, STATUS_ERR_ARG, "no models to compare");
  const ModelSpec *a = net_spec(nets[0]);
  char first[32], this[32];
  for (int i = 1; i < n; i++) {
    const ModelSpec *b = net_spec(nets[i]);
    if ((net_output_pixels(nets[i]) > 1) != (net_output_pixels(nets[0]) > 1))
      return mr_error_set(err, STATUS_ERR_ARG,
                          "%s answers per %s but %s per %s: a segmentation model and a "
                          "classifier do not do the same task",
                          label(names, i, this), net_output_pixels(nets[i]) > 1 ? "pixel" : "image",
                          label(names, 0, first),
                          net_output_pixels(nets[0]) > 1 ? "pixel" : "image");
    if (b->in_c != a->in_c || b->in_h != a->in_h || b->in_w != a->in_w ||
        b->n_classes != a->n_classes)
      return mr_error_set(err, STATUS_ERR_SHAPE,
                          "%s takes %dx%dx%d images with %d classes but %s takes %dx%dx%d with %d: "
                          "models compared (and transferred between) need one input and one label "
                          "set",
                          label(names, i, this), b->in_c, b->in_h, b->in_w, b->n_classes,
                          label(names, 0, first), a->in_c, a->in_h, a->in_w, a->n_classes);
    for (int k = 0; k < a->n_classes; k++)
      if (a->class_names[k] && b->class_names[k] && strcmp(a->class_names[k], b->class_names[k]))
        return mr_error_set(
            err, STATUS_ERR_ARG, "class %d is '%s' in %s but '%s' in %s: not the same task", k,
            b->class_names[k], label(names, i, this), a->class_names[k], label(names, 0, first));
  }
  return STATUS_OK;
}

Status transfer_matrix(Net *const *nets, int n, const Dataset *d, const AttackOptions *a, int batch,
                       Journal *journal, double *acc, MrError *err) {
  Status s = compare_check_models(nets, NULL, n, err);
  if (s != STATUS_OK) return s;
  const int k = net_num_classes(nets[0]);
  const size_t per = (size_t)d->c * d->h * d->w;
  if (d->n < 1) return mr_error_set(err, STATUS_ERR_ARG, "no images for the transfer matrix");
  float *adv = malloc(sizeof(float) * per * batch), *probs = malloc(sizeof(float) * k * batch);
  double *correct = calloc((size_t)n * n, sizeof(double)); /* whole counts, exact */
  int32_t *batch_correct = calloc(n, sizeof(int32_t));     /* one batch's counts per target */
  /* units (source model, batch) from a queue the MPI ranks share; their counts are added */
  const int n_batches = (d->n + batch - 1) / batch;
  DistQueue *queue = dist_queue_new(n * n_batches, 1);
  if (!adv || !probs || !correct || !batch_correct || !queue)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int u; s == STATUS_OK && (u = dist_queue_next(queue)) < n * n_batches;) {
    const int src = u / n_batches, start = (u % n_batches) * batch;
    const int b = d->n - start < batch ? d->n - start : batch;
    const JournalPart unit = {batch_correct, sizeof(int32_t) * n};
    char key[64];
    snprintf(key, sizeof key, "transfer/m%d/b%d", src, start);
    if (!journal_restore(journal, key, &unit, 1)) {
      const AttackOptions at = attack_at(a, start);
      s = attack_run(nets[src], &at, d->images + per * start, d->labels + start, b, adv, err);
      for (int dst = 0; s == STATUS_OK && dst < n; dst++) {
        net_predict(nets[dst], adv, b, probs);
        batch_correct[dst] = 0;
        for (int i = 0; i < b; i++)
          batch_correct[dst] += argmax(probs + (size_t)i * k, k) == d->labels[start + i];
      }
      if (s == STATUS_OK) s = journal_record(journal, key, &unit, 1, err);
    }
    for (int dst = 0; s == STATUS_OK && dst < n; dst++)
      correct[src * n + dst] += batch_correct[dst];
  }
  dist_queue_free(queue, s != STATUS_OK);
  if (s == STATUS_OK) dist_sum_doubles(correct, n * n);
  for (int i = 0; s == STATUS_OK && i < n * n; i++) acc[i] = correct[i] / d->n;
  free(adv), free(probs), free(correct), free(batch_correct);
  return s;
}

/* Median of the per-image smallest flipping eps (INFINITY counts as above all). */
static double min_eps_median(const TriageResult *t) {
  if (t->n < 1) return NAN;
  /* triage lists the items by ascending min_eps (most fragile first) */
  const TriageItem *it = t->items;
  return t->n % 2 ? it[t->n / 2].min_eps
                  : 0.5 * ((double)it[t->n / 2 - 1].min_eps + it[t->n / 2].min_eps);
}

/* Mean over the eps grid of the worst balanced accuracy at each eps. */
static double robust_balanced(const SweepResult *sw, const SweepOptions *o) {
  double total = 0;
  int counted = 0;
  for (int e = 0; e < o->n_eps; e++) {
    const double worst = sweep_worst_balanced(sw, o->eps[e]);
    if (!isnan(worst)) total += worst, counted++;
  }
  return counted ? total / counted : sw->clean_balanced_accuracy;
}

static int cmp_rank(const void *a, const void *b) {
  const CompareEntry *x = *(CompareEntry *const *)a, *y = *(CompareEntry *const *)b;
  if (x->near_chance != y->near_chance) return x->near_chance - y->near_chance;
  if (x->robust_balanced != y->robust_balanced)
    return x->robust_balanced > y->robust_balanced ? -1 : 1;
  const double cx = x->sweep.clean_balanced_accuracy, cy = y->sweep.clean_balanced_accuracy;
  return (cx < cy) - (cx > cy);
}

/* Ranks by robust balanced accuracy (models near chance last) and says in
 * plain words which to deploy. */
static void rank_models(CompareResult *r, const CompareOptions *o) {
  CompareEntry **order = malloc(sizeof(CompareEntry *) * r->n);
  if (!order) return;
  for (int i = 0; i < r->n; i++) {
    CompareEntry *e = &r->models[i];
    e->robust_balanced = robust_balanced(&e->sweep, &o->sweep);
    e->near_chance = e->sweep.clean_balanced_accuracy <= 1.0 / e->sweep.k + 0.05;
    order[i] = e;
  }
  qsort(order, r->n, sizeof *order, cmp_rank);
  for (int i = 0; i < r->n; i++) order[i]->rank = i + 1;
  const CompareEntry *best = order[0];
  r->best = best->near_chance ? -1 : (int)(best - r->models);
  const float eps_max = o->sweep.n_eps ? o->sweep.eps[o->sweep.n_eps - 1] : 0;
  if (r->best < 0) {
    snprintf(r->verdict, sizeof r->verdict,
             "Deploy none of them: every model's clean balanced accuracy is within 5 points of "
             "chance (%.0f%%), so its accuracy, clean or under attack, is that of a constant "
             "answer.",
             100.0 / best->sweep.k);
  } else {
    int n = snprintf(r->verdict, sizeof r->verdict,
                     "Deploy %s: under attack it keeps the highest balanced accuracy (%.1f%% on "
                     "average over eps up to %g, the worst attack at each eps; %.1f%% clean).",
                     best->name, 100 * best->robust_balanced, eps_max,
                     100 * best->sweep.clean_balanced_accuracy);
    const CompareEntry *clean_best = best;
    for (int i = 0; i < r->n; i++)
      if (!r->models[i].near_chance && r->models[i].sweep.clean_balanced_accuracy >
                                           clean_best->sweep.clean_balanced_accuracy + 0.02)
        clean_best = &r->models[i];
    if (clean_best != best && n > 0 && (size_t)n < sizeof r->verdict)
      n += snprintf(r->verdict + n, sizeof r->verdict - n,
                    " %s is better on clean images (%.1f%% balanced) but falls to %.1f%% under "
                    "attack.",
                    clean_best->name, 100 * clean_best->sweep.clean_balanced_accuracy,
                    100 * clean_best->robust_balanced);
    for (int i = 0; i < r->n && n > 0 && (size_t)n < sizeof r->verdict; i++)
      if (r->models[i].near_chance)
        n +=
            snprintf(r->verdict + n, sizeof r->verdict - n,
                     " %s is near chance on clean images (%.1f%% balanced): whatever its accuracy, "
                     "do not use it.",
                     r->models[i].name, 100 * r->models[i].sweep.clean_balanced_accuracy);
  }
  free(order);
}

/* One progress for the whole comparison: each phase reports its own share,
 * scaled into its slice of the run (weights in passes over the images). */
typedef struct {
  SweepProgressFn fn;
  void *ctx;
  const char *model;
  double base, span, total;
} Overall;

static void overall_progress(const char *what, int done, int total, void *ctx) {
  Overall *o = ctx;
  char text[160];
  snprintf(text, sizeof text, "%s: %s", o->model, what);
  const double frac = total > 0 ? (double)done / total : 0;
  o->fn(text, (int)(1e6 * (o->base + frac * o->span) / o->total), 1000000, o->ctx);
}

Status compare_run(Net *const *nets, const char *const *names, int n, const Dataset *d,
                   const CompareOptions *o, SweepProgressFn progress, void *ctx, CompareResult *r,
                   MrError *err) {
  memset(r, 0, sizeof *r);
  Status s = compare_check_models(nets, names, n, err);
  if (s != STATUS_OK) return s;
  const ModelSpec *spec = net_spec(nets[0]);
  if (d->c != spec->in_c || d->h != spec->in_h || d->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE, "data is %dx%dx%d but the models take %dx%dx%d",
                        d->c, d->h, d->w, spec->in_c, spec->in_h, spec->in_w);
  r->models = calloc(n, sizeof(CompareEntry));
  if (!r->models) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  r->n = n, r->n_images = d->n, r->triage_eps_max = o->triage_o.eps_max, r->bits = d->bits;
  r->window = d->window;
  const double sweep_w = o->sweep.n_attacks * o->sweep.n_eps,
               triage_w = o->triage ? 2 + ceil(log2(o->triage_o.eps_max / o->triage_o.tol)) : 0,
               transfer_w = o->transfer ? n : 0;
  Overall overall = {progress, ctx, "", 0, 0, n * (sweep_w + triage_w) + transfer_w};
  SweepProgressFn step = progress ? overall_progress : NULL;
  for (int i = 0; s == STATUS_OK && i < n; i++) {
    CompareEntry *e = &r->models[i];
    const ModelSpec *ms = net_spec(nets[i]);
    snprintf(e->name, sizeof e->name, "%s", names[i]);
    snprintf(e->arch, sizeof e->arch, "%s", ms->arch);
    snprintf(e->training, sizeof e->training, "%s", ms->training);
    e->params = net_param_count(nets[i]);
    e->flops = net_flops(nets[i]);
    e->min_eps_median = e->accuracy_aware = NAN;
    overall.model = e->name, overall.base = i * (sweep_w + triage_w), overall.span = sweep_w;
    char scope[24];
    snprintf(scope, sizeof scope, "m%d/", i);
    SweepOptions so = o->sweep;
    so.scope = scope;
    s = robustness_sweep(nets[i], d, &so, step, &overall, &e->sweep, err);
    if (s == STATUS_OK && o->triage) {
      TriageResult *tr = &e->triage, t;
      overall.base += sweep_w, overall.span = triage_w;
      TriageOptions to = o->triage_o;
      to.batch = so.batch, to.journal = so.journal, to.scope = scope;
      s = triage_run(nets[i], d, &to, step, &overall, &t, err);
      if (s == STATUS_OK) {
        e->triaged = 1;
        e->min_eps_median = min_eps_median(&t);
        e->accuracy_aware = t.accuracy_aware;
        e->balanced_aware = t.balanced_aware;
        *tr = t; /* kept for the caller's per-image list */
      } else {
        triage_free(&t);
      }
    }
  }
  if (s == STATUS_OK && o->transfer) {
    overall.model = "all models", overall.base = n * (sweep_w + triage_w),
    overall.span = transfer_w;
    if (step) step("transfer matrix", 0, 1, &overall);
    r->transfer = malloc(sizeof(double) * n * n);
    r->transfer_attack = o->transfer_attack;
    s = r->transfer ? transfer_matrix(nets, n, d, &o->transfer_attack, o->sweep.batch,
                                      o->sweep.journal, r->transfer, err)
                    : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  if (s == STATUS_OK) rank_models(r, o);
  if (s != STATUS_OK) compare_result_free(r);
  return s;
}

void compare_result_free(CompareResult *r) {
  for (int i = 0; r->models && i < r->n; i++) {
    sweep_result_free(&r->models[i].sweep);
    triage_free(&r->models[i].triage);
  }
  free(r->models);
  free(r->transfer);
  memset(r, 0, sizeof *r);
}
