/* Resampling to isotropic voxels before feature extraction (IBSI-1 section
 * 2.4): the new grid is centred on the old one (grid centre alignment), the
 * image is interpolated trilinearly (edges clamped) and the mask too, then
 * thresholded at 0.5 (partial-volume rule). A one-slice image keeps its one
 * slice: only x and y are resampled. */
#include <math.h>
#include <stdlib.h>

#include "radiomics.h"

/* position of new voxel i in old voxel units, the two grids centred on each other */
static double old_position(int i, int n_new, int n_old, double ratio) {
  return (i - 0.5 * (n_new - 1)) * ratio + 0.5 * (n_old - 1);
}

static float sample(const Volume *v, double x, double y, double z) {
  x = fmin(fmax(x, 0), v->nx - 1), y = fmin(fmax(y, 0), v->ny - 1), z = fmin(fmax(z, 0), v->nz - 1);
  const int x0 = (int)floor(x), y0 = (int)floor(y), z0 = (int)floor(z);
  const int x1 = x0 + 1 < v->nx ? x0 + 1 : x0, y1 = y0 + 1 < v->ny ? y0 + 1 : y0,
            z1 = z0 + 1 < v->nz ? z0 + 1 : z0;
  const double fx = x - x0, fy = y - y0, fz = z - z0;
#define AT(a, b, c) (double)v->data[((long)(c)*v->ny + (b)) * v->nx + (a)]
  const double c00 = AT(x0, y0, z0) * (1 - fx) + AT(x1, y0, z0) * fx;
  const double c10 = AT(x0, y1, z0) * (1 - fx) + AT(x1, y1, z0) * fx;
  const double c01 = AT(x0, y0, z1) * (1 - fx) + AT(x1, y0, z1) * fx;
  const double c11 = AT(x0, y1, z1) * (1 - fx) + AT(x1, y1, z1) * fx;
#undef AT
  return (float)(((c00 * (1 - fy) + c10 * fy) * (1 - fz)) + ((c01 * (1 - fy) + c11 * fy) * fz));
}

Status radiomics_resample(const Volume *in, double spacing, int is_mask, Volume *out,
                          MrError *err) {
  if (!(spacing > 0))
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics: resampling to %g mm", spacing);
  const int flat = in->nz == 1;
  const double fx = ceil(in->nx * in->sx / spacing - 1e-9),
               fy = ceil(in->ny * in->sy / spacing - 1e-9),
               fz = flat ? 1 : ceil(in->nz * in->sz / spacing - 1e-9);
  if (!(fx <= (1 << 20) && fy <= (1 << 20) && fz <= (1 << 20)))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "radiomics: resampling %dx%dx%d voxels of %gx%gx%g mm to %g mm gives "
                        "more than 2^20 voxels along an axis",
                        in->nx, in->ny, in->nz, in->sx, in->sy, in->sz, spacing);
  const long nx = (long)fx, ny = (long)fy, nz = (long)fz;
  const double limit = (double)mr_limits().file_bytes / sizeof(float);
  if (nx < 1 || ny < 1 || nz < 1 || (double)nx * ny * nz > limit || nx > (1 << 20) ||
      ny > (1 << 20) || nz > (1 << 20))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "radiomics: resampling %dx%dx%d voxels to %g mm gives %ldx%ldx%ld", in->nx,
                        in->ny, in->nz, spacing, nx, ny, nz);
  *out = (Volume){.nx = (int)nx,
                  .ny = (int)ny,
                  .nz = (int)nz,
                  .sx = spacing,
                  .sy = spacing,
                  .sz = flat ? in->sz : spacing};
  out->data = malloc(sizeof(float) * nx * ny * nz);
  if (!out->data) return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory resampling");
  for (long z = 0; z < nz; z++)
    for (long y = 0; y < ny; y++)
      for (long x = 0; x < nx; x++) {
        const double ox = old_position((int)x, (int)nx, in->nx, spacing / in->sx),
                     oy = old_position((int)y, (int)ny, in->ny, spacing / in->sy),
                     oz = flat ? 0 : old_position((int)z, (int)nz, in->nz, spacing / in->sz);
        const float v = sample(in, ox, oy, oz);
        out->data[(z * ny + y) * nx + x] = is_mask ? (float)(v >= 0.5f) : v;
      }
  return STATUS_OK;
}
