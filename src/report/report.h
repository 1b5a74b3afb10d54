/* What the report writers share: JSON and CSV text written atomically, JSON numbers that
 * may be infinite or NaN (written as null). */
#ifndef MR_REPORT_H
#define MR_REPORT_H

#include <cjson/cJSON.h>

#include "medrobust.h"

/* v, or null when v is not finite */
void json_add_number(cJSON *o, const char *key, double v);
/* dir/name from the JSON tree (printed, written atomically; root not freed) */
Status report_write_json(const char *dir, const char *name, const cJSON *root, MrError *err);
/* "training": the record as JSON when it parses, else as text */
void report_add_training(cJSON *o, const char *record);
/* A growing text buffer for the CSV writers. */
typedef struct {
  char *buf;
  size_t len, cap;
  int failed; /* an allocation failed: the text is incomplete */
} ReportText;
void report_text_add(ReportText *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* a CSV field: quoted, with quotes doubled */
void report_text_field(ReportText *t, const char *s);
/* dir/name from the text, atomically (an error if it is incomplete); then empties it */
Status report_text_write(ReportText *t, const char *dir, const char *name, MrError *err);

/* dir/sub, created unless it exists */
Status report_make_dir(const char *dir, const char *sub, MrError *err);

#endif
