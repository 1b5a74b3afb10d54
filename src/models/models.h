/* Model builders: each family describes its net with the net_add_* calls,
 * naming layers exactly as the equivalent PyTorch nn.Module (docs/models.md).
 * A builder returns an error only for its own options; shape problems are
 * the net's sticky build error, reported by net_finish. */
#ifndef MR_MODELS_H
#define MR_MODELS_H

#include "../nn/net.h"

/* channels scaled by the spec's width multiplier, at least 1 */
int model_channels(const Net *net, int c);
/* out = prefix + "." + suffix, truncated to NAME_LEN */
void model_name(char out[NAME_LEN], const char *prefix, const char *suffix);
/* conv (no bias) -> bn -> relu, named prefix+conv_name / prefix+bn_name */
int model_conv_bn_relu(Net *net, const char *conv_name, const char *bn_name, int src, int oc, int k,
                       int stride);

/* He-normal convs, PyTorch-default linear layers, BN gamma 1 beta 0 var 1 */
void model_init(Net *net, uint64_t seed);

Status model_build_cnn(Net *net, MrError *err);
Status model_build_vgg(Net *net, MrError *err);
Status model_build_resnet_cifar(Net *net, MrError *err);
Status model_build_resnet50(Net *net, MrError *err);
Status model_build_mobilenet(Net *net, MrError *err);
Status model_build_densenet(Net *net, MrError *err);
Status model_build_unet(Net *net, MrError *err); /* unet and segnet */
Status model_build_fc_densenet(Net *net, MrError *err);
/* x2 upsampling to ch channels: transposed conv 2x2/2 (name), or bilinear
 * then a 1x1 conv (name.conv) */
int model_up2(Net *net, const char *name, int src, int ch, int bilinear);

#endif
