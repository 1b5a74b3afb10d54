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

typedef enum { IMAGE_NONE = 0, IMAGE_PNG = 1, IMAGE_JPEG = 2 } ImageKind;
ImageKind image_kind(const uint8_t *buf, size_t len);
/* Decoded pixels: `channels` planes of h x w on [0,1], from `bits`-bit samples. */
typedef struct {
  int w, h, channels, bits;
  float *pixels;
} DecodedImage;
/* NULL, or why the bytes are not a usable image (nothing to free then). */
const char *image_decode(DecodedImage *im, const uint8_t *buf, size_t len);
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
