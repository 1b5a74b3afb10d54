/* Attacked slices written back into their volumes in modality units, as NIfTI
 * files a radiologist's viewer or a research pipeline opens: the perturbation
 * a model saw on its [0,1] pixels is mapped back through the fit (crop or pad,
 * then the resampling, inverted) and the intensity window (times its width)
 * onto the source's voxels. The source is re-read rather than kept from
 * loading: a data set holds only the fitted slices. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <nifti2_io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

/* root/rel as a volume: a folder is a DICOM series; a file is told by its bytes */
static Status read_source(const char *full, Volume *v, int *channels, int *is_dicom, MrError *err) {
  struct stat st;
  *channels = 1;
  memset(v, 0, sizeof *v);
  ImageKind kind = IMAGE_DICOM;
  if (stat(full, &st) == 0 && !S_ISDIR(st.st_mode)) {
    uint8_t head[352] = {0};
    FILE *f = fopen(full, "rb");
    const size_t len = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    kind = image_kind(head, len);
    if (kind == IMAGE_NONE && len >= 2 && head[0] == 0x1f && head[1] == 0x8b) kind = IMAGE_NIFTI;
  }
  *is_dicom = kind == IMAGE_DICOM;
  if (kind == IMAGE_NIFTI) return volume_read_nifti(full, v, err);
  if (kind != IMAGE_DICOM)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: no longer a DICOM or NIfTI volume", full);
  DicomVolume dv;
  const Status s = dicom_read(full, &dv, err);
  if (s != STATUS_OK) return s;
  *v = dv.v, *channels = dv.channels;
  return STATUS_OK;
}

/* DIR/REL without .nii, .nii.gz or .dcm, then suffix; a component that climbs ("..") or an
 * absolute start cannot leave DIR: they become "_". */
static Status output_path(const char *dir, const char *rel, const char *suffix, char *out,
                          size_t cap, MrError *err) {
  char clean[4200] = "";
  size_t n = 0;
  for (const char *p = rel; *p;) {
    while (*p == '/') p++;
    const char *end = strchr(p, '/');
    const size_t len = end ? (size_t)(end - p) : strlen(p);
    if (!len) break;
    const int climbs = (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.');
    n += snprintf(clean + n, sizeof clean - n, "%s%.*s", n ? "/" : "", climbs ? 1 : (int)len,
                  climbs ? "_" : p);
    if (n >= sizeof clean) return mr_error_set(err, STATUS_ERR_ARG, "%s: path too long", rel);
    p += len;
  }
  static const char *const suffixes[] = {".nii.gz", ".nii", ".dcm"};
  for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
    const size_t len = strlen(clean), sl = strlen(suffixes[k]);
    if (len > sl && !strcmp(clean + len - sl, suffixes[k])) {
      clean[len - sl] = 0;
      break;
    }
  }
  if ((size_t)snprintf(out, cap, "%s/%s%s", dir, clean, suffix) >= cap)
    return mr_error_set(err, STATUS_ERR_ARG, "%s/%s: path too long", dir, clean);
  /* its folders */
  for (char *slash = strchr(out + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = 0;
    const int made = mkdir(out, 0755) == 0 || errno == EEXIST;
    *slash = '/';
    if (!made) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot create its folder", out);
  }
  return STATUS_OK;
}

/* One model image's perturbation (c x size x size, channels averaged) back onto slice grid
 * v: the crop or pad undone, then resampled to the slice's grid (through the grid at the
 * data's spacing: the fit's scaling and the spacing's are one resampling back). */
static Status slice_delta(const float *adv, const float *clean, int c, int size, const Volume *v,
                          const DataSplits *d, float *out, MrError *err) {
  int h, w, sh, sw;
  const char *why = slice_spacing_size(v, d->spacing, &h, &w);
  if (why) return mr_error_set(err, STATUS_ERR_FORMAT, "%s", why);
  image_fit_scaled(h, w, size, d->fit, &sh, &sw);
  Dataset one = {.n = 1, .c = 1, .h = sh, .w = sw};
  one.images = calloc((size_t)sh * sw, sizeof(float));
  if (!one.images) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  const int oy = (sh - size) / 2, ox = (sw - size) / 2;
  const size_t plane = (size_t)size * size;
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      const int yy = y + oy, xx = x + ox;
      if (yy < 0 || yy >= sh || xx < 0 || xx >= sw) continue; /* padding: no voxel under it */
      double sum = 0;
      for (int k = 0; k < c; k++)
        sum += adv[k * plane + (size_t)y * size + x] - clean[k * plane + (size_t)y * size + x];
      one.images[(size_t)yy * sw + xx] = (float)(sum / c);
    }
  Status s = dataset_resize(&one, h, w, err);
  if (s == STATUS_OK) s = dataset_resize(&one, v->ny, v->nx, err);
  if (s == STATUS_OK) memcpy(out, one.images, sizeof(float) * (size_t)v->ny * v->nx);
  free(one.images);
  return s;
}

/* A folder of files (a derived series), gone. */
static void remove_folder(const char *path) {
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char file[8800];
    if (e->d_name[0] == '.') continue;
    snprintf(file, sizeof file, "%s/%s", path, e->d_name);
    remove(file);
  }
  closedir(d);
  rmdir(path);
}

/* v's values as a float32 NIfTI file at path (temp file, read back, renamed). */
static Status write_nifti_volume(const Volume *v, const char *path, MrError *err) {
  const int frames = v->frames > 1 ? v->frames : 1;
  const int64_t dims[8] = {frames > 1 ? 4 : 3, v->nx, v->ny, v->nz / frames, frames, 1, 1, 1};
  nifti_image *nim = nifti_make_new_nim(dims, DT_FLOAT32, 0);
  if (!nim) return mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
  nim->pixdim[1] = nim->dx = v->sx, nim->pixdim[2] = nim->dy = v->sy;
  nim->pixdim[3] = nim->dz = v->sz;
  nim->xyz_units = NIFTI_UNITS_MM;
  if (v->has_affine) {
    nifti_dmat44 m = {{{0}}};
    for (int r = 0; r < 3; r++)
      for (int c = 0; c < 4; c++) m.m[r][c] = v->affine[4 * r + c];
    m.m[3][3] = 1;
    nim->sform_code = nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = m;
    nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                            &nim->qoffset_y, &nim->qoffset_z, NULL, NULL, NULL, &nim->qfac);
  }
  snprintf(nim->descrip, sizeof nim->descrip, "medrobust: attacked, modality units");
  nim->data = v->data; /* borrowed: detached before the image is freed */
  char tmp[4300];
  const size_t len = strlen(path);
  snprintf(tmp, sizeof tmp, "%.*s.tmp%ld.nii.gz", (int)(len - 7), path, (long)getpid());
  Status s = nifti_set_filenames(nim, tmp, 0, 1) == 0
                 ? STATUS_OK
                 : mr_error_set(err, STATUS_ERR_IO, "%s: cannot name the file", path);
  if (s == STATUS_OK) nifti_image_write(nim);
  nim->data = NULL;
  nifti_image_free(nim);
  /* libnifti reports a failed write only on stderr: the file must read back as written */
  Volume back;
  MrError read_err = {0};
  if (s == STATUS_OK && volume_read_nifti(tmp, &back, &read_err) != STATUS_OK)
    s = mr_error_set(err, STATUS_ERR_IO, "%s: the file written does not read back (%s)", path,
                     read_err.msg);
  else if (s == STATUS_OK) {
    const size_t n = (size_t)v->nx * v->ny * v->nz;
    if (back.nx != v->nx || back.ny != v->ny || back.nz != v->nz ||
        memcmp(back.data, v->data, sizeof(float) * n) != 0)
      s = mr_error_set(err, STATUS_ERR_IO, "%s: the file written reads back different", path);
    volume_free(&back);
  }
  if (s == STATUS_OK && rename(tmp, path) != 0)
    s = mr_error_set(err, STATUS_ERR_IO, "%s: %s", path, strerror(errno));
  if (s != STATUS_OK) remove(tmp);
  return s;
}

/* The slice number of a volume slice's id "REL:Z" (from 1), or 0. */
static int slice_number(const char *id) {
  const char *colon = strrchr(id, ':');
  return colon ? atoi(colon + 1) : 0;
}

/* Slice z of v as the model reads it: windowed, resampled to the data's spacing, fitted. */
static Status slice_as_read(const Volume *v, int z, const IntensityWindow *w, const Dataset *set,
                            const DataSplits *d, float *dst, MrError *err) {
  const size_t plane = (size_t)v->nx * v->ny;
  int h, wd;
  const char *why = slice_spacing_size(v, d->spacing, &h, &wd);
  if (why) return mr_error_set(err, STATUS_ERR_FORMAT, "slice %d: %s", z + 1, why);
  Dataset one = {.n = 1, .c = 1, .h = v->ny, .w = v->nx};
  one.images = malloc(sizeof(float) * plane);
  if (!one.images) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (size_t p = 0; p < plane; p++)
    one.images[p] = window_apply(w, v->data[(size_t)z * plane + p]);
  Status s = dataset_resize(&one, h, wd, err);
  const DecodedImage im = {wd, h, 1, 0, one.images};
  why = s == STATUS_OK ? image_fit(&im, dst, set->c, set->w, d->fit) : NULL;
  if (why) s = mr_error_set(err, STATUS_ERR_FORMAT, "slice %d: %s", z + 1, why);
  free(one.images);
  return s;
}

/* A derived DICOM series of v beside its source's files, at path: written into a temporary
 * folder, then swapped in for an earlier output of the same name; read back into out. */
static Status write_dicom_series(const char *source, const Volume *v, const char *path, Volume *out,
                                 MrError *err) {
  char tmp[8500], old[8500];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
  snprintf(old, sizeof old, "%s.old%ld", path, (long)getpid());
  Status s = dicom_write_derived(source, v, "medrobust: adversarial, modality units", tmp, err);
  struct stat st;
  const int had = s == STATUS_OK && stat(path, &st) == 0;
  if (had && rename(path, old) != 0)
    s = mr_error_set(err, STATUS_ERR_IO, "%s: %s", path, strerror(errno));
  if (s == STATUS_OK && rename(tmp, path) != 0)
    s = mr_error_set(err, STATUS_ERR_IO, "%s: %s", path, strerror(errno));
  remove_folder(s == STATUS_OK ? old : tmp);
  if (had && s != STATUS_OK) rename(old, path);
  DicomVolume back;
  if (s == STATUS_OK && (s = dicom_read(path, &back, err)) == STATUS_OK) *out = back.v;
  return s;
}

/* path made absolute and free of links, as far as it exists (a folder not made yet: its
 * parent's, then its name); NULL when not even the parent resolves. */
static char *resolved(const char *path) {
  char *real = realpath(path, NULL);
  if (real) return real;
  char *copy = strdup(path), *slash = copy ? strrchr(copy, '/') : NULL;
  if (!copy) return NULL;
  const char *name = slash ? slash + 1 : copy;
  if (slash) *slash = 0;
  char *parent = realpath(slash ? (copy[0] ? copy : "/") : ".", NULL);
  char *out = parent ? malloc(strlen(parent) + strlen(name) + 2) : NULL;
  if (out) sprintf(out, "%s/%s", parent, name);
  free(parent), free(copy);
  return out;
}

Status volumes_check_out_dir(const DataSplits *d, const char *dir, MrError *err) {
  char *out = resolved(dir), *root = d->root ? realpath(d->root, NULL) : NULL;
  const size_t len = root ? strlen(root) : 0;
  const int inside = out && root && !strncmp(out, root, len) && (out[len] == 0 || out[len] == '/');
  free(out), free(root);
  if (inside)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s is inside the data (%s): attacked volumes go to a folder outside it "
                        "(an output could be a source, and any other would join the data)",
                        dir, d->root);
  return STATUS_OK;
}

Status volumes_write_perturbed(const DataSplits *d, const Dataset *set, int n, const float *adv,
                               const char *dir, VolumeFormat format, float *reread,
                               VolumeWriteReport *report, MrError *err) {
  memset(report, 0, sizeof *report);
  if (!set->volume || !d->root || !set->files)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the data holds no DICOM or NIfTI volumes to write back");
  Status s = volumes_check_out_dir(d, dir, err);
  if (s != STATUS_OK) return s;
  const size_t per = (size_t)set->c * set->h * set->w;
  for (int i = 0; s == STATUS_OK && i < n; i = dataset_volume_end(set, i)) {
    if (set->volume[i] < 0) continue;
    const int end = dataset_volume_end(set, i);
    char rel[4200], full[8400], path[8400];
    dataset_volume_name(set, i, rel, sizeof rel);
    snprintf(full, sizeof full, "%s/%s", d->root, rel);
    Volume source, v = {0}, written = {0};
    int channels, is_dicom;
    s = read_source(full, &source, &channels, &is_dicom, err);
    if (s != STATUS_OK) break;
    const size_t plane = (size_t)source.nx * source.ny, voxels = plane * source.nz;
    const IntensityWindow w =
        set->window.width > 0 ? set->window : window_of_range(source.data, voxels);
    float *delta = malloc(sizeof(float) * plane);
    v = source;
    v.data = malloc(sizeof(float) * voxels);
    if (channels != 1)
      s = mr_error_set(err, STATUS_ERR_FORMAT,
                       "%s: a colour (RGB) volume; only grey volumes are written back", full);
    else if (!delta || !v.data)
      s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    else
      memcpy(v.data, source.data, sizeof(float) * voxels);
    for (int j = i; s == STATUS_OK && j < end && j < n; j++) {
      const int z = slice_number(set->files[j]) - 1;
      if (z < 0 || z >= v.nz) {
        s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: slice %d is not in the volume now", full,
                         z + 1);
        break;
      }
      s = slice_delta(adv + per * j, set->images + per * j, set->c, set->w, &v, d, delta, err);
      for (size_t p = 0; s == STATUS_OK && p < plane; p++)
        v.data[(size_t)z * plane + p] += delta[p] * (float)w.width;
    }
    const int as_dicom = format == VOLUME_DICOM && is_dicom;
    if (s == STATUS_OK)
      s = output_path(dir, rel, as_dicom ? "" : ".nii.gz", path, sizeof path, err);
    if (s == STATUS_OK && as_dicom) s = write_dicom_series(full, &v, path, &written, err);
    if (s == STATUS_OK && !as_dicom && (s = write_nifti_volume(&v, path, err)) == STATUS_OK)
      written = v, v.data = NULL; /* read back equal */
    if (s == STATUS_OK &&
        (written.nx != source.nx || written.ny != source.ny || written.nz != source.nz))
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: written as %dx%dx%d, read as %dx%dx%d", path,
                       written.nx, written.ny, written.nz, source.nx, source.ny, source.nz);
    /* what the file holds, against the source */
    for (size_t p = 0; s == STATUS_OK && p < voxels; p++) {
      if (written.data[p] == source.data[p]) continue;
      report->changed++;
      report->hidden += window_apply(&w, written.data[p]) == window_apply(&w, source.data[p]);
      report->max_change = fmax(report->max_change, fabs(written.data[p] - source.data[p]));
    }
    for (int j = i; reread && s == STATUS_OK && j < end && j < n; j++)
      s = slice_as_read(&written, slice_number(set->files[j]) - 1, &w, set, d, reread + per * j,
                        err);
    if (s == STATUS_OK) report->volumes++;
    free(delta);
    volume_free(&v), volume_free(&written), volume_free(&source);
  }
  return s;
}
