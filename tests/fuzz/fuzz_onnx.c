/* ONNX models: protobuf parsing, graph import, constant folding. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("model.onnx", data, size);
  MrError err = {0};
  Net *net = onnx_import(path, NULL, &err);
  if (net)
    net_free(net);
  else
    fuzz_check_error(&err);
  return 0;
}
