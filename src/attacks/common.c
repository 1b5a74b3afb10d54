/* The attack table, option defaults, losses and their logit gradients,
 * projections and random starts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

typedef struct {
  const char *name;
  Status (*run)(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv);
  int bounded;
  unsigned supports; /* ATTACK_SUPPORTS_*: attack_run refuses anything else */
} AttackEntry;

#define T_ ATTACK_SUPPORTS_TARGETED
#define LI ATTACK_SUPPORTS_LINF
#define L2 ATTACK_SUPPORTS_L2
#define PP ATTACK_SUPPORTS_PER_PIXEL
#define CL ATTACK_SUPPORTS_PER_IMAGE
/* Per-pixel (segmentation) outputs: the gradient attacks ascend the mean
 * per-pixel cross-entropy of each image; DAG exists only for them. */
static const AttackEntry attacks[ATTACK_COUNT] = {
    [ATTACK_FGSM] = {"fgsm", attack_fgsm, 1, T_ | LI | L2 | PP | CL},
    [ATTACK_BIM] = {"bim", attack_pgd, 1, T_ | LI | L2 | PP | CL},
    [ATTACK_PGD] = {"pgd", attack_pgd, 1, T_ | LI | L2 | PP | CL},
    [ATTACK_MIFGSM] = {"mifgsm", attack_mifgsm, 1, T_ | LI | L2 | CL},
    [ATTACK_DEEPFOOL] = {"deepfool", attack_deepfool, 0, LI | L2 | CL},
    [ATTACK_CW] = {"cw", attack_cw, 0, T_ | LI | L2 | CL},
    [ATTACK_SQUARE] = {"square", attack_square, 1, T_ | LI | CL},
    [ATTACK_APGD_CE] = {"apgd-ce", attack_apgd, 1, T_ | LI | L2 | CL},
    [ATTACK_APGD_MARGIN] = {"apgd-dlr", attack_apgd, 1, LI | L2 | CL},
    [ATTACK_STANDARD] = {"standard", attack_standard, 1, LI | L2 | CL},
    [ATTACK_JSMA] = {"jsma", attack_jsma, 0, T_ | LI | L2 | CL},
    [ATTACK_DAG] = {"dag", attack_dag, 0, T_ | LI | PP},
    [ATTACK_FMN] = {"fmn", attack_fmn, 0, T_ | LI | L2 | CL},
};
#undef T_
#undef LI
#undef L2
#undef PP
#undef CL

unsigned attack_supports(AttackKind kind) {
  return kind >= 0 && kind < ATTACK_COUNT ? attacks[kind].supports : 0;
}

const char *attack_name(AttackKind kind) {
  return kind >= 0 && kind < ATTACK_COUNT ? attacks[kind].name : "?";
}

int attack_parse(const char *name) {
  for (int i = 0; i < ATTACK_COUNT; i++)
    if (strcmp(name, attacks[i].name) == 0) return i;
  if (strcmp(name, "i-fgsm") == 0) return ATTACK_BIM;
  if (strcmp(name, "mi-fgsm") == 0) return ATTACK_MIFGSM;
  if (strcmp(name, "apgd-margin") == 0) return ATTACK_APGD_MARGIN;
  if (strcmp(name, "sma") == 0) return ATTACK_JSMA;
  if (strcmp(name, "suite") == 0 || strcmp(name, "autoattack") == 0) return ATTACK_STANDARD;
  return -1;
}

int attack_is_bounded(AttackKind kind) {
  return kind >= 0 && kind < ATTACK_COUNT && attacks[kind].bounded;
}

AttackOptions attack_options_default(AttackKind kind) {
  AttackOptions o;
  memset(&o, 0, sizeof o);
  o.kind = kind;
  o.norm = NORM_LINF;
  o.eps = 0.004f;
  o.iters = kind == ATTACK_FGSM ? 1 : kind == ATTACK_DEEPFOOL ? 50 : kind == ATTACK_CW ? 100 : 10;
  if (kind == ATTACK_APGD_CE || kind == ATTACK_APGD_MARGIN || kind == ATTACK_FMN) o.iters = 100;
  o.restarts = 1;
  o.momentum = 1.0f;
  o.overshoot = 0.02f;
  o.cw_c = 1.0f, o.cw_lr = 0.01f, o.cw_kappa = 0.0f, o.cw_search_steps = 5;
  o.queries = 1000, o.p_init = 0.05f;
  if (kind == ATTACK_JSMA) o.eps = 0.1f; /* here: the fraction of features it may change */
  /* DAG (Xie et al. 2017): gamma 0.5 on 0..255 pixels, at most 200 iterations,
   * done at 99% of the target (the reference implementations' threshold);
   * unbounded unless given an eps */
  if (kind == ATTACK_DAG) o.iters = 200, o.eps = 0.0f;
  o.gamma = 0.5f / 255.0f, o.threshold = 0.99f;
  o.seed = 1;
  return o;
}

Status attack_ctx_init(AttackCtx *c, Net *net, int batch, MrError *err) {
  memset(c, 0, sizeof *c);
  c->net = net, c->batch = batch, c->k = net_num_classes(net);
  c->P = net_output_pixels(net), c->n_labels = (size_t)batch * c->P;
  c->per = (size_t)net_input_size(net);
  attack_ws_open(c);
  c->dlogits = attack_scratch(c, sizeof(float) * batch * c->k * c->P);
  c->logits = attack_scratch(c, sizeof(float) * batch * c->k * c->P);
  c->loss = attack_scratch(c, sizeof(float) * batch);
  c->pred = attack_scratch(c, sizeof(int) * batch);
  c->hit = attack_scratch(c, sizeof(float) * batch);
  c->eps = attack_scratch(c, sizeof(float) * batch);
  c->steps = attack_scratch(c, sizeof(float) * batch);
  c->rng = attack_scratch(c, sizeof(Rng) * batch);
  c->image = attack_scratch(c, sizeof(int) * batch);
  c->keep = attack_scratch(c, sizeof(int) * batch);
  if (!c->keep || !c->dlogits || !c->logits || !c->loss || !c->pred || !c->eps || !c->steps ||
      !c->hit || !c->rng || !c->image) {
    attack_ctx_free(c);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for an attack batch of %d", batch);
  }
  for (int b = 0; b < batch; b++) c->image[b] = b;
  const Status s = net_plan(net, batch, err);
  if (s != STATUS_OK) attack_ctx_free(c);
  return s;
}

int attack_drop_done(AttackCtx *c, const int *done, const AttackRows *rows, int n_rows) {
  int left = 0;
  for (int b = 0; b < c->batch; b++) left += !done[b];
  if (left > c->batch / 2) return c->batch;
  const AttackRows own[] = {{c->eps, sizeof(float)},
                            {c->steps, sizeof(float)},
                            {c->rng, sizeof(Rng)},
                            {c->image, sizeof(int)}};
  int *keep = c->keep, kept = 0;
  for (int b = 0; b < c->batch; b++)
    if (!done[b]) keep[kept++] = b;
  /* rows only move forward (keep[i] >= i), so each array compacts in place */
  for (int r = 0; r < n_rows + 4; r++) {
    const AttackRows *a = r < n_rows ? &rows[r] : &own[r - n_rows];
    char *base = a->base;
    for (int i = 0; i < kept; i++)
      if (keep[i] != i) memmove(base + a->bytes * i, base + a->bytes * keep[i], a->bytes);
  }
  c->batch = kept;
  return kept;
}

void attack_ctx_free(AttackCtx *c) {
  attack_ws_close(c);
  memset(c, 0, sizeof *c);
}

/* Per image: loss value and d(loss)/d(logits) for one label. */
static float loss_and_dlogits(const float *z, int y, int k, LossKind kind, float *g) {
  int other = -1; /* the largest logit that is not y */
  for (int j = 0; j < k; j++)
    if (j != y && (other < 0 || z[j] > z[other])) other = j;
  memset(g, 0, sizeof(float) * k);
  switch (kind) {
    case LOSS_CE:
    case LOSS_CE_TARGET: {
      float zmax = z[0];
      for (int j = 1; j < k; j++) zmax = fmaxf(zmax, z[j]);
      double s = 0;
      for (int j = 0; j < k; j++) s += exp((double)z[j] - zmax);
      const double lse = log(s) + zmax, sign = kind == LOSS_CE ? 1.0 : -1.0;
      for (int j = 0; j < k; j++) g[j] = (float)(sign * (exp((double)z[j] - lse) - (j == y)));
      return (float)(sign * (lse - z[y]));
    }
    case LOSS_MARGIN:
      g[other] = 1.0f, g[y] = -1.0f;
      return z[other] - z[y];
    case LOSS_DLR: {
      /* -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3 + 1e-12), pi sorted descending */
      int p1 = 0, p2 = -1, p3 = -1;
      for (int j = 1; j < k; j++)
        if (z[j] > z[p1]) p1 = j;
      for (int j = 0; j < k; j++)
        if (j != p1 && (p2 < 0 || z[j] > z[p2])) p2 = j;
      for (int j = 0; j < k; j++)
        if (j != p1 && j != p2 && (p3 < 0 || z[j] > z[p3])) p3 = j;
      const float num = z[other] - z[y], den = z[p1] - z[p3] + 1e-12f;
      g[other] += 1.0f / den, g[y] -= 1.0f / den;
      g[p1] -= num / (den * den), g[p3] += num / (den * den);
      return num / den;
    }
  }
  return 0.0f;
}

/* Per-pixel outputs: each image's loss is the mean over its labelled pixels
 * (the net's ignore label left out) of the per-pixel loss. */
static void pixel_loss_grad(AttackCtx *c, const int *labels, LossKind kind) {
  const int k = c->k, P = c->P, ignore = net_spec(c->net)->ignore_label;
  const int targeted = kind == LOSS_CE_TARGET;
  float z[MR_MAX_CLASSES], g[MR_MAX_CLASSES];
  for (int b = 0; b < c->batch; b++) {
    const float *zb = c->logits + (size_t)b * k * P;
    float *gb = c->dlogits + (size_t)b * k * P;
    const int *yb = labels + (size_t)b * P;
    int valid = 0, at_label = 0;
    for (int p = 0; p < P; p++) valid += yb[p] != ignore && yb[p] >= 0 && yb[p] < k;
    double loss = 0.0;
    for (int p = 0; p < P; p++) {
      for (int j = 0; j < k; j++) z[j] = zb[(size_t)j * P + p], gb[(size_t)j * P + p] = 0.0f;
      if (yb[p] == ignore || yb[p] < 0 || yb[p] >= k) continue;
      at_label += argmax(z, k) == yb[p];
      loss += loss_and_dlogits(z, yb[p], k, kind, g);
      for (int j = 0; j < k; j++) gb[(size_t)j * P + p] = g[j] / valid;
    }
    c->loss[b] = valid ? (float)(loss / valid) : 0.0f;
    c->pred[b] = at_label;
    c->hit[b] = valid ? (float)(targeted ? at_label : valid - at_label) / valid : 0.0f;
  }
}

void attack_loss_grad(AttackCtx *c, const float *x, const int *labels, LossKind kind, float *dx) {
  const int k = c->k;
  const float *z = net_forward(c->net, x, c->batch, c->mode);
  if (c->P > 1) {
    memcpy(c->logits, z, sizeof(float) * c->batch * k * c->P);
    pixel_loss_grad(c, labels, kind);
    if (dx) net_backward(c->net, c->dlogits, dx, 0);
    return;
  }
  memcpy(c->logits, z, sizeof(float) * c->batch * k);
  for (int b = 0; b < c->batch; b++) {
    const float *zb = c->logits + (size_t)b * k;
    c->pred[b] = argmax(zb, k);
    c->loss[b] = loss_and_dlogits(zb, labels[b], k, kind, c->dlogits + (size_t)b * k);
  }
  if (dx) net_backward(c->net, c->dlogits, dx, 0);
}

int *attack_label_scratch(AttackCtx *c) { return attack_scratch(c, sizeof(int) * c->n_labels); }

void attack_labels(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   int *labels) {
  if (c->P > 1) { /* one label per pixel */
    if (o->target == TARGET_NONE || o->target == TARGET_MASK) {
      memcpy(labels, o->target == TARGET_MASK ? o->target_mask : y, sizeof(int) * c->n_labels);
    } else if (o->target == TARGET_CLASS) {
      for (size_t i = 0; i < c->n_labels; i++) labels[i] = o->target_class;
    } else {
      const float *z = net_forward(c->net, x, c->batch, c->mode);
      for (int b = 0; b < c->batch; b++)
        for (int p = 0; p < c->P; p++) {
          const float *zp = z + (size_t)b * c->k * c->P + p;
          int worst = 0;
          for (int j = 1; j < c->k; j++)
            if (zp[(size_t)j * c->P] < zp[(size_t)worst * c->P]) worst = j;
          labels[(size_t)b * c->P + p] = worst;
        }
    }
    return;
  }
  if (o->target == TARGET_NONE) {
    memcpy(labels, y, sizeof(int) * c->batch);
  } else if (o->target == TARGET_CLASS) {
    for (int b = 0; b < c->batch; b++) labels[b] = o->target_class;
  } else {
    const float *z = net_forward(c->net, x, c->batch, c->mode);
    for (int b = 0; b < c->batch; b++) {
      int worst = 0;
      for (int j = 1; j < c->k; j++)
        if (z[(size_t)b * c->k + j] < z[(size_t)b * c->k + worst]) worst = j;
      labels[b] = worst;
    }
  }
}

int attack_succeeded(const AttackOptions *o, int pred, int y, int target) {
  return o->target == TARGET_NONE ? pred != y : pred == target;
}

int attack_image_done(const AttackCtx *c, const AttackOptions *o, const int *y, const int *labels,
                      int b) {
  if (c->P > 1) return o->target != TARGET_NONE && c->hit[b] >= o->threshold;
  return attack_succeeded(o, c->pred[b], y[b], labels[b]);
}

void keep_strongest(AttackCtx *c, const AttackOptions *o, const int *y, const int *labels,
                    const float *cur, float *x_adv, float *best_loss, int *done) {
  for (int b = 0; b < c->batch; b++) {
    if (done[b]) continue;
    const int success = attack_image_done(c, o, y, labels, b);
    if (success || c->loss[b] > best_loss[b]) {
      best_loss[b] = c->loss[b];
      memcpy(x_adv + c->per * c->image[b], cur + c->per * b, sizeof(float) * c->per);
      done[b] = success;
    }
  }
}

const float *attack_steps(AttackCtx *c, const AttackOptions *o, float factor) {
  for (int b = 0; b < c->batch; b++)
    c->steps[b] = o->step > 0       ? o->step
                  : o->step_rel > 0 ? o->step_rel * c->eps[b]
                                    : factor * c->eps[b] / o->iters;
  return c->steps;
}

void project(float *x_adv, const float *x0, int batch, size_t per, Norm norm, const float *eps_b) {
  for (int b = 0; b < batch; b++) {
    float *a = x_adv + per * b;
    const float *o = x0 + per * b;
    const float eps = eps_b[b];
    if (norm == NORM_LINF) {
      for (size_t i = 0; i < per; i++) a[i] = fminf(fmaxf(a[i], o[i] - eps), o[i] + eps);
    } else {
      double n2 = 0;
      for (size_t i = 0; i < per; i++) n2 += (double)(a[i] - o[i]) * (a[i] - o[i]);
      const double n = sqrt(n2);
      if (n > eps) {
        const float s = (float)(eps / n);
        for (size_t i = 0; i < per; i++) a[i] = o[i] + (a[i] - o[i]) * s;
      }
    }
    /* [0,1] last: for Linf both constraints still hold; for L2 clipping only shrinks the distance
     */
    for (size_t i = 0; i < per; i++) a[i] = fminf(fmaxf(a[i], 0.0f), 1.0f);
  }
}

void ascend(float *x, const float *g, int batch, size_t per, Norm norm, const float *steps) {
  for (int b = 0; b < batch; b++) {
    float *a = x + per * b;
    const float *gb = g + per * b;
    const float step = steps[b];
    if (norm == NORM_LINF) {
      for (size_t i = 0; i < per; i++) a[i] += step * (float)((gb[i] > 0) - (gb[i] < 0));
    } else {
      double n2 = 0;
      for (size_t i = 0; i < per; i++) n2 += (double)gb[i] * gb[i];
      if (n2 == 0) continue;
      const float s = (float)(step / sqrt(n2));
      for (size_t i = 0; i < per; i++) a[i] += s * gb[i];
    }
  }
}

void random_start(float *x, const float *x0, int batch, size_t per, Norm norm, const float *eps_b,
                  Rng *rngs) {
  for (int b = 0; b < batch; b++) {
    Rng *rng = &rngs[b];
    float *a = x + per * b;
    const float *o = x0 + per * b;
    const float eps = eps_b[b];
    if (norm == NORM_LINF) {
      for (size_t i = 0; i < per; i++) a[i] = o[i] + eps * (2.0f * rng_uniform(rng) - 1.0f);
    } else {
      double n2 = 0;
      for (size_t i = 0; i < per; i++) a[i] = rng_normal(rng), n2 += (double)a[i] * a[i];
      const double r = eps * pow(rng_uniform(rng), 1.0 / (double)per) / sqrt(n2 > 0 ? n2 : 1);
      for (size_t i = 0; i < per; i++) a[i] = o[i] + (float)(a[i] * r);
    }
  }
  project(x, x0, batch, per, norm, eps_b);
}

Status attack_run(Net *net, const AttackOptions *o, const float *x, const int *y, int batch,
                  float *x_adv, MrError *err) {
  if (o->kind < 0 || o->kind >= ATTACK_COUNT)
    return mr_error_set(err, STATUS_ERR_ARG, "unknown attack");
  if (!(o->eps >= 0.0f) || !isfinite(o->eps))
    return mr_error_set(err, STATUS_ERR_ARG, "%s: eps must be >= 0, got %g", attack_name(o->kind),
                        o->eps);
  if (o->norm == NORM_LINF && o->eps > 1.0f)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: an L-inf eps above 1 means nothing on [0,1] pixels (%g)",
                        attack_name(o->kind), o->eps);
  if (o->iters < 1 || o->restarts < 1 || o->step < 0)
    return mr_error_set(err, STATUS_ERR_ARG, "%s: iterations and restarts must be >= 1, step >= 0",
                        attack_name(o->kind));
  if (o->target == TARGET_CLASS && (o->target_class < 0 || o->target_class >= net_num_classes(net)))
    return mr_error_set(err, STATUS_ERR_ARG, "target class %d is not one of the model's %d classes",
                        o->target_class, net_num_classes(net));
  const unsigned can = attacks[o->kind].supports;
  if (o->target != TARGET_NONE && !(can & ATTACK_SUPPORTS_TARGETED))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: no targeted version is implemented (drop --target, or use pgd, "
                        "fgsm, bim, mifgsm, apgd-ce, cw, square or jsma)",
                        attack_name(o->kind));
  if (!(can & (o->norm == NORM_LINF ? ATTACK_SUPPORTS_LINF : ATTACK_SUPPORTS_L2)))
    return mr_error_set(err, STATUS_ERR_ARG, "%s: only the %s version is implemented",
                        attack_name(o->kind), o->norm == NORM_LINF ? "L2" : "L-inf");
  if (net_output_pixels(net) > 1 && !(can & ATTACK_SUPPORTS_PER_PIXEL))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: the model answers per pixel (segmentation); this attack works on "
                        "per-image class scores (use fgsm, bim, pgd or dag)",
                        attack_name(o->kind));
  if (net_output_pixels(net) == 1 && !(can & ATTACK_SUPPORTS_PER_IMAGE))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: an attack on segmentation models; this model answers per image",
                        attack_name(o->kind));
  if ((o->target == TARGET_MASK) != (o->target_mask != NULL) ||
      (o->target == TARGET_MASK && net_output_pixels(net) == 1))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "a target mask goes with TARGET_MASK, and only on a per-pixel model");
  if (o->kind == ATTACK_DAG && o->target == TARGET_NONE)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "dag: needs a target (a target mask, e.g. type A, B or C, or a class)");
  if (o->kind == ATTACK_DAG && (!(o->gamma > 0.0f) || !(o->threshold > 0.0f) || o->threshold > 1))
    return mr_error_set(err, STATUS_ERR_ARG, "dag: gamma must be > 0 and the threshold in (0, 1]");
  AttackCtx c;
  if (o->mode == MODE_TRAIN)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: attacking in training mode would move the batchnorm statistics; use "
                        "MODE_TRAIN_FROZEN",
                        attack_name(o->kind));
  Status s = attack_ctx_init(&c, net, batch, err);
  if (s != STATUS_OK) return s;
  c.mode = o->mode;
  float max_eps = 0.0f;
  for (int b = 0; b < batch; b++) {
    c.eps[b] = o->eps_each ? o->eps_each[b] : o->eps;
    if (!(c.eps[b] >= 0.0f) || (o->norm == NORM_LINF && c.eps[b] > 1.0f)) {
      attack_ctx_free(&c);
      return mr_error_set(err, STATUS_ERR_ARG, "%s: eps %g of image %d is not in [0,1]",
                          attack_name(o->kind), c.eps[b], b);
    }
    max_eps = fmaxf(max_eps, c.eps[b]);
    rng_seed_stream(&c.rng[b], o->seed,
                    o->index ? (uint64_t)o->index[b] : (uint64_t)o->index_base + (uint64_t)b);
  }
  memcpy(x_adv, x, sizeof(float) * c.per * batch);
  if (max_eps > 0.0f || !attack_is_bounded(o->kind)) s = attacks[o->kind].run(&c, o, x, y, x_adv);
  if (s != STATUS_OK) mr_error_set(err, s, "%s failed: %s", attack_name(o->kind), status_str(s));
  attack_ctx_free(&c);
  return s;
}
