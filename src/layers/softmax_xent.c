/* Softmax cross-entropy with optional class weights (PyTorch's weighted
 * mean: sum_i w_yi * l_i / sum_i w_yi), or the plain per-sample sum that
 * attacks use so each image's gradient is independent of its batch. */
#include <math.h>

#include "medrobust.h"

float softmax_xent(float *dlogits, float *probs, const float *logits, const int *labels,
                   const float *weights, int batch, int k, int per_sample) {
  double loss = 0.0, wsum = 0.0;
  for (int b = 0; b < batch; b++) wsum += weights ? weights[labels[b]] : 1.0;
  if (wsum <= 0.0) wsum = 1.0;
  const double norm = per_sample ? 1.0 : 1.0 / wsum;
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
  return (float)(per_sample ? loss / batch : loss / wsum);
}
