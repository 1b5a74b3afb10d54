/* Which data a model was trained on: the record train writes into the model
 * file (split rule and seed, hashes of the listing and of the split, bit
 * depth, stored shape, fit), and the check every later command makes before
 * any work, so a test split never receives a training image and a model is
 * never silently scored on another task's data. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data.h"

static const char *const kind_names[] = {"fixed", "seeded", "listed"};

void data_record_json(const DataSplits *d, char *out, size_t n) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "split", kind_names[d->split_kind]);
  if (d->split_kind != SPLIT_FIXED) {
    char hex[24];
    cJSON_AddNumberToObject(o, "seed", (double)d->split_seed);
    cJSON_AddNumberToObject(o, "files", d->n_files);
    snprintf(hex, sizeof hex, "%016" PRIx64, d->listing_hash);
    cJSON_AddStringToObject(o, "listing", hex);
    snprintf(hex, sizeof hex, "%016" PRIx64, d->assignment_hash);
    cJSON_AddStringToObject(o, "assignment", hex);
    cJSON_AddStringToObject(o, "fit", fit_name(d->fit));
    if (d->split_folders) {
      cJSON_AddStringToObject(
          o, "folders",
          d->split_kind == SPLIT_LISTED ? "train/val/test" : "train/test, val 0.1 of train");
    } else if (d->split_kind == SPLIT_SEEDED) {
      const double ratios[3] = {0.7, 0.1, 0.2}; /* imagefolder.c's stratified split */
      cJSON_AddItemToObject(o, "ratios", cJSON_CreateDoubleArray(ratios, 3));
    }
  } else {
    const int shape[3] = {d->stored_c, d->stored_h, d->stored_w};
    cJSON_AddItemToObject(o, "stored", cJSON_CreateIntArray(shape, 3));
  }
  int counts[SPLIT_COUNT];
  for (int s = 0; s < SPLIT_COUNT; s++) counts[s] = d->split[s].n;
  cJSON_AddItemToObject(o, "images", cJSON_CreateIntArray(counts, SPLIT_COUNT));
  cJSON_AddNumberToObject(o, "bits", d->bits);
  if (d->volumes && d->window.width > 0) { /* the window every later command must use */
    const double w[2] = {d->window.center, d->window.width};
    cJSON_AddItemToObject(o, "window", cJSON_CreateDoubleArray(w, 2));
  }
  if (d->volumes && d->mask_slices) cJSON_AddStringToObject(o, "slices", "mask");
  if (d->volumes && d->spacing > 0) { /* as given: --spacing 1.4, not float's 1.39999997 */
    char given[32];
    snprintf(given, sizeof given, "%.6g", d->spacing);
    cJSON_AddNumberToObject(o, "spacing", atof(given));
  }
  char *text = cJSON_PrintUnformatted(o);
  snprintf(out, n, "%s", text && strlen(text) < n ? text : "");
  free(text);
  cJSON_Delete(o);
}

double data_grey_step(int bits) {
  return bits > 0 && bits <= 32 ? 1.0 / ((double)(1ULL << bits) - 1.0) : 0.0;
}

void eps_describe(float eps, int bits, char *out, size_t n) {
  const double step = data_grey_step(bits);
  if (!(step > 0) || !(eps > 0)) {
    snprintf(out, n, "%g", eps);
    return;
  }
  const double levels = eps / step;
  snprintf(out, n, "%.3g (%.3g/%.0f)%s", eps, levels, 1.0 / step, levels < 1.0 ? "*" : "");
}

void eps_describe_set(float eps, const Dataset *d, Norm norm, char *out, size_t n) {
  if (d && d->window.width > 0)
    snprintf(out, n, "%.4g (%.3g HU)", eps, eps * d->window.width);
  else
    eps_describe(eps, d && norm == NORM_LINF ? d->bits : 0, out, n);
}

typedef struct {
  int present, kind, files, bits;
  uint64_t seed, listing, assignment;
  int stored[3];
  FitMode fit;
  IntensityWindow window;
  int mask_slices;
  double spacing;
} Record;

static Record parse_record(const char *json) {
  Record r = {.fit = FIT_STRETCH, .seed = DEFAULT_SPLIT_SEED};
  cJSON *o = json && json[0] ? cJSON_Parse(json) : NULL;
  const cJSON *v;
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return r;
  }
  r.present = 1;
  if ((v = cJSON_GetObjectItem(o, "split")) && cJSON_IsString(v))
    for (int k = 0; k < 3; k++)
      if (strcmp(v->valuestring, kind_names[k]) == 0) r.kind = k;
  if ((v = cJSON_GetObjectItem(o, "seed")) && cJSON_IsNumber(v)) r.seed = (uint64_t)v->valuedouble;
  if ((v = cJSON_GetObjectItem(o, "files")) && cJSON_IsNumber(v)) r.files = v->valueint;
  if ((v = cJSON_GetObjectItem(o, "bits")) && cJSON_IsNumber(v)) r.bits = v->valueint;
  if ((v = cJSON_GetObjectItem(o, "listing")) && cJSON_IsString(v))
    r.listing = strtoull(v->valuestring, NULL, 16);
  if ((v = cJSON_GetObjectItem(o, "assignment")) && cJSON_IsString(v))
    r.assignment = strtoull(v->valuestring, NULL, 16);
  if ((v = cJSON_GetObjectItem(o, "fit")) && cJSON_IsString(v) && fit_parse(v->valuestring) >= 0)
    r.fit = (FitMode)fit_parse(v->valuestring);
  if ((v = cJSON_GetObjectItem(o, "window")) && cJSON_GetArraySize(v) == 2 &&
      cJSON_IsNumber(cJSON_GetArrayItem(v, 0)) && cJSON_IsNumber(cJSON_GetArrayItem(v, 1)) &&
      cJSON_GetArrayItem(v, 1)->valuedouble > 0)
    r.window = (IntensityWindow){cJSON_GetArrayItem(v, 0)->valuedouble,
                                 cJSON_GetArrayItem(v, 1)->valuedouble};
  if ((v = cJSON_GetObjectItem(o, "slices")) && cJSON_IsString(v))
    r.mask_slices = !strcmp(v->valuestring, "mask");
  if ((v = cJSON_GetObjectItem(o, "spacing")) && cJSON_IsNumber(v) && v->valuedouble > 0 &&
      v->valuedouble < 1e6)
    r.spacing = v->valuedouble;
  if ((v = cJSON_GetObjectItem(o, "stored")) && cJSON_GetArraySize(v) == 3)
    for (int i = 0; i < 3; i++) r.stored[i] = cJSON_GetArrayItem(v, i)->valueint;
  cJSON_Delete(o);
  return r;
}

static int names_differ(const char *a, const char *b) { return a && b && strcasecmp(a, b) != 0; }

Status data_require_task(const DataSplits *d, const Net *net, const char *path, MrError *err) {
  const int per_pixel = net_output_pixels(net) > 1;
  if (per_pixel && !d->segment)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s answers per pixel (segmentation) but %s has no masks (a segmentation "
                        "set: images/ + masks/, or {split}_masks arrays)",
                        net_spec(net)->arch, path);
  if (!per_pixel && d->segment)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s is a segmentation set (masks) but %s answers per image (segmentation "
                        "families: unet, segnet, fc-densenet)",
                        path, net_spec(net)->arch);
  return STATUS_OK;
}

/* Class count and names, and the stored shape of array sets. */
static Status check_task(const DataSplits *d, const Net *net, const Record *r, const char *path,
                         MrError *err) {
  const ModelSpec *spec = net_spec(net);
  const Status task = data_require_task(d, net, path, err);
  if (task != STATUS_OK) return task;
  if (d->unlabelled) return STATUS_OK;
  if (d->n_classes != spec->n_classes)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s has %d classes but the model answers %d (another task? "
                        "--allow-mismatch to go on)",
                        path, d->n_classes, spec->n_classes);
  for (int k = 0; k < d->n_classes; k++)
    if (names_differ(d->class_names[k], spec->class_names[k]))
      return mr_error_set(err, STATUS_ERR_SHAPE,
                          "class %d is '%s' in %s but '%s' in the model (another task, or "
                          "classes in another order? --allow-mismatch to go on)",
                          k, d->class_names[k], path, spec->class_names[k]);
  if (r->present && (r->kind == SPLIT_FIXED) != (d->split_kind == SPLIT_FIXED))
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "the model was trained on %s but %s is %s (--allow-mismatch to go on)",
                        r->kind == SPLIT_FIXED ? "an array set with fixed splits" : "image files",
                        path,
                        d->split_kind == SPLIT_FIXED ? "an array set" : "a folder or manifest");
  if (r->present && r->kind == SPLIT_FIXED && r->stored[1] &&
      (r->stored[0] != d->stored_c || r->stored[1] != d->stored_h || r->stored[2] != d->stored_w))
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "the model was trained on images stored as %dx%dx%d but %s stores "
                        "%dx%dx%d (another set? --allow-mismatch to go on)",
                        r->stored[0], r->stored[1], r->stored[2], path, d->stored_c, d->stored_h,
                        d->stored_w);
  return STATUS_OK;
}

/* The same files, split the same way, as in training. */
static Status check_split(const DataSplits *d, const Record *r, const DataCheck *c,
                          const char *path, char *warning, size_t wn, MrError *err) {
  if (d->split_kind == SPLIT_FIXED || d->unlabelled) return STATUS_OK;
  const int resplit = c->split_seed_given || c->split_file;
  if (!r->present || r->kind == SPLIT_FIXED) {
    snprintf(warning, wn,
             "the model file records no split of its training files (made before medrobust 0.5?): "
             "%s is split with seed %llu, which may put training images in the test split",
             path, (unsigned long long)d->split_seed);
    return STATUS_OK;
  }
  if (d->listing_hash != r->listing) {
    if (resplit) {
      snprintf(warning, wn,
               "%s holds other files than the model was trained on (%d then, %d now): "
               "re-split as asked; the test split may hold training images",
               path, r->files, d->n_files);
      return STATUS_OK;
    }
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s holds other files than the model was trained on (%d then, %d now, or "
                        "the same names with other contents): the split would move and put "
                        "training images in the test split. Use the files it was trained on, or "
                        "re-split knowingly with --split-seed S or --split-file F",
                        path, r->files, d->n_files);
  }
  if (d->assignment_hash != r->assignment) {
    if (resplit) {
      snprintf(warning, wn,
               "re-splitting %s other than in training (as asked): the test split may hold "
               "images the model was trained on",
               path);
      return STATUS_OK;
    }
    if (r->kind == SPLIT_LISTED)
      return mr_error_set(err, STATUS_ERR_ARG,
                          "%s: the model was trained on a listed split (a manifest or "
                          "--split-file); give the same split file",
                          path);
    return mr_error_set(err, STATUS_ERR_ARG,
                        "%s: the split differs from the model's (split seed %llu in training)",
                        path, (unsigned long long)r->seed);
  }
  return STATUS_OK;
}

Status data_check_for_model(const DataSplits *d, const char *path, const Net *net,
                            const DataCheck *check, char *warning, size_t warning_len,
                            MrError *err) {
  const DataCheck none = {0};
  if (!check) check = &none;
  const Record r = parse_record(net_spec(net)->data);
  char scratch[8];
  Status s = check->allow_mismatch ? STATUS_OK : check_task(d, net, &r, path, err);
  if (s == STATUS_OK)
    s = check_split(d, &r, check, path, warning ? warning : scratch,
                    warning ? warning_len : sizeof scratch, err);
  return s;
}

DataSplits *data_load_for_model(const char *path, const Net *net, const DataCheck *check,
                                char *warning, size_t warning_len, MrError *err) {
  const ModelSpec *spec = net_spec(net);
  const DataCheck none = {0};
  if (!check) check = &none;
  if (warning && warning_len) warning[0] = 0;
  const Record r = parse_record(spec->data);
  DataOptions opt = {.size = spec->in_h,
                     .channels = spec->in_c,
                     .seed = check->split_seed_given ? check->split_seed : r.seed,
                     .fit = r.fit,
                     .split_file = check->split_file,
                     .window = r.window,
                     .mask_slices = r.mask_slices,
                     .spacing = r.spacing};
  if (r.present && r.kind == SPLIT_FIXED) opt.fit = FIT_CROP;
  DataSplits *d = data_load(path, &opt, err);
  if (!d) return NULL;
  Status s = data_check_for_model(d, path, net, check, warning, warning_len, err);
  if (s == STATUS_OK && d->unlabelled) {
    d->n_classes = spec->n_classes;
    for (int k = 0; k < spec->n_classes; k++)
      if (spec->class_names[k] && !d->class_names[k])
        d->class_names[k] = strdup(spec->class_names[k]);
  }
  if (s == STATUS_OK && !d->bits && r.bits) {
    d->bits = r.bits;
    for (int k = 0; k < SPLIT_COUNT; k++) d->split[k].bits = r.bits;
  }
  if (s == STATUS_OK) s = data_match_model(d, net, err);
  if (s != STATUS_OK) {
    data_free(d);
    return NULL;
  }
  return d;
}
