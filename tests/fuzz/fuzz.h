/* Shared by the fuzz targets (libFuzzer, make fuzz): readers that take a
 * path get the input written to a file in a private temporary directory. */
#ifndef MR_FUZZ_H
#define MR_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medrobust.h"

/* dir/name holding the input; the directory is made once per process */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
  static char dir[64], path[128];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/medrobust-fuzz-XXXXXX");
    if (!mkdtemp(dir)) abort();
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
  return path;
}

/* The reader must either succeed or say why: an error without a message is a bug. */
static inline void fuzz_check_error(const MrError *err) {
  if (!err->msg[0]) abort();
}

#endif
