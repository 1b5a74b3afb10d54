/* Losses of the net's output against its target: softmax cross-entropy of
 * (B,K) logits against one class per image (src/layers/softmax_xent.c), or,
 * for (B,K,H,W) outputs, against one class per pixel: pixel-wise softmax
 * cross-entropy, soft Dice (Milletari et al. 2016's V-Net loss on softmax
 * probabilities, smoothing 1, averaged over classes) or their sum, with an
 * ignore label and class weights. per_sample gives each image its own loss
 * (its mean over its own pixels), so an image's input gradient does not
 * depend on the batch it is in; otherwise the batch mean PyTorch's
 * CrossEntropyLoss takes (weighted mean over every valid pixel). */
#include <math.h>
#include <string.h>

#include "net.h"

#define DICE_SMOOTH 1.0

static int label_valid(int y, int k, int ignore) { return y != ignore && y >= 0 && y < k; }

/* The batch-mean cross-entropy's denominator: the weight of every valid pixel. */
static double pixel_weight_sum(const int *y, const float *w, int B, int k, int P, int ignore) {
  double wsum = 0.0;
  for (size_t i = 0; i < (size_t)B * P; i++)
    if (label_valid(y[i], k, ignore)) wsum += w ? w[y[i]] : 1.0;
  return wsum;
}

/* Pixel softmax into probs (B,K,P); with_xent: also returns the
 * cross-entropy and adds its gradient (the Dice loss needs only probs). Not per_sample: the
 * batch mean over wsum_all, the weight of the batch's valid pixels. */
static double pixel_xent(float *dlogits, float *probs, const float *logits, const int *y,
                         const float *w, int B, int k, int P, int ignore, int per_sample,
                         int with_xent, double wsum_all) {
  double total = 0.0;
  for (int b = 0; b < B; b++) {
    const float *z = logits + (size_t)b * k * P;
    float *p = probs + (size_t)b * k * P;
    float *g = dlogits + (size_t)b * k * P;
    const int *yb = y + (size_t)b * P;
    double wsum = 0.0, loss = 0.0;
    for (int px = 0; with_xent && px < P; px++)
      if (label_valid(yb[px], k, ignore)) wsum += w ? w[yb[px]] : 1.0;
    const double norm =
        per_sample ? (wsum > 0 ? 1.0 / wsum : 0.0) : (wsum_all > 0 ? 1.0 / wsum_all : 0.0);
    for (int px = 0; px < P; px++) {
      float zmax = z[px];
      for (int j = 1; j < k; j++)
        if (z[(size_t)j * P + px] > zmax) zmax = z[(size_t)j * P + px];
      double s = 0.0;
      for (int j = 0; j < k; j++) s += exp((double)z[(size_t)j * P + px] - zmax);
      const double logsum = log(s) + zmax;
      for (int j = 0; j < k; j++)
        p[(size_t)j * P + px] = (float)exp((double)z[(size_t)j * P + px] - logsum);
      const int t = yb[px];
      if (!with_xent || !label_valid(t, k, ignore)) continue;
      const double wt = w ? w[t] : 1.0;
      loss += wt * (logsum - z[(size_t)t * P + px]);
      for (int j = 0; j < k; j++)
        g[(size_t)j * P + px] += (float)(wt * norm * (p[(size_t)j * P + px] - (j == t)));
    }
    total += loss * norm;
  }
  return total;
}

/* Soft Dice on the probabilities pixel_xent left; adds its gradient. */
static double pixel_dice(float *dlogits, const float *probs, const int *y, const float *w, int B,
                         int k, int P, int ignore, int per_sample, double batch_all) {
  double total = 0.0, wk_sum = 0.0;
  for (int j = 0; j < k; j++) wk_sum += w ? w[j] : 1.0;
  const double scale = per_sample ? 1.0 : 1.0 / batch_all;
  double inter[MR_MAX_CLASSES], sums[MR_MAX_CLASSES], dldp[MR_MAX_CLASSES];
  for (int b = 0; b < B; b++) {
    const float *p = probs + (size_t)b * k * P;
    float *g = dlogits + (size_t)b * k * P;
    const int *yb = y + (size_t)b * P;
    for (int j = 0; j < k; j++) inter[j] = sums[j] = 0.0;
    for (int px = 0; px < P; px++) {
      if (!label_valid(yb[px], k, ignore)) continue;
      for (int j = 0; j < k; j++) sums[j] += p[(size_t)j * P + px];
      inter[yb[px]] += p[(size_t)yb[px] * P + px];
      sums[yb[px]] += 1.0;
    }
    double dice = 0.0;
    for (int j = 0; j < k; j++)
      dice += (w ? w[j] : 1.0) * (2.0 * inter[j] + DICE_SMOOTH) / (sums[j] + DICE_SMOOTH);
    total += scale * (1.0 - dice / wk_sum);
    for (int px = 0; px < P; px++) {
      if (!label_valid(yb[px], k, ignore)) continue;
      double dot = 0.0;
      for (int j = 0; j < k; j++) {
        const double den = sums[j] + DICE_SMOOTH;
        const double num = 2.0 * inter[j] + DICE_SMOOTH;
        const double gk = yb[px] == j ? 1.0 : 0.0;
        dldp[j] = -scale * (w ? w[j] : 1.0) / wk_sum * (2.0 * gk * den - num) / (den * den);
        dot += p[(size_t)j * P + px] * dldp[j];
      }
      for (int j = 0; j < k; j++) {
        const double pj = p[(size_t)j * P + px];
        g[(size_t)j * P + px] += (float)(pj * (dldp[j] - dot));
      }
    }
  }
  return total;
}

float net_loss(Net *net, const float *logits, const int *y, const float *class_weights, int batch,
               int per_sample, float *dlogits) {
  const int k = net->spec.n_classes, P = net_output_pixels(net), ignore = net->spec.ignore_label;
  /* the batch mean's denominators: this batch's, or, when several processes share it
   * (training), the whole batch's */
  const BatchShare *share = per_sample ? NULL : net->share;
  double denom[2] = {per_sample ? 0.0
                     : P == 1   ? softmax_xent_weight_sum(y, class_weights, batch)
                                : pixel_weight_sum(y, class_weights, batch, k, P, ignore),
                     batch};
  if (share) share->sum(denom, 2, share->ctx);
  if (P == 1)
    return per_sample ? softmax_xent(dlogits, net->probs, logits, y, class_weights, batch, k, 1)
                      : softmax_xent_over(dlogits, net->probs, logits, y, class_weights, batch, k,
                                          denom[0]);
  memset(dlogits, 0, sizeof(float) * batch * k * P);
  const SegLoss kind = net->spec.seg_loss;
  double loss = pixel_xent(dlogits, net->probs, logits, y, class_weights, batch, k, P, ignore,
                           per_sample, kind != SEG_LOSS_DICE, denom[0]);
  if (kind != SEG_LOSS_XENT)
    /* the composite is paper 002's weighted cross-entropy plus an unweighted Dice (Dice
     * already balances classes); Dice alone takes the weights per class */
    loss += pixel_dice(dlogits, net->probs, y, kind == SEG_LOSS_DICE ? class_weights : NULL, batch,
                       k, P, ignore, per_sample, denom[1]);
  return (float)(per_sample ? loss / batch : loss);
}
