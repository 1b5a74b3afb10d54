/* Fashion-MNIST's gzipped IDX files (Debian's dataset-fashion-mnist), the
 * non-medical control of paper 001. The last 10% of the official training
 * set is the validation split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data.h"

static const char *fashion_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                        "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                        "Bag",         "Ankle boot"};

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads one IDX file; dims[0] is the count. Returns the bytes after the header. */
static uint8_t *idx_read(const char *path, int want_ndim, uint32_t *dims, MrError *err) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    mr_error_set(err, STATUS_ERR_IO, "%s: cannot open", path);
    return NULL;
  }
  uint8_t head[16];
  const int hl = 4 + 4 * want_ndim;
  uint8_t *data = NULL;
  if (gzread(f, head, hl) != hl || head[0] || head[1] || head[2] != 0x08 || head[3] != want_ndim) {
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a %d-dimensional uint8 IDX file", path,
                 want_ndim);
  } else {
    size_t count = 1;
    for (int i = 0; i < want_ndim; i++) {
      dims[i] = be32(head + 4 + 4 * i);
      if (dims[i] == 0 || dims[i] > 10000000) count = 0;
      count *= dims[i];
    }
    struct stat st;
    /* deflate inflates at most 1032:1: a file cannot hold more than that (found by fuzzing:
     * 25 bytes declaring 1.6 GB were allocated and read for 14 s before being refused) */
    const uint64_t can_hold = stat(path, &st) == 0 ? (uint64_t)st.st_size * 1032 + 4096 : 0;
    if (!count || count > (size_t)1 << 31) {
      mr_error_set(err, STATUS_ERR_FORMAT, "%s: implausible dimensions", path);
    } else if (count > can_hold) {
      mr_error_set(err, STATUS_ERR_FORMAT,
                   "%s: declares %zu bytes of pixels, more than a file of %lld bytes can hold",
                   path, count, (long long)st.st_size);
    } else if (!(data = malloc(count))) {
      mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
    } else if (gzread(f, data, (unsigned)count) != (int)count) {
      mr_error_set(err, STATUS_ERR_FORMAT, "%s: truncated", path);
      free(data);
      data = NULL;
    }
  }
  gzclose(f);
  return data;
}

static Status idx_pair(const char *dir, const char *prefix, Dataset *d, int first, int last,
                       MrError *err) {
  char ip[4096], lp[4096];
  snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  uint32_t idims[3] = {0}, ldims[1] = {0};
  uint8_t *im = idx_read(ip, 3, idims, err);
  uint8_t *lb = im ? idx_read(lp, 1, ldims, err) : NULL;
  Status status = im && lb ? STATUS_OK : (err ? err->status : STATUS_ERR_FORMAT);
  if (status == STATUS_OK && ldims[0] != idims[0])
    status =
        mr_error_set(err, STATUS_ERR_SHAPE, "%s: %u images but %u labels", dir, idims[0], ldims[0]);
  if (status == STATUS_OK && first >= (int)idims[0])
    status = mr_error_set(err, STATUS_ERR_SHAPE,
                          "%s: %u images; the first %d train and the rest validate, so more "
                          "are needed",
                          ip, idims[0], first);
  if (status == STATUS_OK) {
    if (last < 0 || last > (int)idims[0]) last = (int)idims[0];
    status = dataset_alloc(d, last - first, 1, (int)idims[1], (int)idims[2], err);
    const size_t plane = (size_t)idims[1] * idims[2];
    for (int i = first; status == STATUS_OK && i < last; i++) {
      for (size_t p = 0; p < plane; p++)
        d->images[(i - first) * plane + p] = im[i * plane + p] / 255.0f;
      d->labels[i - first] = lb[i];
    }
  }
  free(im);
  free(lb);
  return status;
}

DataSplits *idx_load(const char *dir, MrError *err) {
  DataSplits *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  const int n_train = 54000; /* of the official 60000; the rest is validation */
  if (idx_pair(dir, "train", &d->split[SPLIT_TRAIN], 0, n_train, err) != STATUS_OK ||
      idx_pair(dir, "train", &d->split[SPLIT_VAL], n_train, -1, err) != STATUS_OK ||
      idx_pair(dir, "t10k", &d->split[SPLIT_TEST], 0, -1, err) != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  data_count_classes(d);
  d->bits = 8;
  d->split[SPLIT_TRAIN].array_offset = 0;
  d->split[SPLIT_VAL].array_offset = n_train;
  snprintf(d->split[SPLIT_TRAIN].array, sizeof d->split[0].array, "train-images");
  snprintf(d->split[SPLIT_VAL].array, sizeof d->split[0].array, "train-images");
  snprintf(d->split[SPLIT_TEST].array, sizeof d->split[0].array, "t10k-images");
  for (int k = 0; k < d->n_classes && k < 10; k++) d->class_names[k] = strdup(fashion_names[k]);
  snprintf(d->source, sizeof d->source, "IDX %s (train 54000 / val 6000 / test 10000)", dir);
  return d;
}
