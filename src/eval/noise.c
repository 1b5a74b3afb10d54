/* Acquisition noise for the contrast of paper 002: Gaussian, Rician (MRI
 * magnitude), Poisson (CT/X-ray photon counts) and speckle (ultrasound,
 * multiplicative), each clipped to [0,1]. */
#include <math.h>

#include "medrobust.h"

static const char *names[NOISE_COUNT] = {"gaussian", "rician", "poisson", "speckle"};

const char *noise_name(NoiseKind k) { return k >= 0 && k < NOISE_COUNT ? names[k] : "?"; }

static double poisson_draw(double mean, Rng *rng) {
  if (mean > 30.0) return fmax(0.0, mean + sqrt(mean) * rng_normal(rng)); /* normal limit */
  const double limit = exp(-mean);
  double p = 1.0;
  int k = 0;
  do {
    k++;
    p *= rng_uniform(rng);
  } while (p > limit);
  return k - 1;
}

void noise_apply(float *x, size_t n, NoiseKind kind, float level, Rng *rng) {
  for (size_t i = 0; i < n; i++) {
    double v = x[i];
    switch (kind) {
      case NOISE_GAUSSIAN:
        v += level * rng_normal(rng);
        break;
      case NOISE_RICIAN: {
        const double re = v + level * rng_normal(rng), im = level * rng_normal(rng);
        v = sqrt(re * re + im * im);
        break;
      }
      case NOISE_POISSON:
        /* level = 1/sqrt(photons at full intensity): the std at x is level*sqrt(x) */
        if (level > 0) {
          const double photons = 1.0 / ((double)level * level);
          v = poisson_draw(v * photons, rng) / photons;
        }
        break;
      case NOISE_SPECKLE:
        v += v * level * rng_normal(rng);
        break;
      default:
        break;
    }
    x[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
  }
}
