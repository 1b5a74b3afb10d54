/* The journal of a long command's finished work, so that a run killed at
 * any point (kill -9, a power cut, a full disk) continues with --resume
 * instead of starting over. A journal is one append-only file: a header
 * holding the fingerprint of the run (its options, the model and data
 * contents, the thread count: whatever changes its results), then one record
 * per finished unit of work (a batch of a sweep row, of triage, of the
 * transfer matrix...), each a key and the unit's outputs, closed by a CRC-32.
 * A record is written and synced whole before the work goes on, so after a
 * crash the file holds every finished unit and at most one torn record at
 * the end, which the next open detects by its length or checksum and cuts
 * off. Units are independent of one another (each attack call seeds its own
 * random numbers), so a resumed run that restores the finished units and
 * computes the rest produces the outputs an uninterrupted one does.
 *
 * The journal is read back as untrusted bytes: every length is checked
 * against the file's size before anything is allocated or read. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "medrobust.h"

#define JOURNAL_MAGIC "MRJOURNAL1\n"
#define JOURNAL_MAGIC_LEN 11
#define RECORD_MAGIC 0x524a524du /* "MRJR" */
#define MAX_KEY 255
#define MAX_FINGERPRINT (1 << 20)

typedef struct {
  char *key;
  long offset; /* of the payload */
  uint64_t size;
} Record;

struct Journal {
  char path[4096];
  FILE *f;
  Record *records;
  int n, cap;
  int cursor; /* where the last lookup matched: a resumed run asks in write order */
  long restored;
};

static Status io_error(MrError *err, const Journal *j, const char *what) {
  return mr_error_set(err, STATUS_ERR_IO, "%s: cannot %s the journal: %s", j->path, what,
                      strerror(errno));
}

/* zlib's crc32 takes 32-bit lengths: large buffers go in pieces */
uint32_t journal_crc(uint32_t crc, const void *data, size_t size) {
  uLong c = crc;
  for (size_t at = 0; at < size; at += 1u << 30) {
    const size_t chunk = size - at < (1u << 30) ? size - at : 1u << 30;
    c = crc32(c, (const Bytef *)data + at, (uInt)chunk);
  }
  return (uint32_t)c;
}

static int read_exact(FILE *f, void *buf, size_t n) { return fread(buf, 1, n, f) == n; }

/* The CRC-32 of n bytes from the current position (streamed, so a record
 * larger than memory is still checked). */
static int crc_of(FILE *f, uint64_t n, uLong *crc) {
  unsigned char buf[1 << 16];
  while (n > 0) {
    const size_t chunk = n < sizeof buf ? (size_t)n : sizeof buf;
    if (!read_exact(f, buf, chunk)) return 0;
    *crc = crc32(*crc, buf, (uInt)chunk);
    n -= chunk;
  }
  return 1;
}

static Status add_record(Journal *j, const char *key, long offset, uint64_t size, MrError *err) {
  if (j->n == j->cap) {
    const int cap = j->cap ? 2 * j->cap : 64;
    Record *r = realloc(j->records, sizeof(Record) * cap);
    if (!r) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory reading the journal");
    j->records = r, j->cap = cap;
  }
  char *copy = strdup(key);
  if (!copy) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory reading the journal");
  j->records[j->n++] = (Record){copy, offset, size};
  return STATUS_OK;
}

/* Indexes the records after the header; stops at the first torn or corrupt
 * one and cuts the file there. */
static Status scan(Journal *j, long file_size, MrError *err) {
  long at = ftell(j->f);
  for (;;) {
    uint32_t magic, key_len, crc_stored;
    uint64_t size;
    char key[MAX_KEY + 1];
    if (fseek(j->f, at, SEEK_SET) != 0) break;
    if (!read_exact(j->f, &magic, 4) || magic != RECORD_MAGIC || !read_exact(j->f, &key_len, 4) ||
        key_len == 0 || key_len > MAX_KEY || !read_exact(j->f, &size, 8))
      break;
    const long payload = at + 16 + (long)key_len;
    if (size > (uint64_t)file_size || payload > file_size ||
        (uint64_t)(file_size - payload) < size + 4)
      break; /* the record runs past the end: a write the kill cut short */
    if (!read_exact(j->f, key, key_len)) break;
    key[key_len] = 0;
    if (strlen(key) != key_len) break;
    uLong crc = crc32(0L, (const Bytef *)key, key_len);
    if (!crc_of(j->f, size, &crc) || !read_exact(j->f, &crc_stored, 4) || crc_stored != crc) break;
    const Status s = add_record(j, key, payload, size, err);
    if (s != STATUS_OK) return s;
    at = payload + (long)size + 4;
  }
  if (at < file_size && ftruncate(fileno(j->f), at) != 0) return io_error(err, j, "repair");
  if (fseek(j->f, at, SEEK_SET) != 0) return io_error(err, j, "seek in");
  return STATUS_OK;
}

/* The first line where two fingerprints differ, for the message: from a
 * little before the first differing character (command lines are long). */
static void first_difference(const char *a, const char *b, char *out, size_t cap) {
  while (*a && *b) {
    const size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
    if (la != lb || memcmp(a, b, la) != 0) {
      size_t same = 0;
      while (same < la && same < lb && a[same] == b[same]) same++;
      const size_t from = same > 40 ? same - 40 : 0;
      const char *dots = from ? "..." : "";
      snprintf(out, cap, "'%s%.*s' then, '%s%.*s' now", dots,
               (int)(la - from < 160 ? la - from : 160), a + from, dots,
               (int)(lb - from < 160 ? lb - from : 160), b + from);
      return;
    }
    a += la + (a[la] == '\n'), b += lb + (b[lb] == '\n');
  }
  snprintf(out, cap, "%s", *a || *b ? "one lists more settings" : "a corrupt header");
}

static Status write_all(Journal *j, const void *buf, size_t n, MrError *err) {
  if (n && fwrite(buf, 1, n, j->f) != n) return io_error(err, j, "write");
  return STATUS_OK;
}

static Status sync_records(Journal *j, MrError *err) {
  if (fflush(j->f) != 0 || fdatasync(fileno(j->f)) != 0) return io_error(err, j, "write");
  return STATUS_OK;
}

static Status create(Journal *j, const char *fingerprint, MrError *err) {
  j->f = fopen(j->path, "w+b");
  if (!j->f) return io_error(err, j, "create");
  const uint32_t len = (uint32_t)strlen(fingerprint);
  const uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)fingerprint, len);
  Status s = write_all(j, JOURNAL_MAGIC, JOURNAL_MAGIC_LEN, err);
  if (s == STATUS_OK) s = write_all(j, &len, 4, err);
  if (s == STATUS_OK) s = write_all(j, fingerprint, len, err);
  if (s == STATUS_OK) s = write_all(j, &crc, 4, err);
  return s == STATUS_OK ? sync_records(j, err) : s;
}

/* Reads and checks the header of an existing journal. */
static Status open_existing(Journal *j, const char *fingerprint, MrError *err) {
  j->f = fopen(j->path, "r+b");
  if (!j->f) return io_error(err, j, "open");
  struct stat st;
  if (fstat(fileno(j->f), &st) != 0) return io_error(err, j, "read");
  char magic[JOURNAL_MAGIC_LEN];
  uint32_t len, crc;
  if (!read_exact(j->f, magic, JOURNAL_MAGIC_LEN) ||
      memcmp(magic, JOURNAL_MAGIC, JOURNAL_MAGIC_LEN) != 0 || !read_exact(j->f, &len, 4) ||
      len > MAX_FINGERPRINT || (uint64_t)len + JOURNAL_MAGIC_LEN + 8 > (uint64_t)st.st_size)
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s is not a medrobust journal (or its header is damaged); delete it to "
                        "start over",
                        j->path);
  char *stored = malloc((size_t)len + 1);
  if (!stored) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory reading the journal");
  Status s = STATUS_OK;
  if (!read_exact(j->f, stored, len) || !read_exact(j->f, &crc, 4) ||
      crc != (uint32_t)crc32(0L, (const Bytef *)stored, len))
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: the journal's header is damaged; delete it to start over", j->path);
  stored[len] = 0;
  if (s == STATUS_OK && strcmp(stored, fingerprint) != 0) {
    char diff[512];
    first_difference(stored, fingerprint, diff, sizeof diff);
    s = mr_error_set(err, STATUS_ERR_ARG,
                     "%s was written by a run with other settings or inputs (%s): resume with "
                     "the same command, model and data, or delete it to start over",
                     j->path, diff);
  }
  free(stored);
  return s == STATUS_OK ? scan(j, (long)st.st_size, err) : s;
}

Journal *journal_open(const char *path, const char *fingerprint, int resume, MrError *err) {
  Journal *j = calloc(1, sizeof *j);
  if (!j) {
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the journal");
    return NULL;
  }
  if (snprintf(j->path, sizeof j->path, "%s", path) >= (int)sizeof j->path ||
      strlen(fingerprint) > MAX_FINGERPRINT) {
    mr_error_set(err, STATUS_ERR_ARG, "%.200s: journal path or fingerprint too long", path);
    free(j);
    return NULL;
  }
  const int exists = access(path, F_OK) == 0;
  Status s;
  if (exists && !resume)
    s = mr_error_set(err, STATUS_ERR_ARG,
                     "%s holds the journal of an unfinished run: add --resume to continue it, "
                     "or delete it to start over",
                     path);
  else
    s = exists ? open_existing(j, fingerprint, err) : create(j, fingerprint, err);
  if (s != STATUS_OK) {
    journal_close(j);
    return NULL;
  }
  return j;
}

static const Record *find(Journal *j, const char *key) {
  for (int t = 0; t < j->n; t++) {
    const int i = (j->cursor + t) % j->n;
    if (strcmp(j->records[i].key, key) == 0) {
      j->cursor = i + 1;
      return &j->records[i];
    }
  }
  return NULL;
}

int journal_restore(Journal *j, const char *key, const JournalPart *parts, int n_parts) {
  if (!j || !j->n) return 0;
  const Record *r = find(j, key);
  if (!r) return 0;
  uint64_t total = 0;
  for (int p = 0; p < n_parts; p++) total += parts[p].size;
  if (total != r->size || fseek(j->f, r->offset, SEEK_SET) != 0) return 0;
  int ok = 1;
  for (int p = 0; ok && p < n_parts; p++)
    ok = parts[p].size == 0 || read_exact(j->f, parts[p].data, parts[p].size);
  fseek(j->f, 0, SEEK_END);
  j->restored += ok;
  return ok; /* a short read leaves the unit to be computed again */
}

Status journal_record(Journal *j, const char *key, const JournalPart *parts, int n_parts,
                      MrError *err) {
  if (!j) return STATUS_OK;
  const uint32_t magic = RECORD_MAGIC, key_len = (uint32_t)strlen(key);
  if (key_len == 0 || key_len > MAX_KEY)
    return mr_error_set(err, STATUS_ERR_ARG, "journal key '%.40s' is empty or too long", key);
  uint64_t size = 0;
  uLong crc = crc32(0L, (const Bytef *)key, key_len);
  for (int p = 0; p < n_parts; p++)
    size += parts[p].size, crc = journal_crc((uint32_t)crc, parts[p].data, parts[p].size);
  const uint32_t crc32v = (uint32_t)crc;
  if (fseek(j->f, 0, SEEK_END) != 0) return io_error(err, j, "seek in");
  const long start = ftell(j->f);
  Status s = write_all(j, &magic, 4, err);
  if (s == STATUS_OK) s = write_all(j, &key_len, 4, err);
  if (s == STATUS_OK) s = write_all(j, &size, 8, err);
  if (s == STATUS_OK) s = write_all(j, key, key_len, err);
  for (int p = 0; s == STATUS_OK && p < n_parts; p++)
    s = write_all(j, parts[p].data, parts[p].size, err);
  if (s == STATUS_OK) s = write_all(j, &crc32v, 4, err);
  if (s == STATUS_OK) s = sync_records(j, err);
  if (s != STATUS_OK) {
    /* a half-written record must not stay behind later ones: cut it off */
    if (start >= 0 && ftruncate(fileno(j->f), start) == 0) fseek(j->f, start, SEEK_SET);
    return s;
  }
  return add_record(j, key, start + 16 + (long)key_len, size, err);
}

long journal_restored(const Journal *j) { return j ? j->restored : 0; }
int journal_count(const Journal *j) { return j ? j->n : 0; }
const char *journal_path(const Journal *j) { return j ? j->path : ""; }

void journal_close(Journal *j) {
  if (!j) return;
  if (j->f) fclose(j->f);
  for (int i = 0; i < j->n; i++) free(j->records[i].key);
  free(j->records);
  free(j);
}

Status journal_finish(Journal *j, MrError *err) {
  if (!j) return STATUS_OK;
  char path[4096];
  snprintf(path, sizeof path, "%s", j->path);
  journal_close(j);
  if (unlink(path) != 0 && errno != ENOENT)
    return mr_error_set(err, STATUS_ERR_IO, "%s: cannot remove the finished journal: %s", path,
                        strerror(errno));
  return STATUS_OK;
}
