/* densenet: DenseNet-BC (Huang et al. 2017) in torchvision's layout, so the
 * names match torchvision.models.densenet121:
 *
 *   features.conv0 -> norm0 -> relu0 (-> pool0)
 *   -> [denseblockI: denselayerJ (norm1 relu1 conv1 1x1 4g, norm2 relu2
 *       conv2 3x3 g) each reading the concatenation of all before it
 *       -> transitionI (norm relu conv 1x1 halving channels, avg-pool 2x2)]
 *   -> norm5 -> relu -> global pool -> classifier
 *
 * "densenet" is the small CIFAR-style DenseNet-BC: 3x3 conv0 of 2g channels,
 * no pool0, blocks of block_layers (default 6,6,6), growth g = 12.
 * "densenet121": 7x7/2 conv0 of 64, max-pool 3x3/2, blocks 6,12,24,16,
 * growth 32. A transition's pool is skipped once the map is 1x1. */
#include <stdio.h>
#include <string.h>

#include "models.h"

/* one dense block; returns the concatenation of its input and every layer */
static int dense_block(Net *net, const char *prefix, int src, int layers, int growth) {
  int parts[NET_MAX_INPUTS];
  int n = 0, t = src;
  parts[n++] = src;
  for (int j = 0; j < layers && n < NET_MAX_INPUTS; j++) {
    char p[NAME_LEN + 32], a[NAME_LEN];
    if (snprintf(p, sizeof p, "%s.denselayer%d", prefix, j + 1) >= (int)sizeof p) p[0] = 0;
    model_name(a, p, "norm1");
    int u = net_add_relu(net, net_add_bn(net, a, t));
    model_name(a, p, "conv1");
    u = net_add_conv(net, a, u, 4 * growth, 1, 1, 0, 1, 0);
    model_name(a, p, "norm2");
    u = net_add_relu(net, net_add_bn(net, a, u));
    model_name(a, p, "conv2");
    parts[n++] = net_add_conv(net, a, u, growth, 3, 1, 1, 1, 0);
    t = net_add_concat(net, parts, n);
  }
  return t;
}

Status model_build_densenet(Net *net, MrError *err) {
  const ModelSpec *s = &net->spec;
  const int big = strcmp(s->arch, "densenet121") == 0;
  const int growth = model_channels(net, s->growth);
  int n_blocks = 0;
  while (n_blocks < 4 && s->block_layers[n_blocks] > 0) n_blocks++;
  if (s->growth < 1 || n_blocks == 0)
    return mr_error_set(err, STATUS_ERR_ARG, "%s: growth %d and at least one block needed", s->arch,
                        s->growth);
  for (int b = 0; b < n_blocks; b++)
    if (s->block_layers[b] >= NET_MAX_INPUTS)
      return mr_error_set(err, STATUS_ERR_ARG, "%s: %d layers in a block (at most %d)", s->arch,
                          s->block_layers[b], NET_MAX_INPUTS - 1);
  int t =
      big ? net_add_conv(net, "features.conv0", NET_INPUT, model_channels(net, 64), 7, 2, 3, 1, 0)
          : net_add_conv(net, "features.conv0", NET_INPUT, 2 * growth, 3, 1, 1, 1, 0);
  t = net_add_relu(net, net_add_bn(net, "features.norm0", t));
  if (big) t = net_add_maxpool(net, t, 3, 2, 1);
  for (int b = 0; b < n_blocks; b++) {
    char p[NAME_LEN + 32], a[NAME_LEN];
    snprintf(p, sizeof p, "features.denseblock%d", b + 1);
    t = dense_block(net, p, t, s->block_layers[b], growth);
    if (b == n_blocks - 1 || t < 0) break;
    snprintf(p, sizeof p, "features.transition%d", b + 1);
    model_name(a, p, "norm");
    const int ch = shape_c(net_tensor_shape(net, t));
    t = net_add_relu(net, net_add_bn(net, a, t));
    model_name(a, p, "conv");
    t = net_add_conv(net, a, t, ch / 2, 1, 1, 0, 1, 0);
    const Shape sh = net_tensor_shape(net, t >= 0 ? t : 0);
    if (t >= 0 && shape_h(sh) >= 2 && shape_w(sh) >= 2) t = net_add_avgpool(net, t, 2, 2, 0);
  }
  t = net_add_relu(net, net_add_bn(net, "features.norm5", t));
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "classifier", t, s->n_classes);
  return STATUS_OK;
}
