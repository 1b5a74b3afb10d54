/* unet and segnet: one encoder-decoder, with and without the long skips,
 * so comparing the two isolates what the skips do (paper 002's question).
 *
 *   enc0..enc{d-1}: double conv (conv 3x3 -> BN -> ReLU, twice), C = base*2^i,
 *                   each followed by max-pool 2x2/2
 *   bottleneck:     double conv, base*2^d
 *   dec{i} (i = d-1..0): up{i} to C_i channels (transposed conv 2x2/2, or
 *                   bilinear x2 + conv 1x1 when decoder_up = 1),
 *                   unet: concat(enc_i, up_i) -> double conv C_i
 *                   segnet: double conv C_i on up_i alone
 *   head:           conv 1x1 -> K class scores per pixel
 *
 * Ronneberger et al. 2015 used unpadded convolutions and cropping; we pad
 * ("same"), as most implementations do, so the output is the input's size,
 * and add batchnorm. SegNet (Badrinarayanan et al. 2017) upsamples by
 * max-unpooling with the encoder's pooling indices; we upsample as the U-Net
 * does, so the two differ only by the skips (documented in the README). The
 * input side must be divisible by 2^depth. */
#include <stdio.h>
#include <string.h>

#include "models.h"

static int double_conv(Net *net, const char *prefix, int src, int ch) {
  char a[NAME_LEN], b[NAME_LEN];
  model_name(a, prefix, "conv1");
  model_name(b, prefix, "bn1");
  const int t = model_conv_bn_relu(net, a, b, src, ch, 3, 1);
  model_name(a, prefix, "conv2");
  model_name(b, prefix, "bn2");
  return model_conv_bn_relu(net, a, b, t, ch, 3, 1);
}

/* x2 to ch channels: transposed conv 2x2/2, or bilinear + 1x1 conv */
int model_up2(Net *net, const char *name, int src, int ch, int bilinear) {
  if (!bilinear) return net_add_conv_transpose(net, name, src, ch, 2, 2, 0, 1);
  char a[NAME_LEN];
  model_name(a, name, "conv");
  return net_add_conv(net, a, net_add_upsample(net, src, 2, UPSAMPLE_BILINEAR), ch, 1, 1, 0, 1, 1);
}

Status model_build_unet(Net *net, MrError *err) {
  const ModelSpec *s = &net->spec;
  const int skips = strcmp(s->arch, "unet") == 0, d = s->depth;
  if (d < 1 || d > 8 || s->base < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "%s: depth %d (1..8) or base %d invalid", s->arch, d,
                        s->base);
  if (s->in_h % (1 << d) || s->in_w % (1 << d))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: input %dx%d must be divisible by 2^depth = %d (resize, or lower "
                        "--depth)",
                        s->arch, s->in_h, s->in_w, 1 << d);
  int enc[8], t = NET_INPUT;
  char p[NAME_LEN];
  for (int i = 0; i < d; i++) {
    snprintf(p, sizeof p, "enc%d", i);
    enc[i] = double_conv(net, p, t, model_channels(net, s->base << i));
    t = net_add_maxpool(net, enc[i], 2, 2, 0);
  }
  t = double_conv(net, "bottleneck", t, model_channels(net, s->base << d));
  for (int i = d - 1; i >= 0; i--) {
    const int ch = model_channels(net, s->base << i);
    snprintf(p, sizeof p, "up%d", i);
    t = model_up2(net, p, t, ch, s->decoder_up);
    if (skips) t = net_add_concat(net, (int[]){enc[i], t}, 2);
    snprintf(p, sizeof p, "dec%d", i);
    t = double_conv(net, p, t, ch);
  }
  net_add_conv(net, "head", t, s->n_classes, 1, 1, 0, 1, 1);
  return STATUS_OK;
}
