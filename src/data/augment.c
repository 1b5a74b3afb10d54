/* Training augmentation as in papers 001/004: random horizontal and vertical
 * flips and a rotation within +-rotate_deg (bilinear, edges replicated); a
 * segmentation mask takes the same flips and rotation, by nearest neighbour. */
#include <math.h>
#include <string.h>

#include "medrobust.h"

void augment_image(float *img, float *scratch, int c, int h, int w, float rotate_deg, Rng *rng) {
  augment_image_mask(img, NULL, scratch, NULL, c, h, w, rotate_deg, rng);
}

void augment_image_mask(float *img, int *mask, float *scratch, int *mask_scratch, int c, int h,
                        int w, float rotate_deg, Rng *rng) {
  const int hflip = rng_uniform(rng) < 0.5f, vflip = rng_uniform(rng) < 0.5f;
  const double angle =
      rotate_deg > 0 ? (2.0 * rng_uniform(rng) - 1.0) * rotate_deg * M_PI / 180.0 : 0.0;
  const double cs = cos(angle), sn = sin(angle), cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
  const size_t plane = (size_t)h * w;
  memcpy(scratch, img, sizeof(float) * c * plane);
  if (mask) memcpy(mask_scratch, mask, sizeof(int) * plane);
  for (int k = 0; k < c; k++) {
    const float *src = scratch + k * plane;
    float *dst = img + k * plane;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        /* output pixel -> source position: inverse rotation, then the flips */
        const double dy = y - cy, dx = x - cx;
        double sy = cy + cs * dy - sn * dx, sx = cx + sn * dy + cs * dx;
        if (vflip) sy = h - 1 - sy;
        if (hflip) sx = w - 1 - sx;
        sy = fmin(fmax(sy, 0.0), h - 1.0);
        sx = fmin(fmax(sx, 0.0), w - 1.0);
        if (mask && k == 0)
          mask[(size_t)y * w + x] = mask_scratch[(size_t)lround(sy) * w + lround(sx)];
        const int y0 = (int)sy, x0 = (int)sx;
        const int y1 = y0 + 1 < h ? y0 + 1 : y0, x1 = x0 + 1 < w ? x0 + 1 : x0;
        const double ay = sy - y0, ax = sx - x0;
        dst[(size_t)y * w + x] =
            (float)((1 - ay) *
                        ((1 - ax) * src[(size_t)y0 * w + x0] + ax * src[(size_t)y0 * w + x1]) +
                    ay * ((1 - ax) * src[(size_t)y1 * w + x0] + ax * src[(size_t)y1 * w + x1]));
      }
  }
}
