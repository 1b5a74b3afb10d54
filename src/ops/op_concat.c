/* concat row: n-way concatenation along channels (torch.cat(dim=1)) of
 * tensors with one spatial size, or of flat tensors. */
#include <stdio.h>

#include "../nn/net.h"

static int concat_infer(Net *net, Layer *l, char *why, size_t n) {
  int channels = 0;
  for (int k = 0; k < l->n_src; k++) {
    const Shape s = net_tensor_shape(net, l->src[k]);
    if (s.ndim != l->in_shape.ndim || shape_h(s) != shape_h(l->in_shape) ||
        shape_w(s) != shape_w(l->in_shape))
      return snprintf(why, n, "input %d is %dx%dx%d, input 0 is %dx%dx%d: only channels may differ",
                      k, shape_c(s), shape_h(s), shape_w(s), shape_c(l->in_shape),
                      shape_h(l->in_shape), shape_w(l->in_shape)),
             1;
    channels += shape_c(s);
  }
  l->out_shape = l->in_shape;
  l->out_shape.d[0] = channels;
  return 0;
}

static void concat_fwd(const LayerCall *c) {
  const Layer *l = c->l;
  const float *in[NET_MAX_INPUTS];
  int C[NET_MAX_INPUTS];
  for (int k = 0; k < l->n_src; k++) {
    in[k] = call_in(c, k);
    C[k] = shape_c(net_tensor_shape(c->net, l->src[k]));
  }
  concat_forward(l->out, in, C, l->n_src, c->B, shape_h(l->out_shape) * shape_w(l->out_shape),
                 c->channels_last);
}

static void concat_bwd(const LayerCall *c) {
  const Layer *l = c->l;
  float *din[NET_MAX_INPUTS];
  int C[NET_MAX_INPUTS];
  for (int k = 0; k < l->n_src; k++) {
    din[k] = call_din(c, k);
    C[k] = shape_c(net_tensor_shape(c->net, l->src[k]));
  }
  concat_backward(din, c->acc, l->dout, C, l->n_src, c->B,
                  shape_h(l->out_shape) * shape_w(l->out_shape), c->channels_last);
}

const OpDef op_concat = {
    .name = "concat",
    .min_inputs = 1,
    .max_inputs = NET_MAX_INPUTS,
    .channels_last = 1,
    .infer = concat_infer,
    .forward = concat_fwd,
    .backward = concat_bwd,
};
