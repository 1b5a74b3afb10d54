/* Dense Adversary Generation (Xie, Wang, Zhang, Zhou, Xie, Yuille, "Adversarial
 * examples for semantic segmentation and object detection", ICCV 2017), the
 * segmentation attack of paper 002. Every iteration takes the pixels not yet
 * at their target class, the gradient of the sum over them of
 * z_target - z_current (current: the class the pixel shows now), scales it to
 * an L-inf size of gamma (the reference's r' = gamma / ||r||_inf * r, gamma 0.5
 * on 0..255 pixels, so 0.5/255 here) and adds it. An image is done once the
 * threshold share (99%) of its pixels shows the target and so do 99% of the
 * pixels the target changes (for types B and C most pixels keep their class,
 * so the share of all pixels alone would stop before the attack began); at
 * most `iters` (200) iterations. Pixels stay in [0,1], and within an L-inf ball when an
 * eps is given (the reference is unbounded). Per image the iterate closest to
 * the target (highest share) is kept, so a failed attack still returns its
 * best point, never the clean image by default. Also the target types A/B/C. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_dag(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                  float *x_adv) {
  (void)y;
  const int B = c->batch, k = c->k, P = c->P, ignore = net_spec(c->net)->ignore_label;
  const size_t n = c->per * B;
  int *target = attack_label_scratch(c), *done = attack_scratch(c, sizeof(int) * B);
  int *start = attack_label_scratch(c); /* each pixel's class before the attack */
  float *cur = attack_scratch(c, sizeof(float) * n), *g = attack_scratch(c, sizeof(float) * n),
        *best = attack_scratch(c, sizeof(float) * B);
  if (!target || !done || !cur || !g || !best || !start) return STATUS_ERR_NOMEM;
  attack_labels(c, o, x, y, target);
  memcpy(cur, x, sizeof(float) * n);
  for (int b = 0; b < B; b++) best[b] = -1.0f;
  for (int t = 0; t <= o->iters; t++) {
    const float *z = net_forward(c->net, cur, B, c->mode);
    int active_images = 0;
    memset(c->dlogits, 0, sizeof(float) * B * k * P);
    for (int b = 0; b < B; b++) {
      if (done[b]) continue;
      const float *zb = z + (size_t)b * k * P;
      float *gb = c->dlogits + (size_t)b * k * P;
      const int *tb = target + (size_t)b * P;
      int *sb = start + (size_t)b * P;
      int valid = 0, reached = 0, changed = 0, changed_reached = 0;
      for (int p = 0; p < P; p++) {
        if (tb[p] == ignore || tb[p] < 0 || tb[p] >= k) continue;
        valid++;
        int now = 0;
        for (int j = 1; j < k; j++)
          if (zb[(size_t)j * P + p] > zb[(size_t)now * P + p]) now = j;
        if (t == 0) sb[p] = now;
        changed += sb[p] != tb[p];
        if (now == tb[p]) {
          reached++, changed_reached += sb[p] != tb[p];
        } else { /* ascend z_target - z_now at this still-unfooled pixel */
          gb[(size_t)tb[p] * P + p] = 1.0f;
          gb[(size_t)now * P + p] = -1.0f;
        }
      }
      /* a target that changes a tenth of the pixels is 90% "reached" before the
       * attack starts: the pixels it changes must reach the threshold too */
      const float share = valid ? (float)reached / valid : 1.0f;
      const float moved = changed ? (float)changed_reached / changed : 1.0f;
      if (moved + share > best[b]) {
        best[b] = moved + share;
        memcpy(x_adv + c->per * b, cur + c->per * b, sizeof(float) * c->per);
      }
      if (share >= o->threshold && moved >= o->threshold) done[b] = 1;
      active_images += !done[b];
    }
    if (!active_images || t == o->iters) break;
    net_backward(c->net, c->dlogits, g, 0);
    for (int b = 0; b < B; b++) {
      if (done[b]) continue;
      float *a = cur + c->per * b;
      const float *gb = g + c->per * b, *x0 = x + c->per * b;
      float m = 0.0f;
      for (size_t i = 0; i < c->per; i++) m = fmaxf(m, fabsf(gb[i]));
      if (!(m > 0.0f)) continue; /* no gradient: nothing more this image can do */
      const float s = o->gamma / m;
      for (size_t i = 0; i < c->per; i++) {
        float v = a[i] + s * gb[i];
        if (c->eps[b] > 0.0f) v = fminf(fmaxf(v, x0[i] - c->eps[b]), x0[i] + c->eps[b]);
        a[i] = fminf(fmaxf(v, 0.0f), 1.0f);
      }
    }
  }
  return STATUS_OK;
}

/* ---- target masks ---------------------------------------------------------- */

static const char *const target_names[DAG_TARGET_COUNT] = {"A", "B", "C"};

DagTargetOptions dag_target_options_default(void) {
  return (DagTargetOptions){.fraction = 0.1f, .cell = 4, .cls = -1, .dilate_iters = 3};
}

const char *dag_target_name(DagTarget t) {
  return t >= 0 && t < DAG_TARGET_COUNT ? target_names[t] : "?";
}

int dag_target_parse(const char *name) {
  for (int t = 0; t < DAG_TARGET_COUNT; t++)
    if (name && (name[0] == target_names[t][0] || name[0] == target_names[t][0] + 32) && !name[1])
      return t;
  return -1;
}

/* One 3x3 dilation of class cls over the map (h, w), in place via scratch. */
static void dilate_once(int *map, int *scratch, int h, int w, int cls) {
  memcpy(scratch, map, sizeof(int) * h * w);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      if (scratch[y * w + x] == cls) continue;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          const int yy = y + dy, xx = x + dx;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w && scratch[yy * w + xx] == cls)
            map[y * w + x] = cls;
        }
    }
}

void dag_target(DagTarget t, const DagTargetOptions *o, const int *clean, int n, int h, int w,
                int k, uint64_t seed, int first, int *target) {
  const size_t P = (size_t)h * w;
  int *scratch = t == DAG_TARGET_C ? malloc(sizeof(int) * P) : NULL;
  long *count = t == DAG_TARGET_C ? malloc(sizeof(long) * k) : NULL;
  for (int i = 0; i < n; i++) {
    const int *cb = clean + P * i;
    int *tb = target + P * i;
    Rng rng;
    rng_seed(&rng,
             seed * 0x9E3779B97F4A7C15ULL + (uint64_t)(first + i) * 0xBF58476D1CE4E5B9ULL + 7);
    if (t == DAG_TARGET_A) {
      memset(tb, 0, sizeof(int) * P);
      continue;
    }
    memcpy(tb, cb, sizeof(int) * P);
    if (t == DAG_TARGET_B) {
      const int cls = rng_int(&rng, k), cell = o->cell > 0 ? o->cell : 1;
      for (int cy = 0; cy < h; cy += cell)
        for (int cx = 0; cx < w; cx += cell) {
          if (!(rng_uniform(&rng) < o->fraction)) continue;
          for (int y = cy; y < cy + cell && y < h; y++)
            for (int x = cx; x < cx + cell && x < w; x++) tb[(size_t)y * w + x] = cls;
        }
    } else if (scratch && count) {
      int cls = o->cls;
      if (cls < 0) { /* the largest foreground class of the clean prediction */
        memset(count, 0, sizeof(long) * k);
        for (size_t p = 0; p < P; p++) count[cb[p]]++;
        for (int c = 1; c < k; c++)
          if (count[c] && (cls < 0 || count[c] > count[cls])) cls = c;
      }
      for (int it = 0; cls >= 0 && it < o->dilate_iters; it++) dilate_once(tb, scratch, h, w, cls);
    }
  }
  free(scratch), free(count);
}
