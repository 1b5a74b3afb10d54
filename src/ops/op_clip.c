/* clip row: min(max(x, lo), hi), elementwise; ReLU6 is clip(0, 6)
 * (torch.nn.ReLU6, torch.clamp). */
#include <stdio.h>

#include "../nn/net.h"

static int clip_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  if (!(l->a.lo <= l->a.hi)) return snprintf(why, n, "clip to [%g, %g]", l->a.lo, l->a.hi), 1;
  return 0;
}

static void clip_fwd(const LayerCall *c) {
  clip_forward(c->l->out, call_in(c, 0), shape_numel(c->l->out_shape) * c->B, c->l->a.lo,
               c->l->a.hi);
}

static void clip_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    clip_backward(d, c->acc[0], c->l->dout, call_in(c, 0), shape_numel(c->l->out_shape) * c->B,
                  c->l->a.lo, c->l->a.hi);
}

const OpDef op_clip = {
    .name = "clip",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_LO | ATTR_HI,
    .channels_last = 1,
    .infer = clip_infer,
    .forward = clip_fwd,
    .backward = clip_bwd,
};
