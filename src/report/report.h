/* What the report writers share: JSON and CSV text written atomically, JSON numbers that
 * may be infinite or NaN (written as null). */
#ifndef MR_REPORT_H
#define MR_REPORT_H

#include <cjson/cJSON.h>
#include <stdio.h>

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

/* ---- HTML pieces (html.c), for the sections other files render ---------- */

/* A line chart: series of (x, y) with y in [0,1] shown as percent. */
typedef struct {
  const char *name;
  double x[64], y[64];
  int n;
  int dashed; /* drawn dashed in the colour of series `dashed - 1`, without a legend entry */
} Series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  int x_percent;   /* x is a share: tick labels in percent */
  double x_step;   /* > 0: tick labels also in grey levels of this step */
  double marker_x; /* > 0: a vertical marker (the 20% deferral point) */
  const char *marker_label;
} Chart;

void report_svg_chart(FILE *o, const Chart *c, const Series *s, int ns);
/* text with &, <, >, quotes escaped */
void report_esc(FILE *o, const char *s);
/* s escaped as report_esc does, into one of 8 rotating buffers (one fprintf may take several;
 * cut at 1 KiB). */
const char *report_html(const char *s);
/* o[k] when it is a string, else "" */
const char *report_str(const cJSON *o, const char *k);
/* o[k] when it is a number, else NAN */
double report_num(const cJSON *o, const char *k);
/* <img> with dir/rel embedded as a data URI; nothing for a path that is not a
 * relative .png inside dir */
void report_img(FILE *o, const char *dir, const char *rel, const char *alt, const char *cls);
/* radhtml.c: radiomics_attack.json (beside results.json's CNN sweep when given) and
 * radiomics_stability.json; either may be NULL */
void report_radiomics_sections(FILE *o, const char *dir, const cJSON *attack, const cJSON *cnn,
                               const cJSON *stability);
/* certify.c: certify.json's curve, certified beside PGD-L2 */
void report_certify_section(FILE *o, const cJSON *certify);
/* dir/name parsed, NULL when absent or not JSON */
cJSON *report_read_json(const char *dir, const char *name);
/* the segmentation sections (seghtml.c): seg_results.json, seg_examples.json,
 * seg_compare.json, seg_triage.json, whichever are given */
void report_segment_sections(FILE *o, const char *dir, const cJSON *results, const cJSON *examples,
                             const cJSON *compare, const cJSON *triage);

#endif
