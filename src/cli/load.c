/* What the commands that attack or evaluate a trained model share: loading
 * the model with data matched to its input, the --split value, output folders. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_data_check(const char *cmd, const CliDataArgs *a, DataCheck *out) {
  memset(out, 0, sizeof *out);
  out->split_file = a->split_file, out->allow_mismatch = a->allow_mismatch;
  if (!a->split_seed) return 1;
  char *end = NULL;
  out->split_seed = strtoull(a->split_seed, &end, 10);
  if (!a->split_seed[0] || *end || a->split_seed[0] == '-') {
    fprintf(stderr, "medrobust %s: --split-seed must be a non-negative integer, got '%s'\n", cmd,
            a->split_seed);
    return 0;
  }
  out->split_seed_given = 1;
  return 1;
}

void cli_data_notes(const DataSplits *d) {
  if (d->skipped)
    fprintf(stderr, "medrobust: warning: skipped %d file%s that %s (%s%s)\n", d->skipped,
            d->skipped == 1 ? "" : "s",
            d->skipped == 1 ? "is not a PNG, JPEG, DICOM or NIfTI image"
                            : "are not PNG, JPEG, DICOM or NIfTI images",
            d->skipped_example, d->skipped > 1 ? ", ..." : "");
  if (d->volumes && d->window.width > 0) {
    char w[96];
    window_describe(&d->window, w, sizeof w);
    fprintf(stderr, "medrobust: %d DICOM/NIfTI volumes read as axial slices%s, window %s",
            d->volumes, d->mask_slices ? " (those their masks touch)" : "", w);
    if (d->spacing > 0) fprintf(stderr, ", resampled to %g mm per pixel", d->spacing);
    fprintf(stderr, "\n");
  } else if (d->volumes) {
    fprintf(stderr,
            "medrobust: warning: %d DICOM/NIfTI volumes each scaled to its own range; give "
            "--window (e.g. lung for CT) so that one value means one tissue in every image\n",
            d->volumes);
  }
}

int cli_load_model_data(const char *model, const char *data_path, const CliDataArgs *a, Net **net,
                        DataSplits **data) {
  MrError err = {0};
  *data = NULL;
  DataCheck check;
  if (!cli_data_check("", a, &check)) return 0;
  *net = model_load(model, &err);
  char warning[512] = "";
  if (*net) *data = data_load_for_model(data_path, *net, &check, warning, sizeof warning, &err);
  if (warning[0]) fprintf(stderr, "medrobust: warning: %s\n", warning);
  if (*data) cli_data_notes(*data);
  if (!*net || !*data) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    net_free(*net);
    data_free(*data);
    *net = NULL, *data = NULL;
    return 0;
  }
  return 1;
}

int cli_split(const char *cmd, const char *text) {
  const int s = split_parse(text);
  if (s < 0)
    fprintf(stderr, "medrobust %s: --split must be train, val or test, got '%s'\n", cmd, text);
  return s;
}

int cli_make_dir(const char *dir) {
  if (mkdir(dir, 0755) == 0 || errno == EEXIST) return 1;
  fprintf(stderr, "medrobust: %s: cannot create: %s\n", dir, strerror(errno));
  return 0;
}
