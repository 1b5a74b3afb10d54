/* APGD (Croce & Hein 2020, the core of AutoAttack): PGD with momentum 0.75
 * and a step size that starts at 2 eps and halves at checkpoints
 * w_j = ceil(p_j N) (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} -
 * 0.03, 0.06)) when fewer than 75% of the steps since the last checkpoint
 * raised the loss, or when neither the step nor the best loss changed; it
 * then restarts from the best point. Loss: cross-entropy (apgd-ce) or, for
 * apgd-dlr, the DLR loss with 3+ classes and the C&W margin with 2 (DLR is
 * undefined there). Misclassified iterates are kept, as AutoAttack does, and
 * their images leave the batch (their steps and checkpoints are their own).
 * APGD-CE also runs targeted (the target's cross-entropy descended, success
 * when the target is reached); targeted DLR (4+ classes) is not implemented. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

static int checkpoints(int *w, int max, int n_iter) {
  double p_prev = 0.0, p = 0.22;
  int count = 0;
  w[count++] = 0;
  while (p < 1.0 && count < max) {
    w[count++] = (int)ceil(p * n_iter);
    const double next = p + fmax(p - p_prev - 0.03, 0.06);
    p_prev = p, p = next;
  }
  return count;
}

Status attack_apgd(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv) {
  const int N = o->iters;
  const size_t n = c->per * c->batch, row = sizeof(float) * c->per;
  /* targeted (APGD-CE only): descend the target's cross-entropy */
  const LossKind loss = o->kind == ATTACK_APGD_CE
                            ? (o->target == TARGET_NONE ? LOSS_CE : LOSS_CE_TARGET)
                        : c->k >= 3 ? LOSS_DLR
                                    : LOSS_MARGIN;
  float *cur = attack_scratch(c, sizeof(float) * n), *prev = attack_scratch(c, sizeof(float) * n),
        *g = attack_scratch(c, sizeof(float) * n), *x0 = attack_scratch(c, sizeof(float) * n);
  float *xmax = attack_scratch(c, sizeof(float) * n), *gmax = attack_scratch(c, sizeof(float) * n),
        *z = attack_scratch(c, sizeof(float) * n);
  const size_t per_image = sizeof(float) * c->batch;
  float *fmax_ = attack_scratch(c, per_image), *eta = attack_scratch(c, per_image),
        *f_prev = attack_scratch(c, per_image), *fmax_ckpt = attack_scratch(c, per_image),
        *eta_ckpt = attack_scratch(c, per_image), *best_seen = attack_scratch(c, per_image);
  int *ups = attack_scratch(c, sizeof(int) * c->batch),
      *done = attack_scratch(c, sizeof(int) * c->batch), *labels = attack_label_scratch(c),
      *truth = attack_label_scratch(c);
  if (!cur || !prev || !g || !x0 || !xmax || !gmax || !z || !fmax_ || !eta || !f_prev ||
      !fmax_ckpt || !eta_ckpt || !best_seen || !ups || !done || !labels || !truth) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  memcpy(x0, x, sizeof(float) * n);
  memcpy(truth, y, sizeof(int) * c->n_labels);
  const AttackRows rows[] = {{cur, row},
                             {prev, row},
                             {g, row},
                             {x0, row},
                             {xmax, row},
                             {gmax, row},
                             {z, row},
                             {fmax_, sizeof(float)},
                             {eta, sizeof(float)},
                             {f_prev, sizeof(float)},
                             {fmax_ckpt, sizeof(float)},
                             {eta_ckpt, sizeof(float)},
                             {best_seen, sizeof(float)},
                             {ups, sizeof(int)},
                             {done, sizeof(int)},
                             {labels, sizeof(int)},
                             {truth, sizeof(int)}};
  const int n_rows = sizeof rows / sizeof *rows;
  int w[64];
  const int n_ckpt = checkpoints(w, 64, N);
  /* the clean image is the first candidate (x_adv holds it already) */
  attack_loss_grad(c, x0, labels, loss, NULL);
  for (int b = 0; b < c->batch; b++)
    best_seen[b] = c->loss[b], done[b] = attack_succeeded(o, c->pred[b], truth[b], labels[b]);
  for (int r = 0; r < o->restarts; r++) {
    if (!attack_drop_done(c, done, rows, n_rows)) break;
    const int B = c->batch;
    random_start(cur, x0, B, c->per, o->norm, c->eps, c->rng);
    attack_loss_grad(c, cur, labels, loss, g);
    for (int b = 0; b < B; b++) {
      fmax_[b] = f_prev[b] = fmax_ckpt[b] = c->loss[b];
      eta[b] = eta_ckpt[b] = 2.0f * c->eps[b];
      ups[b] = 0;
    }
    keep_strongest(c, o, truth, labels, cur, x_adv, best_seen, done);
    memcpy(xmax, cur, row * B);
    memcpy(gmax, g, row * B);
    memcpy(prev, cur, row * B);
    int next_ckpt = 1;
    for (int k = 0; k < N && attack_drop_done(c, done, rows, n_rows); k++) {
      const int rows_now = c->batch;
      /* z = P(x_k + eta s(g)); x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})) */
      for (int b = 0; b < rows_now; b++) {
        memcpy(z + c->per * b, cur + c->per * b, row);
        ascend(z + c->per * b, g + c->per * b, 1, c->per, o->norm, &eta[b]);
      }
      project(z, x0, rows_now, c->per, o->norm, c->eps);
      const float a = k == 0 ? 1.0f : 0.75f;
      for (size_t i = 0; i < c->per * rows_now; i++) {
        const float next = cur[i] + a * (z[i] - cur[i]) + (1 - a) * (cur[i] - prev[i]);
        prev[i] = cur[i];
        cur[i] = next;
      }
      project(cur, x0, rows_now, c->per, o->norm, c->eps);
      attack_loss_grad(c, cur, labels, loss, g);
      for (int b = 0; b < rows_now; b++) {
        if (c->loss[b] > f_prev[b]) ups[b]++;
        f_prev[b] = c->loss[b];
        if (c->loss[b] > fmax_[b]) {
          fmax_[b] = c->loss[b];
          memcpy(xmax + c->per * b, cur + c->per * b, row);
          memcpy(gmax + c->per * b, g + c->per * b, row);
        }
      }
      keep_strongest(c, o, truth, labels, cur, x_adv, best_seen, done);
      if (next_ckpt < n_ckpt && k + 1 == w[next_ckpt]) {
        const int since = w[next_ckpt] - w[next_ckpt - 1];
        for (int b = 0; b < rows_now; b++) {
          const int cond1 = ups[b] < 0.75 * since;
          const int cond2 = eta_ckpt[b] == eta[b] && fmax_ckpt[b] == fmax_[b];
          if (cond1 || cond2) {
            eta[b] /= 2.0f;
            memcpy(cur + c->per * b, xmax + c->per * b, row);
            memcpy(prev + c->per * b, xmax + c->per * b, row);
            memcpy(g + c->per * b, gmax + c->per * b, row);
          }
          ups[b] = 0;
          eta_ckpt[b] = eta[b];
          fmax_ckpt[b] = fmax_[b];
        }
        next_ckpt++;
      }
    }
  }
  return STATUS_OK;
}
