/* Radiomics entry point (IBSI-1, Zwanenburg et al., Radiology 2020): the
 * region of interest from a mask, the intensity re-segmentation and the
 * discretisation of its grey levels, then every feature family in turn. The
 * families are one file each; this file owns the ROI and the feature list. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radiomics.h"

const int rad_directions[13][3] = {{1, 0, 0},   {1, 1, 0},  {0, 1, 0}, {-1, 1, 0}, {0, 0, 1},
                                   {1, 0, 1},   {1, 1, 1},  {0, 1, 1}, {-1, 1, 1}, {-1, 0, 1},
                                   {-1, -1, 1}, {0, -1, 1}, {1, -1, 1}};
const char *const rad_agg_label[AGG_COUNT] = {"2D, averaged",           "2D, slice-merged",
                                              "2.5D, direction-merged", "2.5D, merged",
                                              "3D, averaged",           "3D, merged"};
const char *const rad_agg_suffix[AGG_COUNT] = {"2D_avg",    "2D_comb", "2_5D_avg",
                                               "2_5D_comb", "3D_avg",  "3D_comb"};

RadiomicsOptions radiomics_options_default(void) {
  RadiomicsOptions o = {.binning = RAD_BIN_COUNT,
                        .bin_count = 32,
                        .bin_width = 25,
                        .bin_min = NAN,
                        .reseg_min = NAN,
                        .reseg_max = NAN};
  return o;
}

int rad_add(RadiomicsFeatures *f, const char *family, const char *name, const char *tag,
            double value) {
  if (f->n == f->cap) {
    const int cap = f->cap ? 2 * f->cap : 256;
    RadiomicsFeature *items = realloc(f->items, sizeof *items * cap);
    if (!items) return 0;
    f->items = items, f->cap = cap;
  }
  RadiomicsFeature *it = &f->items[f->n++];
  snprintf(it->family, sizeof it->family, "%s", family);
  snprintf(it->name, sizeof it->name, "%s", name);
  snprintf(it->tag, sizeof it->tag, "%s", tag);
  it->value = value;
  return 1;
}

unsigned radiomics_family_of(const char *tag) {
  static const struct {
    const char *prefix;
    unsigned family;
  } prefixes[] = {{"morph_", RAD_FAMILY_MORPHOLOGY}, {"loc_", RAD_FAMILY_INTENSITY},
                  {"stat_", RAD_FAMILY_INTENSITY},   {"ih_", RAD_FAMILY_INTENSITY},
                  {"ivh_", RAD_FAMILY_INTENSITY},    {"cm_", RAD_FAMILY_GLCM},
                  {"rlm_", RAD_FAMILY_GLRLM},        {"szm_", RAD_FAMILY_ZONES},
                  {"dzm_", RAD_FAMILY_ZONES},        {"ngt_", RAD_FAMILY_NEIGHBOURHOOD},
                  {"ngl_", RAD_FAMILY_NEIGHBOURHOOD}};
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
    if (!strncmp(tag, prefixes[i].prefix, strlen(prefixes[i].prefix))) return prefixes[i].family;
  return 0;
}

int radiomics_families_parse(const char *list, unsigned *out) {
  static const struct {
    const char *name;
    unsigned family;
  } names[] = {{"morphology", RAD_FAMILY_MORPHOLOGY},
               {"intensity", RAD_FAMILY_INTENSITY},
               {"glcm", RAD_FAMILY_GLCM},
               {"glrlm", RAD_FAMILY_GLRLM},
               {"zones", RAD_FAMILY_ZONES},
               {"neighbourhood", RAD_FAMILY_NEIGHBOURHOOD}};
  *out = 0;
  if (!strcmp(list, "all")) return 1;
  for (const char *p = list; *p;) {
    const size_t len = strcspn(p, ",");
    size_t i = 0;
    while (i < sizeof names / sizeof *names &&
           (strlen(names[i].name) != len || strncmp(p, names[i].name, len)))
      i++;
    if (i == sizeof names / sizeof *names) return 0;
    *out |= names[i].family;
    p += len + (p[len] == ',');
  }
  return *out != 0;
}

RadiomicsSetup radiomics_setup_default(void) {
  RadiomicsSetup s = {radiomics_options_default(), -1, 0, 1.0};
  return s;
}

size_t radiomics_roi_pixels(const int *mask, size_t plane, const RadiomicsSetup *s) {
  if (!mask || s->whole_image) return plane;
  size_t n = 0;
  for (size_t p = 0; p < plane; p++) n += s->roi_label >= 0 ? mask[p] == s->roi_label : mask[p] > 0;
  return n;
}

Status rad_image_volumes(const float *image, int c, int h, int w, const int *mask,
                         const RadiomicsSetup *s, Volume *grey, Volume *roi, MrError *err) {
  const size_t plane = (size_t)h * w;
  const Volume slice = {
      .nx = w, .ny = h, .nz = 1, .sx = s->spacing, .sy = s->spacing, .sz = s->spacing};
  *grey = slice, *roi = slice;
  grey->data = malloc(sizeof(float) * plane), roi->data = malloc(sizeof(float) * plane);
  if (!grey->data || !roi->data) {
    volume_free(grey), volume_free(roi);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  }
  const int use_mask = mask && !s->whole_image;
  size_t in_roi = 0;
  for (size_t p = 0; p < plane; p++) {
    double sum = 0;
    for (int ch = 0; ch < c; ch++) sum += image[(size_t)ch * plane + p];
    grey->data[p] = (float)(sum / c);
    roi->data[p] = !use_mask || (s->roi_label >= 0 ? mask[p] == s->roi_label : mask[p] > 0);
    in_roi += roi->data[p] > 0.5f;
  }
  if (in_roi) return STATUS_OK;
  volume_free(grey), volume_free(roi);
  return s->roi_label >= 0
             ? mr_error_set(err, STATUS_ERR_ARG, "no pixel has mask == %d", s->roi_label)
             : mr_error_set(err, STATUS_ERR_ARG, "no pixel has mask > 0");
}

Status radiomics_image_features(const float *image, int c, int h, int w, const int *mask,
                                const RadiomicsSetup *s, RadiomicsFeatures *out, MrError *err) {
  memset(out, 0, sizeof *out);
  Volume grey, roi;
  Status st = rad_image_volumes(image, c, h, w, mask, s, &grey, &roi, err);
  if (st != STATUS_OK) return st;
  st = radiomics_extract(&grey, &roi, &s->extraction, out, err);
  volume_free(&grey), volume_free(&roi);
  return st;
}

const RadiomicsFeature *radiomics_find(const RadiomicsFeatures *f, const char *tag) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->items[i].tag, tag) == 0) return &f->items[i];
  return NULL;
}

void radiomics_features_free(RadiomicsFeatures *f) {
  free(f->items);
  memset(f, 0, sizeof *f);
}

/* Grey levels 1..ng of the ROI's intensities (IBSI section 2.7). */
static Status discretise(Roi *r, const RadiomicsOptions *o, MrError *err) {
  const long n = (long)r->nx * r->ny * r->nz;
  double lo = INFINITY, hi = -INFINITY;
  for (long i = 0; i < n; i++)
    if (r->roi[i]) lo = fmin(lo, r->x[i]), hi = fmax(hi, r->x[i]);
  r->ng = 0;
  for (long i = 0; i < n; i++) {
    if (!r->roi[i]) {
      r->q[i] = 0;
      continue;
    }
    const double x = r->x[i];
    long level;
    if (o->binning == RAD_BIN_NONE) {
      if (x != floor(x) || x < 1 || x > 1e6)
        return mr_error_set(err, STATUS_ERR_ARG,
                            "voxel %ld has intensity %g: without discretisation the grey levels "
                            "must be integers from 1 (use a bin count or width)",
                            i, x);
      level = (long)x;
    } else if (o->binning == RAD_BIN_COUNT) {
      level = hi > lo ? (long)floor(o->bin_count * (x - lo) / (hi - lo)) + 1 : 1;
      if (level > o->bin_count) level = o->bin_count; /* the maximum falls in the last bin */
    } else {
      const double from = isnan(o->bin_min) ? lo : o->bin_min;
      level = (long)floor((x - from) / o->bin_width) + 1;
      if (level < 1 || level > 1000000)
        return mr_error_set(err, STATUS_ERR_ARG,
                            "intensity %g falls in bin %ld of width %g from %g: 1 to 1000000 "
                            "accepted",
                            x, level, o->bin_width, from);
    }
    r->q[i] = (int)level;
    if (level > r->ng) r->ng = (int)level;
  }
  if (o->binning == RAD_BIN_COUNT) r->ng = o->bin_count;
  if (r->ng > RADIOMICS_MAX_LEVELS)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the ROI spans %d grey levels; the texture matrices take at most %d (use "
                        "a larger bin width or a bin count)",
                        r->ng, RADIOMICS_MAX_LEVELS);
  return STATUS_OK;
}

static Status extract(const Volume *image, const Volume *mask, const RadiomicsOptions *o,
                      RadiomicsFeatures *out, MrError *err);

Status radiomics_extract(const Volume *image, const Volume *mask, const RadiomicsOptions *o,
                         RadiomicsFeatures *out, MrError *err) {
  memset(out, 0, sizeof *out);
  if ((image && image->frames > 1) || (mask && mask->frames > 1))
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "a 4-D volume of %d frames: radiomics reads one 3-D volume and its mask",
                        image && image->frames > 1 ? image->frames : mask->frames);
  if (!(o->resample > 0) || !image || !image->data) return extract(image, mask, o, out, err);
  Volume im = {0}, m = {0};
  Status s = radiomics_resample(image, o->resample, 0, &im, err);
  if (s == STATUS_OK && mask) s = radiomics_resample(mask, o->resample, 1, &m, err);
  if (s == STATUS_OK) s = extract(&im, mask ? &m : NULL, o, out, err);
  volume_free(&im), volume_free(&m);
  return s;
}

Status roi_prepare(const Volume *image, const Volume *mask, const RadiomicsOptions *o, Roi *out,
                   MrError *err) {
  memset(out, 0, sizeof *out);
  if (!image || !image->data || image->nx < 1 || image->ny < 1 || image->nz < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics: an empty image");
  if (mask && (mask->nx != image->nx || mask->ny != image->ny || mask->nz != image->nz))
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "radiomics: the image is %dx%dx%d but the mask %dx%dx%d", image->nx,
                        image->ny, image->nz, mask->nx, mask->ny, mask->nz);
  if (o->binning == RAD_BIN_COUNT && (o->bin_count < 1 || o->bin_count > 100000))
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics: bin count %d (1 to 100000)", o->bin_count);
  if (o->binning == RAD_BIN_WIDTH && !(o->bin_width > 0))
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics: bin width %g must be positive",
                        o->bin_width);
  /* a denormal, NaN or absurd voxel size (a hostile header) would make every physical
   * feature meaningless, and the mesh's geometry undefined */
  const double sizes[3] = {image->sx, image->sy, image->sz};
  for (int d = 0; d < 3; d++)
    if (!(sizes[d] >= RADIOMICS_MIN_VOXEL_MM && sizes[d] <= RADIOMICS_MAX_VOXEL_MM))
      return mr_error_set(err, STATUS_ERR_ARG,
                          "radiomics: the voxel size along axis %d is %g mm (%g to %g accepted)",
                          d + 1, sizes[d], RADIOMICS_MIN_VOXEL_MM, RADIOMICS_MAX_VOXEL_MM);
  const long n = (long)image->nx * image->ny * image->nz;
  Roi r = {.nx = image->nx,
           .ny = image->ny,
           .nz = image->nz,
           .sx = image->sx,
           .sy = image->sy,
           .sz = image->sz,
           .x = image->data};
  r.morph = malloc((size_t)n), r.roi = malloc((size_t)n), r.q = malloc(sizeof(int) * n);
  Status s = r.morph && r.roi && r.q
                 ? STATUS_OK
                 : mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  for (long i = 0; s == STATUS_OK && i < n; i++) {
    const float x = image->data[i];
    if (!isfinite(x)) {
      s = mr_error_set(err, STATUS_ERR_NAN, "radiomics: voxel %ld is %g", i, x);
      break;
    }
    r.morph[i] = !mask || mask->data[i] > 0.5f; /* no mask: the whole image */
    r.roi[i] = r.morph[i] && !(x < o->reseg_min) && !(x > o->reseg_max);
    r.n_morph += r.morph[i], r.n_roi += r.roi[i];
  }
  if (s == STATUS_OK && !r.n_roi)
    s = mr_error_set(err, STATUS_ERR_ARG, "radiomics: the region of interest is empty%s",
                     r.n_morph ? " after intensity re-segmentation" : "");
  if (s == STATUS_OK) s = discretise(&r, o, err);
  if (s != STATUS_OK) {
    roi_release(&r);
    return s;
  }
  *out = r;
  return STATUS_OK;
}

void roi_release(Roi *r) {
  free(r->morph), free(r->roi), free(r->q);
  memset(r, 0, sizeof *r);
}

static Status extract(const Volume *image, const Volume *mask, const RadiomicsOptions *o,
                      RadiomicsFeatures *out, MrError *err) {
  Roi r;
  Status s = roi_prepare(image, mask, o, &r, err);
  if (s != STATUS_OK) return s;
#define WANT(bit) (s == STATUS_OK && (!o->families || (o->families & (bit))))
  if (WANT(RAD_FAMILY_MORPHOLOGY)) s = rad_morphology(&r, out, err);
  if (WANT(RAD_FAMILY_INTENSITY)) s = rad_intensity(&r, o, out, err);
  if (WANT(RAD_FAMILY_GLCM)) s = rad_cooccurrence(&r, out, err);
  if (WANT(RAD_FAMILY_GLRLM)) s = rad_run_length(&r, out, err);
  if (WANT(RAD_FAMILY_ZONES)) s = rad_zones(&r, out, err);
  if (WANT(RAD_FAMILY_NEIGHBOURHOOD)) s = rad_neighbourhood(&r, out, err);
#undef WANT
  roi_release(&r);
  if (s != STATUS_OK) radiomics_features_free(out);
  return s;
}
