/* The texture families' common parts (texture.c): a family is a table row
 * saying how to build one matrix and what its features are; the aggregation
 * over slices and directions is shared. */
#ifndef MR_TEXTURE_H
#define MR_TEXTURE_H

#include "radiomics.h"

#define TEXTURE_MAX_FEATURES 32

typedef struct {
  const char *family; /* "Co-occurrence matrix" */
  const char *prefix; /* "cm" */
  int n_features;
  const char *const *names; /* IBSI names */
  const char *const *tags;  /* tag stems: "joint_max" */
  size_t (*matrix_size)(const Roi *r);
  /* the matrix of slice z (-1: the whole volume), along direction dir (directional
   * families; NULL for the others), and the voxel count its percentages divide by */
  void (*build)(const Roi *r, int z, const int *dir, double *matrix, double *nv);
  /* 0 when the matrix is empty (it is then left out of averages) */
  int (*features)(const Roi *r, const double *matrix, double nv, double *out);
} TextureFamily;

/* GLCM and GLRLM: 2D, 2D slice-merged, 2.5D direction-merged, 2.5D merged, 3D averaged
 * and 3D merged. */
Status texture_directional(const Roi *r, const TextureFamily *t, RadiomicsFeatures *f,
                           MrError *err);
/* GLSZM, GLDZM, NGTDM, NGLDM: 2D (per slice, averaged), 2.5D (slices merged), 3D. */
Status texture_regional(const Roi *r, const TextureFamily *t, RadiomicsFeatures *f, MrError *err);
/* The 17 features of an (ng x nj) grey level x count matrix m[(i-1) * nj + (j-1)]: small and
 * large count emphasis, low and high grey level emphasis, their four products, grey level
 * and count non-uniformity (plain and normalised), percentage (counts / nv), grey level and
 * count variance, count entropy and energy. 0 when m is empty. */
int texture_emphasis(const double *m, int ng, int nj, double nv, double *out);

#endif
