/* add row: the residual sum of two tensors of one shape; applies a
 * following ReLU in its own pass when the planner fuses one. */
#include <stdio.h>

#include "../nn/net.h"

static int shapes_equal(Shape a, Shape b) {
  if (a.ndim != b.ndim) return 0;
  for (int i = 0; i < a.ndim; i++)
    if (a.d[i] != b.d[i]) return 0;
  return 1;
}

static int add_infer(Net *net, Layer *l, char *why, size_t n) {
  const Shape b = net_tensor_shape(net, l->src[1]);
  if (!shapes_equal(l->in_shape, b))
    return snprintf(why, n, "residual add of %dx%dx%d and %dx%dx%d", shape_c(l->in_shape),
                    shape_h(l->in_shape), shape_w(l->in_shape), shape_c(b), shape_h(b), shape_w(b)),
           1;
  return 0;
}

static void add_fwd(const LayerCall *c) {
  add_forward(c->l->out, call_in(c, 0), call_in(c, 1), shape_numel(c->l->out_shape) * c->B,
              c->l->fused_relu);
}

static void add_bwd(const LayerCall *c) {
  add_backward(call_din(c, 0), c->acc[0], call_din(c, 1), c->acc[1], c->l->dout,
               c->l->fused_relu ? c->l->out : NULL, shape_numel(c->l->out_shape) * c->B);
}

const OpDef op_add = {
    .name = "add",
    .min_inputs = 2,
    .max_inputs = 2,
    .channels_last = 1,
    .fuses_relu = 1,
    .may_overwrite_input = 1,
    .infer = add_infer,
    .forward = add_fwd,
    .backward = add_bwd,
};
