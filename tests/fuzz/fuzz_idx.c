/* Fashion-MNIST's IDX files: the input is split into the four files of a folder (images and
 * labels, train and test) at offsets its first bytes choose. */
#include "../../src/data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* the reader opens the .gz names; zlib reads an uncompressed file through them as is */
  static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  if (size < 4) return 0;
  size_t at = 4;
  const char *path = NULL;
  for (int f = 0; f < 4; f++) {
    size_t len = f < 3 ? (size_t)data[f] * 16 : size - at;
    if (len > size - at) len = size - at;
    path = fuzz_file(names[f], data + at, len);
    at += len;
  }
  char dir[128];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  MrError err = {0};
  DataSplits *d = idx_load(dir, &err);
  if (d)
    data_free(d);
  else
    fuzz_check_error(&err);
  return 0;
}
