/* medrobust evaluate | predict: metrics of a model on a split, and
 * per-image predictions as CSV. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "cli.h"
#include "medrobust.h"

typedef struct {
  Net *net;
  DataSplits *data;
  const Dataset *set;
  float *probs;
  int k;
} Loaded;

static void loaded_free(Loaded *l) {
  free(l->probs);
  net_free(l->net);
  data_free(l->data);
}

/* Model + data matched to it + probabilities for the split; returns an exit
 * code, having freed everything when it is not 0. */
static int load_and_predict(Loaded *l, const char *model, const char *data_path,
                            const char *split_text, const CliDataArgs *dargs, int batch) {
  memset(l, 0, sizeof *l);
  const int split = cli_split("evaluate", split_text);
  if (split < 0) return EXIT_USAGE;
  if (!cli_load_model_data(model, data_path, dargs, &l->net, &l->data)) return EXIT_RUNTIME;
  MrError err = {0};
  l->set = &l->data->split[split];
  l->k = net_num_classes(l->net);
  l->probs = malloc(sizeof(float) * ((size_t)l->set->n * l->k + 1));
  if (!l->probs || net_predict_dataset(l->net, l->set, batch, l->probs, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", l->probs ? err.msg : "out of memory");
    loaded_free(l);
    return EXIT_RUNTIME;
  }
  return 0;
}

int cmd_evaluate(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test";
  int json = 0, batch = 256;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--json", OPT_FLAG, &json, 0, 0, NULL, "machine-readable output"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per forward pass"},
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {{"--model", PATH_IN}, {"--data", PATH_IN}, {0}};
  const CliSpec spec = {
      "evaluate", "evaluate --model M --data D [options]",
      "Accuracy, balanced accuracy, ROC AUC (one-vs-rest for more than two classes) and\n"
      "the confusion matrix of a model on one split.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path) {
    fprintf(stderr, "medrobust evaluate: --model and --data are required (see --help)\n");
    return EXIT_USAGE;
  }
  Loaded l;
  const int code = load_and_predict(&l, model, data_path, split, &dargs, batch);
  if (code) return code;
  MrError err = {0};
  Metrics m;
  if (l.data->unlabelled) {
    fprintf(stderr,
            "medrobust evaluate: %s has no labels; 'medrobust predict' lists what the "
            "model answers\n",
            data_path);
    loaded_free(&l);
    return EXIT_RUNTIME;
  }
  if (metrics_compute(&m, l.probs, l.set->labels, l.set->n, l.k, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    loaded_free(&l);
    return EXIT_RUNTIME;
  }
  char buf[16];
  if (json) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "data", data_path);
    cJSON_AddStringToObject(root, "split", split);
    cJSON_AddNumberToObject(root, "n", m.n);
    cJSON_AddNumberToObject(root, "accuracy", m.accuracy);
    cJSON_AddNumberToObject(root, "balanced_accuracy", m.balanced_accuracy);
    cJSON_AddStringToObject(root, "majority_class", net_class_name(l.net, m.majority_class, buf));
    cJSON_AddNumberToObject(root, "majority_share", m.majority_share);
    cJSON *sens = cJSON_AddArrayToObject(root, "sensitivity");
    cJSON *spec = cJSON_AddArrayToObject(root, "specificity");
    for (int c = 0; c < l.k; c++) {
      double se, sp;
      confusion_rates(m.confusion, l.k, c, &se, &sp);
      cJSON_AddItemToArray(sens, se >= 0 ? cJSON_CreateNumber(se) : cJSON_CreateNull());
      cJSON_AddItemToArray(spec, sp >= 0 ? cJSON_CreateNumber(sp) : cJSON_CreateNull());
    }
    if (m.auc >= 0)
      cJSON_AddNumberToObject(root, "roc_auc", m.auc);
    else
      cJSON_AddNullToObject(root, "roc_auc");
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    cJSON *conf = cJSON_AddArrayToObject(root, "confusion");
    for (int i = 0; i < l.k; i++) {
      cJSON_AddItemToArray(classes, cJSON_CreateString(net_class_name(l.net, i, buf)));
      cJSON_AddItemToArray(conf, cJSON_CreateIntArray(m.confusion + i * l.k, l.k));
    }
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
  } else {
    printf("%s on %s (%s, %d images)\n", model, data_path, split, m.n);
    printf("accuracy           %.2f%%\nbalanced accuracy  %.2f%%\n", 100 * m.accuracy,
           100 * m.balanced_accuracy);
    if (m.auc >= 0)
      printf("ROC AUC            %.4f%s\n", m.auc, l.k > 2 ? " (macro one-vs-rest)" : "");
    printf("majority baseline  %.2f%% (always answering '%s'; balanced %.0f%%)\n",
           100 * m.majority_share, net_class_name(l.net, m.majority_class, buf), 100.0 / l.k);
    printf("\n%-16s %12s %12s\n", "class", "sensitivity", "specificity");
    for (int c = 0; c < l.k; c++) {
      double se, sp;
      confusion_rates(m.confusion, l.k, c, &se, &sp);
      printf("%-16.16s %11.2f%% %11.2f%%\n", net_class_name(l.net, c, buf), 100 * se, 100 * sp);
    }
    printf("\nconfusion (rows: true class, columns: predicted)\n%16s", "");
    for (int j = 0; j < l.k; j++) printf(" %12.12s", net_class_name(l.net, j, buf));
    printf("\n");
    for (int i = 0; i < l.k; i++) {
      printf("%16.16s", net_class_name(l.net, i, buf));
      for (int j = 0; j < l.k; j++) printf(" %12d", m.confusion[i * l.k + j]);
      printf("\n");
    }
  }
  metrics_free(&m);
  loaded_free(&l);
  return 0;
}

/* Per volume (DICOM or NIfTI, its slices named VOLUME:Z): the mean of its slices' class
 * probabilities, and its argmax, into OUT with .volumes.csv for .csv; the volume accuracy
 * when labelled. */
static int write_volume_predictions(const Loaded *l, const char *out) {
  char path[4200], id[4200], buf[16], col[MR_ARCH_LEN + 256];
  const size_t len = strlen(out);
  snprintf(path, sizeof path, "%.*s.volumes.csv",
           (int)(len > 4 && !strcmp(out + len - 4, ".csv") ? len - 4 : len), out);
  AtomicFile af;
  MrError err = {0};
  double *mean = calloc(l->k, sizeof(double));
  if (!mean || atomic_open(&af, path, "w", &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", mean ? err.msg : "out of memory");
    free(mean);
    return EXIT_RUNTIME;
  }
  fprintf(af.f, "volume,id,slices,true,predicted,confidence");
  for (int j = 0; j < l->k; j++) {
    snprintf(col, sizeof col, "p_%s", net_class_name(l->net, j, buf));
    fputc(',', af.f);
    csv_write_field(af.f, col);
  }
  fputc('\n', af.f);
  int volumes = 0, right = 0, labelled = 0;
  for (int i = 0; i < l->set->n;) {
    const int j = dataset_volume_end(l->set, i);
    if (!l->set->volume || l->set->volume[i] < 0) { /* a 2-D image beside the volumes */
      i = j;
      continue;
    }
    const int pred = volume_mean_prediction(l->probs, l->k, i, j, mean);
    const int y = l->set->labels[i];
    csv_write_field(af.f, dataset_volume_name(l->set, i, id, sizeof id));
    fprintf(af.f, ",%s,%d,", dataset_volume_hash(l->set, i, j, id, sizeof id), j - i);
    csv_write_field(af.f, y >= 0 ? net_class_name(l->net, y, buf) : "");
    fputc(',', af.f);
    csv_write_field(af.f, net_class_name(l->net, pred, buf));
    fprintf(af.f, ",%.6f", mean[pred]);
    for (int c = 0; c < l->k; c++) fprintf(af.f, ",%.6g", mean[c]);
    fputc('\n', af.f);
    volumes++, labelled += y >= 0, right += y >= 0 && pred == y;
    i = j;
  }
  free(mean);
  if (atomic_commit(&af, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  printf("wrote %d volume predictions (the mean of each volume's slice probabilities) to %s",
         volumes, path);
  if (labelled) printf("; volume accuracy %.2f%%", 100.0 * right / labelled);
  printf("\n");
  return 0;
}

int cmd_predict(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL;
  int batch = 256, smooth_n = 10000, quiet = 0;
  float smooth_sigma = 0.0f, smooth_alpha = 0.001f;
  uint64_t smooth_seed = 1;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " F.csv", "output CSV (required)"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per forward pass"},
      {"--smooth", OPT_FLOAT, &smooth_sigma, 1e-6, 100, " SIGMA",
       "add a 'smoothed' column: the randomized-smoothing prediction at this noise std, or "
       "'abstain' (Cohen et al. 2019's PREDICT)"},
      {"--n", OPT_INT, &smooth_n, 1, 2000000000, " N", "--smooth: noisy samples per image"},
      {"--alpha", OPT_FLOAT, &smooth_alpha, 1e-12, 0.5, " A",
       "--smooth: abstain unless the binomial test's p-value is at most A"},
      {"--seed", OPT_U64, &smooth_seed, 0, 0, " S", "--smooth: noise seed"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "predict", "predict --model M --data D --out F.csv [options]",
      "One CSV row per image: its file (or array index), true class (empty when\n"
      "unlabelled), predicted class, its confidence and every class probability.\n"
      "Takes unlabelled folders (images without class subfolders).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust predict: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  Loaded l;
  const int code = load_and_predict(&l, model, data_path, split, &dargs, batch);
  if (code) return code;
  MrError err = {0};
  int *smoothed = NULL;
  if (smooth_sigma > 0) {
    SmoothOptions so = smooth_options_default();
    so.sigma = smooth_sigma, so.n = smooth_n, so.alpha = smooth_alpha, so.seed = smooth_seed;
    so.batch = batch < smooth_n ? batch : smooth_n;
    smoothed = malloc(sizeof(int) * (l.set->n + 1));
    Status st = smoothed
                    ? STATUS_OK
                    : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory for %d images", l.set->n);
    CliProgress progress;
    cli_progress_init(&progress, quiet);
    const size_t per = (size_t)net_input_size(l.net);
    for (int i = 0; st == STATUS_OK && i < l.set->n; i++) {
      cli_sweep_progress("predict: smoothed predictions", i, l.set->n, &progress);
      st = smooth_predict(l.net, &so, l.set->images + per * i, (uint64_t)i, &smoothed[i], &err);
    }
    cli_progress_done(&progress);
    if (st != STATUS_OK) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      free(smoothed);
      loaded_free(&l);
      return EXIT_RUNTIME;
    }
  }
  AtomicFile af;
  if (atomic_open(&af, out, "w", &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    free(smoothed);
    loaded_free(&l);
    return EXIT_RUNTIME;
  }
  FILE *f = af.f;
  char buf[16], id[64], col[MR_ARCH_LEN + 256];
  fprintf(f, "file,id,true,predicted,confidence%s", smoothed ? ",smoothed" : "");
  for (int j = 0; j < l.k; j++) {
    snprintf(col, sizeof col, "p_%s", net_class_name(l.net, j, buf));
    fputc(',', f);
    csv_write_field(f, col);
  }
  fprintf(f, "\n");
  for (int i = 0; i < l.set->n; i++) {
    const float *p = l.probs + (size_t)i * l.k;
    const int y = l.set->labels[i], pred = argmax(p, l.k);
    csv_write_field(f, dataset_image_id(l.set, i, id, sizeof id));
    fprintf(f, ",%s,", dataset_image_hash(l.set, i, id, sizeof id));
    csv_write_field(f, y >= 0 ? net_class_name(l.net, y, buf) : "");
    fputc(',', f);
    csv_write_field(f, net_class_name(l.net, pred, buf));
    fprintf(f, ",%.6f", p[pred]);
    if (smoothed) {
      fputc(',', f);
      csv_write_field(
          f, smoothed[i] == SMOOTH_ABSTAIN ? "abstain" : net_class_name(l.net, smoothed[i], buf));
    }
    for (int j = 0; j < l.k; j++) fprintf(f, ",%.6g", p[j]);
    fprintf(f, "\n");
  }
  free(smoothed);
  if (atomic_commit(&af, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    loaded_free(&l);
    return EXIT_RUNTIME;
  }
  printf("wrote %d predictions to %s\n", l.set->n, out);
  const int code_volumes = l.data->volumes ? write_volume_predictions(&l, out) : 0;
  loaded_free(&l);
  return code_volumes;
}
