/* CSV files (manifests, split files) as a table of strings, through libcsv
 * (RFC 4180 quoting), with a header row whose columns are found by name. */
#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data.h"

#define MAX_CSV_BYTES (256u << 20)
#define MAX_CSV_FIELDS 64

typedef struct {
  CsvTable *t;
  char *fields[MAX_CSV_FIELDS];
  int n_fields, too_many, nomem;
} CsvBuild;

static void on_field(void *s, size_t len, void *ctx) {
  CsvBuild *b = ctx;
  if (b->n_fields == MAX_CSV_FIELDS) {
    b->too_many = 1;
    return;
  }
  char *f = malloc(len + 1);
  if (!f) {
    b->nomem = 1;
    return;
  }
  memcpy(f, s ? s : "", s ? len : 0);
  f[s ? len : 0] = 0;
  b->fields[b->n_fields++] = f;
}

static void on_row(int c, void *ctx) {
  (void)c;
  CsvBuild *b = ctx;
  CsvTable *t = b->t;
  /* a blank line is one empty field: not a row */
  if (b->n_fields == 1 && !b->fields[0][0]) {
    free(b->fields[0]);
    b->n_fields = 0;
    return;
  }
  if (t->n_rows % 256 == 0) {
    char ***rows = realloc(t->rows, sizeof(char **) * (t->n_rows + 256));
    int *nf = realloc(t->n_fields, sizeof(int) * (t->n_rows + 256));
    if (rows) t->rows = rows;
    if (nf) t->n_fields = nf;
    if (!rows || !nf) {
      b->nomem = 1;
      for (int i = 0; i < b->n_fields; i++) free(b->fields[i]);
      b->n_fields = 0;
      return;
    }
  }
  char **row = malloc(sizeof(char *) * (b->n_fields ? b->n_fields : 1));
  if (!row) {
    b->nomem = 1;
    return;
  }
  memcpy(row, b->fields, sizeof(char *) * b->n_fields);
  t->rows[t->n_rows] = row;
  t->n_fields[t->n_rows++] = b->n_fields;
  b->n_fields = 0;
}

Status csv_table_read(const char *path, CsvTable *t, MrError *err) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "rb");
  if (!f) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (size < 0 || size > (long)MAX_CSV_BYTES) {
    fclose(f);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %ld bytes is not a plausible CSV", path, size);
  }
  char *buf = malloc((size_t)size + 1);
  const size_t got = buf ? fread(buf, 1, (size_t)size, f) : 0;
  fclose(f);
  if (!buf || got != (size_t)size) {
    free(buf);
    return mr_error_set(err, STATUS_ERR_IO, "%s: read failed", path);
  }
  struct csv_parser p;
  CsvBuild b = {.t = t};
  Status s = csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) == 0
                 ? STATUS_OK
                 : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  if (s == STATUS_OK && (csv_parse(&p, buf, got, on_field, on_row, &b) != got ||
                         csv_fini(&p, on_field, on_row, &b) != 0))
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: not valid CSV (%s) near row %d", path,
                     csv_strerror(csv_error(&p)), t->n_rows + 1);
  if (s == STATUS_OK && b.too_many)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: a row has more than %d fields", path,
                     MAX_CSV_FIELDS);
  if (s == STATUS_OK && b.nomem) s = mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
  if (s == STATUS_OK && t->n_rows < 1)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: empty (a header row is expected)", path);
  csv_free(&p);
  for (int i = 0; i < b.n_fields; i++) free(b.fields[i]);
  free(buf);
  if (s != STATUS_OK) csv_table_free(t);
  return s;
}

int csv_table_column(const CsvTable *t, const char *const *names) {
  for (int c = 0; t->n_rows && c < t->n_fields[0]; c++)
    for (int i = 0; names[i]; i++)
      if (strcasecmp(t->rows[0][c], names[i]) == 0) return c;
  return -1;
}

const char *csv_table_cell(const CsvTable *t, int row, int col) {
  return col >= 0 && col < t->n_fields[row] ? t->rows[row][col] : "";
}

void csv_table_free(CsvTable *t) {
  for (int r = 0; r < t->n_rows; r++) {
    for (int c = 0; c < t->n_fields[r]; c++) free(t->rows[r][c]);
    free(t->rows[r]);
  }
  free(t->rows), free(t->n_fields);
  memset(t, 0, sizeof *t);
}

void csv_write_field(FILE *f, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}
