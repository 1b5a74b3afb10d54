/* PNG output through libpng's simplified API: (c,h,w) float images in [0,1]
 * to 8-bit grey or RGB, enlarged by an integer factor for viewing. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "medrobust.h"

Status image_write_png(const char *path, const float *img, int c, int h, int w, int scale,
                       MrError *err) {
  if (scale < 1) scale = 1;
  const int W = w * scale, H = h * scale, ch = c == 3 ? 3 : 1;
  unsigned char *px = malloc((size_t)W * H * ch);
  if (!px) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for %s", path);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int k = 0; k < ch; k++) {
        float v = img[((size_t)k * h + y / scale) * w + x / scale];
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        px[((size_t)y * W + x) * ch + k] = (unsigned char)(v * 255.0f + 0.5f);
      }
  png_image p = {0};
  p.version = PNG_IMAGE_VERSION;
  p.width = (png_uint_32)W, p.height = (png_uint_32)H;
  p.format = ch == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  AtomicFile af;
  Status s = atomic_begin(&af, path, err);
  if (s == STATUS_OK && !png_image_write_to_file(&p, af.tmp, 0, px, 0, NULL)) {
    atomic_abort(&af);
    s = mr_error_set(err, STATUS_ERR_IO, "%s: cannot write PNG: %s", path, p.message);
  } else if (s == STATUS_OK) {
    s = atomic_commit(&af, err);
  }
  free(px);
  return s;
}
