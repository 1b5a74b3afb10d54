/* medrobust demo: the main job on built-in data. Generates the lesion
 * phantom, trains a small CNN and a ResNet-8 on it and evaluates both on the
 * held-out test split. Later stages (attacks, triage, hardening, report) join
 * as they land. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "medrobust.h"

static int demo_train(const char *arch, const DataSplits *data, const char *dir, uint64_t seed,
                      int epochs, int quiet, Metrics *m) {
  MrError err = {0};
  const Dataset *tr = &data->split[SPLIT_TRAIN];
  ModelSpec spec = model_spec_default(arch, tr->c, tr->h, tr->w, data->n_classes);
  for (int k = 0; k < data->n_classes; k++) spec.class_names[k] = strdup(data->class_names[k]);
  spec.norm_mean[0] = 0.5f, spec.norm_std[0] = 0.25f;
  Net *net = model_build(&spec, seed, &err);
  model_spec_free(&spec);
  if (!net) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  char out[4096], ckpt[4200];
  snprintf(out, sizeof out, "%s/%s.safetensors", dir, arch);
  snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
  TrainOptions o = train_options_default();
  o.epochs = epochs, o.seed = seed, o.out = out, o.checkpoint = ckpt;
  TrainResult res;
  if (!quiet) fprintf(stderr, "training %s (%zu parameters)\n", arch, net_param_count(net));
  Status s = train_run(net, data, &o, cli_train_progress, &quiet, &res, &err);
  net_free(net);
  Net *best = s == STATUS_OK ? safetensors_load_net(out, &err) : NULL;
  const Dataset *test = &data->split[SPLIT_TEST];
  float *probs = malloc(sizeof(float) * ((size_t)test->n * data->n_classes + 1));
  if (!best || !probs || net_predict_dataset(best, test, 256, probs, &err) != STATUS_OK ||
      metrics_compute(m, probs, test->labels, test->n, data->n_classes, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    free(probs);
    net_free(best);
    return EXIT_RUNTIME;
  }
  free(probs);
  net_free(best);
  return 0;
}

int cmd_demo(int argc, char **argv) {
  const char *dir = "medrobust-demo";
  int n = 4000, epochs = 12, quiet = 0;
  uint64_t seed = 1;
  const CliOption options[] = {
      {"--out", OPT_STRING, &dir, 0, 0, " DIR", "folder for the data, models and results"},
      {"--n", OPT_INT, &n, 100, 1000000, " N", "phantom images"},
      {"--epochs", OPT_INT, &epochs, 1, 1000, " N", "training epochs per model"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "random seed"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {0}};
  const CliSpec spec = {
      "demo", "demo [options]",
      "The main job on built-in data: makes the synthetic lesion phantom, trains a small\n"
      "CNN and a ResNet-8 and evaluates them on held-out images.",
      options};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  const double t0 = omp_get_wtime();
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "medrobust: %s: cannot create: %s\n", dir, strerror(errno));
    return EXIT_RUNTIME;
  }
  MrError err = {0};
  DataSplits *data = phantom_generate(28, n, seed, &err);
  char path[4096];
  snprintf(path, sizeof path, "%s/phantom.npz", dir);
  if (!data || data_save_npz(data, path, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    data_free(data);
    return EXIT_RUNTIME;
  }
  printf("1. data: %s -> %s\n", data->source, path);
  const char *archs[] = {"cnn", "resnet8"};
  Metrics m[2];
  for (int a = 0; a < 2; a++) {
    if (demo_train(archs[a], data, dir, seed, epochs, quiet, &m[a])) {
      data_free(data);
      return EXIT_RUNTIME;
    }
    printf("%d. trained %s -> %s/%s.safetensors\n", a + 2, archs[a], dir, archs[a]);
  }
  printf("\ntest split (%d images)   accuracy   balanced   ROC AUC\n", data->split[SPLIT_TEST].n);
  for (int a = 0; a < 2; a++) {
    printf("  %-22s %7.2f%%   %7.2f%%   %7.4f\n", archs[a], 100 * m[a].accuracy,
           100 * m[a].balanced_accuracy, m[a].auc);
    metrics_free(&m[a]);
  }
  printf("\ndone in %.1f s; models and data in %s/\n", omp_get_wtime() - t0, dir);
  data_free(data);
  return 0;
}
