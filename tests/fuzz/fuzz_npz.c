/* .npz data sets (a zip of .npy members) through data_load, as --data reads them. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("set.npz", data, size);
  MrError err = {0};
  DataOptions opt = {0};
  DataSplits *d = data_load(path, &opt, &err);
  if (d)
    data_free(d);
  else
    fuzz_check_error(&err);
  return 0;
}
