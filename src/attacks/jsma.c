/* JSMA, the saliency-map attack (Papernot et al. 2016; paper 002's SMA):
 * repeatedly pick the pair of features (pixels of any channel, so grey and
 * RGB alike) that most raise the target logit while lowering the others,
 *   maximise -alpha * beta over pairs with alpha > 0, beta < 0,
 *   alpha = dZ_t/dx_p + dZ_t/dx_q,  beta = sum_{j != t} (dZ_j/dx_p + dZ_j/dx_q),
 * and set both to 1 (theta = +1), until the prediction is the target or a
 * fraction gamma (o->eps, default 0.1) of the features has changed. Untargeted
 * runs aim at the runner-up class. Pixels stay in [0,1]; eps here is gamma. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

/* Above this many features the pair search runs over the CANDIDATES most
 * salient ones (largest alpha - beta): d^2 pairs would be too many. */
#define FULL_SEARCH 1024
#define CANDIDATES 512

static const float *sort_key;
static int cmp_desc(const void *a, const void *b) {
  const float x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
  return (x < y) - (x > y);
}

Status attack_jsma(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv) {
  const int B = c->batch, K = c->k;
  const size_t n = c->per * B, d = c->per;
  const float gamma = o->eps > 0 && o->eps <= 1 ? o->eps : 0.1f;
  const int max_iters = (int)(gamma * d / 2);
  float *grads = attack_scratch(c, sizeof(float) * n * K),
        *alpha = attack_scratch(c, sizeof(float) * d), *beta = attack_scratch(c, sizeof(float) * d);
  int *target = attack_scratch(c, sizeof(int) * B), *active = attack_scratch(c, sizeof(int) * B);
  unsigned char *used = attack_scratch(c, n);
  int *cand = attack_scratch(c, sizeof(int) * d);
  float *key = attack_scratch(c, sizeof(float) * d);
  if (!grads || !alpha || !beta || !target || !active || !used || !cand || !key) {
    return STATUS_ERR_NOMEM;
  }
  if (o->target != TARGET_NONE) {
    attack_labels(c, o, x, y, target);
  } else {
    const float *z = net_forward(c->net, x, B, c->mode);
    for (int b = 0; b < B; b++) {
      int best = -1;
      for (int j = 0; j < K; j++)
        if (j != y[b] && (best < 0 || z[(size_t)b * K + j] > z[(size_t)b * K + best])) best = j;
      target[b] = best;
    }
  }
  for (int b = 0; b < B; b++) active[b] = 1;
  for (size_t i = 0; i < n; i++) used[i] = x[i] >= 1.0f; /* a saturated feature cannot rise */
  for (int it = 0; it < max_iters; it++) {
    const float *z = net_forward(c->net, x_adv, B, c->mode);
    int any = 0;
    for (int b = 0; b < B; b++) {
      if (argmax(z + (size_t)b * K, K) == target[b]) active[b] = 0;
      any |= active[b];
    }
    if (!any) break;
    for (int j = 0; j < K; j++) { /* the Jacobian of the logits, one class at a time */
      if (j) net_forward(c->net, x_adv, B, c->mode);
      memset(c->dlogits, 0, sizeof(float) * B * K);
      for (int b = 0; b < B; b++) c->dlogits[b * K + j] = 1.0f;
      net_backward(c->net, c->dlogits, grads + n * j, 0);
    }
    for (int b = 0; b < B; b++) {
      if (!active[b]) continue;
      const unsigned char *u = used + d * b;
      for (size_t p = 0; p < d; p++) {
        alpha[p] = grads[n * target[b] + d * b + p];
        double other = 0;
        for (int j = 0; j < K; j++)
          if (j != target[b]) other += grads[n * j + d * b + p];
        beta[p] = (float)other;
      }
      int m = 0;
      for (size_t p = 0; p < d; p++)
        if (!u[p]) cand[m++] = (int)p, key[p] = alpha[p] - beta[p];
      if (d > FULL_SEARCH && m > CANDIDATES) {
        sort_key = key;
        qsort(cand, m, sizeof(int), cmp_desc);
        m = CANDIDATES;
      }
      double best_score = 0;
      long bp = -1, bq = -1;
      for (int i = 0; i < m; i++)
        for (int jj = i + 1; jj < m; jj++) {
          const int p = cand[i], q = cand[jj];
          const double a = (double)alpha[p] + alpha[q], be = (double)beta[p] + beta[q];
          if (a > 0 && be < 0 && -a * be > best_score) best_score = -a * be, bp = p, bq = q;
        }
      if (bp < 0) { /* no admissible pair left */
        active[b] = 0;
        continue;
      }
      x_adv[d * b + bp] = 1.0f, x_adv[d * b + bq] = 1.0f;
      used[d * b + bp] = used[d * b + bq] = 1;
    }
  }
  return STATUS_OK;
}
