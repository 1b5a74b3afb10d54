/* What the report writers share: atomic text files and JSON numbers that
 * may be infinite or NaN (written as null). */
#ifndef MR_REPORT_H
#define MR_REPORT_H

#include <cjson/cJSON.h>

#include "medrobust.h"

/* path written through a temporary file and a rename */
Status report_write_atomic(const char *path, const char *text, MrError *err);
/* v, or null when v is not finite */
void json_add_number(cJSON *o, const char *key, double v);
/* dir/name from the JSON tree (printed, written atomically; root not freed) */
Status report_write_json(const char *dir, const char *name, const cJSON *root, MrError *err);
/* "training": the record as JSON when it parses, else as text */
void report_add_training(cJSON *o, const char *record);
/* dir/sub, created unless it exists */
Status report_make_dir(const char *dir, const char *sub, MrError *err);

#endif
