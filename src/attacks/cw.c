/* Carlini-Wagner L2 (Carlini & Wagner 2017): in tanh space x' = (tanh(w)+1)/2,
 * minimise ||x' - x||_2^2 + c * max(z_y - max_{j!=y} z_j, -kappa) (targeted:
 * max(max_{j!=t} z_j - z_t, -kappa)) with Adam, and binary-search c per image
 * over `cw_search_steps` rounds. Returns the smallest successful perturbation
 * found; images never fooled keep x. Unbounded: eps is ignored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_cw(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv) {
  const int B = c->batch, K = c->k;
  const size_t n = c->per * B;
  float *w = attack_scratch(c, sizeof(float) * n), *cur = attack_scratch(c, sizeof(float) * n),
        *g = attack_scratch(c, sizeof(float) * n);
  float *m = attack_scratch(c, sizeof(float) * n), *v = attack_scratch(c, sizeof(float) * n);
  float *cc = attack_scratch(c, sizeof(float) * B), *lo = attack_scratch(c, sizeof(float) * B),
        *hi = attack_scratch(c, sizeof(float) * B);
  float *best_l2 = attack_scratch(c, sizeof(float) * B);
  int *labels = attack_scratch(c, sizeof(int) * B), *hit = attack_scratch(c, sizeof(int) * B);
  if (!w || !cur || !g || !m || !v || !cc || !lo || !hi || !best_l2 || !labels || !hit) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  const int targeted = o->target != TARGET_NONE;
  memcpy(x_adv, x, sizeof(float) * n);
  for (int b = 0; b < B; b++)
    cc[b] = o->cw_c, lo[b] = 0.0f, hi[b] = INFINITY, best_l2[b] = INFINITY;
  const float b1 = 0.9f, b2 = 0.999f;
  for (int search = 0; search < o->cw_search_steps; search++) {
    for (size_t i = 0; i < n; i++)
      w[i] = atanhf((2.0f * x[i] - 1.0f) * 0.999999f), m[i] = v[i] = 0.0f;
    for (int b = 0; b < B; b++) hit[b] = 0;
    for (int it = 1; it <= o->iters; it++) {
      for (size_t i = 0; i < n; i++) cur[i] = 0.5f * (tanhf(w[i]) + 1.0f);
      const float *z = net_forward(c->net, cur, B, c->mode);
      for (int b = 0; b < B; b++) {
        const float *zb = z + (size_t)b * K;
        const int t = labels[b];
        int other = -1;
        for (int j = 0; j < K; j++)
          if (j != t && (other < 0 || zb[j] > zb[other])) other = j;
        /* f > -kappa still pushes; the sign makes targeted reach t, untargeted leave y */
        const float f = targeted ? zb[other] - zb[t] : zb[t] - zb[other];
        float *d = c->dlogits + (size_t)b * K;
        memset(d, 0, sizeof(float) * K);
        if (f > -o->cw_kappa) {
          d[t] = targeted ? -cc[b] : cc[b];
          d[other] = targeted ? cc[b] : -cc[b];
        }
        int pred = 0;
        for (int j = 1; j < K; j++)
          if (zb[j] > zb[pred]) pred = j;
        if (attack_succeeded(o, pred, y[b], t)) {
          double l2 = 0;
          for (size_t i = 0; i < c->per; i++) {
            const double dd = cur[c->per * b + i] - x[c->per * b + i];
            l2 += dd * dd;
          }
          hit[b] = 1;
          if (l2 < (double)best_l2[b] * best_l2[b]) {
            best_l2[b] = (float)sqrt(l2);
            memcpy(x_adv + c->per * b, cur + c->per * b, sizeof(float) * c->per);
          }
        }
      }
      net_backward(c->net, c->dlogits, g, 0);
      const float c1 = 1.0f - powf(b1, (float)it), c2 = 1.0f - powf(b2, (float)it);
      for (size_t i = 0; i < n; i++) {
        const float th = tanhf(w[i]);
        const float dxp = 2.0f * (cur[i] - x[i]) + g[i];
        const float gw = dxp * 0.5f * (1.0f - th * th);
        m[i] = b1 * m[i] + (1 - b1) * gw;
        v[i] = b2 * v[i] + (1 - b2) * gw * gw;
        w[i] -= o->cw_lr * (m[i] / c1) / (sqrtf(v[i] / c2) + 1e-8f);
      }
    }
    for (int b = 0; b < B; b++) {
      if (hit[b])
        hi[b] = cc[b], cc[b] = 0.5f * (lo[b] + hi[b]);
      else
        lo[b] = cc[b], cc[b] = isinf(hi[b]) ? cc[b] * 10.0f : 0.5f * (lo[b] + hi[b]);
    }
  }
  return STATUS_OK;
}
