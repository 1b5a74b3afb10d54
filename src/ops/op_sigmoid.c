/* sigmoid row: 1 / (1 + exp(-x)), elementwise (any layout). */
#include "../nn/net.h"

static void sigmoid_fwd(const LayerCall *c) {
  sigmoid_forward(c->l->out, call_in(c, 0), shape_numel(c->l->out_shape) * c->B);
}

static void sigmoid_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d) sigmoid_backward(d, c->acc[0], c->l->dout, c->l->out, shape_numel(c->l->out_shape) * c->B);
}

const OpDef op_sigmoid = {
    .name = "sigmoid",
    .min_inputs = 1,
    .max_inputs = 1,
    .channels_last = 1,
    .forward = sigmoid_fwd,
    .backward = sigmoid_bwd,
};
