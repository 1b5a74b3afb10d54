/* Triage for segmentation models (paper 001's per-image sensitivity, with
 * Dice in place of the class): for every image the smallest eps at which an
 * attack moves the model's mask far from its own clean mask (Dice between
 * them below a threshold), found by bisection; the most fragile images are
 * flagged for a human to re-read, and the set's Dice with and without them
 * says what that buys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

static int cmp_fragile(const void *a, const void *b) {
  const SegTriageItem *x = a, *y = b;
  if (x->min_eps != y->min_eps) return x->min_eps < y->min_eps ? -1 : 1;
  return x->index - y->index;
}

Status seg_triage_run(Net *net, const Dataset *d, const TriageOptions *to, SweepProgressFn progress,
                      void *ctx, SegTriageResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  const AttackOptions *attack = &to->attack;
  const float eps_max = to->eps_max, tol = to->tol, flag_frac = to->flag_frac,
              dice_threshold = to->dice_threshold;
  const int batch = to->batch;
  if (batch < 1) return mr_error_set(err, STATUS_ERR_ARG, "triage batch must be >= 1");
  if (!(eps_max > 0) || !(tol > 0) || tol >= eps_max)
    return mr_error_set(err, STATUS_ERR_ARG, "triage needs 0 < tol < eps_max (got %g, %g)", tol,
                        eps_max);
  if (!(dice_threshold > 0 && dice_threshold <= 1) || !(flag_frac >= 0 && flag_frac <= 1))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the Dice threshold must be in (0, 1] and the flagged share in [0, 1]");
  const AttackKind kind = attack->kind;
  if (kind != ATTACK_FGSM && kind != ATTACK_BIM && kind != ATTACK_PGD)
    return mr_error_set(err, STATUS_ERR_ARG, "segmentation triage bisects with fgsm, bim or pgd");
  if (!d->masks) return mr_error_set(err, STATUS_ERR_ARG, "the data has no masks");
  const int k = net_num_classes(net);
  const size_t per = (size_t)net_input_size(net), P = (size_t)d->h * d->w;
  r->items = calloc(d->n ? d->n : 1, sizeof(SegTriageItem));
  float *adv = malloc(sizeof(float) * per * batch), *lo = malloc(sizeof(float) * batch);
  float *hi = malloc(sizeof(float) * batch), *mid = malloc(sizeof(float) * batch);
  int *clean = malloc(sizeof(int) * P * batch), *pred = malloc(sizeof(int) * P * batch);
  int *active = malloc(sizeof(int) * batch);
  Status st = STATUS_OK;
  if (!r->items || !adv || !lo || !hi || !mid || !clean || !pred || !active)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for triage");
  r->n = d->n, r->eps_max = eps_max, r->tol = tol, r->flag_frac = flag_frac;
  r->dice_threshold = dice_threshold;
  snprintf(r->attack, sizeof r->attack, "%s", attack_name(kind));
  AttackOptions o = *attack;
  o.eps = eps_max, o.eps_each = mid, o.target = TARGET_NONE;
  for (int start = 0; st == STATUS_OK && start < d->n; start += batch) {
    const int B = d->n - start < batch ? d->n - start : batch;
    const float *x = d->images + per * start;
    o.index_base = start;
    if (progress) progress("triage: bisecting each image's smallest eps", start, d->n, ctx);
    const JournalPart unit = {r->items + start, sizeof(SegTriageItem) * B};
    char key[96];
    snprintf(key, sizeof key, "%sseg-triage/b%d", to->scope ? to->scope : "", start);
    if (journal_restore(to->journal, key, &unit, 1)) continue;
    net_segment(net, x, B, clean);
    for (int i = 0; i < B; i++) {
      SegTriageItem *it = &r->items[start + i];
      it->index = start + i;
      it->clean_dice = seg_image_dice(clean + P * i, d->masks + P * (start + i), (int)P, k);
      lo[i] = 0.0f, hi[i] = eps_max, active[i] = 1, mid[i] = eps_max;
    }
    /* the attack works against the clean prediction: the model's own answer */
    for (int probe = 1;; probe = 0) {
      st = attack_run(net, &o, x, clean, B, adv, err);
      if (st != STATUS_OK) break;
      net_segment(net, adv, B, pred);
      int any = 0;
      for (int i = 0; i < B; i++) {
        if (!active[i]) continue;
        const int moved = seg_image_dice(pred + P * i, clean + P * i, (int)P, k) < dice_threshold;
        if (probe && !moved) active[i] = 0, hi[i] = INFINITY, lo[i] = eps_max;
        if (!probe) (moved ? hi : lo)[i] = mid[i];
        if (active[i] && hi[i] - lo[i] <= tol) active[i] = 0;
        any |= active[i];
      }
      for (int i = 0; i < B; i++) mid[i] = active[i] ? 0.5f * (lo[i] + hi[i]) : 0.0f;
      if (!any) break;
    }
    for (int i = 0; st == STATUS_OK && i < B; i++)
      r->items[start + i].min_eps = hi[i], r->items[start + i].eps_below = lo[i];
    if (st == STATUS_OK) st = journal_record(to->journal, key, &unit, 1, err);
  }
  free(adv), free(lo), free(hi), free(mid), free(clean), free(pred), free(active);
  if (st != STATUS_OK) {
    seg_triage_free(r);
    return st;
  }
  qsort(r->items, r->n, sizeof *r->items, cmp_fragile);
  r->n_flagged = (int)lround(flag_frac * r->n);
  double all = 0, kept = 0;
  for (int i = 0; i < r->n; i++) {
    r->items[i].flagged = i < r->n_flagged;
    all += r->items[i].clean_dice;
    if (!r->items[i].flagged) kept += r->items[i].clean_dice;
  }
  r->dice_all = r->n ? all / r->n : 0;
  r->dice_aware = r->n > r->n_flagged ? kept / (r->n - r->n_flagged) : 0;
  return STATUS_OK;
}

void seg_triage_free(SegTriageResult *r) {
  free(r->items);
  memset(r, 0, sizeof *r);
}
