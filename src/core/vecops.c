/* Small helpers over float arrays that every layer above the engine needs:
 * the predicted class of a score row, and a comparator for sorting. */
#include "medrobust.h"

int argmax(const float *v, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (v[j] > v[best]) best = j;
  return best;
}

int float_compare(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}
