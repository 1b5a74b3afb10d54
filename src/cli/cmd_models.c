/* medrobust models: every family with its parameter count and FLOPs at the
 * requested input size. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

static void models_usage(FILE *f) {
  fprintf(f,
          "usage: medrobust models [--size N] [--channels C] [--classes K] [--width W]\n\n"
          "Lists the model families with trainable parameters and forward FLOPs per image.\n"
          "  --size N      input height and width (default 28)\n"
          "  --channels C  1 (grayscale) or 3 (RGB) (default 1)\n"
          "  --classes K   number of classes (default 2)\n"
          "  --width W     channel multiplier (default 1)\n");
}

int cmd_models(int argc, char **argv) {
  int size = 28, channels = 1, classes = 2;
  float width = 1.0f;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--help") == 0) {
      models_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--size") == 0) {
      if (!cli_parse_int("models", "--size", v, 28, 1024, &size)) return EXIT_USAGE;
      i++;
    } else if (strcmp(argv[i], "--channels") == 0) {
      if (!cli_parse_int("models", "--channels", v, 1, 3, &channels) || channels == 2) {
        if (channels == 2) fprintf(stderr, "medrobust models: --channels must be 1 or 3\n");
        return EXIT_USAGE;
      }
      i++;
    } else if (strcmp(argv[i], "--classes") == 0) {
      if (!cli_parse_int("models", "--classes", v, 2, MR_MAX_CLASSES, &classes)) return EXIT_USAGE;
      i++;
    } else if (strcmp(argv[i], "--width") == 0) {
      if (!cli_parse_float("models", "--width", v, 0.01f, 16.0f, &width)) return EXIT_USAGE;
      i++;
    } else {
      fprintf(stderr, "medrobust models: unknown option '%s'\n", argv[i]);
      models_usage(stderr);
      return EXIT_USAGE;
    }
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
