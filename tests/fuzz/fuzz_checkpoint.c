/* Training checkpoints: a model's tensors plus train's optimiser moments, RNG states and
 * metadata, loaded into the seed's net as train --resume does (src/train/train.c). */
#include "fuzz.h"

static Net *net;
static float *moment1, *moment2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!net) {
    /* the seed's model (tests/fuzz/make_corpus.sh) */
    ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
    spec.depth = 1, spec.base = 2;
    MrError err = {0};
    net = model_build(&spec, 1, &err);
    model_spec_free(&spec);
    if (!net) {
      fprintf(stderr, "%s\n", err.msg);
      abort();
    }
    moment1 = calloc(net_param_count(net), sizeof(float));
    moment2 = calloc(net_param_count(net), sizeof(float));
  }
  const char *path = fuzz_file("model.ckpt", data, size);
  const size_t n = net_param_count(net);
  int64_t rng_data[4], rng_net[4];
  TensorRef extra[4] = {
      {.name = "train.optim.state1", .ndim = 1, .shape = {(int64_t)n}, .data = moment1, .numel = n},
      {.name = "train.rng.data",
       .ndim = 1,
       .shape = {4},
       .is_int64 = 1,
       .idata = rng_data,
       .numel = 4},
      {.name = "train.rng.net",
       .ndim = 1,
       .shape = {4},
       .is_int64 = 1,
       .idata = rng_net,
       .numel = 4},
      {.name = "train.optim.state2",
       .ndim = 1,
       .shape = {(int64_t)n},
       .data = moment2,
       .numel = n}};
  const char *keys[] = {"train.epoch", "train.optim_step", "train.signature", NULL};
  char *values[3] = {NULL, NULL, NULL};
  MrError err = {0};
  if (safetensors_load_checkpoint(net, path, extra, 4, keys, values, &err) != STATUS_OK)
    fuzz_check_error(&err);
  for (int i = 0; i < 3; i++) free(values[i]);
  return 0;
}
