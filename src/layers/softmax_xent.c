/* Softmax cross-entropy with optional class weights (PyTorch's weighted
 * mean: sum_i w_yi * l_i / sum_i w_yi), or the plain per-sample sum that
 * attacks use so each image's gradient is independent of its batch. */
#include <math.h>

#include "medrobust.h"

#include "layers.h"

double softmax_xent_weight_sum(const int *labels, const float *weights, int batch) {
  double wsum = 0.0;
  for (int b = 0; b < batch; b++) wsum += weights ? weights[labels[b]] : 1.0;
  return wsum;
}

/* Returns sum_i w_yi * l_i; dlogits gets its gradient times norm. */
static double xent_rows(float *dlogits, float *probs, const float *logits, const int *labels,
                        const float *weights, int batch, int k, double norm) {
  double loss = 0.0;
  for (int b = 0; b < batch; b++) {
    const float *z = logits + (size_t)b * k;
    float *p = probs + (size_t)b * k;
    float zmax = z[0];
    for (int j = 1; j < k; j++)
      if (z[j] > zmax) zmax = z[j];
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp((double)z[j] - zmax);
    const double logsum = log(s) + zmax;
    for (int j = 0; j < k; j++) p[j] = (float)exp((double)z[j] - logsum);
    const int y = labels[b];
    const double w = weights ? weights[y] : 1.0;
    loss += w * (logsum - z[y]);
    if (dlogits) {
      float *g = dlogits + (size_t)b * k;
      for (int j = 0; j < k; j++) g[j] = (float)(w * norm * (p[j] - (j == y)));
    }
  }
  return loss;
}

float softmax_xent(float *dlogits, float *probs, const float *logits, const int *labels,
                   const float *weights, int batch, int k, int per_sample) {
  if (per_sample)
    return (float)(xent_rows(dlogits, probs, logits, labels, weights, batch, k, 1.0) / batch);
  return softmax_xent_over(dlogits, probs, logits, labels, weights, batch, k,
                           softmax_xent_weight_sum(labels, weights, batch));
}

float softmax_xent_over(float *dlogits, float *probs, const float *logits, const int *labels,
                        const float *weights, int batch, int k, double wsum) {
  if (wsum <= 0.0) wsum = 1.0;
  return (float)(xent_rows(dlogits, probs, logits, labels, weights, batch, k, 1.0 / wsum) / wsum);
}
