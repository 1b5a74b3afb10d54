/* Saliency maps: the gradient of a class's logit with respect to the
 * pixels (Simonyan et al. 2014), and SmoothGrad's average of it over noisy
 * copies of the image (Smilkov et al. 2017). Paper 004 Figs 3-4 show them
 * for the predicted class of clean and adversarial images. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

/* one backward pass from the one-hot logit gradients of cls */
static void class_gradient(Net *net, const float *x, const int *cls, int batch, float *dlogits,
                           float *grad) {
  const int k = net_num_classes(net);
  net_forward(net, x, batch, MODE_EVAL);
  memset(dlogits, 0, sizeof(float) * k * batch);
  for (int b = 0; b < batch; b++) dlogits[(size_t)b * k + cls[b]] = 1.0f;
  net_backward(net, dlogits, grad, 0);
}

Status saliency_gradient(Net *net, const float *x, const int *cls, int batch, int smooth_samples,
                         float smooth_sigma, uint64_t seed, float *grad, MrError *err) {
  const int k = net_num_classes(net);
  for (int b = 0; b < batch; b++)
    if (cls[b] < 0 || cls[b] >= k)
      return mr_error_set(err, STATUS_ERR_ARG, "saliency: class %d of image %d is not one of %d",
                          cls[b], b, k);
  if (smooth_samples < 0 || !(smooth_sigma >= 0))
    return mr_error_set(err, STATUS_ERR_ARG, "saliency: samples >= 0 and sigma >= 0");
  const size_t n = (size_t)net_input_size(net) * batch;
  float *dlogits = malloc(sizeof(float) * k * batch);
  float *noisy = smooth_samples ? malloc(sizeof(float) * n) : NULL;
  float *one = smooth_samples ? malloc(sizeof(float) * n) : NULL;
  Status s = net_plan(net, batch, err);
  if (s == STATUS_OK && (!dlogits || (smooth_samples && (!noisy || !one))))
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for saliency");
  if (s == STATUS_OK && !smooth_samples) class_gradient(net, x, cls, batch, dlogits, grad);
  if (s == STATUS_OK && smooth_samples) {
    Rng rng;
    rng_seed(&rng, seed);
    memset(grad, 0, sizeof(float) * n);
    for (int t = 0; t < smooth_samples; t++) {
      /* not clipped to [0,1]: SmoothGrad's noise is a probe, not an image */
      for (size_t i = 0; i < n; i++) noisy[i] = x[i] + smooth_sigma * rng_normal(&rng);
      class_gradient(net, noisy, cls, batch, dlogits, one);
      for (size_t i = 0; i < n; i++) grad[i] += one[i];
    }
    for (size_t i = 0; i < n; i++) grad[i] /= (float)smooth_samples;
  }
  free(dlogits), free(noisy), free(one);
  return s;
}

void saliency_map(const float *grad, int c, int h, int w, float *map) {
  const size_t hw = (size_t)h * w;
  for (size_t i = 0; i < hw; i++) {
    float m = 0.0f;
    for (int ch = 0; ch < c; ch++) m = fmaxf(m, fabsf(grad[ch * hw + i]));
    map[i] = m;
  }
}
