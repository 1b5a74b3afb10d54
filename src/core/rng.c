/* Seeded random numbers: xoshiro256** seeded through splitmix64.
 * Every random choice in medrobust (init, dropout, shuffles, attack starts)
 * draws from an Rng so results depend only on --seed and the thread count. */
#include <math.h>

#include "medrobust.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void rng_seed(Rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

void rng_seed_stream(Rng *rng, uint64_t seed, uint64_t stream) {
  uint64_t mixed = seed ^ 0x6A09E667F3BCC909ULL;
  const uint64_t a = splitmix64(&mixed);
  mixed = stream + a;
  rng_seed(rng, splitmix64(&mixed) ^ a);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float rng_uniform(Rng *rng) { return (float)(rng_next(rng) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(Rng *rng) {
  /* Box-Muller; u1 in (0,1] so the log is finite */
  double u1 = ((double)(rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int rng_int(Rng *rng, int n) { return (int)((rng_next(rng) >> 33) % (uint64_t)n); }
