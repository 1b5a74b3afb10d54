/* Optimisers as flat loops over the parameter arena, PyTorch semantics:
 * SGD with momentum (dampening 0, optional Nesterov) and L2 weight decay;
 * Adam with bias correction and L2 weight decay added to the gradient. */
#include <math.h>
#include <stdlib.h>

#include "medrobust.h"

Status optim_init(Optimizer *opt, OptimKind kind, size_t n_params, MrError *err) {
  opt->kind = kind;
  opt->n = n_params;
  opt->step = 0;
  if (kind == OPTIM_SGD) {
    if (opt->lr == 0.0f) opt->lr = 0.1f;
  } else {
    if (opt->lr == 0.0f) opt->lr = 1e-3f;
    if (opt->beta1 == 0.0f) opt->beta1 = 0.9f;
    if (opt->beta2 == 0.0f) opt->beta2 = 0.999f;
    if (opt->eps == 0.0f) opt->eps = 1e-8f;
  }
  opt->state1 = calloc(n_params ? n_params : 1, sizeof(float));
  opt->state2 = kind == OPTIM_ADAM ? calloc(n_params ? n_params : 1, sizeof(float)) : NULL;
  if (!opt->state1 || (kind == OPTIM_ADAM && !opt->state2)) {
    optim_free(opt);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for optimiser state");
  }
  return STATUS_OK;
}

void optim_step(Optimizer *opt, float *params, const float *grads) {
  const size_t n = opt->n;
  const float lr = opt->lr, wd = opt->weight_decay;
  opt->step++;
  if (opt->kind == OPTIM_SGD) {
    const float mu = opt->momentum;
    float *buf = opt->state1;
    const int first = opt->step == 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
      float g = grads[i] + wd * params[i];
      if (mu != 0.0f) {
        buf[i] = first ? g : mu * buf[i] + g;
        g = opt->nesterov ? g + mu * buf[i] : buf[i];
      }
      params[i] -= lr * g;
    }
  } else {
    const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    const float c1 = 1.0f - powf(b1, (float)opt->step), c2 = 1.0f - powf(b2, (float)opt->step);
    float *m = opt->state1, *v = opt->state2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
      const float g = grads[i] + wd * params[i];
      m[i] = b1 * m[i] + (1.0f - b1) * g;
      v[i] = b2 * v[i] + (1.0f - b2) * g * g;
      params[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
  }
}

void optim_free(Optimizer *opt) {
  free(opt->state1);
  free(opt->state2);
  opt->state1 = opt->state2 = NULL;
}
