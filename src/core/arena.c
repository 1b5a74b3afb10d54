/* Large buffers that every pass streams through (a network's activations and gradients): on
 * 2 MiB boundaries and advised to the kernel as huge pages, which this machine's kernel gives
 * only when asked (transparent_hugepage is "madvise"). With 4 KiB pages a training step over a
 * gigabyte of activations walks the TLB at every page, and the first pass over a new plan takes
 * a fault every 4 KiB. Freed with free(). */
#include <stdlib.h>
#include <sys/mman.h>

#include "medrobust.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *mr_alloc_arena(size_t bytes) {
  if (bytes < HUGE_PAGE) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  const size_t rounded = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
  if (p) (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
  return p;
}
