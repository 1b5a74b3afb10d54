/* DeepFool (Moosavi-Dezfooli et al. 2016; paper 002): the minimal L2
 * perturbation that crosses the nearest linearised decision boundary,
 *   l = argmin_{j != k} |f_j| / ||w_j||,  r += (|f_l| + 1e-4) w_l / ||w_l||^2,
 * with f_j = z_j - z_k, w_j = grad z_j - grad z_k, k the clean prediction;
 * x' = clip(x + (1 + overshoot) r), until the prediction changes or `iters`
 * rounds. Unbounded: eps is ignored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_deepfool(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                       float *x_adv) {
  (void)y;
  const int B = c->batch, K = c->k;
  const size_t n = c->per * B;
  float *grads = attack_scratch(c, sizeof(float) * n * K),
        *r_tot = attack_scratch(c, sizeof(float) * n);
  int *orig = attack_scratch(c, sizeof(int) * B), *active = attack_scratch(c, sizeof(int) * B);
  float *zs = attack_scratch(c, sizeof(float) * B * K);
  if (!grads || !r_tot || !orig || !active || !zs) {
    return STATUS_ERR_NOMEM;
  }
  memcpy(x_adv, x, sizeof(float) * n);
  for (int it = 0; it < o->iters; it++) {
    const float *z = net_forward(c->net, x_adv, B, c->mode);
    memcpy(zs, z, sizeof(float) * B * K);
    int any = 0;
    for (int b = 0; b < B; b++) {
      const int best = argmax(zs + (size_t)b * K, K);
      if (it == 0) orig[b] = best;
      active[b] = best == orig[b];
      any |= active[b];
    }
    if (!any) break;
    /* the gradient of every logit: one backward pass per class */
    for (int j = 0; j < K; j++) {
      if (j) net_forward(c->net, x_adv, B, c->mode);
      memset(c->dlogits, 0, sizeof(float) * B * K);
      for (int b = 0; b < B; b++) c->dlogits[b * K + j] = 1.0f;
      net_backward(c->net, c->dlogits, grads + n * j, 0);
    }
    for (int b = 0; b < B; b++) {
      if (!active[b]) continue;
      const int k0 = orig[b];
      const float *g0 = grads + n * k0 + c->per * b;
      double best_ratio = INFINITY, best_f = 0, best_w2 = 1;
      int best_j = -1;
      for (int j = 0; j < K; j++) {
        if (j == k0) continue;
        const float *gj = grads + n * j + c->per * b;
        double w2 = 0;
        for (size_t i = 0; i < c->per; i++) w2 += (double)(gj[i] - g0[i]) * (gj[i] - g0[i]);
        const double f = zs[b * K + j] - zs[b * K + k0];
        const double ratio = fabs(f) / (sqrt(w2) + 1e-12);
        if (ratio < best_ratio) best_ratio = ratio, best_j = j, best_f = f, best_w2 = w2 + 1e-12;
      }
      const float *gl = grads + n * best_j + c->per * b;
      const double scale = (fabs(best_f) + 1e-4) / best_w2;
      float *r = r_tot + c->per * b, *a = x_adv + c->per * b;
      const float *x0 = x + c->per * b;
      for (size_t i = 0; i < c->per; i++) {
        r[i] += (float)(scale * (gl[i] - g0[i]));
        a[i] = fminf(fmaxf(x0[i] + (1.0f + o->overshoot) * r[i], 0.0f), 1.0f);
      }
    }
  }
  return STATUS_OK;
}
