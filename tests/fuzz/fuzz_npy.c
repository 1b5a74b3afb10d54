/* .npy headers and payloads (npy_parse), every element read back. */
#include "../../src/data/data.h"
#include "fuzz.h"

static volatile double sink; /* keeps the reads */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpyArray a;
  if (npy_parse(&a, data, size)) return 0;
  size_t n = 1;
  for (int d = 0; d < a.ndim; d++) n *= (size_t)a.shape[d];
  for (size_t i = 0; i < n; i++) sink += npy_value(&a, i);
  return 0;
}
