/* Pooling rows: maxpool2d (argmax kept for backward), avgpool2d (PyTorch's
 * count_include_pad=True, ceil_mode=False) with rectangular windows and
 * per-side padding, and global average pooling to (C,1,1). */
#include <stdio.h>

#include "../nn/net.h"

static int pool_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  const OpAttrs *a = &l->a;
  if (l->in_shape.ndim != 3)
    return snprintf(why, n, "needs a (C,H,W) input, got %d-D", l->in_shape.ndim), 1;
  if (l->kind == OP_AVGPOOL && (a->dilation[0] != 1 || a->dilation[1] != 1))
    return snprintf(why, n, "average pooling has no dilation (nn.AvgPool2d)"), 1;
  PoolDims d = layer_pool_dims(l, 1);
  if (!pool_dims_finish(&d))
    return snprintf(why, n,
                    "pool %dx%d stride %dx%d dilation %dx%d pad %d,%d,%d,%d does not fit a %dx%d "
                    "input (no side may pad more than half the window; every window must reach "
                    "the image)",
                    a->kernel[0], a->kernel[1], a->stride[0], a->stride[1], a->dilation[0],
                    a->dilation[1], a->pad[0], a->pad[1], a->pad[2], a->pad[3], d.H, d.W),
           1;
  l->out_shape = shape_chw(d.C, d.OH, d.OW);
  /* the geometry completed (0 strides are the window, 0 dilations 1) is what runs */
  l->a.stride[0] = d.SH, l->a.stride[1] = d.SW, l->a.dilation[0] = d.DH, l->a.dilation[1] = d.DW;
  return 0;
}

/* argmax as int32, one per output */
static size_t maxpool_saved(const Layer *l, int B) { return shape_numel(l->out_shape) * B; }

static void maxpool_fwd(const LayerCall *c) {
  (c->channels_last ? maxpool2d_forward_nhwc : maxpool2d_forward)(
      c->l->out, c->forward_only ? NULL : (int32_t *)c->l->saved, call_in(c, 0),
      layer_pool_dims(c->l, c->B));
}
static void maxpool_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    (c->channels_last ? maxpool2d_backward_nhwc : maxpool2d_backward)(
        d, c->acc[0], c->l->dout, (const int32_t *)c->l->saved, layer_pool_dims(c->l, c->B));
}

static void avgpool_fwd(const LayerCall *c) {
  (c->channels_last ? avgpool2d_forward_nhwc : avgpool2d_forward)(c->l->out, call_in(c, 0),
                                                                  layer_pool_dims(c->l, c->B));
}
static void avgpool_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    (c->channels_last ? avgpool2d_backward_nhwc : avgpool2d_backward)(d, c->acc[0], c->l->dout,
                                                                      layer_pool_dims(c->l, c->B));
}

const OpDef op_maxpool2d = {
    .name = "maxpool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_KERNEL | ATTR_STRIDE | ATTR_PAD | ATTR_DILATION,
    .channels_last = 1,
    .infer = pool_infer,
    .saved_floats = maxpool_saved,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
};

const OpDef op_avgpool2d = {
    .name = "avgpool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_KERNEL | ATTR_STRIDE | ATTR_PAD,
    .channels_last = 1,
    .infer = pool_infer,
    .forward = avgpool_fwd,
    .backward = avgpool_bwd,
};

static int gap_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  if (l->in_shape.ndim != 3)
    return snprintf(why, n, "needs a (C,H,W) input, got %d-D", l->in_shape.ndim), 1;
  l->out_shape = shape_chw(shape_c(l->in_shape), 1, 1);
  return 0;
}

static void gap_fwd(const LayerCall *c) {
  const Shape in = c->l->in_shape;
  (c->channels_last ? global_avgpool_forward_nhwc : global_avgpool_forward)(
      c->l->out, call_in(c, 0), c->B, shape_c(in), shape_h(in) * shape_w(in));
}
static void gap_bwd(const LayerCall *c) {
  const Shape in = c->l->in_shape;
  float *d = call_din(c, 0);
  if (d)
    (c->channels_last ? global_avgpool_backward_nhwc : global_avgpool_backward)(
        d, c->acc[0], c->l->dout, c->B, shape_c(in), shape_h(in) * shape_w(in));
}

const OpDef op_global_avgpool = {
    .name = "global_avgpool",
    .min_inputs = 1,
    .max_inputs = 1,
    .channels_last = 1,
    .infer = gap_infer,
    .forward = gap_fwd,
    .backward = gap_bwd,
};
