/* What the commands that attack or evaluate a trained model share: loading
 * the model with data matched to its input, the --split value, output folders. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_load_model_data(const char *model, const char *data_path, uint64_t seed, Net **net,
                        DataSplits **data) {
  MrError err = {0};
  *data = NULL;
  *net = safetensors_load_net(model, &err);
  if (*net) {
    DataOptions dopt = {
        .size = net_spec(*net)->in_h, .channels = net_spec(*net)->in_c, .seed = seed};
    *data = data_load(data_path, &dopt, &err);
  }
  if (!*net || !*data || data_match_model(*data, *net, &err) != STATUS_OK) {
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
