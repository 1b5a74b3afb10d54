/* Every fuzz target (tests/fuzz/fuzz_*.c) replayed without libFuzzer over its
 * seed corpus and over the inputs the fuzzers once crashed on
 * (tests/fuzz/regress/NAME/, one file per bug found), so each bug stays
 * fixed: make asan runs this under ASan, UBSan and LeakSanitizer. */
#include <dirent.h>

#include "testutil.h"

#define LLVMFuzzerTestOneInput fuzz_npy
#include "fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_npz
#include "fuzz/fuzz_npz.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_safetensors
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_checkpoint
#include "fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_onnx
#include "fuzz/fuzz_onnx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_image
#include "fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_idx
#include "fuzz/fuzz_idx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_report
#include "fuzz/fuzz_report.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_journal
#include "fuzz/fuzz_journal.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_nifti
#include "fuzz/fuzz_nifti.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_radiomics_model
#include "fuzz/fuzz_radiomics_model.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_dicom
#include "fuzz/fuzz_dicom.c"
#undef LLVMFuzzerTestOneInput

typedef int (*FuzzFn)(const uint8_t *data, size_t size);

/* Runs fn on every file of tests/fuzz/{corpus,regress}/name; returns how many. */
static int replay(const char *name, FuzzFn fn) {
  int count = 0;
  static const char *const kinds[2] = {"corpus", "regress"};
  for (int k = 0; k < 2; k++) {
    char dir[128];
    snprintf(dir, sizeof dir, "tests/fuzz/%s/%s", kinds[k], name);
    DIR *d = opendir(dir);
    if (!d) continue;
    for (struct dirent *e; (e = readdir(d));) {
      if (e->d_name[0] == '.') continue;
      char path[512];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      size_t len = 0;
      MrError err = {0};
      uint8_t *bytes = file_read_all(path, (size_t)64 << 20, &len, &err);
      if (!bytes) fail_msg("%s", err.msg);
      fn(bytes, len);
      free(bytes);
      count++;
    }
    closedir(d);
  }
  return count;
}

#define REPLAY_TEST(name)                                    \
  static void test_##name(void **state) {                    \
    (void)state;                                             \
    const int n = replay(#name, fuzz_##name);                \
    print_message("  %-12s %d inputs replayed\n", #name, n); \
    assert_true(n > 0);                                      \
  }
REPLAY_TEST(npy)
REPLAY_TEST(dicom)
REPLAY_TEST(npz)
REPLAY_TEST(safetensors)
REPLAY_TEST(checkpoint)
REPLAY_TEST(onnx)
REPLAY_TEST(image)
REPLAY_TEST(idx)
REPLAY_TEST(report)
REPLAY_TEST(journal)
REPLAY_TEST(nifti)
REPLAY_TEST(radiomics_model)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_npy),        cmocka_unit_test(test_dicom),
      cmocka_unit_test(test_npz),        cmocka_unit_test(test_safetensors),
      cmocka_unit_test(test_checkpoint), cmocka_unit_test(test_onnx),
      cmocka_unit_test(test_image),      cmocka_unit_test(test_idx),
      cmocka_unit_test(test_report),     cmocka_unit_test(test_journal),
      cmocka_unit_test(test_nifti),      cmocka_unit_test(test_radiomics_model)};
  const int rc = cmocka_run_group_tests_name("fuzz replay", tests, NULL, NULL);
  net_free(net), free(moment1), free(moment2); /* fuzz_checkpoint's, kept across inputs */
  return rc;
}
