/* MI-FGSM (Dong et al. 2018): momentum over L1-normalised gradients,
 *   g <- mu * g + grad / ||grad||_1,  x <- clip_{x,eps}(x + alpha * sign(g)),
 * alpha = eps / iters, mu = 1. The strongest iterate is kept as in PGD. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_mifgsm(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv) {
  const int B = c->batch;
  const size_t n = c->per * B;
  const float *alpha = attack_steps(c, o, 1.0f);
  const LossKind loss = o->target == TARGET_NONE ? LOSS_CE : LOSS_CE_TARGET;
  int *labels = attack_scratch(c, sizeof(int) * B), *done = attack_scratch(c, sizeof(int) * B);
  float *cur = attack_scratch(c, sizeof(float) * n), *grad = attack_scratch(c, sizeof(float) * n);
  float *mom = attack_scratch(c, sizeof(float) * n),
        *best_loss = attack_scratch(c, sizeof(float) * B);
  if (!labels || !done || !cur || !grad || !mom || !best_loss) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  memcpy(cur, x, sizeof(float) * n);
  for (int b = 0; b < B; b++) best_loss[b] = -INFINITY; /* iterate 0 is x itself */
  for (int t = 0; t <= o->iters; t++) {
    attack_loss_grad(c, cur, labels, loss, t < o->iters ? grad : NULL);
    keep_strongest(c, o, y, labels, cur, x_adv, best_loss, done);
    if (t == o->iters) break;
    for (int b = 0; b < B; b++) {
      double l1 = 0;
      for (size_t i = 0; i < c->per; i++) l1 += fabs(grad[c->per * b + i]);
      const float inv = l1 > 0 ? (float)(1.0 / l1) : 0.0f;
      for (size_t i = 0; i < c->per; i++)
        mom[c->per * b + i] = o->momentum * mom[c->per * b + i] + grad[c->per * b + i] * inv;
    }
    ascend(cur, mom, B, c->per, o->norm, alpha);
    project(cur, x, B, c->per, o->norm, c->eps);
  }
  return STATUS_OK;
}
