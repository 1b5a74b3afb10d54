/* Segmentation sets in arrays: image and mask arrays in the layouts people
 * save them in (MedMNIST-like channels-last, PyTorch-like channels-first,
 * the (N,1,1,H,W) / (N,1,H,W) float pair of the OASIS slices), a folder of
 * img.npy + lbl.npy, and the pass every segmentation reader ends with: 0/255
 * masks read as 0/1, label ids checked, class names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

#define MAX_ARRAY_FILE_BYTES ((size_t)1 << 32)
#define MAX_SEG_CLASSES 256

typedef struct {
  int64_t n, c, h, w;
  int channels_last;
} ArrayLayout;

/* Which axes of an image array are N, C, H, W; NULL or why not. */
static const char *image_layout(const NpyArray *a, ArrayLayout *l) {
  const int64_t *s = a->shape;
  l->n = s[0], l->channels_last = 0;
  if (a->ndim == 3) {
    l->c = 1, l->h = s[1], l->w = s[2];
  } else if (a->ndim == 4 && (s[1] == 1 || s[1] == 3) && s[3] > 3) {
    l->c = s[1], l->h = s[2], l->w = s[3];
  } else if (a->ndim == 4 && (s[3] == 1 || s[3] == 3)) {
    l->c = s[3], l->h = s[1], l->w = s[2], l->channels_last = 1;
  } else if (a->ndim == 5 && s[1] == 1 && (s[2] == 1 || s[2] == 3)) {
    l->c = s[2], l->h = s[3], l->w = s[4];
  } else {
    return "images must be (N,H,W), (N,H,W,1|3), (N,1|3,H,W) or (N,1,1|3,H,W)";
  }
  return NULL;
}

static const char *mask_layout(const NpyArray *a, ArrayLayout *l) {
  const int64_t *s = a->shape;
  l->n = s[0], l->c = 1, l->channels_last = 0;
  if (a->ndim == 3)
    l->h = s[1], l->w = s[2];
  else if (a->ndim == 4 && s[1] == 1)
    l->h = s[2], l->w = s[3];
  else if (a->ndim == 4 && s[3] == 1)
    l->h = s[1], l->w = s[2];
  else
    return "masks must be (N,H,W), (N,1,H,W) or (N,H,W,1): one label id per pixel";
  return NULL;
}

Status segment_arrays_read(const NpyArray *im, const NpyArray *mk, Dataset *d, int *bits,
                           const char *what, MrError *err) {
  ArrayLayout li, lm;
  const char *why = image_layout(im, &li);
  if (why) return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s", what, why);
  if ((why = mask_layout(mk, &lm))) return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s", what, why);
  if (li.n != lm.n || li.h != lm.h || li.w != lm.w)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s: %lld images of %lldx%lld but %lld masks of %lldx%lld (every image "
                        "needs a mask of its size)",
                        what, (long long)li.n, (long long)li.h, (long long)li.w, (long long)lm.n,
                        (long long)lm.h, (long long)lm.w);
  if (li.h < 1 || li.w < 1 || li.h > 4096 || li.w > 4096 || li.n > (1 << 24))
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %lld images of %lldx%lld", what,
                        (long long)li.n, (long long)li.h, (long long)li.w);
  Status s = dataset_alloc(d, (int)li.n, (int)li.c, (int)li.h, (int)li.w, err);
  const size_t plane = (size_t)li.h * li.w, per = plane * li.c;
  d->masks = s == STATUS_OK ? malloc(sizeof(int) * (plane * li.n + 1)) : NULL;
  if (s == STATUS_OK && !d->masks)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", what);
  if (im->kind != 'f' && im->bytes > 2)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: images of %d-byte integers (8 or 16 bits only)",
                     what, im->bytes);
  /* only for the 1- and 2-byte integers let through: a shift by 64 is undefined */
  const double scale =
      im->kind == 'f' || s != STATUS_OK ? 1.0 : 1.0 / ((double)(1u << (8 * im->bytes)) - 1.0);
  if (s == STATUS_OK) *bits = im->kind == 'f' ? 0 : 8 * im->bytes;
  for (int64_t i = 0; s == STATUS_OK && i < li.n; i++) {
    for (size_t p = 0; s == STATUS_OK && p < plane; p++)
      for (int64_t c = 0; c < li.c; c++) {
        const size_t at = li.channels_last ? (size_t)i * per + p * li.c + c
                                           : (size_t)i * per + (size_t)c * plane + p;
        const double v = npy_value(im, at) * scale;
        if (!(v >= 0.0 && v <= 1.0)) {
          s = mr_error_set(err, STATUS_ERR_FORMAT,
                           "%s: image %lld has value %g outside [0,1] (store floats on [0,1] or "
                           "8/16-bit integers)",
                           what, (long long)i, v);
          break;
        }
        d->images[(size_t)i * per + (size_t)c * plane + p] = (float)v;
      }
    for (size_t p = 0; s == STATUS_OK && p < plane; p++) {
      const double v = npy_value(mk, (size_t)i * plane + p);
      if (!(v >= 0 && v < 65536) || v != floor(v)) {
        s = mr_error_set(err, STATUS_ERR_FORMAT,
                         "%s: mask %lld holds %g at pixel (%zu,%zu): label ids are integers 0..255",
                         what, (long long)i, v, p / (size_t)li.w, p % (size_t)li.w);
        break;
      }
      d->masks[(size_t)i * plane + p] = (int)v;
    }
  }
  return s;
}

/* The first image of the set holding value v, for the error message. */
static void find_value(const DataSplits *d, int v, const char *path, char *out, size_t n) {
  for (int s = 0; s < SPLIT_COUNT; s++) {
    const Dataset *ds = &d->split[s];
    const size_t plane = (size_t)ds->h * ds->w;
    for (int i = 0; i < ds->n; i++)
      for (size_t p = 0; p < plane; p++)
        if (ds->masks[(size_t)i * plane + p] == v) {
          char buf[64];
          const char *id = dataset_image_id(ds, i, buf, sizeof buf);
          snprintf(out, n, "%s%s%s (%s split), pixel (%zu,%zu)", ds->files ? path : "",
                   ds->files ? "/" : "", id, split_name((Split)s), p / (size_t)ds->w,
                   p % (size_t)ds->w);
          return;
        }
  }
  snprintf(out, n, "%s", path);
}

Status segment_masks_finish(DataSplits *d, int n_classes, const char *path, MrError *err) {
  int *present = calloc(65536, sizeof(int)), max = 0;
  if (!present) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  int first = -1; /* a non-empty split: the shape empty ones take */
  for (int s = 0; s < SPLIT_COUNT; s++) {
    Dataset *ds = &d->split[s];
    if (ds->n && first < 0) first = s;
    if (!ds->masks) ds->masks = calloc(1, sizeof(int));
    if (!ds->masks) {
      free(present);
      return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    }
  }
  for (int s = 0; first >= 0 && s < SPLIT_COUNT; s++)
    if (!d->split[s].n)
      d->split[s].c = d->split[first].c, d->split[s].h = d->split[first].h,
      d->split[s].w = d->split[first].w;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    const Dataset *ds = &d->split[s];
    for (size_t i = 0; ds->masks && i < (size_t)ds->n * ds->h * ds->w; i++) {
      present[ds->masks[i]] = 1;
      if (ds->masks[i] > max) max = ds->masks[i];
    }
  }
  int others = 0; /* ids other than 0 and 255 */
  for (int v = 1; v <= max; v++) others += present[v] && v != 255;
  const int has255 = present[255];
  free(present);
  char where[600];
  if (has255 && !others && n_classes != 256) {
    d->binary_masks = 1; /* 0/255: background and one foreground class */
    for (int s = 0; s < SPLIT_COUNT; s++) {
      Dataset *ds = &d->split[s];
      for (size_t i = 0; ds->masks && i < (size_t)ds->n * ds->h * ds->w; i++)
        ds->masks[i] = ds->masks[i] == 255;
    }
    max = 1;
  } else if (has255 && n_classes != 256) {
    find_value(d, 255, path, where, sizeof where);
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: a mask holds 255 beside label ids 1..%d (first 255 at %s): a mask "
                        "is either 0/255 binary or label ids 0..K-1",
                        path, max == 255 ? 254 : max, where);
  }
  const int limit = n_classes > 0 ? n_classes : MAX_SEG_CLASSES;
  if (max >= limit) {
    find_value(d, max, path, where, sizeof where);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: label id %d is out of range 0..%d (at %s)",
                        path, max, limit - 1, where);
  }
  d->segment = 1;
  d->n_classes = n_classes > 0 ? n_classes : max + 1 < 2 ? 2 : max + 1;
  if (!d->class_names[0]) d->class_names[0] = strdup("background");
  if (d->n_classes == 2 && !d->class_names[1]) d->class_names[1] = strdup("foreground");
  for (int s = 0; s < SPLIT_COUNT; s++)
    if (d->split[s].labels) memset(d->split[s].labels, 0, sizeof(int) * d->split[s].n);
  return STATUS_OK;
}

/* img.npy / images.npy and lbl.npy / masks.npy in a folder: every image in
 * the test split (the OASIS slices are five images: an attack demo, not a
 * training set). */
static const char *const npy_image_names[] = {"img.npy", "images.npy", "image.npy", NULL};
static const char *const npy_mask_names[] = {"lbl.npy", "masks.npy", "mask.npy", "labels.npy",
                                             NULL};

int segment_npy_pair(const char *root, char *img, char *mask, size_t n) {
  int found = 0;
  for (int i = 0; npy_image_names[i] && !(found & 1); i++) {
    snprintf(img, n, "%s/%s", root, npy_image_names[i]);
    FILE *f = fopen(img, "rb");
    if (f) fclose(f), found |= 1;
  }
  for (int i = 0; npy_mask_names[i] && !(found & 2); i++) {
    snprintf(mask, n, "%s/%s", root, npy_mask_names[i]);
    FILE *f = fopen(mask, "rb");
    if (f) fclose(f), found |= 2;
  }
  return found == 3;
}

DataSplits *segment_npy_load(const char *root, const DataOptions *opt, MrError *err) {
  char ipath[4200], mpath[4200];
  if (!segment_npy_pair(root, ipath, mpath, sizeof ipath)) {
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: no img.npy + lbl.npy pair", root);
    return NULL;
  }
  DataSplits *d = calloc(1, sizeof *d);
  size_t ilen = 0, mlen = 0;
  uint8_t *ibuf = d ? file_read_all(ipath, MAX_ARRAY_FILE_BYTES, &ilen, err) : NULL;
  uint8_t *mbuf = ibuf ? file_read_all(mpath, MAX_ARRAY_FILE_BYTES, &mlen, err) : NULL;
  Status s = mbuf ? STATUS_OK : err ? err->status : STATUS_ERR_IO;
  NpyArray im, mk;
  const char *why;
  if (s == STATUS_OK && (why = npy_parse(&im, ibuf, ilen)))
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", ipath, why);
  if (s == STATUS_OK && (why = npy_parse(&mk, mbuf, mlen)))
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", mpath, why);
  for (int k = 0; s == STATUS_OK && k < SPLIT_COUNT; k++)
    if (k != SPLIT_TEST) s = dataset_alloc(&d->split[k], 0, 1, 1, 1, err);
  if (s == STATUS_OK) s = segment_arrays_read(&im, &mk, &d->split[SPLIT_TEST], &d->bits, root, err);
  free(ibuf), free(mbuf);
  if (s == STATUS_OK) {
    const char *base = strrchr(ipath, '/');
    snprintf(d->split[SPLIT_TEST].array, sizeof d->split[SPLIT_TEST].array, "%.20s",
             base ? base + 1 : ipath);
    s = segment_masks_finish(d, opt->n_classes, root, err);
  }
  if (s != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  d->split_kind = SPLIT_FIXED;
  snprintf(d->source, sizeof d->source, "segmentation arrays %s (%d images, all in test)", root,
           d->split[SPLIT_TEST].n);
  return d;
}
