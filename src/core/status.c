/* Status codes and the error record every fallible call fills.
 * The library never prints: messages travel up to the CLI in an MrError. */
#include <stdarg.h>
#include <stdio.h>

#include "medrobust.h"

const char *status_str(Status s) {
  static const char *names[] = {
      [STATUS_OK] = "ok",
      [STATUS_ERR_NOMEM] = "out of memory",
      [STATUS_ERR_IO] = "i/o error",
      [STATUS_ERR_FORMAT] = "bad file format",
      [STATUS_ERR_SHAPE] = "shape mismatch",
      [STATUS_ERR_ARG] = "invalid argument",
      [STATUS_ERR_NAN] = "non-finite value",
  };
  if ((int)s < 0 || (size_t)s >= sizeof names / sizeof names[0]) return "unknown status";
  return names[s];
}

Status mr_error_set(MrError *err, Status status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}
