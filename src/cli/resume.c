/* --resume for the long commands (eval, triage, compare, attack, saliency):
 * where each keeps its journal, what a journal must match to be resumed (the
 * command line, the thread count, the model and data contents), and the
 * messages around it. The journal itself is src/core/journal.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_journal_path(const char *out, int out_is_dir, char *path, size_t cap) {
  snprintf(path, cap, out_is_dir ? "%s/" CLI_JOURNAL_NAME : "%s.journal", out);
}

void cli_journal_rank_path(const char *out, int out_is_dir, char *path, size_t cap) {
  cli_journal_path(out, out_is_dir, path, cap);
  const size_t len = strlen(path);
  if (dist_size() > 1 && len < cap)
    snprintf(path + len, cap - len, ".rank%d-of-%d", dist_rank(), dist_size());
}

int cli_rank_done(const char *cmd, Status st, const MrError *err, Journal *journal) {
  if (st != STATUS_OK) { /* main ends the job on every rank */
    fprintf(stderr, "medrobust %s: rank %d: %s\n", cmd, dist_rank(), err->msg);
    journal_close(journal);
    return EXIT_RUNTIME;
  }
  dist_barrier(); /* rank 0 has written the outputs */
  return cli_journal_finish(cmd, journal);
}

int cli_journal_check(const char *cmd, const char *path, int resume) {
  if (resume || access(path, F_OK) != 0) return 0;
  fprintf(stderr,
          "medrobust %s: %s holds the journal of an unfinished run with these outputs: add "
          "--resume to continue it, or delete it to start over\n",
          cmd, path);
  return EXIT_USAGE;
}

/* Everything that changes a run's results, a line each: a journal written
 * under other settings is refused rather than silently mixed in. */
static char *fingerprint(const char *cmd, int argc, char **argv, Net *const *nets, int n_nets,
                         const Dataset *set, const char *extra) {
  size_t cap = 4096;
  for (int i = 1; i < argc; i++) cap += strlen(argv[i]) + 1;
  char *text = malloc(cap);
  if (!text) return NULL;
  size_t at = (size_t)snprintf(text, cap, "medrobust %s\narguments:", cmd);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--resume") != 0 && strcmp(argv[i], "--quiet") != 0)
      at += (size_t)snprintf(text + at, cap - at, " %s", argv[i]);
  /* kernels sum in an order that depends on the thread count */
  at += (size_t)snprintf(text + at, cap - at, "\nthreads: %d", mr_get_threads());
  for (int m = 0; m < n_nets; m++) {
    uint32_t crc = 0;
    size_t bytes = 0;
    for (int t = 0; t < net_tensor_count(nets[m]); t++) {
      const TensorRef r = net_tensor(nets[m], t);
      const size_t size = r.numel * (r.data ? sizeof(float) : sizeof(int64_t));
      crc = journal_crc(crc, r.data ? (const void *)r.data : (const void *)r.idata, size);
      bytes += size;
    }
    at += (size_t)snprintf(text + at, cap - at, "\nmodel %d: %zu bytes, crc32 %08x", m + 1, bytes,
                           crc);
  }
  const size_t per = (size_t)set->c * set->h * set->w;
  uint32_t crc = journal_crc(0, set->images, sizeof(float) * per * set->n);
  crc = journal_crc(crc, set->labels, sizeof(int) * set->n);
  if (set->masks) crc = journal_crc(crc, set->masks, sizeof(int) * set->h * set->w * set->n);
  for (int i = 0; set->files && i < set->n; i++)
    crc = journal_crc(crc, set->files[i], strlen(set->files[i]) + 1);
  at += (size_t)snprintf(text + at, cap - at, "\ndata: %d images %dx%dx%d, crc32 %08x\n", set->n,
                         set->c, set->h, set->w, crc);
  if (extra && at < cap) snprintf(text + at, cap - at, "%.1000s\n", extra);
  return text;
}

Journal *cli_journal_open(const char *cmd, const char *path, int resume, int argc, char **argv,
                          Net *const *nets, int n_nets, const Dataset *set, const char *extra,
                          int *exit_code) {
  MrError err = {0};
  char *print = fingerprint(cmd, argc, argv, nets, n_nets, set, extra);
  if (!print) {
    fprintf(stderr, "medrobust %s: out of memory\n", cmd);
    *exit_code = EXIT_RUNTIME;
    return NULL;
  }
  const int existed = access(path, F_OK) == 0;
  Journal *j = journal_open(path, print, resume, &err);
  free(print);
  if (!j) {
    fprintf(stderr, "medrobust %s: %s\n", cmd, err.msg);
    *exit_code = err.status == STATUS_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    return NULL;
  }
  if (resume && !existed)
    fprintf(stderr, "medrobust %s: no journal at %s: starting from the beginning\n", cmd, path);
  else if (resume)
    fprintf(stderr, "medrobust %s: resuming from %s (%d finished units)\n", cmd, path,
            journal_count(j));
  *exit_code = 0;
  return j;
}

int cli_journal_finish(const char *cmd, Journal *j) {
  MrError err = {0};
  if (journal_finish(j, &err) == STATUS_OK) return 0;
  fprintf(stderr, "medrobust %s: %s\n", cmd, err.msg);
  return EXIT_RUNTIME;
}
