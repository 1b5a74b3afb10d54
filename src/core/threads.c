/* Thread control. One pool at a time (see shared PERF-NOTES): kernels run
 * OpenMP over images with single-threaded BLAS, so OpenBLAS's own pool is
 * pinned to one thread the first time threads are configured. */
#include <omp.h>

#include "medrobust.h"

void openblas_set_num_threads(int num_threads);

static int configured;

void mr_set_threads(int n) {
  openblas_set_num_threads(1);
  configured = 1;
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int mr_get_threads(void) {
  if (!configured) {
    openblas_set_num_threads(1);
    configured = 1;
  }
  return omp_get_max_threads();
}
