/* Loading a model and a data set matched to its input, shared by the
 * commands that attack or evaluate a trained model. */
#include <stdio.h>

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
