/* MedMNIST .npz files: a zip (stored or deflated, ZIP64) of NumPy .npy
 * members {train,val,test}_{images,labels}.npy, read through libzip. Every
 * size in a member header is checked against the member's length before
 * anything is allocated. Images: uint8 (/255), uint16 (/65535) or float
 * already in [0,1]; (N,H,W) grey or (N,H,W,C) channels-last. Labels: any
 * integer type, shape (N) or (N,1). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zip.h>

#include "../core/atomicfile.h"
#include "data.h"

/* The header alone (buf holds at least all of it): dtype, shape, where the
 * data starts and how many elements it declares. */
static const char *npy_header(NpyArray *a, const uint8_t *buf, size_t len, size_t *data_off,
                              size_t *count_out) {
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) return "not a .npy array (bad magic)";
  const int major = buf[6];
  size_t hlen, off;
  if (major == 1) {
    hlen = buf[8] | (size_t)buf[9] << 8;
    off = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return "truncated .npy header";
    hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    off = 12;
  } else {
    return "unsupported .npy version";
  }
  if (hlen > len - off || hlen > 65536) return "truncated .npy header";
  char header[65537];
  memcpy(header, buf + off, hlen);
  header[hlen] = 0;
  const char *descr = strstr(header, "'descr'");
  const char *fortran = strstr(header, "'fortran_order'");
  const char *shape = strstr(header, "'shape'");
  if (!descr || !fortran || !shape) return "malformed .npy header dict";
  const char *q = strchr(descr + 7, '\'');
  if (!q || strlen(q) < 4) return "malformed .npy descr";
  const char order = q[1];
  a->kind = q[2];
  a->bytes = atoi(q + 3);
  if (order == '>' && a->bytes > 1) return "big-endian arrays are not supported";
  if (!strchr("uifb", a->kind) || a->bytes < 1 || a->bytes > 8) return "unsupported dtype";
  if (a->kind == 'f' && a->bytes != 4 && a->bytes != 8) return "unsupported float dtype";
  if (strstr(fortran, "True") && strstr(fortran, "True") < shape)
    return "Fortran-order arrays are not supported";
  const char *p = strchr(shape, '(');
  if (!p) return "malformed .npy shape";
  p++;
  a->ndim = 0;
  while (*p && *p != ')') {
    while (*p == ' ' || *p == ',') p++;
    if (*p == ')') break;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || v < 0 || v > (1LL << 40)) return "malformed .npy shape";
    if (a->ndim == 5) return "arrays of more than 5 dimensions are not supported";
    a->shape[a->ndim++] = v;
    p = end;
  }
  size_t count = 1;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] && count > SIZE_MAX / (size_t)a->shape[i]) return "array too large";
    count *= (size_t)a->shape[i];
  }
  *data_off = off + hlen, *count_out = count;
  return NULL;
}

const char *npy_parse(NpyArray *a, const uint8_t *buf, size_t len) {
  size_t off, count;
  const char *why = npy_header(a, buf, len, &off, &count);
  if (why) return why;
  a->data = buf + off;
  a->data_len = len - off;
  if (count > a->data_len / (size_t)a->bytes)
    return "array data shorter than its shape (truncated)";
  if (count * (size_t)a->bytes != a->data_len)
    return "array data longer than its shape (trailing bytes)";
  return NULL;
}

const char *npy_declared_size(const uint8_t *buf, size_t len, size_t *total) {
  NpyArray a;
  size_t off, count;
  const char *why = npy_header(&a, buf, len, &off, &count);
  if (why) return why;
  if (count > (SIZE_MAX - off) / (size_t)a.bytes) return "array too large";
  *total = off + count * (size_t)a.bytes;
  return NULL;
}

double npy_value(const NpyArray *a, size_t i) {
  const uint8_t *p = a->data + i * a->bytes;
  switch (a->kind) {
    case 'f':
      if (a->bytes == 4) {
        float v;
        memcpy(&v, p, 4);
        return v;
      } else {
        double v;
        memcpy(&v, p, 8);
        return v;
      }
    case 'u':
    case 'b': {
      uint64_t v = 0;
      for (int k = 0; k < a->bytes; k++) v |= (uint64_t)p[k] << (8 * k);
      return (double)v;
    }
    default: {
      uint64_t v = 0;
      for (int k = 0; k < a->bytes; k++) v |= (uint64_t)p[k] << (8 * k);
      if (a->bytes < 8 && (v >> (8 * a->bytes - 1)) & 1) v |= ~0ULL << (8 * a->bytes);
      return (double)(int64_t)v;
    }
  }
}

/* Reads a whole member; NULL (err set) if absent, unreadable or over the limit.
 * An .npy member's header is read first: the size it declares must be the
 * member's; no member over mr_limits().file_bytes is inflated, and one that
 * inflates to over 256 MiB at more than 200:1 is refused as a bomb. */
static uint8_t *zip_read_member(zip_t *za, const char *path, const char *name, size_t *len,
                                int required, MrError *err) {
  const size_t name_len = strlen(name);
  const int npy = name_len > 4 && strcmp(name + name_len - 4, ".npy") == 0;
  zip_int64_t idx = zip_name_locate(za, name, 0);
  if (idx < 0) {
    if (required) mr_error_set(err, STATUS_ERR_FORMAT, "%s: no member '%s'", path, name);
    return NULL;
  }
  zip_stat_t st;
  if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: member '%s' has no usable size", path, name);
    return NULL;
  }
  if (st.size > mr_limits().file_bytes) {
    mr_error_set(err, STATUS_ERR_FORMAT,
                 "%s: member '%s' inflates to %llu bytes, over the %llu accepted (raise with "
                 "medrobust --max-file-gb)",
                 path, name, (unsigned long long)st.size,
                 (unsigned long long)mr_limits().file_bytes);
    return NULL;
  }
  const double ratio = mr_limits().inflate_ratio;
  if (npy && ratio > 0 && st.size > ((zip_uint64_t)256 << 20) && (st.valid & ZIP_STAT_COMP_SIZE) &&
      (double)st.size > ratio * (double)st.comp_size) {
    mr_error_set(err, STATUS_ERR_FORMAT,
                 "%s: member '%s' inflates %llu bytes to %llu (over %g:1; a decompression "
                 "bomb? medrobust --max-inflate-ratio N raises the limit, 0 lifts it)",
                 path, name, (unsigned long long)st.comp_size, (unsigned long long)st.size, ratio);
    return NULL;
  }
  zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
  /* the .npy header first (at most 64 KiB + 12 bytes), then the rest */
  const size_t head_max = (size_t)65536 + 12;
  const size_t head = npy && st.size > head_max ? head_max : (size_t)st.size;
  uint8_t *buf = zf ? malloc(head ? head : 1) : NULL;
  zip_int64_t got = buf ? zip_fread(zf, buf, head) : -1;
  if (npy && buf && got == (zip_int64_t)head) {
    size_t declared = 0;
    const char *bad = npy_declared_size(buf, head, &declared);
    if (bad || declared != (size_t)st.size) {
      if (bad)
        mr_error_set(err, STATUS_ERR_FORMAT, "%s: member '%s': %s", path, name, bad);
      else
        mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: member '%s' holds %llu bytes, its .npy header declares %zu (%s)", path,
                     name, (unsigned long long)st.size, declared,
                     declared > st.size ? "truncated" : "trailing bytes");
      zip_fclose(zf);
      free(buf);
      return NULL;
    }
  }
  if (buf && got == (zip_int64_t)head && head < st.size) {
    uint8_t *all = realloc(buf, st.size);
    if (all) {
      buf = all;
      const zip_int64_t rest = zip_fread(zf, buf + head, st.size - head);
      got = rest < 0 ? rest : got + rest;
    } else {
      free(buf);
      buf = NULL;
    }
  }
  const char *why = zf ? zip_file_strerror(zf) : zip_strerror(za);
  /* libzip reports a stream that inflates short as "No error": say what happened */
  char short_read[96];
  if (zf && buf && got >= 0 && got < (zip_int64_t)st.size) {
    snprintf(short_read, sizeof short_read,
             "inflated %lld of %llu bytes (a corrupt or cut deflate stream)", (long long)got,
             (unsigned long long)st.size);
    why = short_read;
  }
  if (!zf || !buf || got != (zip_int64_t)st.size) {
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: cannot read member '%s': %s", path, name,
                 buf ? why : "out of memory");
    if (zf) zip_fclose(zf);
    free(buf);
    return NULL;
  }
  zip_fclose(zf);
  *len = (size_t)st.size;
  return buf;
}

static Status npz_read_split(zip_t *za, const char *path, const char *split, Dataset *d, int *bits,
                             MrError *err) {
  char name[64];
  size_t ilen = 0, llen = 0;
  snprintf(name, sizeof name, "%s_images.npy", split);
  uint8_t *ibuf = zip_read_member(za, path, name, &ilen, 1, err);
  if (!ibuf) return err ? err->status : STATUS_ERR_FORMAT;
  snprintf(name, sizeof name, "%s_labels.npy", split);
  uint8_t *lbuf = zip_read_member(za, path, name, &llen, 1, err);
  if (!lbuf) {
    free(ibuf);
    return err ? err->status : STATUS_ERR_FORMAT;
  }
  NpyArray im, lb;
  const char *why;
  Status status = STATUS_OK;
  if ((why = npy_parse(&im, ibuf, ilen))) {
    status = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s_images.npy: %s", path, split, why);
  } else if ((why = npy_parse(&lb, lbuf, llen))) {
    status = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s_labels.npy: %s", path, split, why);
  } else if (im.ndim != 3 && !(im.ndim == 4 && (im.shape[3] == 1 || im.shape[3] == 3))) {
    /* also 5-D and channels-first arrays: segmentation layouts only (segdata.c) */
    status = mr_error_set(err, STATUS_ERR_SHAPE,
                          "%s: %s_images has %d dimensions, expected (N,H,W) or (N,H,W,1|3)", path,
                          split, im.ndim);
  } else if (lb.kind == 'f' || !(lb.ndim == 1 || (lb.ndim == 2 && lb.shape[1] == 1))) {
    status = mr_error_set(
        err, STATUS_ERR_SHAPE,
        "%s: %s_labels must be integers of shape (N) or (N,1) (multi-label sets are not supported)",
        path, split);
  } else if (lb.shape[0] != im.shape[0]) {
    status = mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s has %lld images but %lld labels", path,
                          split, (long long)im.shape[0], (long long)lb.shape[0]);
  } else if (im.shape[1] < 1 || im.shape[2] < 1 || im.shape[1] > 4096 || im.shape[2] > 4096 ||
             im.shape[0] > (1 << 24) || (im.ndim == 4 && (im.shape[3] < 1 || im.shape[3] > 4))) {
    status =
        mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s images are %lldx%lld (%lld of them)", path,
                     split, (long long)im.shape[1], (long long)im.shape[2], (long long)im.shape[0]);
  } else if (im.kind != 'f' && im.bytes > 2) {
    /* the scale below is 1 / (2^bits - 1): 8 and 16 bits are what images are stored in */
    status = mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: %s images are %d-byte integers (8 or 16 bits, or floats on [0,1])",
                          path, split, im.bytes);
  }
  if (status == STATUS_OK) {
    d->n = (int)im.shape[0];
    d->h = (int)im.shape[1];
    d->w = (int)im.shape[2];
    d->c = im.ndim == 4 ? (int)im.shape[3] : 1;
    const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
    d->images = malloc(sizeof(float) * (per * d->n + 1));
    d->labels = malloc(sizeof(int) * (d->n ? d->n : 1));
    if (!d->images || !d->labels)
      status = mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
    const double scale = im.kind == 'f' ? 1.0 : 1.0 / ((double)(1u << (8 * im.bytes)) - 1.0);
    *bits = im.kind == 'f' ? 0 : 8 * im.bytes;
    for (int i = 0; status == STATUS_OK && i < d->n; i++) {
      for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < d->c; c++) {
          /* channels-last in the file, NCHW in memory */
          const double v = npy_value(&im, (size_t)i * per + p * d->c + c) * scale;
          if (!(v >= 0.0 && v <= 1.0)) {
            status = mr_error_set(err, STATUS_ERR_FORMAT,
                                  "%s: %s image %d has value %g outside [0,1]", path, split, i, v);
            break;
          }
          d->images[(size_t)i * per + (size_t)c * plane + p] = (float)v;
        }
      const double y = npy_value(&lb, (size_t)i);
      if (!(y >= 0 && y < MR_MAX_CLASSES) || y != floor(y)) { /* checked before the cast */
        status = mr_error_set(err, STATUS_ERR_FORMAT,
                              "%s: %s label %d is %g (class ids are integers 0..%d)", path, split,
                              i, y, MR_MAX_CLASSES - 1);
        break;
      }
      d->labels[i] = (int)y;
    }
  }
  free(ibuf);
  free(lbuf);
  return status;
}

/* {split}_images + {split}_masks; a split without them is empty, and a
 * file of bare images.npy + masks.npy puts them all in test. */
static Status npz_read_segment_split(zip_t *za, const char *path, const char *split, Dataset *d,
                                     int *bits, MrError *err) {
  char iname[64], mname[64];
  snprintf(iname, sizeof iname, "%s_images.npy", split);
  snprintf(mname, sizeof mname, "%s_masks.npy", split);
  if (zip_name_locate(za, mname, 0) < 0 && strcmp(split, "test") == 0 &&
      zip_name_locate(za, "masks.npy", 0) >= 0)
    snprintf(iname, sizeof iname, "images.npy"), snprintf(mname, sizeof mname, "masks.npy");
  if (zip_name_locate(za, mname, 0) < 0) {
    if (zip_name_locate(za, iname, 0) >= 0)
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s has no %s beside it", path, iname, mname);
    return dataset_alloc(d, 0, 1, 1, 1, err);
  }
  size_t ilen = 0, mlen = 0;
  uint8_t *ibuf = zip_read_member(za, path, iname, &ilen, 1, err);
  uint8_t *mbuf = ibuf ? zip_read_member(za, path, mname, &mlen, 1, err) : NULL;
  Status status = mbuf ? STATUS_OK : err ? err->status : STATUS_ERR_FORMAT;
  NpyArray im, mk;
  const char *why;
  char what[4200];
  if (status == STATUS_OK && (why = npy_parse(&im, ibuf, ilen)))
    status = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s: %s", path, iname, why);
  if (status == STATUS_OK && (why = npy_parse(&mk, mbuf, mlen)))
    status = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s: %s", path, mname, why);
  snprintf(what, sizeof what, "%s: %s", path, split);
  if (status == STATUS_OK) status = segment_arrays_read(&im, &mk, d, bits, what, err);
  free(ibuf), free(mbuf);
  return status;
}

/* Class names when the file does not carry them: MedMNIST's own, by file name. */
static const struct {
  const char *stem;
  const char *names[4];
} known_sets[] = {
    {"breastmnist", {"malignant", "normal/benign"}},
    {"pneumoniamnist", {"normal", "pneumonia"}},
};

static void npz_class_names(DataSplits *d, zip_t *za, const char *path) {
  size_t len = 0;
  uint8_t *json = zip_read_member(za, path, "class_names.json", &len, 0, NULL);
  if (json) {
    data_names_from_json(d, (const char *)json, len);
    free(json);
  }
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (size_t k = 0; k < sizeof known_sets / sizeof known_sets[0]; k++)
    if (strncmp(base, known_sets[k].stem, strlen(known_sets[k].stem)) == 0)
      for (int c = 0; c < d->n_classes && c < 4 && known_sets[k].names[c]; c++)
        if (!d->class_names[c]) d->class_names[c] = strdup(known_sets[k].names[c]);
}

DataSplits *npz_load(const char *path, MrError *err) {
  int zerr = 0;
  zip_t *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  if (!za) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, zerr);
    mr_error_set(err,
                 zerr == ZIP_ER_NOENT || zerr == ZIP_ER_OPEN ? STATUS_ERR_IO : STATUS_ERR_FORMAT,
                 "%s: not a readable .npz (zip): %s", path, zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return NULL;
  }
  DataSplits *d = calloc(1, sizeof *d);
  Status status = d ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  d->segment = zip_name_locate(za, "train_masks.npy", 0) >= 0 ||
               zip_name_locate(za, "test_masks.npy", 0) >= 0 ||
               zip_name_locate(za, "masks.npy", 0) >= 0;
  for (int s = 0; status == STATUS_OK && s < SPLIT_COUNT; s++)
    status =
        d->segment
            ? npz_read_segment_split(za, path, split_name((Split)s), &d->split[s], &d->bits, err)
            : npz_read_split(za, path, split_name((Split)s), &d->split[s], &d->bits, err);
  int first = 0; /* a segmentation file may lack a split (masks.npy alone: test) */
  while (first < SPLIT_COUNT - 1 && d->split[first].n == 0) first++;
  for (int s = first + 1; status == STATUS_OK && s < SPLIT_COUNT; s++) {
    const Dataset *a = &d->split[first], *b = &d->split[s];
    if (b->n && (a->c != b->c || a->h != b->h || a->w != b->w))
      status =
          mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s images are %dx%dx%d but train are %dx%dx%d",
                       path, split_name((Split)s), b->c, b->h, b->w, a->c, a->h, a->w);
  }
  if (status == STATUS_OK) {
    if (!d->segment) data_count_classes(d);
    npz_class_names(d, za, path);
    snprintf(d->source, sizeof d->source, "npz %s", path);
    data_name_arrays(d, "_images");
  }
  zip_discard(za);
  if (status != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  return d;
}

/* ---- writing ------------------------------------------------------------ */

static uint8_t *npy_encode_u8(const Dataset *d, int images, size_t *len) {
  char header[128];
  const size_t plane = (size_t)d->h * d->w;
  if (!images && d->masks) {
    snprintf(header, sizeof header,
             "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }", d->n, d->h, d->w);
  } else if (images) {
    if (d->c == 1)
      snprintf(header, sizeof header,
               "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }", d->n, d->h,
               d->w);
    else
      snprintf(header, sizeof header,
               "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }", d->n, d->h,
               d->w, d->c);
  } else {
    snprintf(header, sizeof header, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 1), }",
             d->n);
  }
  /* header padded with spaces and a newline to a multiple of 64 bytes, as NumPy does */
  size_t hl = strlen(header);
  const size_t total_header = ((10 + hl + 1 + 63) / 64) * 64;
  const size_t body = images ? plane * d->c * d->n : d->masks ? plane * d->n : (size_t)d->n;
  uint8_t *buf = malloc(total_header + body);
  if (!buf) return NULL;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  const size_t hlen = total_header - 10;
  buf[8] = (uint8_t)(hlen & 0xff);
  buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + 10, header, hl);
  memset(buf + 10 + hl, ' ', hlen - hl - 1);
  buf[total_header - 1] = '\n';
  uint8_t *out = buf + total_header;
  if (images) {
    for (int i = 0; i < d->n; i++)
      for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < d->c; c++) {
          const float v = d->images[((size_t)i * d->c + c) * plane + p];
          out[((size_t)i * plane + p) * d->c + c] =
              (uint8_t)lrintf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f);
        }
  } else if (d->masks) {
    for (size_t i = 0; i < plane * d->n; i++) out[i] = (uint8_t)d->masks[i];
  } else {
    for (int i = 0; i < d->n; i++) out[i] = (uint8_t)d->labels[i];
  }
  *len = total_header + body;
  return buf;
}

static int zip_add_buffer(zip_t *za, const char *name, uint8_t *buf, size_t len) {
  zip_source_t *src = zip_source_buffer(za, buf, len, 1);
  if (!src) {
    free(buf);
    return 0;
  }
  zip_int64_t idx = zip_file_add(za, name, src, ZIP_FL_OVERWRITE);
  if (idx < 0) {
    zip_source_free(src);
    return 0;
  }
  /* a fixed date (2 Jan 1980, the start of the zip era) rather than now: the same
   * arrays give the same file, so a resumed run reproduces an uninterrupted one */
  return zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0) == 0 &&
         zip_file_set_mtime(za, (zip_uint64_t)idx, (time_t)315619200, 0) == 0;
}

struct NpzWriter {
  zip_t *za;
  AtomicFile af; /* zip writes af.tmp; closing renames it into place */
  int ok;
};

NpzWriter *npz_writer_open(const char *path, MrError *err) {
  NpzWriter *w = calloc(1, sizeof *w);
  if (!w) {
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  int zerr = 0;
  if (atomic_begin(&w->af, path, err) != STATUS_OK ||
      !(w->za = zip_open(w->af.tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr))) {
    if (!err || err->status == STATUS_OK)
      mr_error_set(err, STATUS_ERR_IO, "%s: cannot create", path);
    free(w);
    return NULL;
  }
  w->ok = 1;
  return w;
}

Status data_save_npz(const DataSplits *d, const char *path, MrError *err) {
  NpzWriter *w = npz_writer_open(path, err);
  if (!w) return err ? err->status : STATUS_ERR_IO;
  for (int kind = 0; w->ok && kind < 2; kind++)
    for (int s = 0; w->ok && s < SPLIT_COUNT; s++) {
      char name[64];
      snprintf(name, sizeof name, "%s_%s.npy", split_name((Split)s),
               kind == 0    ? "images"
               : d->segment ? "masks"
                            : "labels");
      size_t len = 0;
      uint8_t *buf = npy_encode_u8(&d->split[s], kind == 0, &len);
      w->ok = buf && zip_add_buffer(w->za, name, buf, len);
    }
  char *names = w->ok ? data_names_to_json(d) : NULL;
  if (names) w->ok = zip_add_buffer(w->za, "class_names.json", (uint8_t *)names, strlen(names));
  return npz_writer_close(w, err);
}

void npz_writer_add(NpzWriter *w, const char *name, char dtype, const int *shape, int ndim,
                    const void *data) {
  if (!w->ok) return;
  char dims[128] = "";
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%d%s", shape[i],
             ndim == 1 || i < ndim - 1 ? ", " : "");
    count *= (size_t)shape[i];
  }
  const char *descr = dtype == 'f' ? "<f4" : dtype == 'i' ? "<i4" : "|u1";
  const size_t item = dtype == 'u' ? 1 : 4;
  char header[256];
  snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr,
           dims);
  const size_t hl = strlen(header), total_header = ((10 + hl + 1 + 63) / 64) * 64;
  uint8_t *buf = malloc(total_header + count * item + 1);
  if (!buf) {
    w->ok = 0;
    return;
  }
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  const size_t hlen = total_header - 10;
  buf[8] = (uint8_t)(hlen & 0xff), buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + 10, header, hl);
  memset(buf + 10 + hl, ' ', hlen - hl - 1);
  buf[total_header - 1] = '\n';
  memcpy(buf + total_header, data, count * item); /* little-endian host, as the format */
  char member[128];
  snprintf(member, sizeof member, "%s.npy", name);
  w->ok = zip_add_buffer(w->za, member, buf, total_header + count * item);
}

Status npz_writer_close(NpzWriter *w, MrError *err) {
  const int closed = w->ok && zip_close(w->za) == 0;
  Status s;
  if (!closed) {
    s = mr_error_set(err, STATUS_ERR_IO, "%s: write failed: %s (the previous file is kept)",
                     w->af.path, w->ok ? zip_strerror(w->za) : "out of memory");
    zip_discard(w->za); /* still open after a failed close */
    atomic_abort(&w->af);
  } else {
    s = atomic_commit(&w->af, err);
  }
  free(w);
  return s;
}
