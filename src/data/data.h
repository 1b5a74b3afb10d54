/* Data readers share these helpers; each reader owns one file format. */
#ifndef MR_DATA_H
#define MR_DATA_H

#include <stddef.h>

#include "medrobust.h"

DataSplits *npz_load(const char *path, MrError *err);
DataSplits *imagefolder_load(const char *root, const DataOptions *opt, MrError *err);
DataSplits *idx_load(const char *dir, MrError *err);
/* A CSV manifest: path,label[,split] with a header row; paths relative to it. */
DataSplits *manifest_load(const char *csv, const DataOptions *opt, MrError *err);

typedef enum {
  IMAGE_NONE = 0,
  IMAGE_PNG = 1,
  IMAGE_JPEG = 2,
  IMAGE_DICOM = 3, /* a DICOM file ("DICM" at byte 128), or a folder holding a series */
  IMAGE_NIFTI = 4  /* a NIfTI-1/2 header, or a gzip stream named .nii.gz */
} ImageKind;
ImageKind image_kind(const uint8_t *buf, size_t len);
/* Decoded pixels: `channels` planes of h x w on [0,1], from `bits`-bit samples. */
typedef struct {
  int w, h, channels, bits;
  float *pixels;
} DecodedImage;
/* NULL, or why the bytes are not a usable image (nothing to free then). */
const char *image_decode(DecodedImage *im, const uint8_t *buf, size_t len);
/* The size an h x w image is scaled to before image_fit's centre crop or pad. */
void image_fit_scaled(int h, int w, int size, FitMode fit, int *sh, int *sw);
/* The image as out_c x size x size model pixels (dst), fitted as asked. */
const char *image_fit(const DecodedImage *im, float *dst, int out_c, int size, FitMode fit);
/* A CSV file as strings; row 0 is the header. */
typedef struct {
  int n_rows;
  char ***rows;
  int *n_fields;
} CsvTable;
Status csv_table_read(const char *path, CsvTable *t, MrError *err);
/* The header column called one of names (case-insensitive; NULL-ended), or -1. */
int csv_table_column(const CsvTable *t, const char *const *names);
/* The cell, "" when the row is short or col is -1. */
const char *csv_table_cell(const CsvTable *t, int row, int col);
void csv_table_free(CsvTable *t);

/* A volume slice's in-plane size at `spacing` mm per pixel (as stored when spacing is 0);
 * 0, or why not (over 4096 pixels a side). */
const char *slice_spacing_size(const Volume *v, double spacing, int *h, int *w);
/* Nearest-neighbour resampling of one (h, w) label map to (oh, ow): the
 * source pixel under each output pixel's centre. */
void mask_resample(int *dst, int oh, int ow, const int *src, int h, int w);
/* A decoded grey mask's stored values as integers into dst (size x size),
 * fitted with the same geometry image_fit gives its image, by nearest
 * neighbour; NULL or why not (a colour mask). */
const char *mask_fit(const DecodedImage *im, int *dst, int size, FitMode fit);

/* Segmentation folders: which layout root has. */
typedef enum { SEGDIR_NONE = 0, SEGDIR_POOL, SEGDIR_SPLITS, SEGDIR_NPY } SegDirKind;
SegDirKind segment_folder_kind(const char *root);
/* Finds root/img.npy (or images.npy) and root/lbl.npy (or masks.npy). */
int segment_npy_pair(const char *root, char *img, char *mask, size_t n);
DataSplits *segment_npy_load(const char *root, const DataOptions *opt, MrError *err);
/* root/{images,masks}/ID (one pool, split 70/10/20 by seed), root/{train,val,
 * test}/{images,masks}/ID (val carved from train when absent), or img.npy +
 * lbl.npy (every image in test). */
DataSplits *segment_folder_load(const char *root, const DataOptions *opt, MrError *err);
/* After a reader filled raw mask values: a 0/255 set becomes 0/1, every id
 * is checked against n_classes (0: 1 + the largest, at most 256), the class
 * count and default names are set. Names the file (or array) of a bad id. */
Status segment_masks_finish(DataSplits *d, int n_classes, const char *path, MrError *err);

/* .npy arrays (npz.c): a parsed header over a buffer. */
typedef struct {
  char kind; /* 'u', 'i', 'f', 'b' */
  int bytes; /* per element */
  int ndim;
  int64_t shape[5];
  const uint8_t *data;
  size_t data_len;
} NpyArray;
/* NULL on success, else what is wrong; every size is checked against len. */
const char *npy_parse(NpyArray *a, const uint8_t *buf, size_t len);
double npy_value(const NpyArray *a, size_t i);
/* From the header alone (buf holds all of it): the bytes the whole .npy
 * declares (header and data); NULL, or what is wrong. */
const char *npy_declared_size(const uint8_t *buf, size_t len, size_t *total);
/* A whole regular file of at most max_bytes; NULL with err set. */
uint8_t *file_read_all(const char *path, size_t max_bytes, size_t *len, MrError *err);
/* Writes len bytes as path atomically: a temporary file beside it, synced,
 * then renamed over it, so a reader never sees half a file. */
Status file_write_all(const char *path, const void *bytes, size_t len, MrError *err);
/* Segmentation arrays: images (N,H,W), (N,H,W,1|3), (N,1|3,H,W) or
 * (N,1,1|3,H,W) and masks (N,H,W), (N,1,H,W) or (N,H,W,1), integer-valued,
 * into d (images on [0,1]: integers / their maximum, floats as they are). */
Status segment_arrays_read(const NpyArray *im, const NpyArray *mk, Dataset *d, int *bits,
                           const char *what, MrError *err);

/* Array sets: name every split's images after its array ("test_images"). */
void data_name_arrays(DataSplits *d, const char *suffix);

/* n_classes = 1 + the largest label over all splits. */
void data_count_classes(DataSplits *d);
/* class_names from / to a JSON array of strings */
void data_names_from_json(DataSplits *d, const char *json, size_t len);
char *data_names_to_json(const DataSplits *d);
/* allocates images and labels for n images of c x h x w */
Status dataset_alloc(Dataset *d, int n, int c, int h, int w, MrError *err);

#endif
