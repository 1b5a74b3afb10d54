/* The report's JSON input (results.json and what eval, triage and compare write beside it),
 * rendered to HTML. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("results.json", data, size);
  char dir[128];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  MrError err = {0};
  if (report_render(dir, &err) != STATUS_OK) fuzz_check_error(&err);
  return 0;
}
