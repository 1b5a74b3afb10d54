/* Outputs written whole or not at all (atomicfile.c). */
#ifndef MR_ATOMICFILE_H
#define MR_ATOMICFILE_H

#include <stdio.h>

#include "medrobust.h"

typedef struct {
  char path[4096];
  char tmp[4200]; /* path.tmp.PID, beside it: a rename within one file system */
  FILE *f;        /* NULL when a library writes tmp itself (zip, PNG) */
} AtomicFile;

/* Names the temporary file (removing any a killed run left for the same
 * path) without opening it, for writers that take a file name. */
Status atomic_begin(AtomicFile *a, const char *path, MrError *err);
/* atomic_begin, then opens the temporary file with mode ("w" or "wb"). */
Status atomic_open(AtomicFile *a, const char *path, const char *mode, MrError *err);
/* Flushes, syncs and closes the temporary file and renames it over path. On
 * any failure (a full disk, a read-only folder) the temporary file is
 * removed, the previous file at path stays as it was, and err says why. */
Status atomic_commit(AtomicFile *a, MrError *err);
/* Gives up: closes and removes the temporary file. */
void atomic_abort(AtomicFile *a);

#endif
