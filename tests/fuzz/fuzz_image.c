/* Image files of a folder data set (PNG, JPEG, by content), decoded and fitted as an image
 * and as a segmentation mask. */
#include "../../src/data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  DecodedImage im = {0};
  if (image_decode(&im, data, size)) return 0;
  float px[3 * 32 * 32];
  int mask[32 * 32];
  image_fit(&im, px, 3, 32, FIT_CROP);
  mask_fit(&im, mask, 32, FIT_PAD);
  free(im.pixels);
  return 0;
}
