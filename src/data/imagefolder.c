/* Sets of image files: folders in the ImageFolder convention (root/<class>/
 * <image>, classes in name order; root/<image> without class folders is an
 * unlabelled set), and CSV manifests (path,label[,split]). Files are told by
 * their magic bytes, not their names (real sets ship PNGs named .jpg); files
 * that are not PNG, JPEG, DICOM or NIfTI are skipped and counted, exact duplicates dropped.
 * DICOM files, DICOM series (a folder inside a class folder) and NIfTI volumes
 * give their axial slices, through DataOptions.window; a volume is one entry
 * of the split, so its slices never straddle train and test.
 * The split comes from a manifest's split column or a split file, else from
 * a seeded shuffle per class, 70/10/20 train/val/test; the listing and the
 * split are hashed so a model file can record exactly what it was trained on. */
#include <dirent.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"

#define MAX_FILE_BYTES (64u << 20)
#define DEFAULT_SIZE 64

typedef struct {
  char *rel; /* relative to the root */
  int label; /* -1: none */
  int split; /* -1: not decided yet */
  uint64_t hash;
  char *mask;     /* its mask's path relative to the root (segmentation sets; a manifest's
                     mask column) */
  ImageKind kind; /* PNG, JPEG, or a volume (DICOM file or series folder, NIfTI) */
  int slices;     /* the images it gives: 1, or a volume's axial slices (those kept) */
  int *keep;      /* a volume's slices kept, in order (NULL: all) */
} ImageFile;

typedef struct {
  const char *root;
  ImageFile *files;
  int n, cap;
  int duplicates, skipped;
  char skipped_example[160];
} Listing;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir that are folders (want_dir) or regular
 * files; NULL on error. */
static char **list_dir(const char *dir, int want_dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) return NULL;
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char full[4096];
    if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) >= (int)sizeof full) continue;
    struct stat st;
    if (stat(full, &st) != 0 || (S_ISDIR(st.st_mode) != 0) != want_dir) continue;
    if (!want_dir && !S_ISREG(st.st_mode)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **grown = realloc(names, sizeof(char *) * cap);
      if (!grown) break;
      names = grown;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(char *), cmp_str);
  *count = n;
  return names ? names : calloc(1, sizeof(char *));
}

static void free_names(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

static uint8_t *read_file(const char *path, size_t *len, MrError *err) {
  return file_read_all(path, MAX_FILE_BYTES, len, err);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const uint8_t *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}
#define FNV_OFFSET 1469598103934665603ULL

static void note_skipped(Listing *l, const char *rel) {
  if (!l->skipped++) snprintf(l->skipped_example, sizeof l->skipped_example, "%s", rel);
}

static Status listing_push(Listing *l, const char *rel, int label, int split, ImageKind kind,
                           uint64_t h, const char *full, int files, int must_exist, MrError *err);
static Status listing_add_series(Listing *l, const char *rel, int label, int split, int must_exist,
                                 MrError *err);

/* Adds root/rel unless it is not an image (skipped) or a duplicate. A file
 * that cannot be read is an error when `must_exist` (a manifest names it). */
static Status listing_add(Listing *l, const char *rel, int label, int split, int must_exist,
                          MrError *err) {
  char full[8192];
  if (snprintf(full, sizeof full, "%s/%s", l->root, rel) >= (int)sizeof full)
    return mr_error_set(err, STATUS_ERR_ARG, "%s/%s: path too long", l->root, rel);
  struct stat st; /* a folder (a manifest's row): a DICOM series */
  if (stat(full, &st) == 0 && S_ISDIR(st.st_mode))
    return listing_add_series(l, rel, label, split, must_exist, err);
  size_t len = 0;
  MrError read_err = {0};
  uint8_t *buf = read_file(full, &len, &read_err);
  if (!buf) {
    if (must_exist) return mr_error_set(err, read_err.status, "%s", read_err.msg);
    note_skipped(l, rel);
    return STATUS_OK;
  }
  ImageKind kind = image_kind(buf, len);
  const size_t rel_len = strlen(rel);
  if (kind == IMAGE_NONE && len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b && rel_len > 7 &&
      !strcmp(rel + rel_len - 7, ".nii.gz"))
    kind = IMAGE_NIFTI;
  const uint64_t h = fnv1a(FNV_OFFSET, buf, len);
  free(buf);
  return listing_push(l, rel, label, split, kind, h, full, 0, must_exist, err);
}

/* A volume's axial slices: NIfTI's from its header; a DICOM file's frames by reading it (a
 * series folder's are its files, counted by the caller). */
static Status volume_slices(ImageKind kind, const char *full, int *slices, MrError *err) {
  if (kind == IMAGE_NIFTI) return volume_nifti_slices(full, slices, err);
  DicomVolume dv;
  const Status s = dicom_read(full, &dv, err);
  if (s != STATUS_OK) return s;
  *slices = dv.v.nz;
  dicom_volume_free(&dv);
  return STATUS_OK;
}

/* The listing's new entry, unless it is not an image or a duplicate; `files` > 0: a series
 * folder of that many single-frame files (its slices; the reader refuses anything else). */
static Status listing_push(Listing *l, const char *rel, int label, int split, ImageKind kind,
                           uint64_t h, const char *full, int files, int must_exist, MrError *err) {
  if (kind == IMAGE_NONE) {
    if (must_exist)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: not a PNG, JPEG, DICOM or NIfTI image (by its bytes)", full);
    note_skipped(l, rel);
    return STATUS_OK;
  }
  for (int j = 0; j < l->n; j++)
    if (l->files[j].hash == h) {
      l->duplicates++;
      return STATUS_OK;
    }
  if (l->n == l->cap) {
    const int cap = l->cap ? 2 * l->cap : 256;
    ImageFile *grown = realloc(l->files, sizeof(ImageFile) * cap);
    if (!grown) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory listing %s", l->root);
    l->files = grown, l->cap = cap;
  }
  int slices = files > 0 ? files : 1;
  if ((kind == IMAGE_DICOM || kind == IMAGE_NIFTI) && files <= 0) {
    const Status s = volume_slices(kind, full, &slices, err);
    if (s != STATUS_OK) return s;
  }
  l->files[l->n++] = (ImageFile){strdup(rel), label, split, h, NULL, kind, slices, NULL};
  return STATUS_OK;
}

/* A folder inside a class folder: a DICOM series, hashed over its files in name order. */
static Status listing_add_series(Listing *l, const char *rel, int label, int split, int must_exist,
                                 MrError *err) {
  char full[8192];
  if (snprintf(full, sizeof full, "%s/%s", l->root, rel) >= (int)sizeof full)
    return mr_error_set(err, STATUS_ERR_ARG, "%s/%s: path too long", l->root, rel);
  int n = 0;
  char **names = list_dir(full, 0, &n);
  uint64_t h = FNV_OFFSET;
  ImageKind kind = n ? IMAGE_DICOM : IMAGE_NONE;
  for (int i = 0; names && i < n && kind == IMAGE_DICOM; i++) {
    char file[8400];
    snprintf(file, sizeof file, "%s/%s", full, names[i]);
    size_t len = 0;
    MrError read_err = {0};
    uint8_t *buf = read_file(file, &len, &read_err);
    if (!buf || image_kind(buf, len) != IMAGE_DICOM) kind = IMAGE_NONE;
    if (buf) h = fnv1a(h, buf, len);
    free(buf);
  }
  free_names(names, n);
  return listing_push(l, rel, label, split, kind, h, full, n, must_exist, err);
}

static void listing_free(Listing *l) {
  for (int i = 0; i < l->n; i++)
    free(l->files[i].rel), free(l->files[i].mask), free(l->files[i].keep);
  free(l->files);
}

/* root/<class>/<file>; with no class folders, root/<file> unlabelled. */
static Status list_folder(Listing *l, DataSplits *d, MrError *err) {
  int n_classes = 0, n_loose = 0;
  char **classes = list_dir(l->root, 1, &n_classes);
  char **loose = classes ? list_dir(l->root, 0, &n_loose) : NULL;
  Status s = STATUS_OK;
  if (!classes || !loose)
    s = mr_error_set(err, STATUS_ERR_IO, "%s: cannot list the folder", l->root);
  if (s == STATUS_OK && n_classes == 1)
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: one class folder (%s); a labelled set needs 2..%d (root/<class>/<image>)",
                     l->root, classes[0], MR_MAX_CLASSES);
  if (s == STATUS_OK && n_classes > MR_MAX_CLASSES)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %d class folders, at most %d", l->root, n_classes,
                     MR_MAX_CLASSES);
  d->unlabelled = s == STATUS_OK && n_classes == 0;
  for (int i = 0; s == STATUS_OK && i < n_loose; i++) {
    if (d->unlabelled)
      s = listing_add(l, loose[i], -1, -1, 0, err);
    else
      note_skipped(l, loose[i]); /* a file beside the class folders has no class */
  }
  for (int k = 0; s == STATUS_OK && k < n_classes; k++) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/%s", l->root, classes[k]) >= (int)sizeof dir) {
      s = mr_error_set(err, STATUS_ERR_ARG, "%s: path too long", l->root);
      break;
    }
    int n = 0;
    const int before = l->n;
    char **names = list_dir(dir, 0, &n);
    for (int i = 0; s == STATUS_OK && names && i < n; i++) {
      char rel[4096];
      snprintf(rel, sizeof rel, "%s/%s", classes[k], names[i]);
      s = listing_add(l, rel, k, -1, 0, err);
    }
    free_names(names, n);
    /* folders inside a class folder: DICOM series */
    names = list_dir(dir, 1, &n);
    for (int i = 0; s == STATUS_OK && names && i < n; i++) {
      char rel[4096];
      snprintf(rel, sizeof rel, "%s/%s", classes[k], names[i]);
      s = listing_add_series(l, rel, k, -1, 0, err);
    }
    free_names(names, n);
    /* a class no image shows would be an output the model never learns */
    if (s == STATUS_OK && l->n == before)
      s = mr_error_set(
          err, STATUS_ERR_FORMAT,
          "%s: class folder '%s' holds no PNG, JPEG, DICOM or NIfTI image (remove it, or add its "
          "images)",
          l->root, classes[k]);
    d->class_names[k] = strdup(classes[k]);
  }
  d->n_classes = d->unlabelled ? 0 : n_classes;
  if (s == STATUS_OK && l->n == 0)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: no PNG, JPEG, DICOM or NIfTI images found",
                     l->root);
  free_names(classes, n_classes);
  free_names(loose, n_loose);
  return s;
}

static int split_of_text(const char *text) {
  if (strcmp(text, "validation") == 0 || strcmp(text, "valid") == 0) return SPLIT_VAL;
  return split_parse(text);
}

/* A split file's path,split rows decide each listed file's split; files it
 * does not list are left out of every split. */
static Status apply_split_file(Listing *l, const char *csv, MrError *err) {
  CsvTable t;
  Status s = csv_table_read(csv, &t, err);
  if (s != STATUS_OK) return s;
  static const char *const path_cols[] = {"path", "file", "filename", NULL};
  static const char *const split_cols[] = {"split", "set", "fold", NULL};
  const int pc = csv_table_column(&t, path_cols), sc = csv_table_column(&t, split_cols);
  if (pc < 0 || sc < 0)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: the header must name a path and a split column",
                     csv);
  for (int r = 1; s == STATUS_OK && r < t.n_rows; r++) {
    const char *path = csv_table_cell(&t, r, pc), *split = csv_table_cell(&t, r, sc);
    const int sp = split_of_text(split);
    if (sp < 0) {
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s row %d: split '%s' is not train, val or test",
                       csv, r + 1, split);
      break;
    }
    int found = 0;
    for (int i = 0; i < l->n && !found; i++)
      if (strcmp(l->files[i].rel, path) == 0) l->files[i].split = sp, found = 1;
    if (!found)
      s = mr_error_set(err, STATUS_ERR_FORMAT,
                       "%s row %d: '%s' is not an image of %s (paths are relative to it)", csv,
                       r + 1, path, l->root);
  }
  csv_table_free(&t);
  if (s != STATUS_OK) return s;
  int kept = 0;
  for (int i = 0; i < l->n; i++) {
    if (l->files[i].split >= 0)
      l->files[kept++] = l->files[i];
    else
      free(l->files[i].rel), free(l->files[i].mask), free(l->files[i].keep);
  }
  l->n = kept;
  return STATUS_OK;
}

/* Each class's undecided files, shuffled with the seed, go 70/10/20 into
 * train/val/test; unlabelled files all go to test. */
static void assign_splits(Listing *l, int n_classes, uint64_t seed) {
  Rng rng;
  rng_seed(&rng, seed);
  int *idx = malloc(sizeof(int) * (l->n + 1));
  for (int k = -1; idx && k < n_classes; k++) {
    int m = 0;
    for (int i = 0; i < l->n; i++)
      if (l->files[i].label == k && l->files[i].split < 0) idx[m++] = i;
    if (k < 0) {
      for (int i = 0; i < m; i++) l->files[idx[i]].split = SPLIT_TEST;
      continue;
    }
    for (int i = m - 1; i > 0; i--) {
      int j = rng_int(&rng, i + 1), t = idx[i];
      idx[i] = idx[j], idx[j] = t;
    }
    const int n_train = (int)(0.7 * m + 0.5), n_val = (int)(0.1 * m + 0.5);
    for (int i = 0; i < m; i++)
      l->files[idx[i]].split = i < n_train           ? SPLIT_TRAIN
                               : i < n_train + n_val ? SPLIT_VAL
                                                     : SPLIT_TEST;
  }
  free(idx);
}

static void hash_listing(const Listing *l, DataSplits *d) {
  uint64_t files = FNV_OFFSET, assignment = FNV_OFFSET;
  for (int i = 0; i < l->n; i++) {
    const ImageFile *f = &l->files[i];
    files = fnv1a(files, f->rel, strlen(f->rel) + 1);
    files = fnv1a(files, &f->label, sizeof f->label);
    files = fnv1a(files, &f->hash, sizeof f->hash);
    assignment = fnv1a(assignment, &f->split, sizeof f->split);
  }
  d->n_files = l->n;
  d->listing_hash = files;
  d->assignment_hash = fnv1a(files, &assignment, sizeof assignment);
}

/* A segmentation image's mask, checked against the image's stored size
 * (im: the decoded image, its pixels already freed) and fitted the same way. */
static Status decode_mask(const Listing *l, const ImageFile *f, const DecodedImage *im, int *dst,
                          int size, FitMode fit, MrError *err) {
  char full[8192];
  snprintf(full, sizeof full, "%s/%s", l->root, f->mask);
  size_t len = 0;
  uint8_t *buf = read_file(full, &len, err);
  if (!buf) return err ? err->status : STATUS_ERR_IO;
  DecodedImage mk;
  const char *why = image_decode(&mk, buf, len);
  free(buf);
  if (why) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", full, why);
  Status s = STATUS_OK;
  if (mk.w != im->w || mk.h != im->h)
    s = mr_error_set(err, STATUS_ERR_SHAPE, "%s is %dx%d but its image %s is %dx%d", full, mk.w,
                     mk.h, f->rel, im->w, im->h);
  else if ((why = mask_fit(&mk, dst, size, fit)))
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", full, why);
  free(mk.pixels);
  return s;
}

const char *slice_spacing_size(const Volume *v, double spacing, int *h, int *w) {
  *h = v->ny, *w = v->nx;
  if (!(spacing > 0)) return NULL;
  const double hh = v->ny * v->sy / spacing, ww = v->nx * v->sx / spacing;
  if (!(hh <= 4096 && ww <= 4096))
    return "at that spacing a slice would be over 4096 pixels a side";
  *h = hh < 1 ? 1 : (int)lround(hh), *w = ww < 1 ? 1 : (int)lround(ww);
  return NULL;
}

/* A NIfTI label volume's slice z as a grey mask fitted to size x size into dst (through the
 * in-plane spacing, by nearest neighbour): label ids 0..255 (integers), the voxel of any
 * other value an error naming it. */
static Status volume_mask_slice(const Volume *m, int z, const char *path, int *dst, int size,
                                const DataOptions *opt, MrError *err) {
  const size_t plane = (size_t)m->nx * m->ny;
  int h, w;
  const char *why = slice_spacing_size(m, opt->spacing, &h, &w);
  if (why) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", path, why);
  int *ids = malloc(sizeof(int) * plane), *scaled = malloc(sizeof(int) * (size_t)h * w);
  float *grey = malloc(sizeof(float) * (size_t)h * w);
  Status s =
      ids && scaled && grey ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; s == STATUS_OK && i < plane; i++) {
    const float v = m->data[z * plane + i];
    if (!(v >= 0 && v <= 255 && v == floorf(v)))
      s = mr_error_set(err, STATUS_ERR_FORMAT,
                       "%s: voxel %zu of slice %d is %g; a label volume holds ids 0..255", path, i,
                       z + 1, v);
    else
      ids[i] = (int)v;
  }
  if (s == STATUS_OK) {
    mask_resample(scaled, h, w, ids, m->ny, m->nx);
    for (size_t i = 0; i < (size_t)h * w; i++) grey[i] = scaled[i] / 255.0f; /* as 8-bit */
    const DecodedImage mk = {w, h, 1, 8, grey};
    if ((why = mask_fit(&mk, dst, size, opt->fit)))
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", path, why);
  }
  free(ids), free(scaled), free(grey);
  return s;
}

/* The slices of each volume whose mask has a voxel > 0 (--slices mask): a volume without
 * a mask is an error; one whose mask is empty gives no slice. */
static Status select_mask_slices(Listing *l, MrError *err) {
  for (int i = 0; i < l->n; i++) {
    ImageFile *f = &l->files[i];
    if (f->kind != IMAGE_DICOM && f->kind != IMAGE_NIFTI) continue;
    if (!f->mask)
      return mr_error_set(err, STATUS_ERR_ARG,
                          "%s/%s: keeping the slices a mask touches needs a mask for every "
                          "volume (a manifest's mask column, or a segmentation folder)",
                          l->root, f->rel);
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", l->root, f->mask);
    Volume m;
    Status s = volume_read_nifti(path, &m, err);
    if (s != STATUS_OK) return s;
    if (m.nz != f->slices)
      s = mr_error_set(err, STATUS_ERR_SHAPE, "%s has %d slices but its image %s has %d", path,
                       m.nz, f->rel, f->slices);
    f->keep = malloc(sizeof(int) * (m.nz + 1));
    if (s == STATUS_OK && !f->keep) s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    int kept = 0;
    const size_t plane = (size_t)m.nx * m.ny;
    for (int z = 0; s == STATUS_OK && z < m.nz; z++) {
      int touched = 0;
      for (size_t p = 0; p < plane && !touched; p++) touched = m.data[z * plane + p] > 0;
      if (touched) f->keep[kept++] = z;
    }
    f->slices = kept;
    volume_free(&m);
    if (s != STATUS_OK) return s;
  }
  return STATUS_OK;
}

/* A volume's axial slices (those kept) into ds from index *fill on: modality units through
 * the window (or each volume's own range without one), resampled in-plane to the spacing
 * asked, fitted to size x size; each slice is "REL:Z" (Z from 1, in the volume's slice
 * order). Its label volume (NIfTI, the same grid), when it has one, gives each slice its
 * mask. */
static Status decode_volume(const Listing *l, int entry, const char *full, Dataset *ds, int *fill,
                            int channels, int size, const DataOptions *opt, MrError *err) {
  const ImageFile *f = &l->files[entry];
  Volume nifti = {0};
  DicomVolume dicom = {0};
  Status s =
      f->kind == IMAGE_DICOM ? dicom_read(full, &dicom, err) : volume_read_nifti(full, &nifti, err);
  if (s != STATUS_OK) return s;
  const Volume *v = f->kind == IMAGE_DICOM ? &dicom.v : &nifti;
  Volume labels = {0};
  char mask_path[8192] = "";
  if (ds->masks && f->mask) {
    snprintf(mask_path, sizeof mask_path, "%s/%s", l->root, f->mask);
    s = volume_read_nifti(mask_path, &labels, err);
    if (s == STATUS_OK && (labels.nx != v->nx || labels.ny != v->ny || labels.nz != v->nz))
      s = mr_error_set(err, STATUS_ERR_SHAPE, "%s is %dx%dx%d but its image %s is %dx%dx%d",
                       mask_path, labels.nx, labels.ny, labels.nz, full, v->nx, v->ny, v->nz);
  }
  const int c = f->kind == IMAGE_DICOM ? dicom.channels : 1;
  const size_t plane = (size_t)v->nx * v->ny * c, n = plane * v->nz;
  if (s == STATUS_OK && !f->keep && v->nz != f->slices)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %d slices now, %d when listed", full, v->nz,
                     f->slices);
  int h = v->ny, w = v->nx;
  const char *why = s == STATUS_OK ? slice_spacing_size(v, opt->spacing, &h, &w) : NULL;
  if (why) s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", full, why);
  const IntensityWindow win = opt->window.width > 0 ? opt->window : window_of_range(v->data, n);
  Dataset slice = {.n = 1, .c = c, .h = v->ny, .w = v->nx};
  slice.images = malloc(sizeof(float) * (plane ? plane : 1));
  if (s == STATUS_OK && !slice.images) s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int k = 0; s == STATUS_OK && k < f->slices; k++) {
    const int z = f->keep ? f->keep[k] : k;
    if (z >= v->nz) {
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: slice %d is gone", full, z + 1);
      break;
    }
    slice.h = v->ny, slice.w = v->nx;
    for (size_t i = 0; i < plane; i++) slice.images[i] = window_apply(&win, v->data[z * plane + i]);
    s = dataset_resize(&slice, h, w, err); /* the spacing asked; as stored when it is not */
    const DecodedImage im = {w, h, c, 0, slice.images};
    const int at = (*fill)++;
    why = s == STATUS_OK ? image_fit(&im, ds->images + (size_t)at * channels * size * size,
                                     channels, size, opt->fit)
                         : NULL;
    if (why) s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: slice %d: %s", full, z + 1, why);
    if (s == STATUS_OK && labels.data)
      s = volume_mask_slice(&labels, z, mask_path, ds->masks + (size_t)at * size * size, size, opt,
                            err);
    char id[4200];
    snprintf(id, sizeof id, "%s:%d", f->rel, z + 1);
    ds->labels[at] = f->label;
    ds->files[at] = strdup(id);
    ds->volume[at] = entry;
    ds->hashes[at] = fnv1a(f->hash, &z, sizeof z);
    if (slice.h != v->ny || slice.w != v->nx) { /* back to the stored grid for the next slice */
      free(slice.images);
      slice.images = malloc(sizeof(float) * (plane ? plane : 1));
      if (!slice.images) s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    }
  }
  free(slice.images);
  volume_free(&labels);
  if (f->kind == IMAGE_DICOM)
    dicom_volume_free(&dicom);
  else
    volume_free(&nifti);
  return s;
}

/* Decodes every file into its split, in listing order. */
static Status decode_all(const Listing *l, DataSplits *d, const DataOptions *opt, MrError *err) {
  const int size = opt->size ? opt->size : DEFAULT_SIZE;
  const int channels = opt->channels ? opt->channels : 1; /* medical scans: grey unless asked */
  int counts[SPLIT_COUNT] = {0};
  int any_volume = 0, any_mask = d->segment;
  for (int i = 0; i < l->n; i++) {
    counts[l->files[i].split] += l->files[i].slices;
    any_volume |= l->files[i].kind == IMAGE_DICOM || l->files[i].kind == IMAGE_NIFTI;
    any_mask |= l->files[i].mask != NULL;
  }
  Status s = STATUS_OK;
  for (int k = 0; s == STATUS_OK && k < SPLIT_COUNT; k++)
    s = dataset_alloc(&d->split[k], counts[k], channels, size, size, err);
  for (int k = 0; s == STATUS_OK && k < SPLIT_COUNT; k++) {
    d->split[k].files = calloc(counts[k] + 1, sizeof(char *));
    if (any_mask) d->split[k].masks = malloc(sizeof(int) * ((size_t)counts[k] * size * size + 1));
    if (any_volume) d->split[k].volume = malloc(sizeof(int) * (counts[k] + 1));
    d->split[k].hashes = malloc(sizeof(uint64_t) * (counts[k] + 1));
    if (!d->split[k].files || !d->split[k].hashes || (any_mask && !d->split[k].masks) ||
        (any_volume && !d->split[k].volume))
      s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  int fill[SPLIT_COUNT] = {0}, bits = 8;
  for (int i = 0; s == STATUS_OK && i < l->n; i++) {
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", l->root, l->files[i].rel);
    if (l->files[i].kind == IMAGE_DICOM || l->files[i].kind == IMAGE_NIFTI) {
      Dataset *ds = &d->split[l->files[i].split];
      s = decode_volume(l, i, full, ds, &fill[l->files[i].split], channels, size, opt, err);
      d->volumes++;
      continue;
    }
    size_t len = 0;
    uint8_t *buf = read_file(full, &len, err);
    if (!buf) {
      s = err ? err->status : STATUS_ERR_IO;
      break;
    }
    Dataset *ds = &d->split[l->files[i].split];
    const int at = fill[l->files[i].split]++;
    DecodedImage im;
    const char *why = image_decode(&im, buf, len);
    free(buf);
    if (!why) {
      why = image_fit(&im, ds->images + (size_t)at * channels * size * size, channels, size,
                      opt->fit);
      if (im.bits > bits) bits = im.bits;
      free(im.pixels);
    }
    if (why) s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", full, why);
    if (s == STATUS_OK && ds->masks && l->files[i].mask)
      s = decode_mask(l, &l->files[i], &im, ds->masks + (size_t)at * size * size, size, opt->fit,
                      err);
    ds->labels[at] = l->files[i].label;
    ds->files[at] = strdup(l->files[i].rel);
    ds->hashes[at] = l->files[i].hash;
    if (ds->volume) ds->volume[at] = -1;
  }
  d->bits = d->volumes ? 0 : bits; /* windowed volumes are not stored grey levels */
  d->fit = opt->fit;
  if (d->volumes) {
    d->mask_slices = opt->mask_slices, d->spacing = opt->spacing;
    d->window = opt->window;
    for (int k = 0; k < SPLIT_COUNT; k++) d->split[k].window = opt->window;
  }
  return s;
}

/* The shared end of both loaders: split, hash, decode, describe. */
static DataSplits *finish(Listing *l, DataSplits *d, const DataOptions *opt, const char *what,
                          const char *name, int listed_split, Status s, MrError *err) {
  if (s == STATUS_OK && opt->split_file) {
    s = apply_split_file(l, opt->split_file, err);
    listed_split = 1;
  }
  if (s == STATUS_OK && l->n == 0)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: no images left to load", l->root);
  if (s == STATUS_OK) {
    assign_splits(l, d->n_classes, opt->seed);
    hash_listing(l, d);
    d->split_kind = listed_split ? SPLIT_LISTED : SPLIT_SEEDED;
    d->split_seed = opt->seed;
    d->skipped = l->skipped;
    snprintf(d->skipped_example, sizeof d->skipped_example, "%s", l->skipped_example);
    if (opt->mask_slices) s = select_mask_slices(l, err);
    if (s == STATUS_OK) s = decode_all(l, d, opt, err);
  }
  if (s == STATUS_OK) {
    char split[64];
    if (d->split_kind == SPLIT_LISTED)
      snprintf(split, sizeof split, "split as listed");
    else
      snprintf(split, sizeof split, "split 70/10/20 seed %llu", (unsigned long long)opt->seed);
    int images = 0; /* a volume gives its slices */
    for (int i = 0; i < l->n; i++) images += l->files[i].slices;
    char count[64];
    if (images != l->n)
      snprintf(count, sizeof count, "%d files, %d images", l->n, images);
    else
      snprintf(count, sizeof count, "%d images", images);
    char line[1024]; /* cut to the source's size: a long root name loses its end */
    snprintf(line, sizeof line, "%s %s (%s%s; %d duplicates dropped; %s)", what, name, count,
             d->unlabelled ? ", unlabelled" : "", l->duplicates,
             d->unlabelled ? "all in test" : split);
    snprintf(d->source, sizeof d->source, "%.*s", (int)sizeof d->source - 1, line);
  }
  if (s == STATUS_OK && !(d->root = strdup(l->root)))
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  listing_free(l);
  if (s != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  return d;
}

DataSplits *imagefolder_load(const char *root, const DataOptions *opt, MrError *err) {
  DataSplits *d = calloc(1, sizeof *d);
  if (!d) {
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  Listing l = {.root = root};
  const Status s = list_folder(&l, d, err);
  return finish(&l, d, opt, "image folder", root, 0, s, err);
}

/* A manifest row's mask (relative to the CSV) for the entry it just added, if it added one
 * (a duplicate adds none); its bytes join the entry's hash. */
static Status manifest_mask(Listing *l, int before, const char *csv, int row, const char *mask,
                            MrError *err) {
  if (!mask[0])
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s row %d: no mask (with a mask column, every row needs one)", csv,
                        row + 1);
  if (l->n == before) return STATUS_OK;
  char full[8192];
  snprintf(full, sizeof full, "%s/%s", l->root, mask);
  size_t len = 0;
  uint8_t *buf = read_file(full, &len, err);
  if (!buf) return err ? err->status : STATUS_ERR_IO;
  ImageFile *f = &l->files[l->n - 1];
  f->hash = fnv1a(f->hash, buf, len);
  free(buf);
  f->mask = strdup(mask);
  return f->mask ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
}

static int cmp_label(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

DataSplits *manifest_load(const char *csv, const DataOptions *opt, MrError *err) {
  DataSplits *d = calloc(1, sizeof *d);
  char *dir_copy = strdup(csv);
  if (!d || !dir_copy) {
    free(d), free(dir_copy);
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  CsvTable t = {0};
  Listing l = {.root = dirname(dir_copy)};
  Status s = csv_table_read(csv, &t, err);
  static const char *const path_cols[] = {"path", "file", "filename", NULL};
  static const char *const label_cols[] = {"label", "class", NULL};
  static const char *const split_cols[] = {"split", "set", "fold", NULL};
  static const char *const mask_cols[] = {"mask", "segmentation", "roi", NULL};
  const int pc = s == STATUS_OK ? csv_table_column(&t, path_cols) : -1;
  const int lc = s == STATUS_OK ? csv_table_column(&t, label_cols) : -1;
  const int sc = s == STATUS_OK ? csv_table_column(&t, split_cols) : -1;
  const int mc = s == STATUS_OK ? csv_table_column(&t, mask_cols) : -1;
  d->segment = mc >= 0 && lc < 0; /* masks without labels: a segmentation set */
  if (s == STATUS_OK && pc < 0)
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: the header must name a path column (path,label[,split])", csv);
  /* class names: the distinct labels in name order, as for a folder */
  char **labels = s == STATUS_OK ? calloc(t.n_rows + 1, sizeof(char *)) : NULL;
  int n_labels = 0;
  for (int r = 1; labels && r < t.n_rows; r++) {
    const char *lab = csv_table_cell(&t, r, lc);
    if (!lab[0]) continue;
    int seen = 0;
    for (int j = 0; j < n_labels && !seen; j++) seen = strcmp(labels[j], lab) == 0;
    if (!seen) labels[n_labels++] = (char *)lab;
  }
  if (labels && n_labels) qsort(labels, n_labels, sizeof(char *), cmp_label);
  if (s == STATUS_OK && (n_labels == 1 || n_labels > MR_MAX_CLASSES))
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %d distinct labels; expected 2..%d, or none", csv,
                     n_labels, MR_MAX_CLASSES);
  d->unlabelled = n_labels == 0 && !d->segment;
  d->n_classes = d->segment ? 1 : n_labels; /* segmentation: one stratum for the split */
  for (int k = 0; s == STATUS_OK && k < n_labels; k++) d->class_names[k] = strdup(labels[k]);
  for (int r = 1; s == STATUS_OK && r < t.n_rows; r++) {
    const char *lab = csv_table_cell(&t, r, lc), *sp = csv_table_cell(&t, r, sc);
    int label = d->segment ? 0 : -1, split = -1; /* segmentation: one stratum */
    for (int k = 0; k < n_labels && lab[0]; k++)
      if (strcmp(labels[k], lab) == 0) label = k;
    if (n_labels && label < 0)
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s row %d: no label (every row needs one)", csv,
                       r + 1);
    if (s == STATUS_OK && sp[0] && (split = split_of_text(sp)) < 0)
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s row %d: split '%s' is not train, val or test",
                       csv, r + 1, sp);
    const int before = l.n;
    if (s == STATUS_OK) s = listing_add(&l, csv_table_cell(&t, r, pc), label, split, 1, err);
    if (s == STATUS_OK && mc >= 0)
      s = manifest_mask(&l, before, csv, r, csv_table_cell(&t, r, mc), err);
  }
  int listed = 0;
  for (int i = 0; i < l.n; i++) listed += l.files[i].split >= 0;
  if (s == STATUS_OK && listed && listed < l.n)
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: %d rows have a split and %d do not; give every row one or none", csv,
                     listed, l.n - listed);
  free(labels);
  csv_table_free(&t);
  const int segment = d->segment;
  DataSplits *out = finish(&l, d, opt, "manifest", csv, listed > 0, s, err);
  free(dir_copy);
  if (out && segment && segment_masks_finish(out, opt->n_classes, csv, err) != STATUS_OK) {
    data_free(out);
    return NULL;
  }
  return out;
}

/* ---- segmentation folders: images/ and masks/ side by side ------------- */

static int dir_exists(const char *root, const char *sub) {
  char p[4200];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", root, sub);
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

SegDirKind segment_folder_kind(const char *root) {
  if (dir_exists(root, "images") && dir_exists(root, "masks")) return SEGDIR_POOL;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    char a[64], b[64];
    snprintf(a, sizeof a, "%s/images", split_name((Split)s));
    snprintf(b, sizeof b, "%s/masks", split_name((Split)s));
    if (dir_exists(root, a) && dir_exists(root, b)) return SEGDIR_SPLITS;
  }
  char img[4200], mask[4200];
  return segment_npy_pair(root, img, mask, sizeof img) ? SEGDIR_NPY : SEGDIR_NONE;
}

/* prefix/images/NAME's mask: prefix/masks/NAME, or the same stem as .png or
 * with a _mask suffix; its bytes join the image's in the listing hash. */
static Status find_mask(Listing *l, ImageFile *f, const char *prefix, const char *name,
                        MrError *err) {
  char stem[4096], rel[8192], full[12288];
  snprintf(stem, sizeof stem, "%s", name);
  char *dot = strrchr(stem, '.');
  if (dot) *dot = 0;
  const char *forms[] = {"%smasks/%s", "%smasks/%s.png", "%smasks/%s_mask.png"};
  for (int k = 0; k < 3; k++) {
    snprintf(rel, sizeof rel, forms[k], prefix, k == 0 ? name : stem);
    snprintf(full, sizeof full, "%s/%s", l->root, rel);
    size_t len = 0;
    uint8_t *buf = read_file(full, &len, NULL);
    if (!buf) continue;
    f->hash = fnv1a(f->hash, buf, len);
    free(buf);
    f->mask = strdup(rel);
    return STATUS_OK;
  }
  return mr_error_set(err, STATUS_ERR_FORMAT,
                      "%s/%simages/%s has no mask (looked for %smasks/%s, %smasks/%s.png and "
                      "%smasks/%s_mask.png)",
                      l->root, prefix, name, prefix, name, prefix, stem, prefix, stem);
}

/* Every image of prefix/images/ (split -1: decided later) with its mask. */
static Status list_segment_dir(Listing *l, const char *prefix, int split, MrError *err) {
  char dir[8192];
  snprintf(dir, sizeof dir, "%s/%simages", l->root, prefix);
  int n = 0;
  char **names = list_dir(dir, 0, &n);
  if (!names) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot list the folder", dir);
  Status s = STATUS_OK;
  for (int i = 0; s == STATUS_OK && i < n; i++) {
    char rel[8192];
    snprintf(rel, sizeof rel, "%simages/%s", prefix, names[i]);
    const int before = l->n;
    s = listing_add(l, rel, 0, split, 0, err);
    if (s == STATUS_OK && l->n > before)
      s = find_mask(l, &l->files[l->n - 1], prefix, names[i], err);
  }
  free_names(names, n);
  return s;
}

/* With train/ and test/ but no val/: a seeded tenth of train validates. */
static void carve_validation(Listing *l, uint64_t seed) {
  int *idx = malloc(sizeof(int) * (l->n + 1)), m = 0;
  if (!idx) return;
  for (int i = 0; i < l->n; i++)
    if (l->files[i].split < 0) idx[m++] = i;
  Rng rng;
  rng_seed(&rng, seed);
  for (int i = m - 1; i > 0; i--) {
    const int j = rng_int(&rng, i + 1), t = idx[i];
    idx[i] = idx[j], idx[j] = t;
  }
  const int n_val = (int)(0.1 * m + 0.5);
  for (int i = 0; i < m; i++) l->files[idx[i]].split = i < n_val ? SPLIT_VAL : SPLIT_TRAIN;
  free(idx);
}

DataSplits *segment_folder_load(const char *root, const DataOptions *opt, MrError *err) {
  const SegDirKind kind = segment_folder_kind(root);
  if (kind == SEGDIR_NPY) return segment_npy_load(root, opt, err);
  DataSplits *d = calloc(1, sizeof *d);
  if (!d) {
    mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
    return NULL;
  }
  d->segment = 1;
  d->n_classes = 1; /* one stratum for the seeded split */
  Listing l = {.root = root};
  Status s = STATUS_OK;
  int listed = 0;
  if (kind == SEGDIR_POOL) {
    s = list_segment_dir(&l, "", -1, err);
  } else {
    const int has_val = dir_exists(root, "val/images");
    for (int k = 0; s == STATUS_OK && k < SPLIT_COUNT; k++) {
      char prefix[16];
      snprintf(prefix, sizeof prefix, "%s/", split_name((Split)k));
      char sub[32];
      snprintf(sub, sizeof sub, "%simages", prefix);
      if (dir_exists(root, sub))
        s = list_segment_dir(&l, prefix, k == SPLIT_TRAIN && !has_val ? -1 : k, err);
    }
    if (s == STATUS_OK && !has_val) carve_validation(&l, opt->seed);
    listed = has_val;
  }
  if (s == STATUS_OK && l.n == 0)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: no PNG, JPEG or NIfTI images under images/",
                     root);
  d = finish(&l, d, opt, "segmentation folder", root, listed, s, err);
  if (d && kind == SEGDIR_SPLITS) {
    d->split_folders = 1;
    int n = 0;
    for (int k = 0; k < SPLIT_COUNT; k++) n += d->split[k].n;
    snprintf(d->source, sizeof d->source,
             "segmentation folder %s (%d images; split by its train/test folders%s)", root, n,
             listed ? " and val/" : ", val a seeded tenth of train");
  }
  if (d && segment_masks_finish(d, opt->n_classes, root, err) != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  return d;
}
