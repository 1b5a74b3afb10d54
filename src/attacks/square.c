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

Status square_search(const QuerySearch *s, const float *x, float *x_adv, MrError *err) {
  const int B = s->batch, C = s->c, H = s->h, W = s->w;
  const size_t per = (size_t)C * H * W, n = per * B, plane = (size_t)H * W;
  float *best = malloc(sizeof(float) * B), *m = malloc(sizeof(float) * B);
  float *trial = malloc(sizeof(float) * n);
  Rng *rngs = query_search_streams(s);
  if (!best || !m || !trial || !rngs) {
    free(best), free(m), free(trial), free(rngs);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the Square attack");
  }
#define ALLOWED(b, r, col) (!s->allowed || s->allowed[(size_t)(b)*plane + (size_t)(r)*W + (col)])
  /* init: vertical stripes, one random sign per column and channel */
  memcpy(x_adv, x, sizeof(float) * n);
  for (int b = 0; b < B; b++)
    for (int ch = 0; ch < C; ch++)
      for (int col = 0; col < W; col++) {
        const float sign = rng_uniform(&rngs[b]) < 0.5f ? -s->eps[b] : s->eps[b];
        for (int row = 0; row < H; row++) {
          const size_t i = per * b + ((size_t)ch * H + row) * W + col;
          if (ALLOWED(b, row, col)) x_adv[i] = fminf(fmaxf(x[i] + sign, 0.0f), 1.0f);
        }
      }
  Status st = s->margin(s->ctx, x_adv, B, best, err);
  for (int b = 0; s->queries_used && b < B; b++) s->queries_used[b] = 1;
  for (int q = 1; st == STATUS_OK && q < s->queries; q++) {
    int any = 0;
    for (int b = 0; b < B; b++) any |= best[b] >= 0.0f;
    if (!any) break;
    memcpy(trial, x_adv, sizeof(float) * n);
    const float p = square_p(s->p_init, q, s->queries);
    int side = (int)lround(sqrt(p * H * W));
    side = side < 1 ? 1 : side > H - 1 ? H - 1 : side;
    for (int b = 0; b < B; b++) {
      if (best[b] < 0.0f) continue; /* already fooled: no more queries */
      if (s->queries_used) s->queries_used[b]++;
      Rng *rng = &rngs[b];
      const int top = rng_int(rng, H - side + 1), left = rng_int(rng, W - side + 1);
      for (int ch = 0; ch < C; ch++) {
        const float sign = rng_uniform(rng) < 0.5f ? -s->eps[b] : s->eps[b];
        for (int r = top; r < top + side; r++)
          for (int col = left; col < left + side; col++) {
            const size_t i = per * b + ((size_t)ch * H + r) * W + col;
            if (ALLOWED(b, r, col)) trial[i] = fminf(fmaxf(x[i] + sign, 0.0f), 1.0f);
          }
      }
    }
    st = s->margin(s->ctx, trial, B, m, err);
    for (int b = 0; st == STATUS_OK && b < B; b++)
      if (best[b] >= 0.0f && m[b] < best[b]) {
        best[b] = m[b];
        memcpy(x_adv + per * b, trial + per * b, sizeof(float) * per);
      }
  }
#undef ALLOWED
  free(best), free(m), free(trial), free(rngs);
  return st;
}

/* the net's margins, for square_search */
typedef struct {
  AttackCtx *c;
  const int *labels;
  int targeted;
} NetMargin;

static Status net_margins(void *ctx, const float *xs, int n, float *out, MrError *err) {
  (void)err;
  const NetMargin *nm = ctx;
  AttackCtx *c = nm->c;
  const float *z = net_forward(c->net, xs, n, c->mode);
  for (int b = 0; b < n; b++) {
    const float *zb = z + (size_t)b * c->k;
    const int t = nm->labels[b];
    int other = -1;
    for (int j = 0; j < c->k; j++)
      if (j != t && (other < 0 || zb[j] > zb[other])) other = j;
    out[b] = nm->targeted ? zb[other] - zb[t] : zb[t] - zb[other];
  }
  return STATUS_OK;
}

Status attack_square(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv) {
  const ModelSpec *spec = net_spec(c->net);
  int *labels = attack_scratch(c, sizeof(int) * c->batch);
  if (!labels) return STATUS_ERR_NOMEM;
  attack_labels(c, o, x, y, labels);
  NetMargin nm = {c, labels, o->target != TARGET_NONE};
  const QuerySearch s = {.batch = c->batch,
                         .c = spec->in_c,
                         .h = spec->in_h,
                         .w = spec->in_w,
                         .eps = c->eps,
                         .queries = o->queries,
                         .p_init = o->p_init,
                         .seed = o->seed,
                         .index = o->index,
                         .index_base = o->index_base,
                         .margin = net_margins,
                         .ctx = &nm};
  MrError err = {0};
  return square_search(&s, x, x_adv, &err);
}
