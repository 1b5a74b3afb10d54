/* Data readers share these helpers; each reader owns one file format. */
#ifndef MR_DATA_H
#define MR_DATA_H

#include <stddef.h>

#include "medrobust.h"

DataSplits *npz_load(const char *path, MrError *err);
DataSplits *imagefolder_load(const char *root, const DataOptions *opt, MrError *err);
DataSplits *idx_load(const char *dir, MrError *err);

/* n_classes = 1 + the largest label over all splits. */
void data_count_classes(DataSplits *d);
/* class_names from / to a JSON array of strings */
void data_names_from_json(DataSplits *d, const char *json, size_t len);
char *data_names_to_json(const DataSplits *d);
/* allocates images and labels for n images of c x h x w */
Status dataset_alloc(Dataset *d, int n, int c, int h, int w, MrError *err);

#endif
