/* Iterative gradient attacks on the cross-entropy:
 *   BIM / I-FGSM (Kurakin et al. 2017; paper 001 eq. 2): from x,
 *     x <- clip_{x,eps}(x + alpha * sign(grad)), alpha = 1.25 eps / iters;
 *   PGD (Madry et al. 2018; paper 001 eq. 3): the same from a uniform random
 *     start in the eps ball, alpha = 2.5 eps / iters, with restarts.
 * L2 versions step along g/||g||_2 and project onto the L2 ball. Targeted
 * versions descend the target's cross-entropy (paper 004: 20 iterations,
 * step 0.1 eps). Per image the strongest iterate is kept: a successful one
 * if any, else the one of highest loss, so more iterations never weaken it;
 * or, for adversarial training (last_iterate), the final iterate itself, as
 * Madry et al. train on; FGSM with a random start and step 1.25 eps (Wong et
 * al. 2020, "fast" adversarial training) is PGD with one iteration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_pgd(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                  float *x_adv) {
  const int is_pgd = o->kind == ATTACK_PGD;
  const size_t n = c->per * c->batch, row = sizeof(float) * c->per;
  const float *alpha = attack_steps(c, o, is_pgd ? 2.5f : 1.25f);
  const LossKind loss = o->target == TARGET_NONE ? LOSS_CE : LOSS_CE_TARGET;
  int *labels = attack_label_scratch(c), *truth = attack_label_scratch(c),
      *done = attack_scratch(c, sizeof(int) * c->batch);
  float *cur = attack_scratch(c, sizeof(float) * n), *g = attack_scratch(c, sizeof(float) * n),
        *x0 = attack_scratch(c, sizeof(float) * n),
        *best_loss = attack_scratch(c, sizeof(float) * c->batch);
  if (!labels || !truth || !done || !cur || !g || !x0 || !best_loss) {
    return STATUS_ERR_NOMEM;
  }
  attack_labels(c, o, x, y, labels);
  memcpy(x0, x, sizeof(float) * n);
  memcpy(truth, y, sizeof(int) * c->n_labels);
  /* the rows that follow an image when decided ones are dropped */
  const AttackRows rows[] = {{cur, row},
                             {g, row},
                             {x0, row},
                             {best_loss, sizeof(float)},
                             {done, sizeof(int)},
                             {labels, sizeof(int) * c->P},
                             {truth, sizeof(int) * c->P}};
  const int n_rows = sizeof rows / sizeof *rows;
  /* the clean image is the first candidate: an attack never returns a point
   * weaker than it */
  if (!o->last_iterate) {
    attack_loss_grad(c, x0, labels, loss, NULL);
    for (int b = 0; b < c->batch; b++)
      best_loss[b] = c->loss[b], done[b] = attack_image_done(c, o, truth, labels, b);
  }
  const int restarts = is_pgd ? o->restarts : 1;
  for (int r = 0; r < restarts; r++) {
    /* a decided image needs no more steps (training's last iterate: every image does) */
    if (!o->last_iterate && !attack_drop_done(c, done, rows, n_rows)) break;
    if (is_pgd)
      random_start(cur, x0, c->batch, c->per, o->norm, c->eps, c->rng);
    else
      memcpy(cur, x0, row * c->batch);
    for (int t = 0; t <= o->iters; t++) {
      if (o->last_iterate && t == o->iters) {
        memcpy(x_adv, cur, row * c->batch);
        break;
      }
      /* the loss at this iterate, and the gradient for the next step */
      attack_loss_grad(c, cur, labels, loss, t < o->iters ? g : NULL);
      if (!o->last_iterate) {
        keep_strongest(c, o, truth, labels, cur, x_adv, best_loss, done);
        if (!attack_drop_done(c, done, rows, n_rows)) break;
      }
      if (t == o->iters) break;
      ascend(cur, g, c->batch, c->per, o->norm, alpha);
      project(cur, x0, c->batch, c->per, o->norm, c->eps);
    }
  }
  return STATUS_OK;
}
