/* cnn: a plain stack of conv-BN-ReLU-pool blocks, channels doubling each block,
 * then global average pooling, optional dropout and a linear classifier.
 *
 *   input -> [features.i.conv kxk -> features.i.bn -> relu -> pool] x depth
 *         -> global avg pool -> (dropout) -> fc
 *
 * Preset cbr-larget is paper 004's CBR-LargeT: 5 blocks, 32 filters of 7x7
 * doubling, max-pool 3x3 stride 2 (padding 1, our choice, so 28x28 inputs
 * keep a 1x1 map after five pools). A pool is skipped once the map is 1x1. */
#include <stdio.h>

#include "models.h"

Status model_build_cnn(Net *net, MrError *err) {
  const ModelSpec *s = &net->spec;
  if (s->depth < 1 || s->depth > 12 || s->kernel < 1 || s->base < 1)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "cnn: depth %d (1..12), kernel %d, base %d are invalid", s->depth,
                        s->kernel, s->base);
  int t = NET_INPUT, ch = s->base;
  for (int i = 0; i < s->depth; i++, ch *= 2) {
    char conv[NAME_LEN], bn[NAME_LEN];
    snprintf(conv, sizeof conv, "features.%d.conv", i);
    snprintf(bn, sizeof bn, "features.%d.bn", i);
    t = net_add_conv(net, conv, t, model_channels(net, ch), s->kernel, 1, s->kernel / 2, 1, 0);
    t = net_add_relu(net, net_add_bn(net, bn, t));
    if (t < 0) break;
    const Shape sh = net_tensor_shape(net, t);
    if (shape_h(sh) < 2 || shape_w(sh) < 2 || s->pool == 0) continue;
    if (s->pool == 1)
      t = net_add_maxpool(net, t, 2, 2, 0);
    else if (s->pool == 2)
      t = net_add_avgpool(net, t, 2, 2, 0);
    else
      t = net_add_maxpool(net, t, 3, 2, 1);
  }
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "fc", t, s->n_classes);
  return STATUS_OK;
}
