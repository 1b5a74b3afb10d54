/* ResNets.
 * CIFAR family (He et al. 2016, sec. 4.2): resnet{8,20,32,44,56}, depth 6n+2,
 *   conv1 3x3x16 -> bn1 -> relu -> layer1 (n BasicBlocks, 16 ch)
 *   -> layer2 (n, 32 ch, stride 2) -> layer3 (n, 64 ch, stride 2)
 *   -> global avg pool -> fc; option-A shortcuts (subsample + zero channels).
 *   BasicBlock: conv1 3x3/s -> bn1 -> relu -> conv2 3x3 -> bn2 -> + shortcut -> relu
 * resnet50: torchvision's layout (v1.5, stride on the 3x3), so its weights
 *   load into torchvision.models.resnet50 with conv1 set to in_c channels:
 *   conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2 -> layer1..4 of Bottlenecks
 *   (3,4,6,3; 64..512 planes x4) with downsample.0/1 -> avgpool -> fc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

static int basic_block(Net *net, const char *prefix, int src, int planes, int stride) {
  char a[NAME_LEN], b[NAME_LEN];
  /* the shortcut first (it has no parameters, so the state_dict order stays PyTorch's): then
   * conv2 -> bn2 -> add are consecutive layers, which inference runs as one convolution with
   * the add as oneDNN's sum post-op (net.c, residual_add_after) */
  int shortcut = src;
  if (src >= 0 && (stride != 1 || shape_c(net_tensor_shape(net, src)) != planes))
    shortcut = net_add_shortcut_pad(net, src, planes, stride);
  model_name(a, prefix, "conv1");
  model_name(b, prefix, "bn1");
  int t = model_conv_bn_relu(net, a, b, src, planes, 3, stride);
  model_name(a, prefix, "conv2");
  model_name(b, prefix, "bn2");
  t = net_add_bn(net, b, net_add_conv(net, a, t, planes, 3, 1, 1, 1, 0));
  return net_add_relu(net, net_add_add(net, t, shortcut));
}

Status model_build_resnet_cifar(Net *net, MrError *err) {
  (void)err;
  const ModelSpec *s = &net->spec;
  const int depth = atoi(s->arch + strlen("resnet"));
  const int n = (depth - 2) / 6;
  int t = model_conv_bn_relu(net, "conv1", "bn1", NET_INPUT, model_channels(net, 16), 3, 1);
  static const int planes[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; stage++) {
    for (int i = 0; i < n; i++) {
      char prefix[NAME_LEN];
      snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
      t = basic_block(net, prefix, t, model_channels(net, planes[stage]),
                      (stage > 0 && i == 0) ? 2 : 1);
    }
  }
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "fc", t, s->n_classes);
  return STATUS_OK;
}

static int bottleneck(Net *net, const char *prefix, int src, int planes, int stride) {
  char a[NAME_LEN], b[NAME_LEN];
  const int out_ch = planes * 4;
  model_name(a, prefix, "conv1");
  model_name(b, prefix, "bn1");
  int t = model_conv_bn_relu(net, a, b, src, planes, 1, 1);
  model_name(a, prefix, "conv2");
  model_name(b, prefix, "bn2");
  t = model_conv_bn_relu(net, a, b, t, planes, 3, stride);
  model_name(a, prefix, "conv3");
  model_name(b, prefix, "bn3");
  t = net_add_bn(net, b, net_add_conv(net, a, t, out_ch, 1, 1, 0, 1, 0));
  int shortcut = src;
  if (src >= 0 && (stride != 1 || shape_c(net_tensor_shape(net, src)) != out_ch)) {
    model_name(a, prefix, "downsample.0");
    model_name(b, prefix, "downsample.1");
    shortcut = net_add_bn(net, b, net_add_conv(net, a, src, out_ch, 1, stride, 0, 1, 0));
  }
  return net_add_relu(net, net_add_add(net, t, shortcut));
}

Status model_build_resnet50(Net *net, MrError *err) {
  (void)err;
  const ModelSpec *s = &net->spec;
  int t = net_add_conv(net, "conv1", NET_INPUT, model_channels(net, 64), 7, 2, 3, 1, 0);
  t = net_add_relu(net, net_add_bn(net, "bn1", t));
  t = net_add_maxpool(net, t, 3, 2, 1);
  static const int blocks[4] = {3, 4, 6, 3}, planes[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; stage++) {
    for (int i = 0; i < blocks[stage]; i++) {
      char prefix[NAME_LEN];
      snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
      t = bottleneck(net, prefix, t, model_channels(net, planes[stage]),
                     (stage > 0 && i == 0) ? 2 : 1);
    }
  }
  t = net_add_flatten(net, net_add_global_avgpool(net, t));
  if (s->dropout > 0.0f) t = net_add_dropout(net, t, s->dropout);
  net_add_dense(net, "fc", t, s->n_classes);
  return STATUS_OK;
}
