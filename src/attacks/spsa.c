/* SPSA (Uesato et al. 2018, "Adversarial risk and the dangers of evaluating
 * against weak attacks"): a query-only attack that estimates the margin's
 * gradient by simultaneous perturbation, averaging
 * (m(x + delta v) - m(x - delta v)) / (2 delta) v over Rademacher directions
 * v, then steps against it with its sign inside the L-inf eps ball. Works on
 * any MarginFn (a net, a radiomics pipeline), so gradient masking does not
 * stop it; each step costs 2 * samples + 1 queries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

Status spsa_search(const QuerySearch *s, const float *x, float *x_adv, MrError *err) {
  const int B = s->batch;
  const size_t plane = (size_t)s->h * s->w, per = plane * s->c, n = per * B;
  if (s->samples < 1 || !(s->delta > 0))
    return mr_error_set(err, STATUS_ERR_ARG, "SPSA needs samples >= 1 and delta > 0");
  float *cur = malloc(sizeof(float) * n), *probe = malloc(sizeof(float) * 2 * n);
  float *v = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
  float *m = malloc(sizeof(float) * 2 * B), *best = malloc(sizeof(float) * B);
  Rng *rngs = query_search_streams(s);
  if (!cur || !probe || !v || !g || !m || !best || !rngs) {
    free(cur), free(probe), free(v), free(g), free(m), free(best), free(rngs);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for SPSA");
  }
  memcpy(cur, x, sizeof(float) * n);
  memcpy(x_adv, x, sizeof(float) * n);
  Status st = s->margin(s->ctx, cur, B, best, err);
  for (int b = 0; s->queries_used && b < B; b++) s->queries_used[b] = 1;
  const int per_step = 2 * s->samples + 1;
  for (int used = 1; st == STATUS_OK && used + per_step <= s->queries; used += per_step) {
    int active = 0;
    for (int b = 0; b < B; b++) active |= best[b] >= 0.0f;
    if (!active) break;
    memset(g, 0, sizeof(float) * n);
    for (int k = 0; st == STATUS_OK && k < s->samples; k++) {
      for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per; i++) {
          const size_t at = per * b + i;
          const int allowed = !s->allowed || s->allowed[plane * b + i % plane];
          v[at] = allowed ? (rng_uniform(&rngs[b]) < 0.5f ? -1.0f : 1.0f) : 0.0f;
          probe[at] = fminf(fmaxf(cur[at] + s->delta * v[at], 0.0f), 1.0f);
          probe[n + at] = fminf(fmaxf(cur[at] - s->delta * v[at], 0.0f), 1.0f);
        }
      st = s->margin(s->ctx, probe, 2 * B, m, err);
      for (int b = 0; st == STATUS_OK && b < B; b++) {
        const float slope = (m[b] - m[B + b]) / (2 * s->delta);
        for (size_t i = 0; i < per; i++) g[per * b + i] += slope * v[per * b + i];
      }
    }
    for (int b = 0; st == STATUS_OK && b < B; b++) {
      if (best[b] < 0.0f) continue; /* fooled: no more queries */
      if (s->queries_used) s->queries_used[b] += per_step;
      const float step = s->step > 0 ? s->step : s->eps[b] / 4;
      for (size_t i = 0; i < per; i++) {
        const size_t at = per * b + i;
        if (g[at] == 0) continue; /* also every pixel it may not change */
        const float moved = cur[at] - step * (g[at] > 0 ? 1.0f : -1.0f); /* the margin falls */
        const float lo = fmaxf(x[at] - s->eps[b], 0.0f), hi = fminf(x[at] + s->eps[b], 1.0f);
        cur[at] = fminf(fmaxf(moved, lo), hi);
      }
    }
    if (st == STATUS_OK) st = s->margin(s->ctx, cur, B, m, err);
    for (int b = 0; st == STATUS_OK && b < B; b++)
      if (best[b] >= 0.0f && m[b] < best[b]) {
        best[b] = m[b];
        memcpy(x_adv + per * b, cur + per * b, sizeof(float) * per);
      }
  }
  free(cur), free(probe), free(v), free(g), free(m), free(best), free(rngs);
  return st;
}

Rng *query_search_streams(const QuerySearch *s) {
  Rng *rngs = malloc(sizeof(Rng) * (s->batch + 1));
  for (int b = 0; rngs && b < s->batch; b++)
    rng_seed_stream(&rngs[b], s->seed,
                    s->index ? (uint64_t)s->index[b] : (uint64_t)s->index_base + (uint64_t)b);
  return rngs;
}
