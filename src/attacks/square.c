/* Square Attack, L-inf (Andriushchenko et al. 2020): query-only random
 * search on the margin z_y - max_{j!=y} z_j (targeted: max_{j!=t} z_j - z_t).
 * Starts from vertical stripes of +-eps; each query redraws one random square
 * of side s (shrinking with the schedule p) to +-eps per channel and keeps it
 * if the margin drops. Needs no gradients, so masked gradients do not stop it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

/* The fraction of pixels changed per query, halved at fixed points of a
 * 10000-query schedule scaled to the budget (the paper's p_selection). */
static float square_p(float p_init, int it, int queries) {
  const int i = (int)((double)it / queries * 10000.0);
  static const int marks[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  float p = p_init;
  for (int k = 0; k < 9; k++)
    if (i > marks[k]) p /= 2;
  return p;
}

static void margins(AttackCtx *c, const float *xs, const int *labels, int targeted, float *out) {
  const float *z = net_forward(c->net, xs, c->batch, c->mode);
  for (int b = 0; b < c->batch; b++) {
    const float *zb = z + (size_t)b * c->k;
    const int t = labels[b];
    int other = -1;
    for (int j = 0; j < c->k; j++)
      if (j != t && (other < 0 || zb[j] > zb[other])) other = j;
    out[b] = targeted ? zb[other] - zb[t] : zb[t] - zb[other];
  }
}

Status attack_square(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv) {
  const int B = c->batch;
  const size_t n = c->per * B;
  const ModelSpec *spec = net_spec(c->net);
  const int C = spec->in_c, H = spec->in_h, W = spec->in_w;

  int *labels = attack_scratch(c, sizeof(int) * B);
  float *best = attack_scratch(c, sizeof(float) * B), *trial = attack_scratch(c, sizeof(float) * n),
        *m = attack_scratch(c, sizeof(float) * B);
  if (!labels || !best || !trial || !m) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  const int targeted = o->target != TARGET_NONE;
  Rng rng;
  rng_seed(&rng, o->seed);
  /* init: vertical stripes, one random sign per column and channel */
  for (int b = 0; b < B; b++)
    for (int ch = 0; ch < C; ch++)
      for (int col = 0; col < W; col++) {
        const float s = rng_uniform(&rng) < 0.5f ? -c->eps[b] : c->eps[b];
        for (int row = 0; row < H; row++) {
          const size_t i = c->per * b + ((size_t)ch * H + row) * W + col;
          x_adv[i] = fminf(fmaxf(x[i] + s, 0.0f), 1.0f);
        }
      }
  margins(c, x_adv, labels, targeted, best);
  for (int q = 1; q < o->queries; q++) {
    int any = 0;
    for (int b = 0; b < B; b++) any |= best[b] >= 0.0f;
    if (!any) break;
    memcpy(trial, x_adv, sizeof(float) * n);
    const float p = square_p(o->p_init, q, o->queries);
    int side = (int)lround(sqrt(p * H * W));
    side = side < 1 ? 1 : side > H - 1 ? H - 1 : side;
    for (int b = 0; b < B; b++) {
      if (best[b] < 0.0f) continue; /* already fooled: no more queries */
      const int top = rng_int(&rng, H - side + 1), left = rng_int(&rng, W - side + 1);
      for (int ch = 0; ch < C; ch++) {
        const float s = rng_uniform(&rng) < 0.5f ? -c->eps[b] : c->eps[b];
        for (int r = top; r < top + side; r++)
          for (int col = left; col < left + side; col++) {
            const size_t i = c->per * b + ((size_t)ch * H + r) * W + col;
            trial[i] = fminf(fmaxf(x[i] + s, 0.0f), 1.0f);
          }
      }
    }
    margins(c, trial, labels, targeted, m);
    for (int b = 0; b < B; b++)
      if (best[b] >= 0.0f && m[b] < best[b]) {
        best[b] = m[b];
        memcpy(x_adv + c->per * b, trial + c->per * b, sizeof(float) * c->per);
      }
  }
  return STATUS_OK;
}
