/* Radiomics model files (src/radiomics/model.c): JSON from strangers, as
 * `radiomics attack` and friends load them; what loads is applied to a
 * feature list holding every tag it names. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("model.json", data, size);
  RadiomicsModel m;
  MrError err = {0};
  if (radiomics_model_load(path, &m, &err) != STATUS_OK) {
    fuzz_check_error(&err);
    return 0;
  }
  RadiomicsFeatures f = {calloc(m.n_features, sizeof(RadiomicsFeature)), 0, m.n_features};
  for (int s = 0; f.items && s < m.n_features; s++) {
    snprintf(f.items[s].tag, sizeof f.items[s].tag, "%s", m.tags[s]);
    f.items[s].value = s;
    f.n++;
  }
  double *z = malloc(sizeof(double) * m.k);
  float *p = malloc(sizeof(float) * m.k);
  if (z && p && radiomics_model_logits(&m, &f, z, &err) == STATUS_OK) radiomics_softmax(z, m.k, p);
  free(z), free(p), free(f.items);
  radiomics_model_free(&m);
  return 0;
}
