/* dense row: PyTorch's Linear (weight (O, I), bias (O)) on a flat input
 * (I) or a (I,1,1) map. Initialised as PyTorch does: uniform(+-1/sqrt(I)). */
#include <math.h>
#include <stdio.h>

#include "../nn/net.h"

static int dense_infer(Net *net, Layer *l, char *why, size_t n) {
  if (l->in_shape.ndim != 1 &&
      !(l->in_shape.ndim == 3 && shape_h(l->in_shape) == 1 && shape_w(l->in_shape) == 1))
    return snprintf(why, n, "dense layer needs a flat input, got %dx%dx%d", shape_c(l->in_shape),
                    shape_h(l->in_shape), shape_w(l->in_shape)),
           1;
  const int in = shape_c(l->in_shape), out = l->a.out_channels;
  if (out < 1) return snprintf(why, n, "%d outputs", out), 1;
  l->out_shape = shape_flat(out);
  const int64_t wshape[2] = {out, in}, bshape[1] = {out};
  net_param(net, l, SLOT_WEIGHT, "weight", 2, wshape);
  net_param(net, l, SLOT_BIAS, "bias", 1, bshape);
  l->flops = 2.0 * out * in;
  return 0;
}

static void dense_init(Layer *l, Rng *rng) {
  const int in = shape_c(l->in_shape), out = shape_c(l->out_shape);
  const float bound = 1.0f / sqrtf((float)in);
  for (size_t j = 0; j < (size_t)out * in; j++)
    l->weight[j] = bound * (2.0f * rng_uniform(rng) - 1.0f);
  for (int j = 0; j < out; j++) l->bias[j] = bound * (2.0f * rng_uniform(rng) - 1.0f);
}

static void dense_fwd(const LayerCall *c) {
  dense_forward(c->l->out, call_in(c, 0), c->l->weight, c->l->bias, c->B, shape_c(c->l->in_shape),
                shape_c(c->l->out_shape));
}

static void dense_bwd(const LayerCall *c) {
  const Layer *l = c->l;
  dense_backward(call_din(c, 0), c->acc[0], c->param_grads ? l->dweight : NULL,
                 c->param_grads ? l->dbias : NULL, l->dout, call_in(c, 0), l->weight, c->B,
                 shape_c(l->in_shape), shape_c(l->out_shape));
}

const OpDef op_dense = {
    .name = "dense",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_OUT_CHANNELS,
    .channels_last = 1,
    .infer = dense_infer,
    .init = dense_init,
    .forward = dense_fwd,
    .backward = dense_bwd,
};
