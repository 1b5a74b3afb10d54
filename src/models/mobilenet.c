/* mobilenet: MobileNet v1 (Howard et al. 2017), the compact "MN" of paper
 * 002: a 3x3/2 convolution, then 13 depthwise-separable blocks, each a
 * depthwise 3x3 (groups = channels) and a pointwise 1x1, every conv followed
 * by batchnorm and ReLU; global average pooling and a linear classifier.
 * The width multiplier (alpha) scales every layer.
 *
 *   conv1 3x3/2 32 -> [blocks.i.dw 3x3/s -> blocks.i.pw 1x1 C] x 13 -> pool -> fc
 *   C/s: 64/1 128/2 128/1 256/2 256/1 512/2 (512/1)x5 1024/2 1024/1
 * On inputs below 224 pixels the strides still apply (28x28 ends at 1x1). */
#include <stdio.h>

#include "models.h"

static const int mobilenet_blocks[13][2] = {{64, 1},  {128, 2},  {128, 1}, {256, 2}, {256, 1},
                                            {512, 2}, {512, 1},  {512, 1}, {512, 1}, {512, 1},
                                            {512, 1}, {1024, 2}, {1024, 1}};

Status model_build_mobilenet(Net *net, MrError *err) {
  (void)err;
  const ModelSpec *s = &net->spec;
  int t = model_conv_bn_relu(net, "conv1", "bn1", NET_INPUT, model_channels(net, 32), 3, 2);
  for (int i = 0; i < 13; i++) {
    char a[NAME_LEN], b[NAME_LEN];
    const int ch = shape_c(net_tensor_shape(net, t >= 0 ? t : 0));
    snprintf(a, sizeof a, "blocks.%d.dw", i);
    snprintf(b, sizeof b, "blocks.%d.dw_bn", i);
    t = net_add_conv(net, a, t, ch, 3, mobilenet_blocks[i][1], 1, ch, 0);
    t = net_add_relu(net, net_add_bn(net, b, t));
    snprintf(a, sizeof a, "blocks.%d.pw", i);
    snprintf(b, sizeof b, "blocks.%d.pw_bn", i);
    t = model_conv_bn_relu(net, a, b, t, model_channels(net, mobilenet_blocks[i][0]), 1, 1);
  }
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "fc", t, s->n_classes);
  return STATUS_OK;
}
