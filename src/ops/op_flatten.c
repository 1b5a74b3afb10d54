/* flatten row: (C,H,W) -> (C*H*W). The flat features keep PyTorch's (C,H,W)
 * order whatever the layout, so a dense layer's weights mean the same thing
 * on every backend. */
#include <string.h>

#include "../nn/net.h"

static int flatten_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net, (void)why, (void)n;
  l->out_shape = shape_flat((int)shape_numel(l->in_shape));
  return 0;
}

static int spatial(const Layer *l) {
  return l->in_shape.ndim >= 3 ? shape_h(l->in_shape) * shape_w(l->in_shape) : 1;
}

static void flatten_fwd(const LayerCall *c) {
  const float *x = call_in(c, 0);
  const int hw = spatial(c->l);
  if (c->channels_last && hw > 1)
    nhwc_to_nchw(c->l->out, 0, x, c->B, shape_c(c->l->in_shape), hw);
  else
    memcpy(c->l->out, x, sizeof(float) * shape_numel(c->l->out_shape) * c->B);
}

static void flatten_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (!d) return;
  const int hw = spatial(c->l);
  if (c->channels_last && hw > 1) {
    nchw_to_nhwc(d, c->acc[0], c->l->dout, c->B, shape_c(c->l->in_shape), hw);
    return;
  }
  const size_t n = shape_numel(c->l->out_shape) * c->B;
  const float *g = c->l->dout;
  for (size_t i = 0; i < n; i++) d[i] = c->acc[0] ? d[i] + g[i] : g[i];
}

const OpDef op_flatten = {
    .name = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .channels_last = 1,
    .infer = flatten_infer,
    .forward = flatten_fwd,
    .backward = flatten_bwd,
};
