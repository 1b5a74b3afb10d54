/* medrobust radiomics extract | train: IBSI features (src/radiomics/) of a
 * NIfTI volume in its mask, or of every image of a data set in its
 * segmentation mask (or whole), as one CSV row per image with the settings
 * echoed above the header and a JSON twin naming each column's IBSI family
 * and feature; and radiomics models trained on them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomicfile.h"
#include "../data/data.h"
#include "../report/report.h"
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
    n += snprintf(out + n, cap - n, "pixel spacing: %g mm (2-D images; volumes use their own)\n",
                  spacing);
  else
    n += snprintf(out + n, cap - n, "voxel spacing: as stored in the volume\n");
  if (n > 0 && (size_t)n < cap && o->resample > 0)
    snprintf(out + n, cap - n, "resampling: to isotropic %g mm voxels (trilinear, centred grids)\n",
             o->resample);
  else if (n > 0 && (size_t)n < cap)
    snprintf(out + n, cap - n, "resampling: none\n");
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

/* The extraction options extract and train share. */
typedef struct {
  RadiomicsSetup setup;
  float bin_width, bin_min, reseg_min, reseg_max, spacing, resample;
  int no_binning;
  const char *families;
} SetupArgs;
#define SETUP_OPTIONS(a)                                                                            \
  {"--label",                                                                                       \
   OPT_INT,                                                                                         \
   &(a).setup.roi_label,                                                                            \
   -1,                                                                                              \
   MR_MAX_CLASSES - 1,                                                                              \
   " K",                                                                                            \
   "the ROI is mask == K (default -1: every foreground class, mask > 0)"},                          \
      {"--whole-image", OPT_FLAG, &(a).setup.whole_image, 0, 0, NULL, "ignore the masks"},          \
      {"--spacing", OPT_FLOAT, &(a).spacing, 1e-6, 1e6, " MM", "pixel size in mm"},                 \
      {"--bin-count", OPT_INT, &(a).setup.extraction.bin_count, 1, 1024, " N", "fixed bin number"}, \
      {"--bin-width",                                                                               \
       OPT_FLOAT,                                                                                   \
       &(a).bin_width,                                                                              \
       0,                                                                                           \
       1e9,                                                                                         \
       " W",                                                                                        \
       "fixed bin size instead (IBSI; PyRadiomics' binWidth), from --bin-min"},                     \
      {"--bin-min",                                                                                 \
       OPT_FLOAT,                                                                                   \
       &(a).bin_min,                                                                                \
       -1e9,                                                                                        \
       1e9,                                                                                         \
       " X",                                                                                        \
       "--bin-width: the lower edge of bin 1 (default: the ROI's minimum)"},                        \
      {"--no-binning",                                                                              \
       OPT_FLAG,                                                                                    \
       &(a).no_binning,                                                                             \
       0,                                                                                           \
       0,                                                                                           \
       NULL,                                                                                        \
       "grey levels as stored (integers from 1: IBSI's digital phantom)"},                          \
      {"--reseg-min",                                                                               \
       OPT_FLOAT,                                                                                   \
       &(a).reseg_min,                                                                              \
       -1e9,                                                                                        \
       1e9,                                                                                         \
       " X",                                                                                        \
       "intensity re-segmentation: drop ROI voxels below X"},                                       \
      {"--reseg-max", OPT_FLOAT, &(a).reseg_max, -1e9, 1e9, " X", "and above X"},                   \
      {"--families",                                                                                \
       OPT_STRING,                                                                                  \
       &(a).families,                                                                               \
       0,                                                                                           \
       0,                                                                                           \
       " LIST",                                                                                     \
       "feature families: all, or some of morphology,intensity,glcm,glrlm,zones,neighbourhood"},    \
  {                                                                                                 \
    "--resample", OPT_FLOAT, &(a).resample, 0, 1e4, " MM",                                          \
        "resample to isotropic MM voxels first (IBSI: trilinear, centred grids; 0: none)"           \
  }

static SetupArgs setup_args_default(void) {
  SetupArgs a = {radiomics_setup_default(), 0, NAN, NAN, NAN, 1, 0, 0, "all"};
  return a;
}

/* the options into a->setup; 0 (after saying why) when --families names no family */
static int setup_apply(const char *cmd, SetupArgs *a) {
  RadiomicsOptions *o = &a->setup.extraction;
  if (!radiomics_families_parse(a->families, &o->families)) {
    fprintf(stderr,
            "medrobust %s: --families %s: all, or a comma-separated list of morphology, "
            "intensity, glcm, glrlm, zones, neighbourhood\n",
            cmd, a->families);
    return 0;
  }
  if (a->bin_width > 0) o->binning = RAD_BIN_WIDTH, o->bin_width = a->bin_width;
  o->bin_min = a->bin_min;
  if (a->no_binning) o->binning = RAD_BIN_NONE;
  o->reseg_min = a->reseg_min, o->reseg_max = a->reseg_max;
  o->resample = a->resample;
  a->setup.spacing = a->spacing;
  return 1;
}

static void roi_description(const RadiomicsSetup *s, int has_masks, char *out, size_t cap) {
  if (!has_masks || s->whole_image)
    snprintf(out, cap, "the whole image");
  else if (s->roi_label >= 0)
    snprintf(out, cap, "mask == %d", s->roi_label);
  else
    snprintf(out, cap, "mask > 0");
}

/* The features of the first `count` images of d into rows (an image with an empty ROI
 * gets none: *skipped counts them); *n the rows filled. */
static Status extract_split(const Dataset *d, int count, const RadiomicsSetup *s, int quiet,
                            const char *what, Row *rows, int *n, int *skipped, MrError *err) {
  const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  Status st = STATUS_OK;
  *n = *skipped = 0;
  for (int i = 0; st == STATUS_OK && i < count; i++) {
    cli_sweep_progress(what, i, count, &progress);
    Row *row = &rows[*n];
    dataset_image_id(d, i, row->id, sizeof row->id);
    row->label = d->labels[i];
    const int *mask = d->masks && !s->whole_image ? d->masks + plane * i : NULL;
    if (mask && !radiomics_roi_pixels(mask, plane, s)) {
      (*skipped)++;
      continue;
    }
    st = radiomics_image_features(d->images + per * i, d->c, d->h, d->w, mask, s, &row->f, err);
    if (st != STATUS_OK) {
      char why[sizeof err->msg];
      snprintf(why, sizeof why, "image %.100s: %.*s", row->id, (int)sizeof why - 120, err->msg);
      memcpy(err->msg, why, sizeof why);
    } else {
      (*n)++;
    }
  }
  cli_progress_done(&progress);
  return st;
}

static void rows_free(Row *rows, int n) {
  for (int i = 0; rows && i < n; i++) radiomics_features_free(&rows[i].f);
  free(rows);
}

static int extract(int argc, char **argv) {
  const char *image = NULL, *mask = NULL, *data_path = NULL, *split = "test", *out = NULL;
  SetupArgs a = setup_args_default();
  int limit = 0, quiet = 0;
  const CliOption options[] = {
      {"--image", OPT_STRING, &image, 0, 0, " F.nii[.gz]", "a NIfTI volume (or --data)"},
      {"--mask", OPT_STRING, &mask, 0, 0, " M.nii[.gz]",
       "its region of interest (voxels > 0.5; default: the whole volume)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D",
       "a data set: each image in its segmentation mask (or whole, without masks)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "--data: train, val or test"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "--data: only the first N images"},
      {"--out", OPT_STRING, &out, 0, 0, " F.csv", "features, one row per image (required)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      SETUP_OPTIONS(a),
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
      "IBSI digital phantom (482 of 482 reference values). --resample MM resamples to\n"
      "isotropic voxels first. --label, --whole-image and --spacing apply to --data.",
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
  if (!setup_apply("radiomics extract", &a)) return EXIT_USAGE;
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
      st = radiomics_extract(&v, mask ? &m : NULL, &a.setup.extraction, &rows[0].f, &err);
      n = st == STATUS_OK;
      if (st != STATUS_OK) {
        char why[sizeof err.msg];
        snprintf(why, sizeof why, "%.200s: %.*s", image, (int)sizeof why - 210, err.msg);
        memcpy(err.msg, why, sizeof why);
      }
    }
    snprintf(roi_text, sizeof roi_text, "%s",
             mask ? "the mask's voxels > 0.5" : "the whole volume");
    describe(&a.setup.extraction, roi_text, 0, settings, sizeof settings);
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
    if (a.setup.roi_label >= 0 && (!d->masks || a.setup.whole_image)) {
      fprintf(stderr, "medrobust radiomics extract: --label needs a data set with masks\n");
      data_free(data);
      return EXIT_USAGE;
    }
    roi_description(&a.setup, d->masks != NULL, roi_text, sizeof roi_text);
    describe(&a.setup.extraction, roi_text, a.spacing, settings, sizeof settings);
    rows = calloc(count ? count : 1, sizeof *rows);
    int skipped = 0;
    st = rows ? extract_split(d, count, &a.setup, quiet, "radiomics: extracting features", rows, &n,
                              &skipped, &err)
              : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    if (skipped)
      fprintf(stderr,
              "medrobust radiomics extract: %d image%s without pixels in the ROI (%s) left "
              "out\n",
              skipped, skipped == 1 ? "" : "s", roi_text);
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
  rows_free(rows, n);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}

/* Logits -> probabilities -> metrics of a model on the rows' features. */
static Status score_rows(const RadiomicsModel *m, const Row *rows, int n, Metrics *out,
                         MrError *err) {
  float *probs = malloc(sizeof(float) * m->k * (n ? n : 1));
  int *labels = malloc(sizeof(int) * (n ? n : 1));
  double z[MR_MAX_CLASSES];
  Status st = probs && labels ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int i = 0; st == STATUS_OK && i < n; i++) {
    st = radiomics_model_logits(m, &rows[i].f, z, err);
    radiomics_softmax(z, m->k, probs + (size_t)i * m->k);
    labels[i] = rows[i].label;
  }
  if (st == STATUS_OK) st = metrics_compute(out, probs, labels, n, m->k, err);
  free(probs), free(labels);
  return st;
}

static int train_model(int argc, char **argv) {
  const char *data_path = NULL, *out = NULL, *classifier = "logistic-l2";
  SetupArgs a = setup_args_default();
  RadiomicsTrainOptions t = {RAD_LOGISTIC_L2, 1.0, 20, 0.9};
  float c = 1.0f, max_corr = 0.9f;
  int quiet = 0;
  const CliOption options[] = {
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "a labelled data set (required)"},
      {"--out", OPT_STRING, &out, 0, 0, " M.json", "the model file (required)"},
      {"--classifier", OPT_STRING, &classifier, 0, 0, " logistic-l2|logistic-l1|svm",
       "L2 or L1 logistic regression, or a linear SVM (LIBLINEAR)"},
      {"--c", OPT_FLOAT, &c, 1e-6, 1e6, " C", "inverse regularisation strength"},
      {"--max-features", OPT_INT, &t.max_features, 1, 10000, " N",
       "keep at most N features after the correlation filter"},
      {"--max-correlation", OPT_FLOAT, &max_corr, 0, 1, " R",
       "drop a feature correlated above R with a better-ranked one"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      SETUP_OPTIONS(a),
      {0}};
  const CliPath path_roles[] = {{"--data", PATH_IN}, {"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "radiomics train", "radiomics train --data D --out M.json [options]",
      "A radiomics model: the features of each training image in its mask (or whole),\n"
      "standardised; ranked by the share of their variance the classes explain, those\n"
      "correlated above --max-correlation with a better one dropped, at most\n"
      "--max-features kept; then a linear classifier (LIBLINEAR). Prints accuracy,\n"
      "balanced accuracy and ROC AUC on the validation and test splits.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!data_path || !out) {
    fprintf(stderr, "medrobust radiomics train: --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  const int kind = radiomics_classifier_parse(classifier);
  if (kind < 0) {
    fprintf(stderr,
            "medrobust radiomics train: --classifier must be logistic-l2, logistic-l1 or svm, "
            "got '%s'\n",
            classifier);
    return EXIT_USAGE;
  }
  t.classifier = (RadiomicsClassifier)kind, t.c = c, t.max_correlation = max_corr;
  if (!setup_apply("radiomics train", &a)) return EXIT_USAGE;
  MrError err = {0};
  DataSplits *data = data_load(data_path, NULL, &err);
  if (!data) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  cli_data_notes(data);
  if (data->segment || data->unlabelled || data->n_classes < 2) {
    fprintf(stderr,
            "medrobust radiomics train: %s has no per-image classes (a %s set): a radiomics "
            "model learns a diagnosis per image\n",
            data_path, data->segment ? "segmentation" : "unlabelled");
    data_free(data);
    return EXIT_RUNTIME;
  }
  Row *rows[SPLIT_COUNT] = {0};
  int n[SPLIT_COUNT] = {0};
  Status st = STATUS_OK;
  static const char *const what[SPLIT_COUNT] = {"radiomics: features of the training images",
                                                "radiomics: features of the validation images",
                                                "radiomics: features of the test images"};
  for (int s = 0; st == STATUS_OK && s < SPLIT_COUNT; s++) {
    const Dataset *d = &data->split[s];
    int skipped = 0;
    rows[s] = calloc(d->n ? d->n : 1, sizeof(Row));
    st = rows[s] ? extract_split(d, d->n, &a.setup, quiet, what[s], rows[s], &n[s], &skipped, &err)
                 : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    if (skipped)
      fprintf(stderr, "medrobust radiomics train: %d %s image%s without ROI pixels left out\n",
              skipped, split_name(s), skipped == 1 ? "" : "s");
  }
  RadiomicsModel m = {0};
  if (st == STATUS_OK && n[SPLIT_TRAIN] < 2)
    st = mr_error_set(&err, STATUS_ERR_ARG, "fewer than 2 training images with an ROI");
  if (st == STATUS_OK) {
    const int nf = rows[SPLIT_TRAIN][0].f.n;
    double *x = malloc(sizeof(double) * (size_t)n[SPLIT_TRAIN] * nf);
    int *y = malloc(sizeof(int) * n[SPLIT_TRAIN]);
    const char **tags = malloc(sizeof(char *) * nf);
    if (!x || !y || !tags) st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    for (int f = 0; st == STATUS_OK && f < nf; f++) tags[f] = rows[SPLIT_TRAIN][0].f.items[f].tag;
    for (int i = 0; st == STATUS_OK && i < n[SPLIT_TRAIN]; i++) {
      y[i] = rows[SPLIT_TRAIN][i].label;
      for (int f = 0; f < nf; f++) x[(size_t)i * nf + f] = rows[SPLIT_TRAIN][i].f.items[f].value;
    }
    if (st == STATUS_OK)
      st = radiomics_model_train(x, tags, nf, y, n[SPLIT_TRAIN], data->n_classes, &t, &m, &err);
    free(x), free(y), free(tags);
  }
  if (st == STATUS_OK) {
    m.setup = a.setup;
    m.class_names = calloc(m.k, sizeof(char *));
    for (int k = 0; m.class_names && k < m.k; k++) {
      char buf[16];
      m.class_names[k] = strdup(data->class_names[k] ? data->class_names[k]
                                                     : (snprintf(buf, sizeof buf, "%d", k), buf));
    }
    printf("radiomics %s (C %g) on %d of %d features, trained on %d images of %s\n",
           radiomics_classifier_name(m.classifier), t.c, m.n_features, rows[SPLIT_TRAIN][0].f.n,
           n[SPLIT_TRAIN], data_path);
    for (int s = 0; s < m.n_features; s++) printf("  %s\n", m.tags[s]);
    printf("%-8s %6s %9s %9s %8s\n", "split", "images", "accuracy", "balanced", "ROC AUC");
    char record[MR_TRAINING_LEN];
    int at = snprintf(record, sizeof record, "{\"data\": \"%s\", \"classifier\": \"%s\", \"c\": %g",
                      data_path, radiomics_classifier_name(m.classifier), t.c);
    for (int s = 0; st == STATUS_OK && s < SPLIT_COUNT; s++) {
      if (!n[s]) continue;
      Metrics mt;
      st = score_rows(&m, rows[s], n[s], &mt, &err);
      if (st != STATUS_OK) break;
      printf("%-8s %6d %8.2f%% %8.2f%% %8.4f\n", split_name(s), n[s], 100 * mt.accuracy,
             100 * mt.balanced_accuracy, mt.auc);
      if (at > 0 && (size_t)at < sizeof record)
        at += snprintf(record + at, sizeof record - at,
                       ", \"%s\": {\"accuracy\": %.6f, \"balanced_accuracy\": %.6f, \"auc\": %.6f}",
                       split_name(s), mt.accuracy, mt.balanced_accuracy, mt.auc);
      metrics_free(&mt);
    }
    if (at > 0 && (size_t)at < sizeof record) snprintf(record + at, sizeof record - at, "}");
    snprintf(m.training, sizeof m.training, "%s", record);
  }
  if (st == STATUS_OK) st = radiomics_model_save(&m, out, &err);
  if (st == STATUS_OK)
    printf("wrote %s\n", out);
  else
    fprintf(stderr, "medrobust: %s\n", err.msg);
  radiomics_model_free(&m);
  for (int s = 0; s < SPLIT_COUNT; s++) rows_free(rows[s], n[s]);
  data_free(data);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}

typedef struct {
  double median;
  int poor, features, poor_in_model, in_model;
} StabilityRow;

/* F.json beside F.csv, and the report of F's folder (which may hold the attack's too) */
static Status write_stability_json(const char *csv, const StabilityRow *rows, int n_images,
                                   double mean_ssim, MrError *err) {
  char dir[4200], name[512];
  const char *slash = strrchr(csv, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - csv) : 1, slash ? csv : ".");
  snprintf(name, sizeof name, "%s", slash ? slash + 1 : csv);
  cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "summary");
  cJSON_AddNumberToObject(root, "images", n_images);
  json_add_number(root, "mean_ssim", mean_ssim);
  cJSON_AddStringToObject(root, "per_feature_csv", name);
  for (int v = 0; v <= RAD_STABILITY_NOISES; v++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "perturbation", radiomics_stability_kind(v));
    json_add_number(o, "median_icc", rows[v].median);
    cJSON_AddNumberToObject(o, "poor", rows[v].poor);
    cJSON_AddNumberToObject(o, "features", rows[v].features);
    cJSON_AddNumberToObject(o, "poor_in_model", rows[v].poor_in_model);
    cJSON_AddNumberToObject(o, "in_model", rows[v].in_model);
    cJSON_AddItemToArray(list, o);
  }
  Status st = report_write_json(dir, "radiomics_stability.json", root, err);
  cJSON_Delete(root);
  return st == STATUS_OK ? report_render(dir, err) : st;
}

static const char *const example_kinds[4] = {"clean", "mask", "adv", "diff"};

/* DIR/images/radiomics_K_{clean,mask,adv,diff}.png of one attacked image */
static Status write_example_pngs(const char *dir, int k, const Dataset *d, int i, const int *mask,
                                 const float *adv, float eps, const RadiomicsModel *m,
                                 MrError *err) {
  const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
  const float *x = d->images + per * i;
  float *buf = malloc(sizeof(float) * per);
  if (!buf) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  Status st = report_make_dir(dir, "images", err);
  const int scale = d->h < 64 ? 4 : d->h < 128 ? 2 : 1;
  for (int v = 0; st == STATUS_OK && v < 4; v++) {
    for (size_t p = 0; p < per; p++) {
      const size_t px = p % plane;
      buf[p] = v == 0   ? x[p]
               : v == 1 ? (float)(!mask || radiomics_roi_pixels(mask + px, 1, &m->setup))
               : v == 2 ? adv[p]
                        : 0.5f + (eps > 0 ? 0.5f / eps : 1.0f) * (adv[p] - x[p]);
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/images/radiomics_%d_%s.png", dir, k, example_kinds[v]);
    st = image_write_png(path, buf, d->c, d->h, d->w, scale, err);
  }
  free(buf);
  return st;
}

/* example K's entry in radiomics_attack.json: its PNGs and the two predictions */
static void add_example(cJSON *examples, int k, const RadiomicsModel *m,
                        const RadiomicsAttackResult *r) {
  static const char *const keys[4] = {"clean_png", "mask_png", "adversarial_png", "diff_png"};
  cJSON *e = cJSON_CreateObject();
  for (int v = 0; v < 4; v++) {
    char rel[64];
    snprintf(rel, sizeof rel, "images/radiomics_%d_%s.png", k, example_kinds[v]);
    cJSON_AddStringToObject(e, keys[v], rel);
  }
  char buf[32];
  const int preds[2] = {r->clean_pred, r->adv_pred};
  static const char *const names[2] = {"clean_prediction", "adversarial_prediction"};
  for (int v = 0; v < 2; v++) {
    const char *name = m->class_names && m->class_names[preds[v]]
                           ? m->class_names[preds[v]]
                           : (snprintf(buf, sizeof buf, "%d", preds[v]), buf);
    cJSON_AddStringToObject(e, names[v], name);
  }
  cJSON_AddItemToArray(examples, e);
}

/* The journal of a radiomics command over the first `count` images of d; the model file's
 * contents are in its fingerprint. */
static Journal *radiomics_journal(const char *cmd, const char *path, int resume, int argc,
                                  char **argv, const char *model_path, const Dataset *d, int count,
                                  int *code) {
  MrError err = {0};
  size_t len = 0;
  uint8_t *bytes = file_read_all(model_path, (size_t)64 << 20, &len, &err);
  char extra[96] = "";
  if (bytes)
    snprintf(extra, sizeof extra, "radiomics model: %zu bytes, crc32 %08x", len,
             journal_crc(0, bytes, len));
  free(bytes);
  Dataset used = *d;
  used.n = count;
  return cli_journal_open(cmd, path, resume, argc, argv, NULL, 0, &used, extra, code);
}

typedef struct {
  float eps;
  int n, clean_right, adv_right, fooled, attackable;
  double queries;
  double *moved;  /* per selected feature: mean |z_adv - z_clean| over the images */
  int *per_class; /* (3, k): images, right clean, right attacked, per true class */
} EpsRow;

/* the mean over the classes present of the share right */
static double balanced(const int *total, const int *right, int k) {
  double sum = 0;
  int present = 0;
  for (int c = 0; c < k; c++)
    if (total[c]) sum += (double)right[c] / total[c], present++;
  return present ? sum / present : 0;
}

static int attack_cmd(int argc, char **argv) {
  const char *model_path = NULL, *data_path = NULL, *split = "test", *out = NULL;
  const char *kind_text = "square", *region_text = "all", *eps_text = "0.01,0.03,0.05";
  const char *norm_text = "linf";
  RadiomicsAttackOptions o = radiomics_attack_options_default();
  int limit = 0, quiet = 0, resume = 0;
  const CliOption options[] = {
      {"--model", OPT_STRING, &model_path, 0, 0, " M.json", "a radiomics model (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "its data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--attack", OPT_STRING, &kind_text, 0, 0, " square|spsa|surrogate",
       "query-only search on the exact features, or white-box through the surrogate"},
      CLI_RESUME_OPTION(resume),
      {"--eps", OPT_STRING, &eps_text, 0, 0, " E,F", "sizes on [0,1] pixels (4/255 accepted)"},
      {"--norm", OPT_STRING, &norm_text, 0, 0, " linf|l2", "threat model (l2: surrogate only)"},
      {"--queries", OPT_INT, &o.queries, 1, 1000000, " N",
       "budget per image (surrogate: exact evaluations, one per gradient step)"},
      {"--temperature", OPT_FLOAT, &o.temperature, 1e-3, 100, " T",
       "surrogate: width of the soft bins' edges, in bins"},
      {"--samples", OPT_INT, &o.samples, 1, 10000, " N", "SPSA: probe pairs per step"},
      {"--delta", OPT_FLOAT, &o.delta, 1e-6, 1, " D", "SPSA: probe size"},
      {"--region", OPT_STRING, &region_text, 0, 0, " all|roi|background",
       "pixels the attack may change: any, the ROI only (the lesion), or outside it"},
      {"--target", OPT_INT, &o.target, -1, MR_MAX_CLASSES - 1, " K",
       "force class K (a chosen diagnosis); -1: any wrong answer"},
      {"--seed", OPT_U64, &o.seed, 0, 0, " S", "random squares and probes"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR",
       "radiomics_attack.csv (per image and eps) and radiomics_attack.json (required)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "radiomics attack", "radiomics attack --model M.json --data D --out DIR [options]",
      "Attacks a radiomics pipeline (image -> IBSI features in the image's own mask ->\n"
      "the model) under a pixel budget: query-only on the exact features, Square\n"
      "(Andriushchenko et al. 2020) or SPSA (Uesato et al. 2018), L-inf; or white-box,\n"
      "PGD through a differentiable surrogate of the features (exact gradients for\n"
      "statistics and local peaks, soft bins for the histogram and GLCM; models reading\n"
      "other families are refused), L-inf or L2, every step re-scored on the exact\n"
      "features. Per eps: accuracy clean and under attack, success rate, queries, and\n"
      "the selected features the attack moved most (mean change in training standard\n"
      "deviations).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model_path || !data_path || !out) {
    fprintf(stderr,
            "medrobust radiomics attack: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  const int kind = radiomics_attack_parse(kind_text), region = radiomics_region_parse(region_text);
  if (kind < 0 || region < 0) {
    fprintf(stderr,
            "medrobust radiomics attack: --attack is square, spsa or surrogate and --region "
            "all, roi or background\n");
    return EXIT_USAGE;
  }
  o.kind = (RadiomicsAttackKind)kind, o.region = (RadiomicsRegion)region;
  if (!cli_parse_norm("radiomics attack", norm_text, &o.norm)) return EXIT_USAGE;
  if (o.norm == NORM_L2 && o.kind != RAD_ATTACK_SURROGATE) {
    fprintf(stderr,
            "medrobust radiomics attack: --norm l2 is for --attack surrogate (square and "
            "spsa search the L-inf ball)\n");
    return EXIT_USAGE;
  }
  float eps[MAX_LIST];
  int n_eps;
  if (!cli_parse_eps_list("radiomics attack", eps_text, o.norm, NULL, eps, &n_eps))
    return EXIT_USAGE;
  const int s_idx = cli_split("radiomics attack", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("radiomics attack", journal_path, resume)) return EXIT_USAGE;
  MrError err = {0};
  RadiomicsModel m;
  if (radiomics_model_load(model_path, &m, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  if (o.target >= m.k) {
    fprintf(stderr,
            "medrobust radiomics attack: --target %d is not one of the model's %d classes\n",
            o.target, m.k);
    radiomics_model_free(&m);
    return EXIT_USAGE;
  }
  if (o.kind == RAD_ATTACK_SURROGATE && radiomics_surrogate_check(&m, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust radiomics attack: %s: %s\n", model_path, err.msg);
    radiomics_model_free(&m);
    return EXIT_USAGE;
  }
  DataSplits *data = data_load(data_path, NULL, &err);
  if (!data) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    radiomics_model_free(&m);
    return EXIT_RUNTIME;
  }
  const Dataset *d = &data->split[s_idx];
  const int count = limit && limit < d->n ? limit : d->n;
  const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
  /* the journal: one unit per image and eps */
  int code = EXIT_RUNTIME;
  Journal *journal = cli_make_dir(out) ? radiomics_journal("radiomics attack", journal_path, resume,
                                                           argc, argv, model_path, d, count, &code)
                                       : NULL;
  if (!journal) {
    radiomics_model_free(&m);
    data_free(data);
    return code;
  }
  float *adv = malloc(sizeof(float) * per);
  double *z0 = malloc(sizeof(double) * m.n_features), *z1 = malloc(sizeof(double) * m.n_features);
  EpsRow *rows = calloc(n_eps, sizeof(EpsRow));
  Status st =
      adv && z0 && z1 && rows ? STATUS_OK : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  for (int e = 0; st == STATUS_OK && e < n_eps; e++) {
    rows[e].eps = eps[e];
    rows[e].per_class = calloc(3 * (size_t)m.k, sizeof(int));
    if (!(rows[e].moved = calloc(m.n_features, sizeof(double))) || !rows[e].per_class)
      st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  }
  char csv_path[4200];
  snprintf(csv_path, sizeof csv_path, "%s/radiomics_attack.csv", out);
  AtomicFile af = {0};
  if (st == STATUS_OK) st = atomic_open(&af, csv_path, "w", &err);
  if (st == STATUS_OK)
    fprintf(af.f, "image,label,eps,clean_pred,adv_pred,clean_margin,adv_margin,queries,linf,l2\n");
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  int skipped = 0, n_examples = 0;
  cJSON *examples = cJSON_CreateArray();
  for (int i = 0; st == STATUS_OK && i < count; i++) {
    const int *mask = d->masks && !m.setup.whole_image ? d->masks + plane * i : NULL;
    if (mask && !radiomics_roi_pixels(mask, plane, &m.setup)) {
      skipped++;
      continue;
    }
    if (d->labels[i] < 0 || d->labels[i] >= m.k) {
      st = mr_error_set(&err, STATUS_ERR_ARG, "image %d has class %d; the model knows %d", i,
                        d->labels[i], m.k);
      break;
    }
    st = radiomics_model_zscores(&m, d->images + per * i, d->c, d->h, d->w, mask, z0, &err);
    for (int e = 0; st == STATUS_OK && e < n_eps; e++) {
      cli_sweep_progress("radiomics attack", i * n_eps + e, count * n_eps, &progress);
      RadiomicsAttackResult r;
      double size[2] = {0}; /* the perturbation's L-inf and L2 */
      const int example = e == n_eps - 1 && n_examples < 3;
      const JournalPart unit[3] = {
          {&r, sizeof r}, {size, sizeof size}, {z1, sizeof(double) * m.n_features}};
      char key[48];
      snprintf(key, sizeof key, "i%d/e%d", i, e);
      if (!journal_restore(journal, key, unit, 3)) {
        RadiomicsAttackOptions oe = o;
        oe.eps = eps[e];
        st = radiomics_attack(&m, d->images + per * i, d->c, d->h, d->w, mask, d->labels[i], &oe,
                              adv, &r, &err);
        if (st == STATUS_OK)
          st = radiomics_model_zscores(&m, adv, d->c, d->h, d->w, mask, z1, &err);
        for (size_t p = 0; st == STATUS_OK && p < per; p++) {
          const double delta = (double)adv[p] - d->images[per * i + p];
          size[0] = fmax(size[0], fabs(delta)), size[1] += delta * delta;
        }
        size[1] = sqrt(size[1]);
        /* the unit holds each feature's move; its PNGs are written before it is journaled */
        for (int k = 0; st == STATUS_OK && k < m.n_features; k++) z1[k] = fabs(z1[k] - z0[k]);
        if (st == STATUS_OK && example)
          st = write_example_pngs(out, n_examples, d, i, mask, adv, eps[e], &m, &err);
        if (st == STATUS_OK) st = journal_record(journal, key, unit, 3, &err);
      }
      if (st != STATUS_OK) break;
      if (example) add_example(examples, n_examples++, &m, &r);
      EpsRow *row = &rows[e];
      const int y = d->labels[i];
      const int clean_ok = o.target >= 0 ? r.clean_pred != o.target : r.clean_pred == y;
      row->n++, row->clean_right += r.clean_pred == y, row->adv_right += r.adv_pred == y;
      row->per_class[y]++, row->per_class[m.k + y] += r.clean_pred == y;
      row->per_class[2 * m.k + y] += r.adv_pred == y;
      row->attackable += clean_ok;
      row->fooled += clean_ok && r.adv_margin < 0;
      row->queries += r.queries;
      for (int k = 0; k < m.n_features; k++) row->moved[k] += z1[k];
      char id[64];
      csv_write_field(af.f, dataset_image_id(d, i, id, sizeof id));
      fprintf(af.f, ",%d,%g,%d,%d,%.6g,%.6g,%d,%.6g,%.6g\n", y, eps[e], r.clean_pred, r.adv_pred,
              r.clean_margin, r.adv_margin, r.queries, size[0], size[1]);
    }
  }
  cli_progress_done(&progress);
  if (st == STATUS_OK)
    st = atomic_commit(&af, &err);
  else if (af.f)
    atomic_abort(&af);
  cJSON *root = NULL;
  if (st == STATUS_OK) {
    printf(
        "radiomics %s model (%d features) under %s (%s), region %s%s, on %d images of %s "
        "(%s)\n",
        radiomics_classifier_name(m.classifier), m.n_features, radiomics_attack_name(o.kind),
        o.norm == NORM_L2 ? "L2" : "L-inf", radiomics_region_name(o.region),
        o.target >= 0 ? ", targeted" : "", rows[0].n, data_path, split);
    printf("%8s %9s %9s %9s %9s %9s %9s\n", "eps", "clean", "balanced", "attacked", "balanced",
           "success", "queries");
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_path);
    cJSON_AddStringToObject(root, "data", data_path);
    cJSON_AddStringToObject(root, "split", split);
    cJSON_AddStringToObject(root, "attack", radiomics_attack_name(o.kind));
    cJSON_AddStringToObject(root, "norm", o.norm == NORM_L2 ? "l2" : "linf");
    if (o.kind == RAD_ATTACK_SURROGATE)
      cJSON_AddNumberToObject(root, "surrogate_temperature", o.temperature);
    cJSON_AddStringToObject(root, "region", radiomics_region_name(o.region));
    cJSON_AddNumberToObject(root, "target", o.target);
    cJSON_AddNumberToObject(root, "query_budget", o.queries);
    cJSON_AddItemToObject(root, "examples", examples);
    examples = NULL;
    cJSON *list = cJSON_AddArrayToObject(root, "rows");
    for (int e = 0; e < n_eps; e++) {
      const EpsRow *row = &rows[e];
      const double n = row->n ? row->n : 1;
      const double success = row->attackable ? (double)row->fooled / row->attackable : 0;
      const double bal_clean = balanced(row->per_class, row->per_class + m.k, m.k),
                   bal_adv = balanced(row->per_class, row->per_class + 2 * m.k, m.k);
      printf("%8.4g %8.2f%% %8.2f%% %8.2f%% %8.2f%% %8.2f%% %9.1f\n", row->eps,
             100 * row->clean_right / n, 100 * bal_clean, 100 * row->adv_right / n, 100 * bal_adv,
             100 * success, row->queries / n);
      cJSON *o_row = cJSON_CreateObject();
      cJSON_AddNumberToObject(o_row, "eps", row->eps);
      cJSON_AddNumberToObject(o_row, "images", row->n);
      cJSON_AddNumberToObject(o_row, "clean_accuracy", row->clean_right / n);
      cJSON_AddNumberToObject(o_row, "accuracy", row->adv_right / n);
      cJSON_AddNumberToObject(o_row, "clean_balanced_accuracy", bal_clean);
      cJSON_AddNumberToObject(o_row, "balanced_accuracy", bal_adv);
      cJSON_AddNumberToObject(o_row, "success_rate", success);
      cJSON_AddNumberToObject(o_row, "mean_queries", row->queries / n);
      cJSON *moved = cJSON_AddArrayToObject(o_row, "feature_change_sd");
      for (int k = 0; k < m.n_features; k++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "feature", m.tags[k]);
        cJSON_AddNumberToObject(f, "mean_abs_change", row->moved[k] / n);
        cJSON_AddItemToArray(moved, f);
      }
      cJSON_AddItemToArray(list, o_row);
    }
    /* the features the largest eps moved most */
    const EpsRow *last = &rows[n_eps - 1];
    int order[64], shown = m.n_features < 5 ? m.n_features : 5;
    for (int k = 0; k < m.n_features && k < 64; k++) order[k] = k;
    for (int a = 0; a < shown; a++)
      for (int b = a + 1; b < m.n_features && b < 64; b++)
        if (last->moved[order[b]] > last->moved[order[a]]) {
          const int t = order[a];
          order[a] = order[b], order[b] = t;
        }
    printf("\nmoved most at eps %g (mean change in training standard deviations):\n", last->eps);
    for (int a = 0; a < shown; a++)
      printf("  %-36s %.3f\n", m.tags[order[a]], last->moved[order[a]] / (last->n ? last->n : 1));
    if (skipped) printf("%d images without ROI pixels left out\n", skipped);
    char *text = cJSON_Print(root);
    char json_path[4200];
    snprintf(json_path, sizeof json_path, "%s/radiomics_attack.json", out);
    st = text ? atomic_open(&af, json_path, "w", &err)
              : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    if (st == STATUS_OK) {
      fputs(text, af.f);
      fputc('\n', af.f);
      st = atomic_commit(&af, &err);
    }
    free(text);
    if (st == STATUS_OK) st = report_render(out, &err);
    if (st == STATUS_OK)
      printf("\nper image: %s; summary: %s; report %s/report.html\n", csv_path, json_path, out);
  }
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
  } else if (cli_journal_finish("radiomics attack", journal)) {
    st = STATUS_ERR_IO;
  }
  cJSON_Delete(root), cJSON_Delete(examples);
  for (int e = 0; rows && e < n_eps; e++) free(rows[e].moved), free(rows[e].per_class);
  free(rows), free(adv), free(z0), free(z1);
  radiomics_model_free(&m);
  data_free(data);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}

static int by_moved_desc(const void *a, const void *b, void *ctx) {
  const double *v = ctx;
  const double x = v[*(const int *)a], y = v[*(const int *)b];
  if (isnan(x) != isnan(y)) return isnan(x) ? 1 : -1;
  return (x < y) - (x > y);
}

static int stability_cmd(int argc, char **argv) {
  const char *model_path = NULL, *data_path = NULL, *split = "test", *out = NULL;
  const char *kind_text = "square", *eps_text = "0.03";
  RadiomicsAttackOptions o = radiomics_attack_options_default();
  int limit = 0, quiet = 0, resume = 0;
  o.queries = 300;
  const CliOption options[] = {
      {"--model", OPT_STRING, &model_path, 0, 0, " M.json", "a radiomics model (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "its data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--attack", OPT_STRING, &kind_text, 0, 0, " square|spsa|surrogate",
       "the adversarial perturbation"},
      {"--eps", OPT_STRING, &eps_text, 0, 0, " E", "its L-inf size on [0,1] pixels"},
      {"--queries", OPT_INT, &o.queries, 1, 1000000, " N", "its query budget per image"},
      {"--temperature", OPT_FLOAT, &o.temperature, 1e-3, 100, " T",
       "surrogate: width of the soft bins' edges, in bins"},
      {"--seed", OPT_U64, &o.seed, 0, 0, " S", "attack and noise"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images"},
      {"--out", OPT_STRING, &out, 0, 0, " F.csv", "ICC per feature and perturbation (required)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "radiomics stability", "radiomics stability --model M.json --data D --out F.csv [options]",
      "Adversarial vs irreproducible: for every IBSI feature, ICC(3,1) between clean and\n"
      "perturbed images under Gaussian, Rician and Poisson noise and under the attack on\n"
      "the model, the noise of each image bisected to the SSIM of its adversarial\n"
      "example; and the features the attack moves most per unit of SSIM lost.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model_path || !data_path || !out) {
    fprintf(stderr, "medrobust radiomics stability: --model, --data and --out are required\n");
    return EXIT_USAGE;
  }
  const int kind = radiomics_attack_parse(kind_text);
  double e = -1;
  if (kind < 0 || !cli_parse_number(eps_text, &e) ||
      !cli_eps_valid("radiomics stability", e, NORM_LINF, eps_text)) {
    if (kind < 0)
      fprintf(stderr, "medrobust radiomics stability: --attack is square, spsa or surrogate\n");
    return EXIT_USAGE;
  }
  o.kind = (RadiomicsAttackKind)kind, o.eps = (float)e;
  const int s_idx = cli_split("radiomics stability", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_path(out, 0, journal_path, sizeof journal_path);
  if (cli_journal_check("radiomics stability", journal_path, resume)) return EXIT_USAGE;
  MrError err = {0};
  RadiomicsModel m;
  if (radiomics_model_load(model_path, &m, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  if (o.kind == RAD_ATTACK_SURROGATE && radiomics_surrogate_check(&m, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust radiomics stability: %s: %s\n", model_path, err.msg);
    radiomics_model_free(&m);
    return EXIT_USAGE;
  }
  DataSplits *data = data_load(data_path, NULL, &err);
  if (!data) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    radiomics_model_free(&m);
    return EXIT_RUNTIME;
  }
  const Dataset *d = &data->split[s_idx];
  const int count = limit && limit < d->n ? limit : d->n;
  int code = EXIT_RUNTIME;
  Journal *journal = radiomics_journal("radiomics stability", journal_path, resume, argc, argv,
                                       model_path, d, count, &code);
  if (!journal) {
    radiomics_model_free(&m);
    data_free(data);
    return code;
  }
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  RadiomicsStability r;
  StabilityRow summary[RAD_STABILITY_NOISES + 1];
  int n_images = 0;
  double mean_ssim = NAN;
  Status st =
      radiomics_stability(&m, d, count, &o, journal, cli_sweep_progress, &progress, &r, &err);
  cli_progress_done(&progress);
  const int kinds = RAD_STABILITY_NOISES + 1;
  AtomicFile af;
  if (st == STATUS_OK) st = atomic_open(&af, out, "w", &err);
  if (st == STATUS_OK) {
    fprintf(af.f, "# %s eps %g, %d queries; %d images of %s (%s); mean SSIM %.4f\n",
            radiomics_attack_name(o.kind), o.eps, o.queries, r.n_images, data_path, split,
            r.mean_ssim);
    fprintf(af.f, "feature,ibsi_name,in_model");
    for (int v = 0; v < kinds; v++) fprintf(af.f, ",icc_%s", radiomics_stability_kind(v));
    fprintf(af.f, ",adversarial_sd_per_ssim\n");
    for (int k = 0; k < r.n_features; k++) {
      fprintf(af.f, "%s,", r.tags[k]);
      csv_write_field(af.f, r.names[k]);
      fprintf(af.f, ",%d", r.in_model[k]);
      for (int v = 0; v < kinds; v++) fprintf(af.f, ",%.6g", r.icc[(size_t)k * kinds + v]);
      fprintf(af.f, ",%.6g\n", r.moved_per_ssim[k]);
    }
    st = atomic_commit(&af, &err);
  }
  if (st == STATUS_OK) {
    printf(
        "%d features of %d images of %s; %s at eps %g (mean SSIM %.4f), noise at the same SSIM\n\n",
        r.n_features, r.n_images, data_path, radiomics_attack_name(o.kind), o.eps, r.mean_ssim);
    printf("%-22s %12s %14s %14s\n", "perturbation", "median ICC", "ICC < 0.75", "model's (of)");
    n_images = r.n_images, mean_ssim = r.mean_ssim;
    for (int v = 0; v < kinds; v++) {
      double *icc = malloc(sizeof(double) * r.n_features);
      int finite = 0, poor = 0, poor_model = 0, model = 0;
      for (int k = 0; icc && k < r.n_features; k++) {
        const double x = r.icc[(size_t)k * kinds + v];
        if (isnan(x)) continue;
        icc[finite++] = x, poor += x < 0.75;
        model += r.in_model[k], poor_model += r.in_model[k] && x < 0.75;
      }
      for (int a = 1; icc && a < finite; a++) /* insertion sort for the median */
        for (int b = a; b > 0 && icc[b - 1] > icc[b]; b--) {
          const double t = icc[b];
          icc[b] = icc[b - 1], icc[b - 1] = t;
        }
      printf("%-22s %12.3f %8d of %3d %8d of %3d\n", radiomics_stability_kind(v),
             finite ? icc[finite / 2] : NAN, poor, finite, poor_model, model);
      summary[v] = (StabilityRow){finite ? icc[finite / 2] : NAN, poor, finite, poor_model, model};
      free(icc);
    }
    int *order = malloc(sizeof(int) * r.n_features);
    for (int k = 0; order && k < r.n_features; k++) order[k] = k;
    if (order) qsort_r(order, r.n_features, sizeof(int), by_moved_desc, r.moved_per_ssim);
    printf("\nmoved most by the attack per unit of SSIM lost (clean SDs; * the model reads it):\n");
    for (int a = 0; order && a < 10 && a < r.n_features; a++)
      printf("  %c %-34s %10.2f  ICC adversarial %.3f, gaussian %.3f\n",
             r.in_model[order[a]] ? '*' : ' ', r.tags[order[a]], r.moved_per_ssim[order[a]],
             r.icc[(size_t)order[a] * kinds + RAD_STABILITY_NOISES],
             r.icc[(size_t)order[a] * kinds + 0]);
    free(order);
    printf("\nper feature: %s\n", out);
    radiomics_stability_free(&r);
    st = write_stability_json(out, summary, n_images, mean_ssim, &err);
    if (st != STATUS_OK) fprintf(stderr, "medrobust: %s\n", err.msg);
  } else {
    fprintf(stderr, "medrobust: %s\n", err.msg);
  }
  if (st != STATUS_OK)
    journal_close(journal);
  else if (cli_journal_finish("radiomics stability", journal))
    st = STATUS_ERR_IO;
  radiomics_model_free(&m);
  data_free(data);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}

int cmd_radiomics(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "extract") == 0) return extract(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "train") == 0) return train_model(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "attack") == 0) return attack_cmd(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "stability") == 0) return stability_cmd(argc - 1, argv + 1);
  FILE *f = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
  fprintf(
      f,
      "usage: medrobust radiomics extract (--image F.nii [--mask M.nii] | --data D) --out "
      "F.csv\n       medrobust radiomics train --data D --out M.json [options]\n       medrobust "
      "radiomics attack --model M.json --data D --out DIR [options]\n'medrobust "
      "radiomics COMMAND --help' lists the options.\n");
  return f == stdout ? 0 : EXIT_USAGE;
}
