/* shortcut_pad row: the CIFAR ResNet option-A shortcut, subsampling by the
 * stride (per axis) and padding channels with zeros on both sides; also zeros
 * around the spatial sides (attribute pad), as ONNX's constant Pad. */
#include <stdio.h>

#include "../nn/net.h"

static int shortcut_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  const int sh = l->a.stride[0], sw = l->a.stride[1], oc = l->a.out_channels;
  const int *p = l->a.pad;
  if (l->in_shape.ndim != 3 || sh < 1 || sw < 1 || oc < shape_c(l->in_shape) || p[0] < 0 ||
      p[1] < 0 || p[2] < 0 || p[3] < 0 || p[0] + p[1] > 4096 || p[2] + p[3] > 4096)
    return snprintf(why, n,
                    "zero padding from %d to %d channels, stride %dx%d, pads %d,%d,%d,%d "
                    "(none negative)",
                    shape_c(l->in_shape), oc, sh, sw, p[0], p[1], p[2], p[3]),
           1;
  l->out_shape = shape_chw(oc, p[0] + (shape_h(l->in_shape) + sh - 1) / sh + p[1],
                           p[2] + (shape_w(l->in_shape) + sw - 1) / sw + p[3]);
  return 0;
}

static ShortcutDims shortcut_dims(const Layer *l, int B) {
  ShortcutDims d = {.B = B,
                    .C = shape_c(l->in_shape),
                    .H = shape_h(l->in_shape),
                    .W = shape_w(l->in_shape),
                    .OC = shape_c(l->out_shape),
                    .OH = shape_h(l->out_shape),
                    .OW = shape_w(l->out_shape),
                    .SH = l->a.stride[0],
                    .SW = l->a.stride[1],
                    .PT = l->a.pad[0],
                    .PL = l->a.pad[2]};
  return d;
}

static void shortcut_fwd(const LayerCall *c) {
  (c->channels_last ? shortcut_pad_forward_nhwc : shortcut_pad_forward)(c->l->out, call_in(c, 0),
                                                                        shortcut_dims(c->l, c->B));
}
static void shortcut_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    (c->channels_last ? shortcut_pad_backward_nhwc : shortcut_pad_backward)(
        d, c->acc[0], c->l->dout, shortcut_dims(c->l, c->B));
}

const OpDef op_shortcut_pad = {
    .name = "shortcut_pad",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_OUT_CHANNELS | ATTR_STRIDE | ATTR_PAD,
    .channels_last = 1,
    .infer = shortcut_infer,
    .forward = shortcut_fwd,
    .backward = shortcut_bwd,
};
