/* conv2d row: PyTorch's Conv2d (weight (OC, C/groups, KH, KW), optional
 * bias), rectangular kernels, per-side padding, stride and dilation per
 * axis, groups (depthwise when groups = C). oneDNN when it takes the
 * geometry, else im2col + sgemm (src/layers/conv2d.c). */
#include <math.h>
#include <stdio.h>

#include "../nn/net.h"

static int conv_infer(Net *net, Layer *l, char *why, size_t n) {
  const OpAttrs *a = &l->a;
  if (conv_channels_invalid(l, why, n)) return 1;
  const int C = shape_c(l->in_shape), oc = a->out_channels, g = a->groups;
  l->out_shape = shape_chw(oc, 1, 1);
  Conv2dDims d = layer_conv_dims(l, 1);
  if (!conv2d_dims_finish(&d))
    return snprintf(why, n,
                    "a %dx%d kernel (stride %dx%d, dilation %dx%d, pad %d,%d,%d,%d) does not fit "
                    "a %dx%d input",
                    a->kernel[0], a->kernel[1], a->stride[0], a->stride[1], a->dilation[0],
                    a->dilation[1], a->pad[0], a->pad[1], a->pad[2], a->pad[3], d.H, d.W),
           1;
  l->out_shape = shape_chw(oc, d.OH, d.OW);
  /* the geometry completed (0 strides and dilations are 1) is what runs */
  l->a.stride[0] = d.SH, l->a.stride[1] = d.SW, l->a.dilation[0] = d.DH, l->a.dilation[1] = d.DW;
  const int64_t wshape[4] = {oc, C / g, d.KH, d.KW}, bshape[1] = {oc};
  net_param(net, l, SLOT_WEIGHT, "weight", 4, wshape);
  if (a->bias) net_param(net, l, SLOT_BIAS, "bias", 1, bshape);
  l->flops = 2.0 * oc * d.OH * d.OW * (double)(C / g) * d.KH * d.KW;
  l->flops_inside = 2.0 * conv2d_macs_inside(d);
  return 0;
}

void op_init_he(Layer *l, Rng *rng, int fan_out, size_t n_weight, int n_bias) {
  const float std = sqrtf(2.0f / (float)fan_out);
  for (size_t j = 0; j < n_weight; j++) l->weight[j] = std * rng_normal(rng);
  if (l->bias)
    for (int j = 0; j < n_bias; j++) l->bias[j] = 0.0f;
}

static void conv_init(Layer *l, Rng *rng) {
  const Conv2dDims d = layer_conv_dims(l, 1);
  op_init_he(l, rng, d.OC * d.KH * d.KW, (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW, d.OC);
}

/* im2col columns per thread, then per-thread weight-gradient partial sums */
static size_t conv_scratch(const Layer *l, int B, int threads) {
  const Conv2dDims d = layer_conv_dims(l, B);
  const size_t wsize = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
  return ((conv2d_scratch_floats(d) * threads + 15) & ~(size_t)15) +
         wsize * (threads > 1 ? threads - 1 : 0);
}

static float *conv_wpartial(const LayerCall *c) {
  const Conv2dDims d = layer_conv_dims(c->l, c->B);
  return c->net->scratch +
         ((conv2d_scratch_floats(d) * c->net->planned_threads + 15) & ~(size_t)15);
}

static int conv_prepare(Net *net, Layer *l, int B, int channels_last) {
  (void)net;
  l->dnnl = conv2d_dnnl_create(layer_conv_dims(l, B), l->a.bias, channels_last);
  return l->dnnl != NULL;
}

static void conv_forward(const LayerCall *c) {
  const Layer *l = c->l;
  if (l->dnnl) {
    conv2d_dnnl_forward(l->dnnl, c->net->engine.conv_ws, l->out, call_in(c, 0), l->weight, l->bias);
    return;
  }
  conv2d_forward(l->out, call_in(c, 0), l->weight, l->bias, layer_conv_dims(l, c->B),
                 c->net->scratch);
}

static void conv_backward(const LayerCall *c) {
  const Layer *l = c->l;
  float *dw = c->param_grads ? l->dweight : NULL, *db = c->param_grads ? l->dbias : NULL;
  if (l->dnnl) {
    conv2d_dnnl_backward(l->dnnl, c->net->engine.conv_ws, call_din(c, 0), c->acc[0], dw, db,
                         l->dout, call_in(c, 0), l->weight);
    return;
  }
  conv2d_backward(call_din(c, 0), c->acc[0], dw, db, l->dout, call_in(c, 0), l->weight,
                  layer_conv_dims(l, c->B), c->net->scratch, conv_wpartial(c));
}

const OpDef op_conv2d = {
    .name = "conv2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_OUT_CHANNELS | ATTR_GROUPS | ATTR_BIAS | ATTR_KERNEL | ATTR_STRIDE | ATTR_PAD |
             ATTR_DILATION,
    .channels_last = 1,
    .backward_skips_output = 1,
    .infer = conv_infer,
    .init = conv_init,
    .scratch_floats = conv_scratch,
    .prepare = conv_prepare,
    .forward = conv_forward,
    .backward = conv_backward,
};
