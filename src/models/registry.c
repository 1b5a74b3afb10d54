/* Model registry: the table of families, their default specs, building by
 * name and initialisation (He-normal, fan-out, for convs as torchvision;
 * PyTorch's uniform(+-1/sqrt(fan_in)) for linear layers; BN gamma 1, beta 0,
 * running var 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

typedef struct {
  ModelFamilyInfo info;
  Status (*build)(Net *net, MrError *err);
} ModelFamily;

static const ModelFamily families[] = {
    {{"cnn", "conv-BN-ReLU-pool blocks, channels doubling (options depth, base, kernel, pool)"},
     model_build_cnn},
    {{"cbr-larget", "paper 004's CBR-LargeT: 5 conv 7x7 blocks, 32..512 filters, max-pool 3x3/2"},
     model_build_cnn},
    {{"vgg11", "VGG-11 with batch norm, width multiplier, global pool + linear head"},
     model_build_vgg},
    {{"vgg16", "VGG-16 with batch norm, width multiplier, global pool + linear head"},
     model_build_vgg},
    {{"resnet8", "CIFAR ResNet-8 (He et al. 2016), 16/32/64 channels, option-A shortcuts"},
     model_build_resnet_cifar},
    {{"resnet20", "CIFAR ResNet-20"}, model_build_resnet_cifar},
    {{"resnet32", "CIFAR ResNet-32"}, model_build_resnet_cifar},
    {{"resnet44", "CIFAR ResNet-44"}, model_build_resnet_cifar},
    {{"resnet56", "CIFAR ResNet-56"}, model_build_resnet_cifar},
    {{"resnet50", "bottleneck ResNet-50, torchvision layout (3,4,6,3 blocks)"},
     model_build_resnet50},
    {{"mobilenet",
      "MobileNet v1: 13 depthwise-separable blocks, width multiplier (paper 002's MN)"},
     model_build_mobilenet},
    {{"densenet", "small DenseNet-BC: 3 dense blocks (block_layers, growth 12), transitions"},
     model_build_densenet},
    {{"densenet121", "DenseNet-121, torchvision layout (6,12,24,16 layers, growth 32)"},
     model_build_densenet},
    {{"unet", "U-Net: encoder-decoder with long skip concatenations, per-pixel output"},
     model_build_unet},
    {{"segnet", "the U-Net's encoder-decoder without skips (upsampling), per-pixel output"},
     model_build_unet},
    {{"fc-densenet", "FC-DenseNet (Tiramisu): dense blocks, short and long skips, per-pixel"},
     model_build_fc_densenet},
};
#define N_FAMILIES (int)(sizeof families / sizeof families[0])

int model_family_count(void) { return N_FAMILIES; }
const ModelFamilyInfo *model_family_info(int i) {
  return i >= 0 && i < N_FAMILIES ? &families[i].info : NULL;
}

static const ModelFamily *model_family_find(const char *arch) {
  for (int i = 0; i < N_FAMILIES; i++)
    if (strcmp(families[i].info.name, arch) == 0) return &families[i];
  return NULL;
}

ModelSpec model_spec_default(const char *arch, int in_c, int in_h, int in_w, int n_classes) {
  ModelSpec s;
  memset(&s, 0, sizeof s);
  if (!arch || !model_family_find(arch)) return s;
  snprintf(s.arch, sizeof s.arch, "%s", arch);
  s.in_c = in_c, s.in_h = in_h, s.in_w = in_w, s.n_classes = n_classes;
  s.width = 1.0f;
  s.depth = 5, s.base = 16, s.kernel = 3, s.pool = 1;
  if (strcmp(arch, "cbr-larget") == 0) s.base = 32, s.kernel = 7, s.pool = 3;
  if (strcmp(arch, "densenet") == 0)
    s.growth = 12, s.block_layers[0] = s.block_layers[1] = s.block_layers[2] = 6;
  if (strcmp(arch, "densenet121") == 0) {
    static const int layout[4] = {6, 12, 24, 16};
    s.growth = 32;
    memcpy(s.block_layers, layout, sizeof layout);
  }
  if (strcmp(arch, "unet") == 0 || strcmp(arch, "segnet") == 0) s.depth = 4, s.base = 16;
  if (strcmp(arch, "fc-densenet") == 0)
    s.depth = 3, s.base = 48, s.growth = 12, s.block_layers[0] = 4;
  for (int c = 0; c < 3; c++) s.norm_mean[c] = 0.0f, s.norm_std[c] = 1.0f;
  s.ignore_label = -1;
  /* paper 002 trains its segmentation nets on (weighted) cross-entropy plus Dice */
  if (strcmp(arch, "unet") == 0 || strcmp(arch, "segnet") == 0 || strcmp(arch, "fc-densenet") == 0)
    s.seg_loss = SEG_LOSS_XENT_DICE;
  return s;
}

void model_spec_free(ModelSpec *spec) {
  for (int i = 0; i < MR_MAX_CLASSES; i++) {
    free(spec->class_names[i]);
    spec->class_names[i] = NULL;
  }
}

void model_spec_copy(ModelSpec *dst, const ModelSpec *src) {
  if (dst == src) return;
  *dst = *src;
  for (int i = 0; i < MR_MAX_CLASSES; i++)
    dst->class_names[i] = src->class_names[i] ? strdup(src->class_names[i]) : NULL;
}

int model_channels(const Net *net, int c) {
  int scaled = (int)lroundf(c * net->spec.width);
  return scaled < 1 ? 1 : scaled;
}

void model_name(char out[NAME_LEN], const char *prefix, const char *suffix) {
  if (snprintf(out, NAME_LEN, "%s.%s", prefix, suffix) >= NAME_LEN) out[NAME_LEN - 1] = 0;
}

int model_conv_bn_relu(Net *net, const char *conv_name, const char *bn_name, int src, int oc, int k,
                       int stride) {
  const int t = net_add_conv(net, conv_name, src, oc, k, stride, k / 2, 1, 0);
  return net_add_relu(net, net_add_bn(net, bn_name, t));
}

void model_init(Net *net, uint64_t seed) { net_init_params(net, seed); }

Net *model_build(const ModelSpec *spec, uint64_t seed, MrError *err) {
  const ModelFamily *fam = model_family_find(spec->arch);
  if (!fam) {
    mr_error_set(err, STATUS_ERR_ARG, "unknown model '%s' (see 'medrobust models')", spec->arch);
    return NULL;
  }
  if (spec->in_c != 1 && spec->in_c != 3) {
    mr_error_set(err, STATUS_ERR_ARG, "%s: %d input channels, expected 1 or 3", spec->arch,
                 spec->in_c);
    return NULL;
  }
  if (spec->in_h < 28 || spec->in_w < 28 || spec->in_h > 1024 || spec->in_w > 1024) {
    mr_error_set(err, STATUS_ERR_ARG, "%s: input %dx%d, expected 28..1024 pixels a side",
                 spec->arch, spec->in_h, spec->in_w);
    return NULL;
  }
  if (spec->n_classes < 2 || spec->n_classes > MR_MAX_CLASSES) {
    mr_error_set(err, STATUS_ERR_ARG, "%s: %d classes, expected 2..%d", spec->arch, spec->n_classes,
                 MR_MAX_CLASSES);
    return NULL;
  }
  if (!(spec->width > 0.0f && spec->width <= 16.0f) || spec->dropout < 0.0f ||
      spec->dropout >= 1.0f) {
    mr_error_set(err, STATUS_ERR_ARG, "%s: width %g (0..16] or dropout %g [0,1) out of range",
                 spec->arch, spec->width, spec->dropout);
    return NULL;
  }
  for (int c = 0; c < spec->in_c; c++)
    if (!(spec->norm_std[c] > 0.0f) || !isfinite(spec->norm_mean[c])) {
      mr_error_set(err, STATUS_ERR_ARG, "%s: normalisation std must be > 0", spec->arch);
      return NULL;
    }
  Net *net = net_new(spec);
  if (!net) {
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  MrError local = {0};
  if (!err) err = &local;
  /* a builder's own checks report through err; shape problems through the
   * net's sticky build error, which net_finish returns */
  if (fam->build(net, err) != STATUS_OK || net_finish(net, err) != STATUS_OK) {
    net_free(net);
    return NULL;
  }
  model_init(net, seed);
  return net;
}
