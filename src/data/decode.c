/* Image files to model pixels: PNG (libpng) and JPEG (libjpeg), told apart by
 * their magic bytes, decoded to [0,1] floats at their stored bit depth, and
 * fitted to a square input (crop, pad or stretch). PNG goes through libpng's
 * low-level reader because the simplified one converts 16-bit samples as
 * linear light: a 16-bit CT or X-ray PNG must keep its stored values. */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
/* jpeglib.h needs stdio.h first */
#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

/* Sides and pixel count beyond which a file is refused before decoding:
 * the largest mammograms are about 4000 x 5000. */
#define MAX_SIDE 65535 /* what PNG and JPEG readers handle; the pixel count is the limit */

ImageKind image_kind(const uint8_t *buf, size_t len) {
  if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0) return IMAGE_PNG;
  if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return IMAGE_JPEG;
  if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0) return IMAGE_DICOM;
  int32_t header = 0;
  if (len >= 4) memcpy(&header, buf, 4);
  /* a big-endian file's header size reads byte-swapped */
  if (header == 0x5c010000) header = 348;
  if (header == 0x1c020000) header = 540;
  if ((header == 348 && len >= 348 &&
       (!memcmp(buf + 344, "n+1", 4) || !memcmp(buf + 344, "ni1", 4))) ||
      (header == 540 && len >= 540 && (!memcmp(buf + 4, "n+2", 4) || !memcmp(buf + 4, "ni2", 4))))
    return IMAGE_NIFTI;
  return IMAGE_NONE;
}

static const char *check_size(unsigned long w, unsigned long h) {
  static char why[192];
  if (w < 1 || h < 1) return "an empty image";
  const uint64_t max = mr_limits().image_pixels;
  if (w > MAX_SIDE || h > MAX_SIDE || (uint64_t)w * h > max) {
    snprintf(why, sizeof why,
             "%lux%lu is larger than %.4g megapixels (raise with medrobust --max-megapixels), "
             "or a side above %d",
             w, h, (double)max / (1 << 20), MAX_SIDE);
    return why;
  }
  return NULL;
}

typedef struct {
  const uint8_t *buf;
  size_t len, at;
} PngSource;

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  PngSource *src = png_get_io_ptr(png);
  if (src->len - src->at < n) png_error(png, "truncated");
  memcpy(out, src->buf + src->at, n);
  src->at += n;
}

static void png_fail(png_structp png, png_const_charp msg) {
  (void)msg;
  png_longjmp(png, 1);
}
static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static const char *decode_png(DecodedImage *im, const uint8_t *buf, size_t len) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_quiet);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return "out of memory";
  }
  PngSource src = {buf, len, 0};
  uint8_t *volatile rows = NULL;
  png_bytep *volatile row_ptrs = NULL; /* freed here too: png_read_image may jump out */
  const char *volatile why = "corrupt or truncated PNG";
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(row_ptrs);
    free(im->pixels);
    im->pixels = NULL;
    return why;
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const char *too_big = check_size(w, h);
  if (too_big) {
    why = too_big;
    png_longjmp(png, 1);
  }
  const int color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int depth = png_get_bit_depth(png, info), channels = png_get_channels(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  rows = malloc(stride * h);
  im->pixels = malloc(sizeof(float) * (size_t)w * h * (channels >= 3 ? 3 : 1));
  if (!rows || !im->pixels) {
    why = "out of memory";
    png_longjmp(png, 1);
  }
  row_ptrs = malloc(sizeof(png_bytep) * h);
  if (!row_ptrs) {
    why = "out of memory";
    png_longjmp(png, 1);
  }
  for (png_uint_32 y = 0; y < h; y++) row_ptrs[y] = rows + y * stride;
  png_read_image(png, row_ptrs);
  free(row_ptrs);
  row_ptrs = NULL;
  png_read_end(png, NULL);
  /* alpha is composited on black, as a viewer with a black background shows it */
  const int colour = channels >= 3, has_alpha = channels == 2 || channels == 4;
  const double scale = 1.0 / (depth == 16 ? 65535.0 : 255.0);
  const size_t plane = (size_t)w * h;
  for (png_uint_32 y = 0; y < h; y++)
    for (png_uint_32 x = 0; x < w; x++) {
      const uint8_t *p = rows + y * stride + (size_t)x * channels * (depth / 8);
      double v[4];
      for (int k = 0; k < channels; k++)
        v[k] = (depth == 16 ? (p[2 * k] << 8 | p[2 * k + 1]) : p[k]) * scale;
      const double a = has_alpha ? v[channels - 1] : 1.0;
      for (int k = 0; k < (colour ? 3 : 1); k++)
        im->pixels[k * plane + (size_t)y * w + x] = (float)(v[k] * a);
    }
  im->w = (int)w, im->h = (int)h, im->channels = colour ? 3 : 1, im->bits = depth;
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  return NULL;
}

typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf jump;
  int warnings;
} JpegError;

static void jpeg_fail(j_common_ptr cinfo) { longjmp(((JpegError *)cinfo->err)->jump, 1); }
/* level -1 is a warning: libjpeg's word for a truncated or damaged stream,
 * which it would otherwise fill with grey */
static void jpeg_note(j_common_ptr cinfo, int level) {
  if (level < 0) ((JpegError *)cinfo->err)->warnings++;
}

static const char *decode_jpeg(DecodedImage *im, const uint8_t *buf, size_t len) {
  struct jpeg_decompress_struct cinfo;
  JpegError jerr = {0};
  cinfo.err = jpeg_std_error(&jerr.base);
  jerr.base.error_exit = jpeg_fail;
  jerr.base.emit_message = jpeg_note;
  uint8_t *volatile pixels = NULL;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    return "corrupt JPEG";
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  const char *why = check_size(cinfo.image_width, cinfo.image_height);
  if (!why && cinfo.num_components != 1 && cinfo.num_components != 3)
    why = "a JPEG with neither 1 nor 3 components (CMYK?)";
  if (why) {
    jpeg_destroy_decompress(&cinfo);
    return why;
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
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
  const int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
  jpeg_destroy_decompress(&cinfo);
  if (jerr.warnings) {
    free(pixels);
    return "truncated or damaged JPEG data";
  }
  im->pixels = malloc(sizeof(float) * (size_t)w * h * c);
  if (!im->pixels) {
    free(pixels);
    return "out of memory";
  }
  const size_t plane = (size_t)w * h;
  for (size_t p = 0; p < plane; p++)
    for (int k = 0; k < c; k++) im->pixels[k * plane + p] = pixels[p * c + k] / 255.0f;
  free(pixels);
  im->w = w, im->h = h, im->channels = c, im->bits = 8;
  return NULL;
}

const char *image_decode(DecodedImage *im, const uint8_t *buf, size_t len) {
  memset(im, 0, sizeof *im);
  switch (image_kind(buf, len)) {
    case IMAGE_PNG:
      return decode_png(im, buf, len);
    case IMAGE_JPEG:
      return decode_jpeg(im, buf, len);
    default:
      return "neither PNG nor JPEG (by its magic bytes)";
  }
}

static const char *const fit_names[FIT_COUNT] = {"crop", "pad", "stretch"};
const char *fit_name(FitMode f) { return f >= 0 && f < FIT_COUNT ? fit_names[f] : "?"; }
int fit_parse(const char *name) {
  for (int f = 0; f < FIT_COUNT; f++)
    if (name && strcmp(name, fit_names[f]) == 0) return f;
  return -1;
}

/* The size an h x w image is scaled to before the centre crop or pad. */
void image_fit_scaled(int h, int w, int size, FitMode fit, int *sh, int *sw) {
  *sh = size, *sw = size;
  if (fit != FIT_STRETCH && h != w) {
    const int crop = fit == FIT_CROP;
    const double s = (h < w) == crop ? (double)size / h : (double)size / w;
    *sh = (int)lround(h * s), *sw = (int)lround(w * s);
    if (*sh < 1) *sh = 1;
    if (*sw < 1) *sw = 1;
  }
}

const char *mask_fit(const DecodedImage *im, int *dst, int size, FitMode fit) {
  if (im->channels != 1) return "a mask must be a grey image of label ids, not colour";
  int sh, sw;
  image_fit_scaled(im->h, im->w, size, fit, &sh, &sw);
  const double levels = (double)((1u << im->bits) - 1);
  int *ids = malloc(sizeof(int) * (size_t)im->h * im->w), *scaled = malloc(sizeof(int) * sh * sw);
  if (!ids || !scaled) {
    free(ids), free(scaled);
    return "out of memory";
  }
  for (size_t i = 0; i < (size_t)im->h * im->w; i++) ids[i] = (int)lround(im->pixels[i] * levels);
  mask_resample(scaled, sh, sw, ids, im->h, im->w);
  const int oy = (sh - size) / 2, ox = (sw - size) / 2;
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      const int yy = y + oy, xx = x + ox; /* padding is background */
      dst[(size_t)y * size + x] =
          yy >= 0 && yy < sh && xx >= 0 && xx < sw ? scaled[yy * sw + xx] : 0;
    }
  free(ids), free(scaled);
  return NULL;
}

const char *image_fit(const DecodedImage *im, float *dst, int out_c, int size, FitMode fit) {
  int sh, sw;
  image_fit_scaled(im->h, im->w, size, fit, &sh, &sw);
  Dataset one = {.n = 1, .c = im->channels, .h = im->h, .w = im->w};
  one.images = malloc(sizeof(float) * (size_t)im->channels * im->h * im->w);
  if (!one.images) return "out of memory";
  memcpy(one.images, im->pixels, sizeof(float) * (size_t)im->channels * im->h * im->w);
  if (dataset_resize(&one, sh, sw, NULL) != STATUS_OK ||
      dataset_set_channels(&one, out_c, NULL) != STATUS_OK) {
    free(one.images);
    return "out of memory";
  }
  /* centre crop (sh, sw >= size) or centre pad (sh, sw <= size) */
  const int oy = (sh - size) / 2, ox = (sw - size) / 2;
  for (int k = 0; k < out_c; k++)
    for (int y = 0; y < size; y++)
      for (int x = 0; x < size; x++) {
        const int yy = y + oy, xx = x + ox;
        dst[((size_t)k * size + y) * size + x] = yy >= 0 && yy < sh && xx >= 0 && xx < sw
                                                     ? one.images[((size_t)k * sh + yy) * sw + xx]
                                                     : 0.0f;
      }
  free(one.images);
  return NULL;
}
