/* medrobust data phantom | info: make the built-in phantom set, describe a set. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "cli.h"
#include "medrobust.h"

static int data_phantom(int argc, char **argv) {
  const char *out = NULL, *task = "classify";
  int size = 28, n = 2000;
  uint64_t seed = 1;
  const CliOption options[] = {
      {"--task", OPT_STRING, &task, 0, 0, " classify|segment",
       "segment: lesion masks (background, benign, malignant), one or two lesions per image"},
      {"--out", OPT_STRING, &out, 0, 0, " F.npz", "output file, MedMNIST layout (required)"},
      {"--size", OPT_INT, &size, 28, 64, " 28|64", "image size"},
      {"--n", OPT_INT, &n, 20, 1000000, " N", "images in all (70/10/20 train/val/test, balanced)"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "random seed"},
      {0}};
  const CliPath path_roles[] = {{"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "data phantom", "data phantom --out F.npz [options]",
      "Writes the synthetic CT-like lesion phantom: benign (smooth, round) vs malignant\n"
      "(lobulated, spiculated) lesions in textured tissue with acquisition noise.\n"
      "With --task segment, {split}_masks arrays mark every pixel background (0),\n"
      "benign (1) or malignant lesion (2).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!out) {
    fprintf(stderr, "medrobust data phantom: --out is required\n");
    return EXIT_USAGE;
  }
  if (size != 28 && size != 64) {
    fprintf(stderr, "medrobust data phantom: --size must be 28 or 64\n");
    return EXIT_USAGE;
  }
  const int segment = strcmp(task, "segment") == 0;
  if (!segment && strcmp(task, "classify") != 0) {
    fprintf(stderr, "medrobust data phantom: --task must be classify or segment, got '%s'\n", task);
    return EXIT_USAGE;
  }
  MrError err = {0};
  DataSplits *d = segment ? phantom_generate_segment(size, n, seed, &err)
                          : phantom_generate(size, n, seed, &err);
  if (!d || data_save_npz(d, out, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    data_free(d);
    return EXIT_RUNTIME;
  }
  printf("wrote %s: %d train, %d val, %d test images of %dx%d, %s\n", out, d->split[0].n,
         d->split[1].n, d->split[2].n, size, size,
         segment ? "masks background/benign/malignant" : "classes benign/malignant");
  data_free(d);
  return 0;
}

/* Every image's file (or array index), label and split, atomically. */
static int write_listing(const DataSplits *d, const char *path) {
  AtomicFile af;
  MrError err = {0};
  if (atomic_open(&af, path, "w", &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return 0;
  }
  FILE *f = af.f;
  fprintf(f, "path,id,label,split\n");
  for (int s = 0; s < SPLIT_COUNT; s++)
    for (int i = 0; i < d->split[s].n; i++) {
      char id[64];
      const int y = d->split[s].labels[i];
      csv_write_field(f, dataset_image_id(&d->split[s], i, id, sizeof id));
      fprintf(f, ",%s,", dataset_image_hash(&d->split[s], i, id, sizeof id));
      csv_write_field(f, y >= 0 && d->class_names[y] ? d->class_names[y] : "");
      fprintf(f, ",%s\n", split_name((Split)s));
    }
  if (atomic_commit(&af, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return 0;
  }
  return 1;
}

static int data_info(int argc, char **argv) {
  DataOptions opt = {.seed = DEFAULT_SPLIT_SEED};
  const char *file[1] = {NULL}, *fit = "crop", *model = NULL, *list = NULL;
  CliVolumeArgs vargs = {0};
  int n_pos = 0;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--size", OPT_INT, &opt.size, 0, 1024, " N", "resize to NxN (0 keeps; image folders: 64)"},
      {"--channels", OPT_INT, &opt.channels, 0, 3, " C", "1 or 3 (0 keeps; image folders: 1)"},
      {"--fit", OPT_STRING, &fit, 0, 0, " crop|pad|stretch", "non-square image files, as train"},
      CLI_VOLUME_OPTIONS(vargs),
      {"--model", OPT_STRING, &model, 0, 0, " M",
       "the split and input this model recorded (as every command that uses it)"},
      {"--list", OPT_STRING, &list, 0, 0, " F.csv",
       "write every image's file, label and split to F.csv"},
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {CLI_POSITIONAL, PATH_IN}, {"--model", PATH_IN}, {"--list", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {"data info", "data info FILE [options]",
                        "Prints the splits, shapes, value range and class counts of a data set\n"
                        "(.npz, image folder, .csv manifest, IDX folder or 'fashion-mnist'):\n"
                        "the same split train makes (or, with --model, the model's).",
                        options, path_roles};
  int rc = cli_parse(&spec, argc, argv, file, 1, &n_pos);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (n_pos != 1) {
    fprintf(stderr, "medrobust data info: which file? (see --help)\n");
    return EXIT_USAGE;
  }
  DataCheck check;
  if (!cli_data_check("data info", &dargs, &check)) return EXIT_USAGE;
  if (fit_parse(fit) < 0) {
    fprintf(stderr, "medrobust data info: --fit must be crop, pad or stretch, got '%s'\n", fit);
    return EXIT_USAGE;
  }
  opt.fit = (FitMode)fit_parse(fit), opt.split_file = dargs.split_file;
  if (!cli_volume_options("data info", &vargs, &opt)) return EXIT_USAGE;
  if (check.split_seed_given) opt.seed = check.split_seed;
  MrError err = {0};
  DataSplits *d = NULL;
  if (model) {
    Net *net = NULL;
    if (!cli_load_model_data(model, file[0], &dargs, &net, &d)) return EXIT_RUNTIME;
    net_free(net);
  } else {
    d = data_load(file[0], &opt, &err);
    if (!d) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      return EXIT_RUNTIME;
    }
    cli_data_notes(d);
  }
  if (list && !write_listing(d, list)) {
    data_free(d);
    return EXIT_RUNTIME;
  }
  printf("%s\n", d->source);
  if (d->split_kind != SPLIT_FIXED)
    printf("listing %016llx, split %016llx (the hashes a model file records)\n",
           (unsigned long long)d->listing_hash, (unsigned long long)d->assignment_hash);
  if (d->bits)
    printf("stored as %d-bit: one grey level is %.6g on the [0,1] scale\n", d->bits,
           data_grey_step(d->bits));
  printf("%d classes:", d->n_classes);
  for (int k = 0; k < d->n_classes; k++)
    printf(" %d=%s", k, d->class_names[k] ? d->class_names[k] : "?");
  printf("\n\n%-6s %7s %11s %15s %8s  %s\n", "split", "images", "shape", "range", "mean",
         d->segment ? "% of the pixels per class" : "class counts");
  for (int s = 0; s < SPLIT_COUNT; s++) {
    const Dataset *ds = &d->split[s];
    const size_t n = (size_t)ds->n * ds->c * ds->h * ds->w;
    float lo = n ? ds->images[0] : 0, hi = lo;
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
      if (ds->images[i] < lo) lo = ds->images[i];
      if (ds->images[i] > hi) hi = ds->images[i];
      mean += ds->images[i];
    }
    char shape[32], range[32];
    snprintf(shape, sizeof shape, "%dx%dx%d", ds->c, ds->h, ds->w);
    snprintf(range, sizeof range, "[%.3f, %.3f]", lo, hi);
    printf("%-6s %7d %11s %15s %8.4f ", split_name((Split)s), ds->n, shape, range,
           n ? mean / n : 0.0);
    for (int k = 0; k < d->n_classes; k++) {
      long c = 0;
      if (d->segment)
        for (size_t i = 0; i < (size_t)ds->n * ds->h * ds->w; i++) c += ds->masks[i] == k;
      else
        for (int i = 0; i < ds->n; i++) c += ds->labels[i] == k;
      if (d->segment)
        printf(" %.1f", ds->n ? 100.0 * c / ((double)ds->n * ds->h * ds->w) : 0.0);
      else
        printf(" %ld", c);
    }
    printf("\n");
  }
  data_free(d);
  return 0;
}

int cmd_data(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "phantom") == 0) return data_phantom(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "info") == 0) return data_info(argc - 1, argv + 1);
  FILE *f = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
  fprintf(f,
          "usage: medrobust data phantom --out F.npz [--size 28|64] [--n N] [--seed S]\n"
          "       medrobust data info FILE\n"
          "'medrobust data phantom --help' and 'medrobust data info --help' list the options.\n");
  return f == stdout ? 0 : EXIT_USAGE;
}
