/* Model files: the safetensors header, the graph in its metadata, the tensors. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("model.safetensors", data, size);
  MrError err = {0};
  Net *net = safetensors_load_net(path, &err);
  if (net)
    net_free(net);
  else
    fuzz_check_error(&err);
  return 0;
}
