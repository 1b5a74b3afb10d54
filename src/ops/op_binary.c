/* mul, sub and div rows: a tensor times / minus / over a constant (one
 * input, attribute value) or a second tensor that broadcasts to it (each of
 * its dims equal or 1: per channel (C,1,1), per pixel (1,H,W), scalar). */
#include <stdio.h>
#include <string.h>

#include "../nn/net.h"

static int binary_infer(Net *net, Layer *l, char *why, size_t n) {
  if (l->n_src == 1) {
    if (l->kind == OP_DIV && l->a.value == 0.0f) return snprintf(why, n, "division by 0"), 1;
    return 0;
  }
  const Shape a = l->in_shape, b = net_tensor_shape(net, l->src[1]);
  int ok = a.ndim == b.ndim;
  for (int i = 0; ok && i < a.ndim; i++) ok = b.d[i] == a.d[i] || b.d[i] == 1;
  if (!ok)
    return snprintf(why, n, "a %dx%dx%d tensor does not broadcast to %dx%dx%d", shape_c(b),
                    shape_h(b), shape_w(b), shape_c(a), shape_h(a), shape_w(a)),
           1;
  return 0;
}

static BinaryDims binary_dims(const LayerCall *c) {
  const Layer *l = c->l;
  const Shape a = l->in_shape, b = l->n_src > 1 ? net_tensor_shape(c->net, l->src[1]) : a;
  BinaryDims d = {.B = c->B,
                  .C = shape_c(a),
                  .H = shape_h(a),
                  .W = shape_w(a),
                  .bC = shape_c(b),
                  .bH = shape_h(b),
                  .bW = shape_w(b),
                  .op = l->kind == OP_MUL   ? BINARY_MUL
                        : l->kind == OP_SUB ? BINARY_SUB
                                            : BINARY_DIV,
                  .value = l->a.value,
                  .channels_last = c->channels_last};
  return d;
}

static void binary_fwd(const LayerCall *c) {
  binary_forward(c->l->out, call_in(c, 0), c->l->n_src > 1 ? call_in(c, 1) : NULL, binary_dims(c));
}

static void binary_bwd(const LayerCall *c) {
  const BinaryDims d = binary_dims(c);
  float *db = c->l->n_src > 1 ? call_din(c, 1) : NULL;
  if (db && !c->acc[1]) memset(db, 0, sizeof(float) * d.B * d.bC * d.bH * d.bW);
  binary_backward(call_din(c, 0), c->acc[0], db, c->l->dout, call_in(c, 0),
                  c->l->n_src > 1 ? call_in(c, 1) : NULL, d);
}

#define BINARY_ROW(sym)       \
  const OpDef op_##sym = {    \
      .name = #sym,           \
      .min_inputs = 1,        \
      .max_inputs = 2,        \
      .attrs = ATTR_VALUE,    \
      .channels_last = 1,     \
      .infer = binary_infer,  \
      .forward = binary_fwd,  \
      .backward = binary_bwd, \
  }
BINARY_ROW(mul);
BINARY_ROW(sub);
BINARY_ROW(div);
