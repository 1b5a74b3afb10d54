/* Several processes (MPI): rank and size, a shared work queue, the gather of per-image results
 * to rank 0, and the abort that stops every rank when one fails. Built with `make MPI=1`
 * (MR_MPI, Open MPI's mpicc) the same binary runs alone or under mpirun; built without, these
 * are the one-process answers and nothing links MPI.
 *
 * Results never depend on the rank count: every per-image random stream derives from the
 * image's index, the queue only decides who computes an image, and rank 0 writes the outputs
 * from the gathered results in index order. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

#ifdef MR_MPI
#include <mpi.h>

static int started; /* this process called MPI_Init */

void dist_init(int *argc, char ***argv) {
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready && MPI_Init(argc, argv) == MPI_SUCCESS) started = 1;
}

void dist_finalize(void) {
  int done = 0;
  MPI_Finalized(&done);
  if (started && !done) MPI_Finalize();
}

int dist_rank(void) {
  int r = 0;
  if (started) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int dist_size(void) {
  int n = 1;
  if (started) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void dist_barrier(void) {
  if (started) MPI_Barrier(MPI_COMM_WORLD);
}

void dist_abort(int exit_code) {
  fflush(stdout), fflush(stderr);
  if (started && dist_size() > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  exit(exit_code);
}

/* The counter lives in a window on rank 0; MPI_Fetch_and_op claims a chunk atomically, so no
 * rank has to serve the others. */
struct DistQueue {
  int n, chunk, next, end; /* this rank's current chunk: next .. end-1 */
  MPI_Win win;
  long *counter;
  int shared;
};

DistQueue *dist_queue_new(int n, int chunk) {
  DistQueue *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->n = n, q->chunk = chunk > 0 ? chunk : 1;
  q->shared = dist_size() > 1;
  if (q->shared) {
    const MPI_Aint bytes = dist_rank() == 0 ? (MPI_Aint)sizeof(long) : 0;
    MPI_Win_allocate(bytes, sizeof(long), MPI_INFO_NULL, MPI_COMM_WORLD, &q->counter, &q->win);
    if (dist_rank() == 0) *q->counter = 0;
    MPI_Barrier(MPI_COMM_WORLD); /* the counter is zero before anyone claims */
    MPI_Win_lock_all(0, q->win);
  }
  return q;
}

int dist_queue_next(DistQueue *q) {
  if (q->next < q->end) return q->next++;
  if (!q->shared) {
    q->end = q->next + q->chunk;
  } else {
    const long add = q->chunk;
    long got = 0;
    MPI_Fetch_and_op(&add, &got, MPI_LONG, 0, 0, MPI_SUM, q->win);
    MPI_Win_flush(0, q->win);
    q->next = (int)(got < q->n ? got : q->n), q->end = q->next + q->chunk;
  }
  if (q->end > q->n) q->end = q->n;
  return q->next < q->end ? q->next++ : q->n;
}

void dist_queue_free(DistQueue *q, int failed) {
  if (!q) return;
  if (q->shared && !failed) {
    MPI_Win_unlock_all(q->win);
    MPI_Win_free(&q->win); /* collective: every rank has drained the queue */
  }
  free(q);
}

/* Out of memory while gathering: this rank cannot take part, so the job stops. */
static void gather_failed(size_t bytes) {
  fprintf(stderr, "medrobust: rank %d: out of memory gathering %zu bytes of results\n", dist_rank(),
          bytes);
  dist_abort(1); /* a runtime error */
}

Status dist_gather(void *items, size_t item_size, int n, const unsigned char *done, MrError *err) {
  const int size = dist_size(), rank = dist_rank();
  if (size == 1) return STATUS_OK;
  /* each rank sends (index, item) records of what it computed */
  const size_t record = sizeof(int) + item_size;
  int mine = 0;
  for (int i = 0; i < n; i++) mine += done[i] != 0;
  if ((double)record * n > 2e9) /* MPI counts are ints */
    return mr_error_set(err, STATUS_ERR_ARG, "%d results of %zu bytes are too many to gather", n,
                        item_size);
  unsigned char *send = malloc(record * mine + 1), *p = send;
  if (!send) gather_failed(record * mine);
  for (int i = 0; i < n; i++)
    if (done[i]) {
      memcpy(p, &i, sizeof i);
      memcpy(p + sizeof i, (unsigned char *)items + item_size * i, item_size);
      p += record;
    }
  const int bytes = (int)(record * mine);
  int *counts = NULL, *offsets = NULL;
  unsigned char *recv = NULL;
  long total = 0;
  if (rank == 0) {
    counts = calloc(size, sizeof(int)), offsets = calloc(size, sizeof(int));
    if (!counts || !offsets) gather_failed(sizeof(int) * size);
  }
  MPI_Gather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    for (int r = 0; r < size; r++) offsets[r] = (int)total, total += counts[r];
    recv = malloc((size_t)total + 1);
    if (!recv) gather_failed((size_t)total);
  }
  MPI_Gatherv(send, bytes, MPI_BYTE, recv, counts, offsets, MPI_BYTE, 0, MPI_COMM_WORLD);
  for (long at = 0; rank == 0 && at + (long)record <= total; at += (long)record) {
    int i;
    memcpy(&i, recv + at, sizeof i);
    if (i >= 0 && i < n)
      memcpy((unsigned char *)items + item_size * i, recv + at + sizeof i, item_size);
  }
  free(send), free(counts), free(offsets), free(recv);
  return STATUS_OK;
}

Status dist_share(void *items, size_t item_size, int n, const unsigned char *done, MrError *err) {
  Status st = dist_gather(items, item_size, n, done, err);
  if (st != STATUS_OK || dist_size() == 1) return st;
  /* n * item_size < 2e9 was checked by the gather: one broadcast */
  MPI_Bcast(items, (int)(item_size * n), MPI_BYTE, 0, MPI_COMM_WORLD);
  return STATUS_OK;
}

/* MPI_Allreduce leaves the order of the additions to the library (and, with some algorithms,
 * lets ranks differ in the last bit); training needs the same sums on every rank, the same
 * for every run, so the sums below are made in rank order by hand. */

void dist_sum_doubles(double *v, int n) {
  const int size = dist_size();
  if (size == 1 || n < 1) return;
  double *all = malloc(sizeof(double) * n * size);
  if (!all) gather_failed(sizeof(double) * n * size);
  MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
  for (int i = 0; i < n; i++) {
    double s = all[i];
    for (int r = 1; r < size; r++) s += all[(size_t)r * n + i];
    v[i] = s;
  }
  free(all);
}

/* One piece of at most INT_MAX / size values: rank j adds up slice j of every rank's piece (an
 * all-to-all brings it the slices), then every rank gathers the added slices. */
static void sum_floats_piece(float *v, int n, float *recv, int *counts, int *offsets) {
  const int size = dist_size(), rank = dist_rank();
  for (int r = 0; r < size; r++)
    offsets[r] = (int)((long)n * r / size),
    counts[r] = (int)((long)n * (r + 1) / size) - offsets[r];
  const int mine = counts[rank];
  int *rcounts = counts + size, *roffsets = offsets + size;
  for (int r = 0; r < size; r++) rcounts[r] = mine, roffsets[r] = mine * r;
  MPI_Alltoallv(v, counts, offsets, MPI_FLOAT, recv, rcounts, roffsets, MPI_FLOAT, MPI_COMM_WORLD);
  float *slice = v + offsets[rank];
  for (int i = 0; i < mine; i++) {
    float s = recv[i];
    for (int r = 1; r < size; r++) s += recv[(size_t)r * mine + i];
    slice[i] = s;
  }
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, counts, offsets, MPI_FLOAT, MPI_COMM_WORLD);
}

void dist_sum_floats(float *v, size_t n) {
  const int size = dist_size();
  if (size == 1 || n == 0) return;
  const size_t piece_max = (size_t)(INT_MAX / size) < ((size_t)1 << 28)
                               ? (size_t)(INT_MAX / size)
                               : ((size_t)1 << 28); /* 1 GiB of floats at most per piece */
  const size_t piece = n < piece_max ? n : piece_max;
  /* a rank receives its slice (piece / size values, one more at most) from every rank */
  const size_t recv_floats = (piece / size + 1) * size;
  float *recv = malloc(sizeof(float) * recv_floats);
  int *counts = malloc(sizeof(int) * 4 * size);
  if (!recv || !counts) gather_failed(sizeof(float) * recv_floats);
  for (size_t at = 0; at < n; at += piece)
    sum_floats_piece(v + at, (int)(n - at < piece ? n - at : piece), recv, counts,
                     counts + 2 * size);
  free(recv), free(counts);
}

#else /* one process */

void dist_init(int *argc, char ***argv) { (void)argc, (void)argv; }
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
void dist_abort(int exit_code) { exit(exit_code); }
void dist_barrier(void) {}

struct DistQueue {
  int n, next;
};

DistQueue *dist_queue_new(int n, int chunk) {
  (void)chunk;
  DistQueue *q = calloc(1, sizeof *q);
  if (q) q->n = n;
  return q;
}

int dist_queue_next(DistQueue *q) { return q->next < q->n ? q->next++ : q->n; }

void dist_queue_free(DistQueue *q, int failed) {
  (void)failed;
  free(q);
}

Status dist_gather(void *items, size_t item_size, int n, const unsigned char *done, MrError *err) {
  (void)items, (void)item_size, (void)n, (void)done, (void)err;
  return STATUS_OK;
}

Status dist_share(void *items, size_t item_size, int n, const unsigned char *done, MrError *err) {
  return dist_gather(items, item_size, n, done, err);
}

void dist_sum_doubles(double *v, int n) { (void)v, (void)n; }
void dist_sum_floats(float *v, size_t n) { (void)v, (void)n; }

#endif
