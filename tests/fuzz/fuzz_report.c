/* The report's JSON input (results.json and what eval, triage and compare write beside it,
 * and radiomics attack and stability), rendered to HTML. The input goes to the file whose
 * keys it holds, so the seeds of each kind reach their own section. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[3] = {"results.json", "radiomics_attack.json",
                                       "radiomics_stability.json"};
  const int kind = memmem(data, size, "query_budget", 12)      ? 1
                   : memmem(data, size, "per_feature_csv", 15) ? 2
                                                               : 0;
  const char *path = fuzz_file(names[kind], data, size);
  char dir[128], other[192];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  for (int k = 0; k < 3; k++) /* only this input's file: none left from the last one */
    if (k != kind) snprintf(other, sizeof other, "%s/%s", dir, names[k]), unlink(other);
  MrError err = {0};
  if (report_render(dir, &err) != STATUS_OK) fuzz_check_error(&err);
  return 0;
}
