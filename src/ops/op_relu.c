/* relu row: max(0, x), elementwise, so any layout. The planner folds it into
 * a batchnorm or add that is its only input's only reader. */
#include "../nn/net.h"

static void relu_fwd(const LayerCall *c) {
  relu_forward(c->l->out, call_in(c, 0), shape_numel(c->l->out_shape) * c->B);
}

static void relu_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d) relu_backward(d, c->acc[0], c->l->dout, c->l->out, shape_numel(c->l->out_shape) * c->B);
}

const OpDef op_relu = {
    .name = "relu",
    .min_inputs = 1,
    .max_inputs = 1,
    .channels_last = 1,
    .forward = relu_fwd,
    .backward = relu_bwd,
};
