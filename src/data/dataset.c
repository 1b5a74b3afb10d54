/* Datasets in memory: allocation, the load dispatch by path, resampling and
 * channel conversion, split names, class names. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "data.h"

static const char *split_names[SPLIT_COUNT] = {"train", "val", "test"};

const char *split_name(Split s) { return s >= 0 && s < SPLIT_COUNT ? split_names[s] : "?"; }

int split_parse(const char *name) {
  for (int s = 0; s < SPLIT_COUNT; s++)
    if (name && strcmp(name, split_names[s]) == 0) return s;
  return -1;
}

Status dataset_alloc(Dataset *d, int n, int c, int h, int w, MrError *err) {
  d->n = n, d->c = c, d->h = h, d->w = w;
  const size_t count = (size_t)n * c * h * w;
  d->images = malloc(sizeof(float) * (count ? count : 1));
  d->labels = calloc(n ? (size_t)n : 1, sizeof(int));
  if (!d->images || !d->labels) {
    free(d->images), free(d->labels);
    d->images = NULL, d->labels = NULL;
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for %d images of %dx%dx%d", n, c, h,
                        w);
  }
  return STATUS_OK;
}

uint8_t *file_read_all(const char *path, size_t max_bytes, size_t *len, MrError *err) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    if (f) fclose(f);
    mr_error_set(err, STATUS_ERR_IO, "%s: cannot open (not a readable file)", path);
    return NULL;
  }
  if ((uint64_t)st.st_size > max_bytes) {
    fclose(f);
    mr_error_set(err, STATUS_ERR_FORMAT,
                 "%s: %lld bytes is more than the %zu this reader accepts (raise with medrobust "
                 "--max-file-gb)",
                 path, (long long)st.st_size, max_bytes);
    return NULL;
  }
  const size_t size = (size_t)st.st_size;
  uint8_t *buf = malloc(size + 1);
  const size_t got = buf ? fread(buf, 1, size, f) : 0;
  fclose(f);
  if (!buf || got != size) {
    free(buf);
    mr_error_set(err, buf ? STATUS_ERR_IO : STATUS_ERR_NOMEM, "%s: read failed", path);
    return NULL;
  }
  *len = size;
  return buf;
}

Status file_write_all(const char *path, const void *bytes, size_t len, MrError *err) {
  AtomicFile af;
  const Status s = atomic_open(&af, path, "wb", err);
  if (s != STATUS_OK) return s;
  if (len) fwrite(bytes, 1, len, af.f); /* a short write shows in the stream's error flag */
  return atomic_commit(&af, err);
}

const char *dataset_image_id(const Dataset *d, int i, char *buf, size_t n) {
  if (d->files && d->files[i]) return d->files[i];
  snprintf(buf, n, "%s[%d]", d->array[0] ? d->array : "image", d->array_offset + i);
  return buf;
}

const char *dataset_image_hash(const Dataset *d, int i, char *buf, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  if (d->hashes) {
    h = d->hashes[i];
  } else {
    const uint8_t *p = (const uint8_t *)(d->images + (size_t)i * d->c * d->h * d->w);
    for (size_t k = 0; k < sizeof(float) * d->c * d->h * d->w; k++)
      h = (h ^ p[k]) * 1099511628211ULL;
  }
  snprintf(buf, n, "%016llx", (unsigned long long)h);
  return buf;
}

void data_name_arrays(DataSplits *d, const char *suffix) {
  for (int s = 0; s < SPLIT_COUNT; s++)
    snprintf(d->split[s].array, sizeof d->split[s].array, "%s%s", split_names[s], suffix);
}

void data_free(DataSplits *d) {
  if (!d) return;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    Dataset *ds = &d->split[s];
    for (int i = 0; ds->files && i < ds->n; i++) free(ds->files[i]);
    free(ds->files), free(ds->images), free(ds->labels), free(ds->masks), free(ds->volume);
    free(ds->hashes);
  }
  for (int i = 0; i < MR_MAX_CLASSES; i++) free(d->class_names[i]);
  free(d->root);
  free(d);
}

void data_count_classes(DataSplits *d) {
  int k = 0;
  for (int s = 0; s < SPLIT_COUNT; s++)
    for (int i = 0; i < d->split[s].n; i++)
      if (d->split[s].labels[i] + 1 > k) k = d->split[s].labels[i] + 1;
  d->n_classes = k;
}

void data_names_from_json(DataSplits *d, const char *json, size_t len) {
  cJSON *arr = cJSON_ParseWithLength(json, len);
  if (cJSON_IsArray(arr)) {
    for (int i = 0; i < cJSON_GetArraySize(arr) && i < MR_MAX_CLASSES; i++) {
      const cJSON *v = cJSON_GetArrayItem(arr, i);
      if (cJSON_IsString(v) && !d->class_names[i]) d->class_names[i] = strdup(v->valuestring);
    }
  }
  cJSON_Delete(arr);
}

char *data_names_to_json(const DataSplits *d) {
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; i < d->n_classes; i++) {
    char fallback[16];
    snprintf(fallback, sizeof fallback, "%d", i);
    cJSON_AddItemToArray(arr, cJSON_CreateString(d->class_names[i] ? d->class_names[i] : fallback));
  }
  char *text = cJSON_PrintUnformatted(arr);
  cJSON_Delete(arr);
  return text;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

DataSplits *data_load(const char *path, const DataOptions *opt, MrError *err) {
  DataOptions defaults = {0};
  if (!opt) opt = &defaults;
  if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3) {
    mr_error_set(err, STATUS_ERR_ARG, "channels must be 1 or 3, not %d", opt->channels);
    return NULL;
  }
  DataSplits *d = NULL;
  if (strcmp(path, "fashion-mnist") == 0) {
    d = idx_load(FASHION_MNIST_DIR, err);
  } else if (is_dir(path) && segment_folder_kind(path) != SEGDIR_NONE) {
    d = segment_folder_load(path, opt, err);
  } else if (is_dir(path)) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", path);
    struct stat st;
    d = stat(probe, &st) == 0 ? idx_load(path, err) : imagefolder_load(path, opt, err);
  } else if (has_suffix(path, ".npz")) {
    d = npz_load(path, err);
    if (d && d->segment && segment_masks_finish(d, opt->n_classes, path, err) != STATUS_OK) {
      data_free(d);
      return NULL;
    }
  } else if (has_suffix(path, ".csv")) {
    d = manifest_load(path, opt, err);
  } else {
    struct stat st;
    if (stat(path, &st) != 0)
      mr_error_set(err, STATUS_ERR_IO, "%s: no such file or folder", path);
    else
      mr_error_set(
          err, STATUS_ERR_FORMAT,
          "%s: expected a .npz file, an image folder (root/<class>/*.png|jpg), a .csv manifest "
          "or an IDX folder",
          path);
    return NULL;
  }
  if (!d) return NULL;
  if (d->split_kind == SPLIT_FIXED)
    d->stored_c = d->split[0].c, d->stored_h = d->split[0].h, d->stored_w = d->split[0].w;
  for (int s = 0; s < SPLIT_COUNT; s++) d->split[s].bits = d->bits;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    Dataset *ds = &d->split[s];
    if ((opt->size && (ds->h != opt->size || ds->w != opt->size) &&
         dataset_resize(ds, opt->size, opt->size, err) != STATUS_OK) ||
        (opt->channels && ds->c != opt->channels &&
         dataset_set_channels(ds, opt->channels, err) != STATUS_OK)) {
      data_free(d);
      return NULL;
    }
  }
  return d;
}

/* One plane, area-averaging when shrinking and bilinear when enlarging. */
static void resample_plane(float *dst, int oh, int ow, const float *src, int h, int w) {
  const double sy = (double)h / oh, sx = (double)w / ow;
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++) {
      double v;
      if (sy > 1.0 || sx > 1.0) {
        const int y0 = (int)floor(y * sy), x0 = (int)floor(x * sx);
        int y1 = (int)ceil((y + 1) * sy), x1 = (int)ceil((x + 1) * sx);
        if (y1 > h) y1 = h;
        if (x1 > w) x1 = w;
        double s = 0.0;
        for (int yy = y0; yy < y1; yy++)
          for (int xx = x0; xx < x1; xx++) s += src[(size_t)yy * w + xx];
        v = s / ((double)(y1 - y0) * (x1 - x0));
      } else {
        const double fy = fmax(0.0, (y + 0.5) * sy - 0.5), fx = fmax(0.0, (x + 0.5) * sx - 0.5);
        const int y0 = (int)fy, x0 = (int)fx;
        const int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
        const double ay = fy - y0, ax = fx - x0;
        v = (1 - ay) * ((1 - ax) * src[(size_t)y0 * w + x0] + ax * src[(size_t)y0 * w + x1]) +
            ay * ((1 - ax) * src[(size_t)y1 * w + x0] + ax * src[(size_t)y1 * w + x1]);
      }
      dst[(size_t)y * ow + x] = (float)v;
    }
}

Status dataset_resize(Dataset *d, int h, int w, MrError *err) {
  if (h < 1 || w < 1 || h > 4096 || w > 4096)
    return mr_error_set(err, STATUS_ERR_ARG, "cannot resize to %dx%d", h, w);
  if (d->h == h && d->w == w) return STATUS_OK;
  float *out = malloc(sizeof(float) * ((size_t)d->n * d->c * h * w + 1));
  if (!out) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory resizing to %dx%d", h, w);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < d->n * d->c; p++)
    resample_plane(out + (size_t)p * h * w, h, w, d->images + (size_t)p * d->h * d->w, d->h, d->w);
  if (d->masks) {
    /* label ids are not intensities: nearest neighbour, never averaged */
    int *masks = malloc(sizeof(int) * ((size_t)d->n * h * w + 1));
    if (!masks) {
      free(out);
      return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory resizing masks to %dx%d", h, w);
    }
    for (int i = 0; i < d->n; i++)
      mask_resample(masks + (size_t)i * h * w, h, w, d->masks + (size_t)i * d->h * d->w, d->h,
                    d->w);
    free(d->masks);
    d->masks = masks;
  }
  free(d->images);
  d->images = out;
  d->h = h, d->w = w;
  return STATUS_OK;
}

void mask_resample(int *dst, int oh, int ow, const int *src, int h, int w) {
  for (int y = 0; y < oh; y++) {
    const int sy = (int)(((long)y * 2 + 1) * h / (2L * oh));
    for (int x = 0; x < ow; x++) {
      const int sx = (int)(((long)x * 2 + 1) * w / (2L * ow));
      dst[(size_t)y * ow + x] = src[(size_t)sy * w + sx];
    }
  }
}

Status dataset_set_channels(Dataset *d, int c, MrError *err) {
  if (c == d->c) return STATUS_OK;
  if (!((c == 1 && d->c == 3) || (c == 3 && d->c == 1)))
    return mr_error_set(err, STATUS_ERR_ARG, "cannot convert %d channels to %d", d->c, c);
  const size_t plane = (size_t)d->h * d->w;
  float *out = malloc(sizeof(float) * ((size_t)d->n * c * plane + 1));
  if (!out) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory converting channels");
  for (int i = 0; i < d->n; i++) {
    const float *src = d->images + (size_t)i * d->c * plane;
    float *dst = out + (size_t)i * c * plane;
    for (size_t p = 0; p < plane; p++) {
      if (c == 1) /* ITU-R BT.601 luma */
        dst[p] = 0.299f * src[p] + 0.587f * src[plane + p] + 0.114f * src[2 * plane + p];
      else
        dst[p] = dst[plane + p] = dst[2 * plane + p] = src[p];
    }
  }
  free(d->images);
  d->images = out;
  d->c = c;
  return STATUS_OK;
}
