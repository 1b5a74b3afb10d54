/* FGSM (Goodfellow et al. 2015; paper 001 eq. 1): x' = clip(x + eps * sign(grad_x J(x, y))).
 * L2 variant (FGM): x' = clip(x + eps * g / ||g||_2). Targeted: descend the
 * target's cross-entropy (paper 004, least-likely class). */
#include <stdlib.h>

#include "attack.h"

Status attack_fgsm(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv) {
  int *labels = attack_label_scratch(c);
  float *g = attack_scratch(c, sizeof(float) * c->per * c->batch);
  if (!labels || !g) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  attack_loss_grad(c, x, labels, o->target == TARGET_NONE ? LOSS_CE : LOSS_CE_TARGET, g);
  ascend(x_adv, g, c->batch, c->per, o->norm, c->eps);
  project(x_adv, x, c->batch, c->per, o->norm, c->eps);
  return STATUS_OK;
}
