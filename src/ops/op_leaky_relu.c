/* leaky_relu row: x for x > 0, value * x otherwise (nn.LeakyReLU's
 * negative_slope in attribute value), elementwise (any layout). */
#include "../nn/net.h"

static void leaky_fwd(const LayerCall *c) {
  leaky_relu_forward(c->l->out, call_in(c, 0), shape_numel(c->l->out_shape) * c->B, c->l->a.value);
}

static void leaky_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    leaky_relu_backward(d, c->acc[0], c->l->dout, call_in(c, 0),
                        shape_numel(c->l->out_shape) * c->B, c->l->a.value);
}

const OpDef op_leaky_relu = {
    .name = "leaky_relu",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_VALUE,
    .channels_last = 1,
    .forward = leaky_fwd,
    .backward = leaky_bwd,
};
