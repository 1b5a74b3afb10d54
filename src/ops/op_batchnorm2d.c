/* batchnorm2d row: PyTorch's BatchNorm2d (weight, bias, running_mean,
 * running_var, num_batches_tracked), eps and momentum as attributes; it
 * applies a following ReLU in its own pass when the planner fuses one. */
#include <stdio.h>

#include "../nn/net.h"

static int bn_infer(Net *net, Layer *l, char *why, size_t n) {
  if (l->in_shape.ndim != 3)
    return snprintf(why, n, "needs a (C,H,W) input, got %d-D", l->in_shape.ndim), 1;
  if (!(l->a.eps > 0.0f) || !(l->a.momentum >= 0.0f && l->a.momentum <= 1.0f))
    return snprintf(why, n, "eps %g must be > 0 and momentum %g in [0,1]", l->a.eps, l->a.momentum),
           1;
  const int64_t shape[1] = {shape_c(l->in_shape)};
  net_param(net, l, SLOT_WEIGHT, "weight", 1, shape);
  net_param(net, l, SLOT_BIAS, "bias", 1, shape);
  net_param(net, l, SLOT_RUNNING_MEAN, "running_mean", 1, shape);
  net_param(net, l, SLOT_RUNNING_VAR, "running_var", 1, shape);
  net_param(net, l, SLOT_COUNTER, "num_batches_tracked", 0, NULL);
  return 0;
}

static void bn_init(Layer *l, Rng *rng) {
  (void)rng;
  for (int j = 0; j < shape_c(l->in_shape); j++) {
    l->weight[j] = 1.0f, l->bias[j] = 0.0f;
    l->running_mean[j] = 0.0f, l->running_var[j] = 1.0f;
  }
  *l->num_batches_tracked = 0;
}

/* the batch mean and inverse std, for backward */
static size_t bn_saved(const Layer *l, int B) {
  (void)B;
  return 2 * (size_t)shape_c(l->in_shape);
}

/* the channels-last kernels' partial sums */
static size_t bn_scratch(const Layer *l, int B, int threads) {
  (void)B, (void)threads;
  return (batchnorm2d_nhwc_scratch_bytes(shape_c(l->in_shape)) + sizeof(float) - 1) / sizeof(float);
}

/* pool2: channels-last with a pool fused (net_fuse_pools), whose buffers batchnorm then writes
 * and reads (bn_out) */
static BatchNormDims bn_dims(const LayerCall *c) {
  const Layer *l = c->l;
  const int B = c->B;
  BatchNormDims d = {.B = B,
                     .C = shape_c(l->in_shape),
                     .H = shape_h(l->in_shape),
                     .W = shape_w(l->in_shape),
                     .eps = l->a.eps,
                     .momentum = l->a.momentum,
                     .share = c->mode == MODE_TRAIN ? c->net->share : NULL,
                     .pool2 = c->channels_last && l->pool_fused};
  return d;
}

/* the output (or its gradient, grad) batchnorm writes: the fused pool layer's when d.pool2 */
static float *bn_out(const LayerCall *c, BatchNormDims d, int grad) {
  const Layer *l = d.pool2 ? &c->net->layers[c->l->pool_fused - 1] : c->l;
  return grad ? l->dout : l->out;
}

static void bn_forward(const LayerCall *c) {
  Layer *l = c->l;
  float *mean = l->saved, *invstd = l->saved + shape_c(l->in_shape);
  const BatchNormDims d = bn_dims(c);
  if (c->channels_last)
    batchnorm2d_forward_nhwc(bn_out(c, d, 0), mean, invstd, call_in(c, 0), l->weight, l->bias,
                             l->running_mean, l->running_var, l->num_batches_tracked, d, c->mode,
                             l->fused_relu, c->net->scratch);
  else
    batchnorm2d_forward(l->out, mean, invstd, call_in(c, 0), l->weight, l->bias, l->running_mean,
                        l->running_var, l->num_batches_tracked, bn_dims(c), c->mode, l->fused_relu);
}

static void bn_backward(const LayerCall *c) {
  const Layer *l = c->l;
  float *dgamma = c->param_grads ? l->dweight : NULL, *dbeta = c->param_grads ? l->dbias : NULL;
  const float *mean = l->saved, *invstd = l->saved + shape_c(l->in_shape);
  const BatchNormDims d = bn_dims(c);
  if (c->channels_last)
    batchnorm2d_backward_nhwc(call_din(c, 0), c->acc[0], dgamma, dbeta, bn_out(c, d, 1),
                              call_in(c, 0), l->weight, l->bias, mean, invstd, d, c->mode,
                              l->fused_relu, c->net->scratch);
  else
    batchnorm2d_backward(call_din(c, 0), c->acc[0], dgamma, dbeta, l->dout, call_in(c, 0),
                         l->weight, l->bias, mean, invstd, bn_dims(c), c->mode, l->fused_relu);
}

const OpDef op_batchnorm2d = {
    .name = "batchnorm2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_EPS | ATTR_MOMENTUM,
    .channels_last = 1,
    .fuses_relu = 1,
    .backward_skips_output = 1,
    .infer = bn_infer,
    .init = bn_init,
    .saved_floats = bn_saved,
    .scratch_floats = bn_scratch,
    .forward = bn_forward,
    .backward = bn_backward,
};
