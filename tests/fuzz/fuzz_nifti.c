/* NIfTI volumes (src/data/nifti.c through libnifti2): the header checks
 * before any voxel is read, the slice count a data set's listing takes from
 * the header alone (it must agree with the load), the load, and radiomics on
 * what loads (the volume as its own mask, discretised into 8 bins), as
 * `radiomics extract` would run it on a user's file. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("volume.nii", data, size);
  Volume v;
  MrError err = {0};
  int slices = -1;
  if (volume_nifti_slices(path, &slices, &err) != STATUS_OK) fuzz_check_error(&err);
  if (volume_read_nifti(path, &v, &err) != STATUS_OK) {
    fuzz_check_error(&err);
    return 0;
  }
  if (slices != v.nz) __builtin_trap(); /* the listing would disagree with the decode */
  /* small volumes only: the features are quadratic in places (Moran's I) */
  if ((long)v.nx * v.ny * v.nz <= 4096) {
    RadiomicsOptions o = radiomics_options_default();
    o.bin_count = 8;
    RadiomicsFeatures f;
    if (radiomics_extract(&v, &v, &o, &f, &err) == STATUS_OK)
      radiomics_features_free(&f);
    else
      fuzz_check_error(&err);
  }
  volume_free(&v);
  return 0;
}
