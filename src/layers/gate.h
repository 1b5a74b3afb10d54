/* A gradient passed where a mask holds, in whole vectors: the backward passes of ReLU, of an
 * add or a batchnorm with a fused ReLU, and of the 2x2 max-pool.
 * Why vectors by hand: GCC turns every masked use of dy it is given in a loop (`pass ? dy : 0`,
 * dy times the mask, dy ANDed with it) into a masked load of dy from memory, and on this
 * machine's Zen 4 those loads cost: a 128x16x64x64 batchnorm dx pass took 2.1-3.6 ms that way,
 * 1.5-2.5 ms loading dy whole and ANDing it with the mask, 1.3-2.4 ms without the ReLU (a
 * microbenchmark, the three alternated). GNU vector types lower to whatever the target has. */
#ifndef MR_GATE_H
#define MR_GATE_H

#include <stdint.h>
#include <string.h>

#define VEC 16
typedef float Vec __attribute__((vector_size(64)));
typedef int32_t VecBits __attribute__((vector_size(64)));

static inline Vec vec_load(const float *p) {
  Vec v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void vec_store(float *p, Vec v) { memcpy(p, &v, sizeof v); }

static inline VecBits vec_load_bits(const int32_t *p) {
  VecBits v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* dy in the lanes where pass is all ones, +0 where it is 0 (a comparison's result) */
static inline Vec vec_gate(Vec dy, VecBits pass) {
#if defined(__AVX512F__)
  __asm__("" : "+v"(dy)); /* the compiler cannot see through this, so dy stays a whole load */
#endif
  return (Vec)((VecBits)dy & pass);
}

/* the larger of best and v lane by lane, best where they are equal (the first of equal
 * maxima wins, as maxpool2d's) */
static inline Vec vec_max(Vec best, Vec v) {
  const VecBits above = v > best;
  return (Vec)(((VecBits)v & above) | ((VecBits)best & ~above));
}

#endif
