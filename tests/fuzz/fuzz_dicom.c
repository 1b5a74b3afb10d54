/* DICOM files (src/data/dicom.cpp through GDCM, in its own process): the
 * header checks, the truncation and length checks, the decoding of every
 * transfer syntax, and the parent's handling of whatever the reading process
 * sends or how it ends. A crash inside GDCM is the child's; the target fails
 * only when medrobust's own process does, or an error comes without a word. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("image.dcm", data, size);
  DicomVolume d;
  MrError err = {0};
  if (dicom_read(path, &d, &err) != STATUS_OK) {
    fuzz_check_error(&err);
    return 0;
  }
  /* what a reader hands on must be whole: touch every voxel */
  const size_t n = (size_t)d.v.nx * d.v.ny * d.v.nz * d.channels;
  volatile float sum = 0;
  for (size_t i = 0; i < n; i++) sum += d.v.data[i];
  (void)sum;
  dicom_volume_free(&d);
  return 0;
}
