/* NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz, .hdr/.img) through Debian's
 * libnifti2: one 3-D scalar volume as float32 with its voxel size in mm.
 * The header is read and checked (dimensions, data type, voxel size, the
 * declared size against the file and the limits) before any voxel is read,
 * because the library would otherwise allocate whatever a header declares. */
#include <float.h>
#include <math.h>
#include <nifti2_io.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medrobust.h"

void volume_free(Volume *v) {
  free(v->data);
  memset(v, 0, sizeof *v);
}

/* One voxel of the stored type as a double. */
static double voxel(const void *data, int datatype, int64_t i) {
  switch (datatype) {
    case DT_UINT8:
      return ((const uint8_t *)data)[i];
    case DT_INT8:
      return ((const int8_t *)data)[i];
    case DT_INT16:
      return ((const int16_t *)data)[i];
    case DT_UINT16:
      return ((const uint16_t *)data)[i];
    case DT_INT32:
      return ((const int32_t *)data)[i];
    case DT_UINT32:
      return ((const uint32_t *)data)[i];
    case DT_FLOAT32:
      return ((const float *)data)[i];
    default: /* DT_FLOAT64, checked by the caller */
      return ((const double *)data)[i];
  }
}

static int supported(int datatype) {
  return datatype == DT_UINT8 || datatype == DT_INT8 || datatype == DT_INT16 ||
         datatype == DT_UINT16 || datatype == DT_INT32 || datatype == DT_UINT32 ||
         datatype == DT_FLOAT32 || datatype == DT_FLOAT64;
}

/* The voxel size as the header states it: the library replaces a zero or NaN size by 1 mm,
 * which would pass unnoticed into every physical feature. */
static int stated_voxel_size(const char *path, double size[3]) {
  int version = 0;
  void *header = nifti_read_header(path, &version, 0);
  if (!header) return 0;
  /* the header as stored: a big endian file's fields need swapping (nibabel's anatomical.nii
   * read 1 mm as 9e-44 mm before this) */
  const int stored_size = version == 2 ? ((const nifti_2_header *)header)->sizeof_hdr
                                       : ((const nifti_1_header *)header)->sizeof_hdr;
  if (stored_size != (version == 2 ? 540 : 348)) swap_nifti_header(header, version);
  for (int d = 0; d < 3; d++)
    size[d] = version == 2 ? ((const nifti_2_header *)header)->pixdim[d + 1]
                           : ((const nifti_1_header *)header)->pixdim[d + 1];
  free(header);
  return 1;
}

/* Why the header cannot be read as one scalar 3-D volume, or NULL. */
static const char *check_header(const nifti_image *nim, const char *path, char *why, size_t cap) {
  if (nim->ndim < 1 || nim->ndim > 7) return "its number of dimensions is not 1 to 7";
  for (int d = 1; d <= 7; d++)
    if (d <= nim->ndim && (nim->dim[d] < 1 || nim->dim[d] > (1 << 20))) {
      snprintf(why, cap, "dimension %d is %lld (1 to 1048576 accepted)", d, (long long)nim->dim[d]);
      return why;
    }
  for (int d = 5; d <= nim->ndim; d++) /* the 4th: volumes over time, stacked */
    if (nim->dim[d] != 1) {
      snprintf(why, cap,
               "it has %lld values along dimension %d: scalar 3-D or 4-D volumes are read",
               (long long)nim->dim[d], d);
      return why;
    }
  if (!supported(nim->datatype)) {
    snprintf(why, cap, "its data type %s (%d) is not an integer or float scalar",
             nifti_datatype_string(nim->datatype), nim->datatype);
    return why;
  }
  double sizes[3] = {nim->dx, nim->dy, nim->dz};
  stated_voxel_size(path, sizes);
  for (int d = 0; d < 3 && d < nim->ndim; d++)
    if (!(fabs(sizes[d]) >= FLT_MIN) || !isfinite(sizes[d])) { /* zero, NaN, denormal */
      snprintf(why, cap, "its voxel size along axis %d is %g mm", d + 1, sizes[d]);
      return why;
    }
  const uint64_t voxels = (uint64_t)nim->nx * nim->ny * nim->nz * (nim->ndim >= 4 ? nim->nt : 1);
  const uint64_t bytes = voxels * (uint64_t)nim->nbyper;
  if (voxels * sizeof(float) > mr_limits().file_bytes) {
    snprintf(why, cap,
             "%llu voxels need %llu bytes, over the %llu accepted (raise with medrobust "
             "--max-file-gb)",
             (unsigned long long)voxels, (unsigned long long)(voxels * sizeof(float)),
             (unsigned long long)mr_limits().file_bytes);
    return why;
  }
  /* uncompressed: the voxels must be in the file (a .gz stream's size is known only once
   * inflated; the library then fails on the short read) */
  struct stat st;
  const char *image = nim->iname ? nim->iname : path;
  const size_t len = strlen(image);
  if (len < 3 || strcmp(image + len - 3, ".gz") != 0) {
    if (stat(image, &st) == 0 && (uint64_t)st.st_size < (uint64_t)nim->iname_offset + bytes) {
      snprintf(why, cap, "it declares %llu bytes of voxels from byte %lld, but %s has %lld",
               (unsigned long long)bytes, (long long)nim->iname_offset, image,
               (long long)st.st_size);
      return why;
    }
  }
  return NULL;
}

Status volume_nifti_slices(const char *path, int *slices, MrError *err) {
  nifti_set_debug_level(0);
  nifti_image *nim = nifti_image_read(path, 0);
  if (!nim) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a readable NIfTI file", path);
  char why[256];
  const char *bad = check_header(nim, path, why, sizeof why);
  const long long n = (long long)nim->nz * (nim->ndim >= 4 ? nim->nt : 1);
  nifti_image_free(nim);
  if (bad) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", path, bad);
  if (n > (1 << 20))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %lld slices in all, 1048576 accepted", path,
                        n);
  *slices = (int)n;
  return STATUS_OK;
}

Status volume_read_nifti(const char *path, Volume *out, MrError *err) {
  memset(out, 0, sizeof *out);
  nifti_set_debug_level(0);
  nifti_image *nim = nifti_image_read(path, 0);
  if (!nim) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a readable NIfTI file", path);
  char why[256];
  const char *bad = check_header(nim, path, why, sizeof why);
  /* with x.nii beside x.nii.gz, libnifti reads the voxels of x.nii whichever was named
   * (measured: a truncated x.nii.gz then loads whole): refuse the ambiguity */
  const size_t len = strlen(path);
  char sibling[4200] = "";
  if (len > 7 && !strcmp(path + len - 7, ".nii.gz"))
    snprintf(sibling, sizeof sibling, "%.*s", (int)(len - 3), path);
  else if (len > 4 && !strcmp(path + len - 4, ".nii"))
    snprintf(sibling, sizeof sibling, "%s.gz", path);
  if (!bad && sibling[0] && access(sibling, F_OK) == 0) {
    snprintf(why, sizeof why, "%.200s is beside it and libnifti may read either; rename one",
             sibling);
    bad = why;
  }
  if (bad) {
    nifti_image_free(nim);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", path, bad);
  }
  if (nifti_image_load(nim) != 0 || !nim->data) {
    nifti_image_free(nim);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: its voxels cannot be read (truncated?)", path);
  }
  const int64_t frames = nim->ndim >= 4 ? nim->nt : 1, n = nim->nx * nim->ny * nim->nz * frames;
  if (nim->nz * frames > (1 << 20)) {
    nifti_image_free(nim);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %lld slices in all, 1048576 accepted", path,
                        (long long)(nim->nz * frames));
  }
  out->data = malloc(sizeof(float) * (size_t)n);
  if (!out->data) {
    nifti_image_free(nim);
    return mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory for %lld voxels", path,
                        (long long)n);
  }
  /* scl_slope 0 means "no scaling" in the standard; libnifti has already replaced
   * non-finite float voxels by 0, so only a scaling can make one */
  const int scaled = nim->scl_slope != 0 && isfinite(nim->scl_slope) && isfinite(nim->scl_inter);
  int64_t bad_voxel = -1;
  for (int64_t i = 0; i < n; i++) {
    double v = voxel(nim->data, nim->datatype, i);
    if (scaled) v = nim->scl_slope * v + nim->scl_inter;
    /* a scaled value beyond float's range would become infinite (undefined, converted) */
    if (!(fabs(v) <= FLT_MAX)) {
      if (bad_voxel < 0) bad_voxel = i;
      v = 0;
    }
    out->data[i] = (float)v;
  }
  out->nx = (int)nim->nx, out->ny = (int)nim->ny, out->nz = (int)(nim->nz * frames);
  out->frames = (int)frames;
  const nifti_dmat44 *to_mm = nim->sform_code > 0   ? &nim->sto_xyz
                              : nim->qform_code > 0 ? &nim->qto_xyz
                                                    : NULL;
  for (int r = 0; to_mm && r < 3; r++)
    for (int c = 0; c < 4; c++) out->affine[4 * r + c] = to_mm->m[r][c];
  out->has_affine = to_mm != NULL;
  /* an axis the file does not have is one voxel of 1 mm, whatever its unused size field holds */
  const double sizes[3] = {fabs(nim->dx), fabs(nim->dy), fabs(nim->dz)};
  out->sx = sizes[0], out->sy = nim->ndim >= 2 ? sizes[1] : 1,
  out->sz = nim->ndim >= 3 ? sizes[2] : 1;
  nifti_image_free(nim);
  if (bad_voxel >= 0) {
    volume_free(out);
    return mr_error_set(err, STATUS_ERR_NAN,
                        "%s: voxel %lld is not a finite number within float's range (after the "
                        "file's scaling)",
                        path, (long long)bad_voxel);
  }
  return STATUS_OK;
}
