/* vgg11 / vgg16 with batch norm, torchvision's vgg*_bn feature stack:
 *
 *   features: [conv3x3 -> bn -> relu]* with 'M' max-pool 2x2/2 between stages
 *   -> global avg pool -> classifier (one Linear)
 *
 * Adapted to small images and 2 cores: a width multiplier scales every
 * stage, a max-pool is skipped once the map is 1x1 (its Sequential index is
 * still counted, as an nn.Identity would be, so names match), and the
 * 4096-wide classifier is one Linear, as in the usual CIFAR variants. */
#include <stdio.h>
#include <string.h>

#include "models.h"

#define POOL (-1)
static const int vgg11_cfg[] = {64,  POOL, 128,  POOL, 256, 256,  POOL,
                                512, 512,  POOL, 512,  512, POOL, 0};
static const int vgg16_cfg[] = {64,  64,  POOL, 128,  128, POOL, 256, 256,  256, POOL,
                                512, 512, 512,  POOL, 512, 512,  512, POOL, 0};

Status model_build_vgg(Net *net, MrError *err) {
  (void)err;
  const ModelSpec *s = &net->spec;
  const int *cfg = strcmp(s->arch, "vgg16") == 0 ? vgg16_cfg : vgg11_cfg;
  int t = NET_INPUT, idx = 0;
  for (int i = 0; cfg[i] && t >= 0; i++) {
    if (cfg[i] == POOL) {
      const Shape sh = net_tensor_shape(net, t);
      if (shape_h(sh) >= 2 && shape_w(sh) >= 2) t = net_add_maxpool(net, t, 2, 2, 0);
      idx += 1;
      continue;
    }
    char conv[NAME_LEN], bn[NAME_LEN];
    snprintf(conv, sizeof conv, "features.%d", idx);
    snprintf(bn, sizeof bn, "features.%d", idx + 1);
    t = net_add_conv(net, conv, t, model_channels(net, cfg[i]), 3, 1, 1, 1, 1);
    t = net_add_relu(net, net_add_bn(net, bn, t));
    idx += 3;
  }
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "classifier", t, s->n_classes);
  return STATUS_OK;
}
