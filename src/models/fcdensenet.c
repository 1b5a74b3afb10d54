/* fc-densenet: the fully convolutional DenseNet ("Tiramisu", Jegou et al.
 * 2017): dense blocks with short skips (each layer reads everything before
 * it in its block) and long skips (encoder blocks concatenated into the
 * decoder).
 *
 *   first_conv 3x3, base channels (48 in the paper)
 *   down{i} (i < depth): dense block of L layers (BN -> ReLU -> conv 3x3,
 *                growth g), its input concatenated with its layers = skip_i;
 *                td{i}: BN -> ReLU -> conv 1x1 -> max-pool 2x2/2
 *   mid:         dense block of L layers; only its new features go up
 *   up{i} (i = depth-1..0): tu{i} transposed conv 3x3/2 (or bilinear + 1x1)
 *                of those features, concat with skip_i, dense block of L
 *   head:        conv 1x1 -> K class scores per pixel
 *
 * FC-DenseNet56 is depth 5, L 4, g 12; the defaults here (depth 3, L 4,
 * g 12) fit small images. Dropout is omitted (0.2 in the paper). */
#include <stdio.h>

#include "models.h"

/* L dense layers on src; *full = concat(src, layers), returns concat(layers) */
static int tiramisu_block(Net *net, const char *prefix, int src, int layers, int growth,
                          int *full) {
  int all[NET_MAX_INPUTS], n = 0, t = src;
  all[n++] = src;
  for (int j = 0; j < layers && n < NET_MAX_INPUTS; j++) {
    char p[NAME_LEN + 32], a[NAME_LEN];
    if (snprintf(p, sizeof p, "%s.layer%d", prefix, j) >= (int)sizeof p) p[0] = 0;
    model_name(a, p, "norm");
    const int u = net_add_relu(net, net_add_bn(net, a, t));
    model_name(a, p, "conv");
    all[n++] = net_add_conv(net, a, u, growth, 3, 1, 1, 1, 1);
    t = net_add_concat(net, all, n);
  }
  *full = t;
  return net_add_concat(net, all + 1, n - 1);
}

Status model_build_fc_densenet(Net *net, MrError *err) {
  const ModelSpec *s = &net->spec;
  const int d = s->depth, L = s->block_layers[0], g = model_channels(net, s->growth);
  if (d < 1 || d > 8 || L < 1 || L >= NET_MAX_INPUTS || s->growth < 1 || s->base < 1)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: depth %d (1..8), %d layers per block, growth %d, base %d invalid",
                        s->arch, d, L, s->growth, s->base);
  if (s->in_h % (1 << d) || s->in_w % (1 << d))
    return mr_error_set(err, STATUS_ERR_ARG, "%s: input %dx%d must be divisible by 2^depth = %d",
                        s->arch, s->in_h, s->in_w, 1 << d);
  int skip[8], full,
      t = net_add_conv(net, "first_conv", NET_INPUT, model_channels(net, s->base), 3, 1, 1, 1, 1);
  char p[NAME_LEN], a[NAME_LEN];
  for (int i = 0; i < d; i++) {
    snprintf(p, sizeof p, "down%d", i);
    tiramisu_block(net, p, t, L, g, &skip[i]);
    snprintf(p, sizeof p, "td%d", i);
    model_name(a, p, "norm");
    t = net_add_relu(net, net_add_bn(net, a, skip[i]));
    model_name(a, p, "conv");
    const int ch = skip[i] >= 0 ? shape_c(net_tensor_shape(net, skip[i])) : 1;
    t = net_add_maxpool(net, net_add_conv(net, a, t, ch, 1, 1, 0, 1, 1), 2, 2, 0);
  }
  int fresh = tiramisu_block(net, "mid", t, L, g, &full);
  for (int i = d - 1; i >= 0; i--) {
    snprintf(p, sizeof p, "tu%d", i);
    const int ch = fresh >= 0 ? shape_c(net_tensor_shape(net, fresh)) : 1;
    int up;
    if (s->decoder_up) {
      up = model_up2(net, p, fresh, ch, 1);
    } else {
      OpAttrs at = op_attrs_default();
      at.out_channels = ch, at.bias = 1, at.kernel[0] = at.kernel[1] = 3;
      at.stride[0] = at.stride[1] = 2, at.pad[0] = at.pad[1] = at.pad[2] = at.pad[3] = 1;
      at.output_padding[0] = at.output_padding[1] = 1;
      up = net_add(net, OP_CONV_TRANSPOSE2D, p, (int[]){fresh}, 1, &at);
    }
    snprintf(p, sizeof p, "up%d", i);
    fresh = tiramisu_block(net, p, net_add_concat(net, (int[]){up, skip[i]}, 2), L, g, &full);
  }
  net_add_conv(net, "head", full, s->n_classes, 1, 1, 0, 1, 1);
  return STATUS_OK;
}
