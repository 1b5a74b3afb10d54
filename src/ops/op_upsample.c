/* upsample row: torch.nn.Upsample(scale_factor=(SH, SW), mode="nearest" or
 * "bilinear", align_corners=False), integer factors. */
#include <stdio.h>

#include "../nn/net.h"

static int upsample_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  const OpAttrs *a = &l->a;
  if (l->in_shape.ndim != 3)
    return snprintf(why, n, "needs a (C,H,W) input, got %d-D", l->in_shape.ndim), 1;
  if (a->scale[0] < 1 || a->scale[1] < 1 || a->scale[0] > 64 || a->scale[1] > 64 ||
      (a->mode != UPSAMPLE_NEAREST && a->mode != UPSAMPLE_BILINEAR))
    return snprintf(why, n, "scale %dx%d (1..64) or mode %d (0 nearest, 1 bilinear)", a->scale[0],
                    a->scale[1], a->mode),
           1;
  l->out_shape = shape_chw(shape_c(l->in_shape), shape_h(l->in_shape) * a->scale[0],
                           shape_w(l->in_shape) * a->scale[1]);
  l->flops = a->mode == UPSAMPLE_BILINEAR ? 8.0 * shape_numel(l->out_shape) : 0.0;
  return 0;
}

static UpsampleDims upsample_dims(const LayerCall *c) {
  const Layer *l = c->l;
  UpsampleDims d = {.B = c->B,
                    .C = shape_c(l->in_shape),
                    .H = shape_h(l->in_shape),
                    .W = shape_w(l->in_shape),
                    .SH = l->a.scale[0],
                    .SW = l->a.scale[1],
                    .bilinear = l->a.mode == UPSAMPLE_BILINEAR,
                    .channels_last = c->channels_last};
  return d;
}

static void upsample_fwd(const LayerCall *c) {
  upsample_forward(c->l->out, call_in(c, 0), upsample_dims(c));
}
static void upsample_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d) upsample_backward(d, c->acc[0], c->l->dout, upsample_dims(c));
}

const OpDef op_upsample = {
    .name = "upsample",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_SCALE | ATTR_MODE,
    .channels_last = 1,
    .infer = upsample_infer,
    .forward = upsample_fwd,
    .backward = upsample_bwd,
};
