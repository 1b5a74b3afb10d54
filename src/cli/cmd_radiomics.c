/* medrobust radiomics extract: IBSI features (src/radiomics/) of a NIfTI
 * volume in its mask, or of every image of a data set in its segmentation
 * mask (or whole), as one CSV row per image with the settings echoed above
 * the header, and a JSON twin naming each column's IBSI family and feature. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomicfile.h"
#include "cli.h"
#include "medrobust.h"

typedef struct {
  char id[128];
  int label;
  RadiomicsFeatures f;
} Row;

/* The settings as "key: value" lines, for the CSV's comment header and the JSON. */
static void describe(const RadiomicsOptions *o, const char *roi, double spacing, char *out,
                     size_t cap) {
  int n = 0;
  if (o->binning == RAD_BIN_NONE)
    n = snprintf(out, cap, "discretisation: none (grey levels as stored)\n");
  else if (o->binning == RAD_BIN_COUNT)
    n = snprintf(out, cap, "discretisation: fixed bin number %d\n", o->bin_count);
  else
    n = snprintf(out, cap, "discretisation: fixed bin size %g from %s\n", o->bin_width,
                 isnan(o->bin_min) ? "the ROI minimum" : "--bin-min");
  if (n < 0 || (size_t)n >= cap) return;
  if (!isnan(o->bin_min) && o->binning == RAD_BIN_WIDTH)
    n += snprintf(out + n, cap - n, "bin minimum: %g\n", o->bin_min);
  if ((size_t)n >= cap) return;
  n += snprintf(out + n, cap - n, "re-segmentation: [%g, %g]\nregion of interest: %s\n",
                isnan(o->reseg_min) ? -INFINITY : o->reseg_min,
                isnan(o->reseg_max) ? INFINITY : o->reseg_max, roi);
  if ((size_t)n >= cap) return;
  if (spacing > 0)
    snprintf(out + n, cap - n, "pixel spacing: %g mm (2-D images; volumes use their own)\n",
             spacing);
  else
    snprintf(out + n, cap - n, "voxel spacing: as stored in the volume\n");
}

static Status write_outputs(const char *out, const Row *rows, int n, const char *settings,
                            MrError *err) {
  AtomicFile af;
  Status s = atomic_open(&af, out, "w", err);
  if (s != STATUS_OK) return s;
  for (const char *line = settings; *line;) {
    const size_t len = strcspn(line, "\n");
    fprintf(af.f, "# %.*s\n", (int)len, line);
    line += len + (line[len] == '\n');
  }
  fprintf(af.f, "image,label");
  for (int k = 0; k < rows[0].f.n; k++) fprintf(af.f, ",%s", rows[0].f.items[k].tag);
  fprintf(af.f, "\n");
  for (int i = 0; i < n; i++) {
    csv_write_field(af.f, rows[i].id);
    if (rows[i].label >= 0)
      fprintf(af.f, ",%d", rows[i].label);
    else
      fprintf(af.f, ",");
    for (int k = 0; k < rows[i].f.n; k++) fprintf(af.f, ",%.9g", rows[i].f.items[k].value);
    fprintf(af.f, "\n");
  }
  s = atomic_commit(&af, err);
  if (s != STATUS_OK) return s;
  /* the JSON twin: each column's IBSI family and name, then the rows */
  cJSON *root = cJSON_CreateObject(), *set = cJSON_AddObjectToObject(root, "settings");
  for (const char *line = settings; *line;) {
    const size_t len = strcspn(line, "\n"), colon = strcspn(line, ":");
    char key[64], value[256];
    snprintf(key, sizeof key, "%.*s", (int)(colon < len ? colon : len), line);
    snprintf(value, sizeof value, "%.*s", colon + 2 < len ? (int)(len - colon - 2) : 0,
             colon + 2 < len ? line + colon + 2 : "");
    cJSON_AddStringToObject(set, key, value);
    line += len + (line[len] == '\n');
  }
  cJSON *features = cJSON_AddArrayToObject(root, "features");
  for (int k = 0; k < rows[0].f.n; k++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tag", rows[0].f.items[k].tag);
    cJSON_AddStringToObject(o, "family", rows[0].f.items[k].family);
    cJSON_AddStringToObject(o, "name", rows[0].f.items[k].name);
    cJSON_AddItemToArray(features, o);
  }
  cJSON *images = cJSON_AddArrayToObject(root, "images");
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject(), *values = cJSON_AddArrayToObject(o, "values");
    cJSON_AddStringToObject(o, "image", rows[i].id);
    if (rows[i].label >= 0)
      cJSON_AddNumberToObject(o, "label", rows[i].label);
    else
      cJSON_AddNullToObject(o, "label");
    for (int k = 0; k < rows[i].f.n; k++) {
      const double v = rows[i].f.items[k].value;
      cJSON_AddItemToArray(values, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
    }
    cJSON_AddItemToArray(images, o);
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  char json[4200];
  const size_t len = strlen(out);
  snprintf(json, sizeof json, "%.*s.json",
           (int)(len > 4 && !strcmp(out + len - 4, ".csv") ? len - 4 : len), out);
  s = text ? atomic_open(&af, json, "w", err)
           : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory writing %s", json);
  if (s == STATUS_OK) {
    fputs(text, af.f);
    fputc('\n', af.f);
    s = atomic_commit(&af, err);
  }
  free(text);
  return s;
}

static int extract(int argc, char **argv) {
  const char *image = NULL, *mask = NULL, *data_path = NULL, *split = "test", *out = NULL;
  RadiomicsOptions o = radiomics_options_default();
  float bin_width = 0, bin_min = NAN, reseg_min = NAN, reseg_max = NAN, spacing = 1;
  int label = -1, whole = 0, limit = 0, quiet = 0, no_binning = 0;
  const CliOption options[] = {
      {"--image", OPT_STRING, &image, 0, 0, " F.nii[.gz]", "a NIfTI volume (or --data)"},
      {"--mask", OPT_STRING, &mask, 0, 0, " M.nii[.gz]",
       "its region of interest (voxels > 0.5; default: the whole volume)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D",
       "a data set: each image in its segmentation mask (or whole, without masks)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "--data: train, val or test"},
      {"--label", OPT_INT, &label, -1, MR_MAX_CLASSES - 1, " K",
       "--data: the ROI is mask == K (default -1: every foreground class, mask > 0)"},
      {"--whole-image", OPT_FLAG, &whole, 0, 0, NULL, "--data: ignore the masks"},
      {"--spacing", OPT_FLOAT, &spacing, 1e-6, 1e6, " MM", "--data: pixel size in mm"},
      {"--bin-count", OPT_INT, &o.bin_count, 1, 1024, " N", "fixed bin number"},
      {"--bin-width", OPT_FLOAT, &bin_width, 0, 1e9, " W",
       "fixed bin size instead (IBSI; PyRadiomics' binWidth), from --bin-min"},
      {"--bin-min", OPT_FLOAT, &bin_min, -1e9, 1e9, " X",
       "--bin-width: the lower edge of bin 1 (default: the ROI's minimum)"},
      {"--no-binning", OPT_FLAG, &no_binning, 0, 0, NULL,
       "grey levels as stored (integers from 1: IBSI's digital phantom)"},
      {"--reseg-min", OPT_FLOAT, &reseg_min, -1e9, 1e9, " X",
       "intensity re-segmentation: drop ROI voxels below X"},
      {"--reseg-max", OPT_FLOAT, &reseg_max, -1e9, 1e9, " X", "and above X"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "--data: only the first N images"},
      {"--out", OPT_STRING, &out, 0, 0, " F.csv", "features, one row per image (required)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {0}};
  const CliPath path_roles[] = {{"--image", PATH_IN},
                                {"--mask", PATH_IN},
                                {"--data", PATH_IN},
                                {"--out", PATH_OUT_FILE},
                                {0}};
  const CliSpec spec = {
      "radiomics extract",
      "radiomics extract (--image F.nii [--mask M.nii] | --data D) --out F.csv",
      "IBSI-1 features (Zwanenburg et al., Radiology 2020): morphology, local intensity,\n"
      "statistics, intensity and intensity-volume histograms, GLCM and GLRLM (2D, 2.5D,\n"
      "3D; averaged and merged), GLSZM, GLDZM, NGTDM, NGLDM (2D, 2.5D, 3D). Columns are\n"
      "feature tags; F.json names each one's IBSI family and feature. Validated on the\n"
      "IBSI digital phantom (482 of 482 reference values). Resampling is not done: the\n"
      "voxels are used as stored.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!out || (!image == !data_path)) {
    fprintf(stderr,
            "medrobust radiomics extract: --out and one of --image or --data are required (see "
            "--help)\n");
    return EXIT_USAGE;
  }
  if (mask && !image) {
    fprintf(stderr,
            "medrobust radiomics extract: --mask goes with --image; --data sets carry "
            "their masks\n");
    return EXIT_USAGE;
  }
  if (bin_width > 0) o.binning = RAD_BIN_WIDTH, o.bin_width = bin_width, o.bin_min = bin_min;
  if (no_binning) o.binning = RAD_BIN_NONE;
  o.reseg_min = reseg_min, o.reseg_max = reseg_max;
  MrError err = {0};
  Row *rows = NULL;
  int n = 0;
  char roi_text[128], settings[1024];
  Status st = STATUS_OK;
  if (image) {
    Volume v = {0}, m = {0};
    st = volume_read_nifti(image, &v, &err);
    if (st == STATUS_OK && mask) st = volume_read_nifti(mask, &m, &err);
    rows = calloc(1, sizeof *rows);
    if (st == STATUS_OK && !rows) st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    if (st == STATUS_OK) {
      snprintf(rows[0].id, sizeof rows[0].id, "%s", image);
      rows[0].label = -1;
      st = radiomics_extract(&v, mask ? &m : NULL, &o, &rows[0].f, &err);
      n = st == STATUS_OK;
      if (st != STATUS_OK) {
        char why[sizeof err.msg];
        snprintf(why, sizeof why, "%.200s: %.*s", image, (int)sizeof why - 210, err.msg);
        memcpy(err.msg, why, sizeof why);
      }
    }
    snprintf(roi_text, sizeof roi_text, "%s",
             mask ? "the mask's voxels > 0.5" : "the whole volume");
    describe(&o, roi_text, 0, settings, sizeof settings);
    volume_free(&v), volume_free(&m);
  } else {
    const int s_idx = cli_split("radiomics extract", split);
    if (s_idx < 0) return EXIT_USAGE;
    DataSplits *data = data_load(data_path, NULL, &err);
    if (!data) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      return EXIT_RUNTIME;
    }
    cli_data_notes(data);
    const Dataset *d = &data->split[s_idx];
    const int count = limit && limit < d->n ? limit : d->n;
    const int use_masks = d->masks && !whole;
    if (label >= 0 && !use_masks) {
      fprintf(stderr, "medrobust radiomics extract: --label needs a data set with masks\n");
      data_free(data);
      return EXIT_USAGE;
    }
    if (label >= 0)
      snprintf(roi_text, sizeof roi_text, "mask == %d", label);
    else
      snprintf(roi_text, sizeof roi_text, "%s", use_masks ? "mask > 0" : "the whole image");
    describe(&o, roi_text, spacing, settings, sizeof settings);
    rows = calloc(count ? count : 1, sizeof *rows);
    const size_t plane = (size_t)d->h * d->w;
    float *grey = malloc(sizeof(float) * plane), *roi = malloc(sizeof(float) * plane);
    if (!rows || !grey || !roi) st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    CliProgress progress;
    cli_progress_init(&progress, quiet);
    int skipped = 0;
    for (int i = 0; st == STATUS_OK && i < count; i++) {
      cli_sweep_progress("radiomics: extracting features", i, count, &progress);
      /* several channels: their mean, the grey image radiomics reads */
      for (size_t p = 0; p < plane; p++) {
        double sum = 0;
        for (int c = 0; c < d->c; c++) sum += d->images[((size_t)i * d->c + c) * plane + p];
        grey[p] = (float)(sum / d->c);
        if (use_masks) {
          const int k = d->masks[(size_t)i * plane + p];
          roi[p] = label >= 0 ? k == label : k > 0;
        }
      }
      size_t in_roi = plane;
      if (use_masks)
        for (size_t p = in_roi = 0; p < plane; p++) in_roi += roi[p] > 0.5f;
      if (!in_roi) { /* no lesion in this image: no row */
        skipped++;
        continue;
      }
      Volume v = {d->w, d->h, 1, spacing, spacing, spacing, grey};
      Volume m = {d->w, d->h, 1, spacing, spacing, spacing, roi};
      Row *row = &rows[n];
      dataset_image_id(d, i, row->id, sizeof row->id);
      row->label = d->labels[i];
      st = radiomics_extract(&v, use_masks ? &m : NULL, &o, &row->f, &err);
      if (st != STATUS_OK) {
        char why[sizeof err.msg];
        snprintf(why, sizeof why, "image %.100s: %.*s", row->id, (int)sizeof why - 120, err.msg);
        memcpy(err.msg, why, sizeof why);
      } else {
        n++;
      }
    }
    cli_progress_done(&progress);
    if (skipped)
      fprintf(stderr,
              "medrobust radiomics extract: %d image%s without pixels in the ROI (%s) left out\n",
              skipped, skipped == 1 ? "" : "s", roi_text);
    free(grey), free(roi);
    data_free(data);
  }
  if (st == STATUS_OK && !n)
    st = mr_error_set(&err, STATUS_ERR_ARG, "no image has pixels in the region of interest");
  if (st == STATUS_OK) st = write_outputs(out, rows, n, settings, &err);
  if (st == STATUS_OK)
    printf("%d image%s, %d features each, in %s and its .json twin\n", n, n == 1 ? "" : "s",
           n ? rows[0].f.n : 0, out);
  else
    fprintf(stderr, "medrobust: %s\n", err.msg);
  for (int i = 0; rows && i < n; i++) radiomics_features_free(&rows[i].f);
  free(rows);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}

int cmd_radiomics(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "extract") == 0) return extract(argc - 1, argv + 1);
  FILE *f = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
  fprintf(f,
          "usage: medrobust radiomics extract (--image F.nii [--mask M.nii] | --data D) --out "
          "F.csv\n'medrobust radiomics extract --help' lists the options.\n");
  return f == stdout ? 0 : EXIT_USAGE;
}
