/* Image folders in the ImageFolder convention: root/<class>/<image>, classes
 * in name order. PNG (libpng) and JPEG (libjpeg) are told apart by their
 * magic bytes, not their names (real sets ship PNGs named .jpg). Exact
 * duplicate files are dropped, then each class is shuffled with the seed and
 * split 70/10/20 into train/val/test (no official split exists). */
#include <dirent.h>
#include <setjmp.h>
#include <stdio.h>
/* jpeglib.h needs stdio.h first */
#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"

#define MAX_FILE_BYTES (64u << 20)
#define DEFAULT_SIZE 64

typedef struct {
  char *path;
  int label;
  uint64_t hash;
} ImageFile;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir that satisfy want_dir; NULL on error. */
static char **list_dir(const char *dir, int want_dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) return NULL;
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char full[4096];
    if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) >= (int)sizeof full) continue;
    struct stat st;
    if (stat(full, &st) != 0 || (S_ISDIR(st.st_mode) != 0) != want_dir) continue;
    if (!want_dir && !S_ISREG(st.st_mode)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **grown = realloc(names, sizeof(char *) * cap);
      if (!grown) break;
      names = grown;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(char *), cmp_str);
  *count = n;
  return names ? names : calloc(1, sizeof(char *));
}

static uint8_t *read_file(const char *path, size_t *len, MrError *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    mr_error_set(err, STATUS_ERR_IO, "%s: cannot open", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (size <= 0 || size > (long)MAX_FILE_BYTES) {
    fclose(f);
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: %ld bytes is not a plausible image", path, size);
    return NULL;
  }
  uint8_t *buf = malloc((size_t)size);
  size_t got = buf ? fread(buf, 1, (size_t)size, f) : 0;
  fclose(f);
  if (got != (size_t)size) {
    free(buf);
    mr_error_set(err, STATUS_ERR_IO, "%s: read failed", path);
    return NULL;
  }
  *len = (size_t)size;
  return buf;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

/* Decoded pixels, 8-bit, `channels` interleaved. */
typedef struct {
  int w, h, channels;
  uint8_t *pixels;
} Image8;

static const char *decode_png(Image8 *im, const uint8_t *buf, size_t len) {
  png_image png;
  memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, buf, len)) return "corrupt PNG";
  const int grey = !(png.format & PNG_FORMAT_FLAG_COLOR);
  png.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB; /* alpha composited on black */
  if (png.width > 16384 || png.height > 16384) {
    png_image_free(&png);
    return "PNG too large";
  }
  im->w = (int)png.width, im->h = (int)png.height, im->channels = grey ? 1 : 3;
  im->pixels = malloc(PNG_IMAGE_SIZE(png));
  if (!im->pixels || !png_image_finish_read(&png, NULL, im->pixels, 0, NULL)) {
    png_image_free(&png);
    free(im->pixels);
    im->pixels = NULL;
    return "corrupt PNG data";
  }
  return NULL;
}

typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf jump;
} JpegError;

static void jpeg_fail(j_common_ptr cinfo) { longjmp(((JpegError *)cinfo->err)->jump, 1); }
static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; }

static const char *decode_jpeg(Image8 *im, const uint8_t *buf, size_t len) {
  struct jpeg_decompress_struct cinfo;
  JpegError jerr;
  cinfo.err = jpeg_std_error(&jerr.base);
  jerr.base.error_exit = jpeg_fail;
  jerr.base.emit_message = jpeg_quiet;
  uint8_t *volatile pixels = NULL;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    return "corrupt JPEG";
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.num_components != 1 && cinfo.num_components != 3) {
    jpeg_destroy_decompress(&cinfo);
    return "JPEG with neither 1 nor 3 components (CMYK?)";
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width > 16384 || cinfo.output_height > 16384) {
    jpeg_destroy_decompress(&cinfo);
    return "JPEG too large";
  }
  const int stride = (int)cinfo.output_width * cinfo.output_components;
  pixels = malloc((size_t)stride * cinfo.output_height);
  if (!pixels) {
    jpeg_destroy_decompress(&cinfo);
    return "out of memory";
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  im->w = (int)cinfo.output_width, im->h = (int)cinfo.output_height;
  im->channels = cinfo.output_components;
  im->pixels = pixels;
  jpeg_destroy_decompress(&cinfo);
  return NULL;
}

/* Decodes a file into (c, size, size) floats; returns an error message or NULL. */
static const char *load_image(float *dst, int c, int size, const uint8_t *buf, size_t len) {
  Image8 im = {0};
  const char *why;
  if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0)
    why = decode_png(&im, buf, len);
  else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
    why = decode_jpeg(&im, buf, len);
  else
    why = "neither PNG nor JPEG (by its magic bytes)";
  if (why) return why;
  Dataset one = {.n = 1, .c = im.channels, .h = im.h, .w = im.w};
  one.images = malloc(sizeof(float) * (size_t)im.channels * im.h * im.w);
  if (!one.images) {
    free(im.pixels);
    return "out of memory";
  }
  const size_t plane = (size_t)im.h * im.w;
  for (size_t p = 0; p < plane; p++)
    for (int k = 0; k < im.channels; k++)
      one.images[k * plane + p] = im.pixels[p * im.channels + k] / 255.0f;
  free(im.pixels);
  if (dataset_resize(&one, size, size, NULL) != STATUS_OK ||
      dataset_set_channels(&one, c, NULL) != STATUS_OK) {
    free(one.images);
    return "out of memory";
  }
  memcpy(dst, one.images, sizeof(float) * c * size * size);
  free(one.images);
  return NULL;
}

DataSplits *imagefolder_load(const char *root, const DataOptions *opt, MrError *err) {
  int n_classes = 0;
  char **classes = list_dir(root, 1, &n_classes);
  if (!classes) {
    mr_error_set(err, STATUS_ERR_IO, "%s: cannot list the folder", root);
    return NULL;
  }
  DataSplits *d = calloc(1, sizeof *d);
  ImageFile *files = NULL;
  int n_files = 0, cap = 0, duplicates = 0;
  Status status = d ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  if (status == STATUS_OK && (n_classes < 2 || n_classes > MR_MAX_CLASSES))
    status = mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: found %d class folders, expected 2..%d (root/<class>/<image>)", root,
                          n_classes, MR_MAX_CLASSES);
  /* first pass: file list, with exact duplicates (same bytes) dropped */
  for (int k = 0; status == STATUS_OK && k < n_classes; k++) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/%s", root, classes[k]) >= (int)sizeof dir) {
      status = mr_error_set(err, STATUS_ERR_ARG, "%s: path too long", root);
      break;
    }
    int n = 0;
    char **names = list_dir(dir, 0, &n);
    for (int i = 0; names && i < n; i++) {
      char full[8192];
      if (snprintf(full, sizeof full, "%s/%s", dir, names[i]) >= (int)sizeof full) {
        free(names[i]);
        continue;
      }
      size_t len = 0;
      uint8_t *buf = status == STATUS_OK ? read_file(full, &len, err) : NULL;
      if (!buf) status = err ? err->status : STATUS_ERR_IO;
      uint64_t h = buf ? fnv1a(buf, len) : 0;
      free(buf);
      int dup = 0;
      for (int j = 0; j < n_files && !dup && buf; j++) dup = files[j].hash == h;
      duplicates += dup;
      if (buf && !dup) {
        if (n_files == cap) {
          cap = cap ? 2 * cap : 256;
          files = realloc(files, sizeof(ImageFile) * cap);
        }
        files[n_files++] = (ImageFile){strdup(full), k, h};
      }
      free(names[i]);
    }
    free(names);
    d->class_names[k] = strdup(classes[k]);
  }
  const int size = opt->size ? opt->size : DEFAULT_SIZE;
  int channels = opt->channels;
  /* second pass: decode, into a split chosen per class by a seeded shuffle */
  if (status == STATUS_OK) {
    if (!channels) channels = 1; /* medical scans: greyscale unless asked */
    int counts[SPLIT_COUNT] = {0};
    int *split_of = malloc(sizeof(int) * (n_files + 1));
    Rng rng;
    rng_seed(&rng, opt->seed);
    for (int k = 0; k < n_classes; k++) {
      int m = 0;
      int *idx = malloc(sizeof(int) * (n_files + 1));
      for (int i = 0; i < n_files; i++)
        if (files[i].label == k) idx[m++] = i;
      for (int i = m - 1; i > 0; i--) {
        int j = rng_int(&rng, i + 1), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
      }
      const int n_train = (int)(0.7 * m + 0.5), n_val = (int)(0.1 * m + 0.5);
      for (int i = 0; i < m; i++) {
        const int s = i < n_train ? SPLIT_TRAIN : i < n_train + n_val ? SPLIT_VAL : SPLIT_TEST;
        split_of[idx[i]] = s;
        counts[s]++;
      }
      free(idx);
    }
    for (int s = 0; status == STATUS_OK && s < SPLIT_COUNT; s++)
      status = dataset_alloc(&d->split[s], counts[s], channels, size, size, err);
    int fill[SPLIT_COUNT] = {0};
    for (int i = 0; status == STATUS_OK && i < n_files; i++) {
      size_t len = 0;
      uint8_t *buf = read_file(files[i].path, &len, err);
      if (!buf) {
        status = err ? err->status : STATUS_ERR_IO;
        break;
      }
      Dataset *ds = &d->split[split_of[i]];
      const int at = fill[split_of[i]]++;
      const char *why =
          load_image(ds->images + (size_t)at * channels * size * size, channels, size, buf, len);
      free(buf);
      if (why) status = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", files[i].path, why);
      ds->labels[at] = files[i].label;
    }
    free(split_of);
  }
  for (int i = 0; i < n_files; i++) free(files[i].path);
  free(files);
  for (int k = 0; k < n_classes; k++) free(classes[k]);
  free(classes);
  if (status != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  d->n_classes = n_classes;
  snprintf(d->source, sizeof d->source,
           "image folder %s (%d duplicate files dropped, split 70/10/20 seed %llu)", root,
           duplicates, (unsigned long long)opt->seed);
  return d;
}
