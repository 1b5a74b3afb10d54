/* medrobust: entry point and subcommand table. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

static const CliCommand commands[] = {
    {"demo", "the main job on the built-in phantom: train, attack, triage, harden, compare, report",
     cmd_demo, 0},
    {"models", "list the model families with parameters and FLOPs", cmd_models, 0},
    {"info", "the graph a model file carries: ops, shapes, parameters, FLOPs", cmd_info, 0},
    {"import", "an ONNX model into a model file (exact input gradients for attacks)", cmd_import,
     0},
    {"export", "a model file as ONNX (opset 13), for PyTorch and ONNX Runtime users", cmd_export,
     0},
    {"data", "make the built-in phantom set (data phantom), describe a set (data info)", cmd_data,
     0},
    {"train", "train a model (or adversarially: --adv pgd|fgsm-rs), with checkpoints and --resume",
     cmd_train, 1},
    {"evaluate", "accuracy, balanced accuracy, ROC AUC and confusion matrix", cmd_evaluate, 0},
    {"predict", "per-image predictions and probabilities as CSV", cmd_predict, 0},
    {"attack", "adversarial images (float32) with the 8/12/16-bit survival check", cmd_attack, 1},
    {"eval", "robustness sweep: attacks x eps, noise contrast, self-checks", cmd_eval, 1},
    {"report", "render DIR/report.html from the JSON the other commands wrote", cmd_report, 0},
    {"triage", "rank images by the smallest eps that flips them; flag the most fragile", cmd_triage,
     1},
    {"compare", "several models on the same data: robustness table and transfer matrix",
     cmd_compare, 1},
    {"certify", "certified L2 robustness by randomized smoothing, beside PGD-L2", cmd_certify, 1},
    {"radiomics", "IBSI radiomic features of images in their masks (radiomics extract)",
     cmd_radiomics, 0},
    {"saliency", "saliency maps (gradient, SmoothGrad) and a feature embedding, clean vs attacked",
     cmd_saliency, 0},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int cli_parse_int(const char *cmd, const char *opt, const char *text, int min, int max, int *out) {
  char *end;
  errno = 0;
  long v = text ? strtol(text, &end, 10) : 0;
  if (!text || !*text || *end || errno || v < min || v > max) {
    fprintf(stderr, "medrobust%s%s: %s expects an integer in %d..%d, got '%s'\n", *cmd ? " " : "",
            cmd, opt, min, max, text ? text : "(nothing)");
    return 0;
  }
  *out = (int)v;
  return 1;
}

int cli_parse_float(const char *cmd, const char *opt, const char *text, float min, float max,
                    float *out) {
  char *end;
  float v = text ? strtof(text, &end) : 0.0f;
  if (!text || !*text || *end || !isfinite(v) || v < min || v > max) {
    fprintf(stderr, "medrobust%s%s: %s expects a number in %g..%g, got '%s'\n", *cmd ? " " : "",
            cmd, opt, min, max, text ? text : "(nothing)");
    return 0;
  }
  *out = v;
  return 1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: medrobust [global options] COMMAND [options]\n\n"
          "Adversarial robustness of medical image classifiers.\n\n"
          "commands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\nglobal options:\n"
          "  --threads N  OpenMP threads (default: all cores); also --threads=N\n"
          "  --max-megapixels N  largest image a reader decodes (default 40)\n"
          "  --max-file-gb N     largest model file or inflated .npz member (default 16)\n"
          "  --max-inflate-ratio N  an .npz member over 256 MiB inflating more than N times\n"
          "                      is a decompression bomb (default 200; 0: no limit)\n"
          "  --version    the version\n"
          "  --help       this text; 'medrobust COMMAND --help' for a command\n");
}

/* Under MPI every rank runs the command; a command that does not share its work refuses to
 * run several times over, and a rank that fails ends the job rather than leave the others
 * waiting in a collective. */
static int run_command(const CliCommand *c, int argc, char **argv) {
  dist_init(&argc, &argv);
  if (dist_size() > 1 && !c->distributed) {
    if (dist_rank() == 0)
      fprintf(stderr,
              "medrobust %s: runs in one process only (under MPI: train, certify, triage, "
              "eval, attack, compare); run it without mpirun\n",
              c->name);
    dist_finalize();
    return EXIT_USAGE;
  }
  const int rc = c->run(argc, argv);
  if (rc && dist_size() > 1) dist_abort(rc);
  dist_finalize();
  return rc;
}

int main(int argc, char **argv) {
  int i = 1, threads = 0;
  while (i < argc && argv[i][0] == '-') {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("medrobust %s (model files: safetensors with graph schema 1)\n", MEDROBUST_VERSION);
      return 0;
    } else if (strcmp(argv[i], "--max-megapixels") == 0 || strcmp(argv[i], "--max-file-gb") == 0 ||
               strcmp(argv[i], "--max-inflate-ratio") == 0) {
      const int ratio = strcmp(argv[i], "--max-inflate-ratio") == 0;
      float v = 0;
      if (!cli_parse_float("", argv[i], i + 1 < argc ? argv[i + 1] : NULL, ratio ? 0.0f : 1e-6f,
                           1e6f, &v))
        return EXIT_USAGE;
      MrLimits l = mr_limits();
      if (ratio)
        l.inflate_ratio = v;
      else if (strcmp(argv[i], "--max-megapixels") == 0)
        l.image_pixels = (uint64_t)((double)v * (1 << 20));
      else
        l.file_bytes = (uint64_t)((double)v * (1u << 30));
      mr_set_limits(l);
      i += 2;
    } else if (strncmp(argv[i], "--threads=", 10) == 0) {
      if (!cli_parse_int("", "--threads", argv[i] + 10, 1, 256, &threads)) return EXIT_USAGE;
      i++;
    } else if (strcmp(argv[i], "--threads") == 0) {
      if (!cli_parse_int("", "--threads", i + 1 < argc ? argv[i + 1] : NULL, 1, 256, &threads))
        return EXIT_USAGE;
      i += 2;
    } else {
      fprintf(stderr, "medrobust: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  mr_set_threads(threads);
  if (i >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  for (int c = 0; c < N_COMMANDS; c++)
    if (strcmp(argv[i], commands[c].name) == 0)
      return run_command(&commands[c], argc - i, argv + i);
  fprintf(stderr, "medrobust: unknown command '%s'\n", argv[i]);
  usage(stderr);
  return EXIT_USAGE;
}
