/* MI-FGSM (Dong et al. 2018): momentum over L1-normalised gradients,
 *   g <- mu * g + grad / ||grad||_1,  x <- clip_{x,eps}(x + alpha * sign(g)),
 * alpha = eps / iters, mu = 1. The strongest iterate is kept as in PGD, and
 * fooled images leave the batch as there. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_mifgsm(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv) {
  const size_t n = c->per * c->batch, row = sizeof(float) * c->per;
  const float *alpha = attack_steps(c, o, 1.0f);
  const LossKind loss = o->target == TARGET_NONE ? LOSS_CE : LOSS_CE_TARGET;
  int *labels = attack_label_scratch(c), *truth = attack_label_scratch(c),
      *done = attack_scratch(c, sizeof(int) * c->batch);
  float *cur = attack_scratch(c, sizeof(float) * n), *grad = attack_scratch(c, sizeof(float) * n),
        *x0 = attack_scratch(c, sizeof(float) * n);
  float *mom = attack_scratch(c, sizeof(float) * n),
        *best_loss = attack_scratch(c, sizeof(float) * c->batch);
  if (!labels || !truth || !done || !cur || !grad || !x0 || !mom || !best_loss) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  memcpy(cur, x, sizeof(float) * n);
  memcpy(x0, x, sizeof(float) * n);
  memcpy(truth, y, sizeof(int) * c->n_labels);
  const AttackRows rows[] = {{cur, row},
                             {grad, row},
                             {mom, row},
                             {x0, row},
                             {best_loss, sizeof(float)},
                             {done, sizeof(int)},
                             {labels, sizeof(int) * c->P},
                             {truth, sizeof(int) * c->P}};
  for (int b = 0; b < c->batch; b++) best_loss[b] = -INFINITY; /* iterate 0 is x itself */
  for (int t = 0; t <= o->iters; t++) {
    attack_loss_grad(c, cur, labels, loss, t < o->iters ? grad : NULL);
    keep_strongest(c, o, truth, labels, cur, x_adv, best_loss, done);
    if (t == o->iters || !attack_drop_done(c, done, rows, sizeof rows / sizeof *rows)) break;
    for (int b = 0; b < c->batch; b++) {
      double l1 = 0;
      for (size_t i = 0; i < c->per; i++) l1 += fabs(grad[c->per * b + i]);
      const float inv = l1 > 0 ? (float)(1.0 / l1) : 0.0f;
      for (size_t i = 0; i < c->per; i++)
        mom[c->per * b + i] = o->momentum * mom[c->per * b + i] + grad[c->per * b + i] * inv;
    }
    ascend(cur, mom, c->batch, c->per, o->norm, alpha);
    project(cur, x0, c->batch, c->per, o->norm, c->eps);
  }
  return STATUS_OK;
}
