/* Resume journals (src/core/journal.c): a killed run's file, read back by
 * --resume. The fingerprint asked for is the one the input's header claims
 * (when it has one), so mutations reach the records rather than stopping at
 * a mismatch; every record found is then restored into a buffer of its size. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char fingerprint[4096] = "fuzz\n";
  uint32_t len;
  if (size >= 15 && memcmp(data, "MRJOURNAL1\n", 11) == 0) {
    memcpy(&len, data + 11, 4);
    if (len < sizeof fingerprint && 15 + (size_t)len <= size && !memchr(data + 15, 0, len)) {
      memcpy(fingerprint, data + 15, len);
      fingerprint[len] = 0;
    }
  }
  const char *path = fuzz_file("run.journal", data, size);
  MrError err = {0};
  Journal *j = journal_open(path, fingerprint, 1, &err);
  if (!j) {
    fuzz_check_error(&err);
    return 0;
  }
  /* the keys the commands write, and sizes around what the seeds hold */
  static const char *const keys[] = {"row0.0/b0",    "row0.0/b16", "triage/b0",
                                     "m0/row0.0/b0", "attack/b0",  "saliency-maps"};
  static uint8_t buf[1 << 16];
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
    for (size_t want = 0; want <= 256; want += 64) {
      const JournalPart part = {buf, want};
      journal_restore(j, keys[k], &part, 1);
    }
  journal_close(j);
  return 0;
}
