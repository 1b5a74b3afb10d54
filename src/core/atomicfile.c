/* Outputs written whole or not at all: every file medrobust writes goes to
 * path.tmp.PID beside its target, is synced, and is renamed over it, so a
 * reader (or a resumed run) sees the old file or the new one, never half of
 * one; a failed write removes the temporary file and leaves the old output.
 * A run killed mid-write leaves its temporary file behind; the next write of
 * the same target removes those whose process is gone. */
#include "atomicfile.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Removes dir/base.tmp.PID files whose process no longer runs, and
 * base.tmp.PID.XXXXXX, the temporary file libzip writes an archive through. */
static void remove_stale(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (slash)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else
    snprintf(dir, sizeof dir, ".");
  if (!dir[0]) snprintf(dir, sizeof dir, "/");
  DIR *d = opendir(dir);
  if (!d) return;
  const size_t bl = strlen(base);
  for (struct dirent *e; (e = readdir(d));) {
    const char *n = e->d_name;
    if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
    char *end;
    const long pid = strtol(n + bl + 5, &end, 10);
    if ((*end && *end != '.') || pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    char stale[8300];
    snprintf(stale, sizeof stale, "%s/%s", dir, n);
    unlink(stale);
  }
  closedir(d);
}

Status atomic_begin(AtomicFile *a, const char *path, MrError *err) {
  memset(a, 0, sizeof *a);
  if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path ||
      snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof a->tmp)
    return mr_error_set(err, STATUS_ERR_ARG, "%.200s...: path too long", path);
  remove_stale(path);
  return STATUS_OK;
}

Status atomic_open(AtomicFile *a, const char *path, const char *mode, MrError *err) {
  const Status s = atomic_begin(a, path, err);
  if (s != STATUS_OK) return s;
  a->f = fopen(a->tmp, mode);
  if (!a->f) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
  return STATUS_OK;
}

Status atomic_commit(AtomicFile *a, MrError *err) {
  int ok = 1, e = 0;
  if (a->f) {
    ok = fflush(a->f) == 0 && !ferror(a->f) && fsync(fileno(a->f)) == 0;
    if (!ok) e = errno;
    if (fclose(a->f) != 0 && ok) ok = 0, e = errno;
    a->f = NULL;
  }
  if (ok && rename(a->tmp, a->path) != 0) ok = 0, e = errno;
  if (!ok) {
    remove(a->tmp);
    return mr_error_set(err, STATUS_ERR_IO, "%s: write failed: %s (the previous file is kept)",
                        a->path, e ? strerror(e) : "unknown error");
  }
  return STATUS_OK;
}

void atomic_abort(AtomicFile *a) {
  if (a->f) fclose(a->f);
  a->f = NULL;
  if (a->tmp[0]) remove(a->tmp);
}
