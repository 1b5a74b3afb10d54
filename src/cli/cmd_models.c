/* medrobust models: every family with its parameter count and FLOPs at the
 * requested input size; models --file F (and medrobust info F): a model
 * file's own graph, op by op, with shapes, parameters and FLOPs. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

static void shape_text(char *buf, size_t n, const int *d, int ndim) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%d", i ? "x" : "", d[i]);
}

static int print_graph(const char *path) {
  MrError err = {0};
  Net *net = model_load(path, &err);
  if (!net) {
    fprintf(stderr, "medrobust info: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  const ModelSpec *s = net_spec(net);
  const int pixels = net_output_pixels(net);
  printf("%s: %s, input %dx%dx%d, %d classes, %s output\n", path, s->arch, s->in_c, s->in_h,
         s->in_w, s->n_classes, pixels > 1 ? "per-pixel (segmentation)" : "per-image");
  printf("%zu parameters, %.2f MFLOPs per image, %d ops\n", net_param_count(net),
         net_flops(net) / 1e6, net_layer_count(net));
  char buf[16];
  printf("classes:");
  for (int k = 0; k < s->n_classes && k < 20; k++) printf(" %s", net_class_name(net, k, buf));
  printf("%s\ntrained on: %s\ntraining: %s\n\n", s->n_classes > 20 ? " ..." : "",
         s->data[0] ? s->data : "(not recorded: made before medrobust 0.5)",
         s->training[0] ? s->training : "(not recorded)");
  printf("%5s  %-16s %-28s %-14s %-14s %10s %9s\n", "#", "op", "name", "inputs", "output", "params",
         "MFLOPs");
  for (int i = 0; i < net_layer_count(net); i++) {
    const NetLayerInfo l = net_layer_info(net, i);
    char inputs[64] = "", out[48];
    size_t used = 0;
    for (int k = 0; k < l.n_inputs && used < sizeof inputs; k++)
      used +=
          (size_t)snprintf(inputs + used, sizeof inputs - used, "%s%d", k ? "," : "", l.inputs[k]);
    shape_text(out, sizeof out, l.out, l.out_ndim);
    printf("%5d  %-16s %-28s %-14s %-14s %10zu %9.2f\n", i + 1, l.op, l.name[0] ? l.name : "-",
           inputs, out, l.params, l.flops / 1e6);
  }
  printf("\n(tensor 0 is the input; op N writes tensor N)\n");
  net_free(net);
  return 0;
}

int cmd_info(int argc, char **argv) {
  const CliOption options[] = {{0}};
  const CliSpec spec = {"info", "info MODEL.safetensors",
                        "Prints the graph a model file carries: every op, its inputs, output "
                        "shape,\nparameters and FLOPs.",
                        options, NULL};
  const char *path = NULL;
  int n = 0;
  const int rc = cli_parse(&spec, argc, argv, &path, 1, &n);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (n != 1) {
    cli_usage(stderr, &spec);
    return EXIT_USAGE;
  }
  return print_graph(path);
}

int cmd_models(int argc, char **argv) {
  int size = 28, channels = 1, classes = 2;
  float width = 1.0f;
  const char *file = NULL;
  const CliOption options[] = {
      {"--size", OPT_INT, &size, 28, 1024, " N", "input height and width"},
      {"--channels", OPT_INT, &channels, 1, 3, " C", "1 (grayscale) or 3 (RGB)"},
      {"--classes", OPT_INT, &classes, 2, MR_MAX_CLASSES, " K", "number of classes"},
      {"--width", OPT_FLOAT, &width, 0.01, 16, " W", "channel multiplier"},
      {"--file", OPT_STRING, &file, 0, 0, " F",
       "print the graph of model file F instead (as medrobust info F)"},
      {0}};
  const CliSpec spec = {"models", "models [--size N] [--channels C] [--classes K] [--width W]",
                        "Lists the model families with trainable parameters and forward FLOPs "
                        "per image,\nor the graph a model file carries (--file).",
                        options, NULL};
  const int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (file) return print_graph(file);
  if (channels == 2) {
    fprintf(stderr, "medrobust models: --channels must be 1 or 3\n");
    return EXIT_USAGE;
  }
  printf("input %dx%dx%d, %d classes, width %g\n\n", channels, size, size, classes, width);
  printf("%-12s %12s %12s  %s\n", "model", "params", "MFLOPs/img", "description");
  for (int i = 0; i < model_family_count(); i++) {
    const ModelFamilyInfo *info = model_family_info(i);
    ModelSpec spec = model_spec_default(info->name, channels, size, size, classes);
    spec.width = width;
    MrError err = {0};
    Net *net = model_build(&spec, 0, &err);
    if (!net) {
      printf("%-12s %12s %12s  %s\n", info->name, "-", "-", err.msg);
      continue;
    }
    printf("%-12s %12zu %12.1f  %s\n", info->name, net_param_count(net), net_flops(net) / 1e6,
           info->description);
    net_free(net);
  }
  return 0;
}
