/* Shared by the radiomics families (src/radiomics/): the region of interest
 * as every family sees it, and how a family adds its features. */
#ifndef MR_RADIOMICS_H
#define MR_RADIOMICS_H

#include "medrobust.h"

/* grey levels a texture matrix takes: (levels x levels) co-occurrences */
#define RADIOMICS_MAX_LEVELS 1024
/* voxel sizes outside (a nanometre to a kilometre) are a broken header, not an image */
#define RADIOMICS_MIN_VOXEL_MM 1e-6
#define RADIOMICS_MAX_VOXEL_MM 1e6

typedef struct {
  int nx, ny, nz;
  double sx, sy, sz;    /* voxel size in mm */
  const float *x;       /* intensities, (nx * ny * nz) */
  unsigned char *morph; /* the morphological mask: the ROI as drawn */
  unsigned char *roi;   /* the intensity mask: morph after re-segmentation */
  int *q;               /* discretised grey level, 1..ng inside roi, 0 elsewhere */
  int ng;
  long n_roi, n_morph;
} Roi;

static inline long roi_index(const Roi *r, int x, int y, int z) {
  return ((long)z * r->ny + y) * r->nx + x;
}

/* The ROI of image in mask (NULL: the whole image) as o takes it: checked, re-segmented
 * and discretised; roi_release frees it. */
Status roi_prepare(const Volume *image, const Volume *mask, const RadiomicsOptions *o, Roi *out,
                   MrError *err);
void roi_release(Roi *r);

/* One (c,h,w) image as the 1-slice volumes radiomics reads: its grey levels (the channels'
 * mean) and its ROI (1 inside) as setup s takes it from mask; both malloc'ed. */
Status rad_image_volumes(const float *image, int c, int h, int w, const int *mask,
                         const RadiomicsSetup *s, Volume *grey, Volume *roi, MrError *err);

/* voxel (x, y, z) is in the image and in the intensity ROI */
static inline int roi_inside(const Roi *r, int x, int y, int z) {
  return x >= 0 && y >= 0 && z >= 0 && x < r->nx && y < r->ny && z < r->nz &&
         r->roi[roi_index(r, x, y, z)];
}

/* the longest run, zone distance... a line of the grid can hold */
static inline int roi_longest(const Roi *r) {
  const int a = r->nx > r->ny ? r->nx : r->ny;
  return a > r->nz ? a : r->nz;
}

/* Appends one feature; 0 when out of memory. */
int rad_add(RadiomicsFeatures *f, const char *family, const char *name, const char *tag,
            double value);

/* Each family adds its features; STATUS_ERR_NOMEM is the only failure. */
Status rad_morphology(const Roi *r, RadiomicsFeatures *f, MrError *err);
Status rad_intensity(const Roi *r, const RadiomicsOptions *o, RadiomicsFeatures *f, MrError *err);
Status rad_cooccurrence(const Roi *r, RadiomicsFeatures *f, MrError *err);
Status rad_run_length(const Roi *r, RadiomicsFeatures *f, MrError *err);
Status rad_zones(const Roi *r, RadiomicsFeatures *f, MrError *err);
Status rad_neighbourhood(const Roi *r, RadiomicsFeatures *f, MrError *err);

/* ---- the differentiable surrogate (surrogate.c) ----------------------------------
 * Soft grey levels: voxel v is at level i (1..ng) with weight mu[v * ng + i - 1], the hard
 * bins' edges blurred by logistic steps of width tau bins, so that the weights sum to 1
 * and become the hard discretisation as tau -> 0. A family's surrogate adds its features'
 * values (like its exact function) and, when cotangents are given, accumulates
 * d objective / d mu into g_mu and d objective / d intensity into g_x. */
typedef struct {
  int ng;
  double *mu, *g_mu;       /* (voxels x ng) */
  double *g_x;             /* (voxels) */
  const RadCotangents *ct; /* NULL: values only */
} SoftLevels;
/* d objective / d the feature tagged tag (0 when it does not read it) */
double rad_cotangent(const SoftLevels *s, const char *tag);
/* loc_, stat_, ih_ and ivh_ features */
Status rad_intensity_surrogate(const Roi *r, SoftLevels *s, RadiomicsFeatures *f, MrError *err);
/* cm_ features from soft co-occurrence matrices */
Status rad_cooccurrence_surrogate(const Roi *r, SoftLevels *s, RadiomicsFeatures *f, MrError *err);

/* The 13 directions of a 3-D neighbourhood (one of each opposite pair); the first 4 lie in
 * a slice (dz = 0). */
extern const int rad_directions[13][3];

/* IBSI's texture aggregations: the family label and the tag suffix of each. */
typedef enum {
  AGG_2D_AVG,     /* per slice and direction, averaged */
  AGG_2D_MERGED,  /* per slice, its directions merged, averaged over slices */
  AGG_25D_AVG,    /* per direction, the slices merged, averaged over directions */
  AGG_25D_MERGED, /* everything merged */
  AGG_3D_AVG,     /* per 3-D direction, averaged */
  AGG_3D_MERGED,  /* 3-D directions merged */
  AGG_COUNT
} Aggregation;
extern const char *const rad_agg_label[AGG_COUNT];  /* "2D, averaged" */
extern const char *const rad_agg_suffix[AGG_COUNT]; /* "2D_avg" */

#endif
