/* Triage by adversarial sensitivity (paper 001, Table 2): for every image the
 * smallest eps at which an attack changes the model's prediction, found by
 * bisection to a tolerance below an upper bound; the most fragile images are
 * flagged for human review, and the accuracy without them (the
 * "adversarially aware" set) and a deferral curve say what that buys. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

static int cmp_fragile(const void *a, const void *b) {
  const TriageItem *x = a, *y = b;
  if (x->min_eps != y->min_eps) return x->min_eps < y->min_eps ? -1 : 1;
  if (x->confidence != y->confidence) return x->confidence < y->confidence ? -1 : 1;
  return x->index - y->index;
}

Status triage_run(Net *net, const Dataset *d, const AttackOptions *attack, float eps_max, float tol,
                  float flag_frac, int batch, SweepProgressFn progress, void *ctx, TriageResult *r,
                  MrError *err) {
  memset(r, 0, sizeof *r);
  if (!(eps_max > 0) || !(tol > 0) || tol >= eps_max)
    return mr_error_set(err, STATUS_ERR_ARG, "triage needs 0 < tol < eps_max (got %g, %g)", tol,
                        eps_max);
  if (!(flag_frac >= 0 && flag_frac <= 1))
    return mr_error_set(err, STATUS_ERR_ARG, "the flagged fraction must be in [0,1], got %g",
                        flag_frac);
  const AttackKind kind = attack->kind;
  if (kind != ATTACK_FGSM && kind != ATTACK_BIM && kind != ATTACK_PGD && kind != ATTACK_MIFGSM)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "triage bisects eps with fgsm, bim, pgd or mifgsm, not %s",
                        attack_name(kind));
  const int k = net_num_classes(net);
  const size_t per = (size_t)net_input_size(net);
  r->items = calloc(d->n ? d->n : 1, sizeof(TriageItem));
  float *probs = malloc(sizeof(float) * k * batch), *adv = malloc(sizeof(float) * per * batch);
  float *lo = malloc(sizeof(float) * batch), *hi = malloc(sizeof(float) * batch),
        *mid = malloc(sizeof(float) * batch);
  int *pred = malloc(sizeof(int) * batch), *active = malloc(sizeof(int) * batch);
  Status st = STATUS_OK;
  if (!r->items || !probs || !adv || !lo || !hi || !mid || !pred || !active)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
  r->n = d->n, r->eps_max = eps_max, r->tol = tol, r->flag_frac = flag_frac;
  snprintf(r->attack, sizeof r->attack, "%s", attack_name(kind));
  int correct = 0;
  for (int start = 0; st == STATUS_OK && start < d->n; start += batch) {
    const int B = d->n - start < batch ? d->n - start : batch;
    const float *x = d->images + per * start;
    if (progress) progress("triage", start, d->n, ctx);
    net_predict(net, x, B, probs);
    for (int i = 0; i < B; i++) {
      TriageItem *it = &r->items[start + i];
      it->index = start + i, it->label = d->labels[start + i];
      it->pred = pred[i] = argmax(probs + (size_t)i * k, k);
      it->confidence = probs[(size_t)i * k + it->pred];
      correct += it->pred == it->label;
      lo[i] = 0.0f, hi[i] = eps_max, active[i] = 1;
    }
    AttackOptions o = *attack;
    o.eps = eps_max, o.eps_each = mid;
    /* does eps_max flip it at all? */
    for (int i = 0; i < B; i++) mid[i] = eps_max;
    st = attack_run(net, &o, x, pred, B, adv, err);
    if (st != STATUS_OK) break;
    net_predict(net, adv, B, probs);
    for (int i = 0; i < B; i++)
      if (argmax(probs + (size_t)i * k, k) == pred[i])
        active[i] = 0, hi[i] = INFINITY, lo[i] = eps_max;
    for (;;) {
      int any = 0;
      for (int i = 0; i < B; i++) {
        if (active[i] && hi[i] - lo[i] <= tol) active[i] = 0;
        any |= active[i];
        mid[i] = active[i] ? 0.5f * (lo[i] + hi[i]) : 0.0f;
      }
      if (!any) break;
      st = attack_run(net, &o, x, pred, B, adv, err);
      if (st != STATUS_OK) break;
      net_predict(net, adv, B, probs);
      for (int i = 0; i < B; i++) {
        if (!active[i]) continue;
        if (argmax(probs + (size_t)i * k, k) != pred[i])
          hi[i] = mid[i];
        else
          lo[i] = mid[i];
      }
    }
    for (int i = 0; i < B; i++)
      r->items[start + i].min_eps = hi[i], r->items[start + i].eps_below = lo[i];
  }
  free(probs), free(adv), free(lo), free(hi), free(mid), free(pred), free(active);
  if (st != STATUS_OK) {
    triage_free(r);
    return st;
  }
  qsort(r->items, r->n, sizeof(TriageItem), cmp_fragile);
  r->n_flagged = (int)lround(flag_frac * r->n);
  int aware_correct = 0;
  for (int i = 0; i < r->n; i++) {
    r->items[i].flagged = i < r->n_flagged;
    if (i >= r->n_flagged) aware_correct += r->items[i].pred == r->items[i].label;
  }
  r->accuracy_all = r->n ? (double)correct / r->n : 0.0;
  r->accuracy_aware = r->n - r->n_flagged > 0 ? (double)aware_correct / (r->n - r->n_flagged) : 0.0;
  /* deferral curve: defer the most fragile fraction f, accuracy on the rest */
  double area = 0;
  for (int p = 0; p < TRIAGE_CURVE_POINTS; p++) {
    const double f = 0.5 * p / (TRIAGE_CURVE_POINTS - 1);
    const int skip = (int)lround(f * r->n);
    int ok = 0;
    for (int i = skip; i < r->n; i++) ok += r->items[i].pred == r->items[i].label;
    r->curve_frac[p] = f;
    r->curve_acc[p] = r->n - skip > 0 ? (double)ok / (r->n - skip) : 0.0;
    if (p)
      area +=
          0.5 * (r->curve_acc[p] + r->curve_acc[p - 1]) * (r->curve_frac[p] - r->curve_frac[p - 1]);
  }
  r->curve_auc = area / 0.5;
  return STATUS_OK;
}

void triage_free(TriageResult *r) {
  free(r->items);
  memset(r, 0, sizeof *r);
}
