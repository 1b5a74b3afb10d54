/* Shared machinery of the attacks: the losses they ascend, their gradients
 * through the net's logits, projections onto eps balls and [0,1], and
 * per-image bookkeeping of the strongest point found. */
#ifndef MR_ATTACK_H
#define MR_ATTACK_H

#include "medrobust.h"

typedef enum {
  LOSS_CE,        /* cross-entropy of label: ascend to untarget */
  LOSS_CE_TARGET, /* minus cross-entropy of the target: ascend to reach it */
  LOSS_MARGIN,    /* max_{j!=y} z_j - z_y (C&W), >0 means misclassified */
  LOSS_DLR,       /* Croce & Hein's difference of logits ratio (>= 3 classes) */
} LossKind;

typedef struct AttackWorkspace AttackWorkspace;

typedef struct {
  Net *net;
  int batch, k;
  int P;           /* output pixels per image: 1 for a classifier */
  size_t n_labels; /* batch * P: the labels an attack works against */
  size_t per;      /* floats per image */
  float *dlogits, *logits;
  float *loss;         /* per image, of the last call */
  float *eps;          /* per image: AttackOptions.eps_each or eps */
  float *steps;        /* per image scratch for step sizes */
  int *pred;           /* argmax of the last call (per-pixel outputs: pixels at their label) */
  float *hit;          /* per-pixel outputs: the share of pixels at their target (targeted) or
                          away from their label (untargeted), of the last call */
  Rng *rng;            /* per image: its own random stream (AttackOptions.index) */
  int *image;          /* per row: the image of the caller's batch it holds (attack_drop_done) */
  int *keep;           /* attack_drop_done's scratch */
  Mode mode;           /* of every forward pass */
  AttackWorkspace *ws; /* the net's attack arena (workspace.c) */
  int ws_block;        /* its mark when this context opened */
  size_t ws_used, ws_in_use;
} AttackCtx;

/* Opens a context on the net's attack arena; attack_ctx_free releases every
 * buffer taken from it since. */
Status attack_ctx_init(AttackCtx *c, Net *net, int batch, MrError *err);
void attack_ctx_free(AttackCtx *c);
/* Zeroed scratch from the net's attack arena, valid until attack_ctx_free;
 * NULL when out of memory. Planned once per shape: no allocation from the
 * second call of the same batch size and attack on. */
void *attack_scratch(AttackCtx *c, size_t bytes);
void attack_ws_open(AttackCtx *c);
void attack_ws_close(AttackCtx *c);
/* Blocks the net's attack arena has allocated so far (tests). */
long attack_workspace_allocations(Net *net);
/* Forward at x; per-image loss into c->loss, predictions into c->pred, and
 * (if dx) the gradient of each image's loss w.r.t. its pixels. */
void attack_loss_grad(AttackCtx *c, const float *x, const int *labels, LossKind kind, float *dx);
/* The labels an attack works against: y, or the targets (given or least likely). */
void attack_labels(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, int *labels);
/* Untargeted: success when pred != y; targeted: when pred == target. */
int attack_succeeded(const AttackOptions *o, int pred, int y, int target);
/* Whether image b of the last attack_loss_grad is done: attack_succeeded for
 * a classifier; per pixel, a targeted attack that reached its target on the
 * threshold share of the pixels (never for an untargeted one: it keeps the
 * highest loss). */
int attack_image_done(const AttackCtx *c, const AttackOptions *o, const int *y, const int *labels,
                      int b);
/* Zeroed labels for the batch: n_labels ints. */
int *attack_label_scratch(AttackCtx *c);

/* Early stopping: an iterative attack works on rows, one per image still undecided. A row
 * array of the attack's own, `bytes` per image. */
typedef struct {
  void *base;
  size_t bytes;
} AttackRows;
/* Drops the rows whose done flag is set once at most half the rows are left (a smaller batch
 * rebuilds the net's kernels, so not on every success): the others move to the front of every
 * array in rows (done among them), and of c->eps, c->steps, c->rng and c->image, in order;
 * c->batch becomes their count, which is returned (0: every image is done). Per-image results
 * do not depend on the batch, so the survivors go on exactly as they would have. */
int attack_drop_done(AttackCtx *c, const int *done, const AttackRows *rows, int n_rows);
/* After attack_loss_grad at `cur`: per image not yet fooled, keep cur in
 * x_adv (at the row's image, c->image) if it fools the model or beats best_loss; done marks
 * the fooled. */
void keep_strongest(AttackCtx *c, const AttackOptions *o, const int *y, const int *labels,
                    const float *cur, float *x_adv, float *best_loss, int *done);

/* x_adv <- clip_[0,1](proj_{ball(x0, eps[b])}(x_adv)), per image b */
void project(float *x_adv, const float *x0, int batch, size_t per, Norm norm, const float *eps);
/* a <- a + step[b] * direction(g): sign(g) for Linf, g/||g||_2 for L2 */
void ascend(float *x, const float *g, int batch, size_t per, Norm norm, const float *step);
/* steps[b] = the option's step, or factor * eps[b] / iters */
const float *attack_steps(AttackCtx *c, const AttackOptions *o, float factor);
/* A uniform random point of the eps ball around x0 (Linf) or a random
 * direction scaled by eps*u^(1/d) (L2), then clipped to [0,1]; image b draws from rngs[b]. */
void random_start(float *x, const float *x0, int batch, size_t per, Norm norm, const float *eps,
                  Rng *rngs);

Status attack_fgsm(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv);
Status attack_pgd(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv);
Status attack_mifgsm(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv);
Status attack_deepfool(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                       float *x_adv);
Status attack_cw(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv);
Status attack_square(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                     float *x_adv);
Status attack_apgd(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv);
Status attack_jsma(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                   float *x_adv);
Status attack_fmn(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv);
Status attack_dag(AttackCtx *c, const AttackOptions *o, const float *x, const int *y, float *x_adv);
Status attack_standard(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                       float *x_adv);

#endif
