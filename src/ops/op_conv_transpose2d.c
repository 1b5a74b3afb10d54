/* conv_transpose2d row: PyTorch's ConvTranspose2d (weight (C, OC/groups,
 * KH, KW), optional bias, output_padding). A transposed convolution is the
 * input gradient of the "mirror" convolution from its output to its input,
 * so it runs on the same kernels: forward = mirror backward-data, input
 * gradient = mirror forward, weight gradient = mirror backward-weights with
 * the roles of input and output gradient swapped. */
#include <stdio.h>
#include <string.h>

#include "../nn/net.h"

/* the convolution whose input gradient this layer computes: input = our
 * output, output = our input */
static Conv2dDims mirror_dims(const Layer *l, int B) {
  return conv_dims_between(l, l->out_shape, l->in_shape, B);
}

static int convt_infer(Net *net, Layer *l, char *why, size_t n) {
  const OpAttrs *a = &l->a;
  if (conv_channels_invalid(l, why, n)) return 1;
  const int C = shape_c(l->in_shape), oc = a->out_channels, g = a->groups;
  const int dh = a->dilation[0] > 0 ? a->dilation[0] : 1,
            dw = a->dilation[1] > 0 ? a->dilation[1] : 1;
  const int sh = a->stride[0], sw = a->stride[1];
  if (a->kernel[0] < 1 || a->kernel[1] < 1 || sh < 1 || sw < 1 || a->output_padding[0] < 0 ||
      a->output_padding[1] < 0 || (a->output_padding[0] >= sh && a->output_padding[0] >= dh) ||
      (a->output_padding[1] >= sw && a->output_padding[1] >= dw))
    return snprintf(why, n,
                    "kernel %dx%d, stride %dx%d, output padding %dx%d (must be below the stride "
                    "or the dilation)",
                    a->kernel[0], a->kernel[1], sh, sw, a->output_padding[0], a->output_padding[1]),
           1;
  const int OH = (shape_h(l->in_shape) - 1) * sh - a->pad[0] - a->pad[1] + dh * (a->kernel[0] - 1) +
                 a->output_padding[0] + 1;
  const int OW = (shape_w(l->in_shape) - 1) * sw - a->pad[2] - a->pad[3] + dw * (a->kernel[1] - 1) +
                 a->output_padding[1] + 1;
  if (OH < 1 || OW < 1)
    return snprintf(why, n, "the padding leaves an empty %dx%d output", OH, OW), 1;
  l->out_shape = shape_chw(oc, OH, OW);
  Conv2dDims m = mirror_dims(l, 1);
  if (!conv2d_dims_finish(&m) || m.OH != shape_h(l->in_shape) || m.OW != shape_w(l->in_shape))
    return snprintf(why, n, "inconsistent geometry for a %dx%d input", shape_h(l->in_shape),
                    shape_w(l->in_shape)),
           1;
  const int64_t wshape[4] = {C, oc / g, a->kernel[0], a->kernel[1]}, bshape[1] = {oc};
  net_param(net, l, SLOT_WEIGHT, "weight", 4, wshape);
  if (a->bias) net_param(net, l, SLOT_BIAS, "bias", 1, bshape);
  l->flops = 2.0 * C * shape_h(l->in_shape) * shape_w(l->in_shape) * (double)(oc / g) *
             a->kernel[0] * a->kernel[1];
  l->flops_inside = 2.0 * conv2d_macs_inside(m); /* its mirror convolution's */
  return 0;
}

/* He-normal over the inputs each output sees: C/groups * KH*KW / (SH*SW) */
static void convt_init(Layer *l, Rng *rng) {
  const Conv2dDims m = mirror_dims(l, 1);
  int fan = (m.OC / m.groups) * m.KH * m.KW / (m.SH * m.SW);
  if (fan < 1) fan = 1;
  op_init_he(l, rng, fan, (size_t)m.OC * (m.C / m.groups) * m.KH * m.KW, m.C);
}

/* [input-gradient staging (accumulating backward)] [im2col columns] [weight partials] */
static size_t stage_floats(const Layer *l, int B) {
  return (shape_numel(l->in_shape) * B + 15) & ~(size_t)15;
}
static size_t col_floats(const Layer *l, int B, int threads) {
  return (conv2d_scratch_floats(mirror_dims(l, B)) * threads + 15) & ~(size_t)15;
}
static size_t convt_scratch(const Layer *l, int B, int threads) {
  const Conv2dDims m = mirror_dims(l, B);
  const size_t wsize = (size_t)m.OC * (m.C / m.groups) * m.KH * m.KW;
  return stage_floats(l, B) + col_floats(l, B, threads) + wsize * (threads > 1 ? threads - 1 : 0);
}

static int convt_prepare(Net *net, Layer *l, int B, int channels_last) {
  (void)net;
  l->dnnl = conv2d_dnnl_create(mirror_dims(l, B), 0, channels_last);
  return l->dnnl != NULL;
}

static void add_bias(float *out, const float *bias, int B, int C, int HW, int channels_last) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float *o = out + (size_t)b * C * HW;
    if (channels_last) {
      for (int p = 0; p < HW; p++)
        for (int c = 0; c < C; c++) o[(size_t)p * C + c] += bias[c];
    } else {
      for (int c = 0; c < C; c++)
        for (int p = 0; p < HW; p++) o[(size_t)c * HW + p] += bias[c];
    }
  }
}

static void convt_forward(const LayerCall *c) {
  const Layer *l = c->l;
  float *col = c->net->scratch + stage_floats(l, c->B);
  if (l->dnnl)
    conv2d_dnnl_backward(l->dnnl, c->net->engine.conv_ws, l->out, 0, NULL, NULL, call_in(c, 0),
                         NULL, l->weight);
  else
    conv2d_backward(l->out, 0, NULL, NULL, call_in(c, 0), NULL, l->weight, mirror_dims(l, c->B),
                    col, NULL);
  if (l->bias)
    add_bias(l->out, l->bias, c->B, shape_c(l->out_shape),
             shape_h(l->out_shape) * shape_w(l->out_shape), c->channels_last);
}

static void convt_backward(const LayerCall *c) {
  const Layer *l = c->l;
  const int B = c->B;
  float *stage = c->net->scratch, *col = stage + stage_floats(l, B);
  float *wpartial = col + col_floats(l, B, c->net->planned_threads);
  const Conv2dDims m = mirror_dims(l, B);
  float *dx = call_din(c, 0);
  if (dx) {
    float *target = c->acc[0] ? stage : dx;
    if (l->dnnl)
      conv2d_dnnl_forward(l->dnnl, c->net->engine.conv_ws, target, l->dout, l->weight, NULL);
    else
      conv2d_forward(target, l->dout, l->weight, NULL, m, col);
    if (c->acc[0]) {
      const size_t n = shape_numel(l->in_shape) * B;
      for (size_t i = 0; i < n; i++) dx[i] += stage[i];
    }
  }
  if (!c->param_grads) return;
  if (l->dnnl)
    conv2d_dnnl_backward(l->dnnl, c->net->engine.conv_ws, NULL, 0, l->dweight, NULL, call_in(c, 0),
                         l->dout, l->weight);
  else
    conv2d_backward(NULL, 0, l->dweight, NULL, call_in(c, 0), l->dout, l->weight, m, col, wpartial);
  if (l->dbias) {
    const int C = shape_c(l->out_shape), HW = shape_h(l->out_shape) * shape_w(l->out_shape);
    for (int ch = 0; ch < C; ch++) {
      double s = 0.0;
      for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++) {
          const size_t at =
              c->channels_last ? ((size_t)b * HW + p) * C + ch : ((size_t)b * C + ch) * HW + p;
          s += l->dout[at];
        }
      l->dbias[ch] += (float)s;
    }
  }
}

const OpDef op_conv_transpose2d = {
    .name = "conv_transpose2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_OUT_CHANNELS | ATTR_GROUPS | ATTR_BIAS | ATTR_KERNEL | ATTR_STRIDE | ATTR_PAD |
             ATTR_DILATION | ATTR_OUTPUT_PADDING,
    .channels_last = 1,
    .infer = convt_infer,
    .init = convt_init,
    .scratch_floats = convt_scratch,
    .prepare = convt_prepare,
    .forward = convt_forward,
    .backward = convt_backward,
};
