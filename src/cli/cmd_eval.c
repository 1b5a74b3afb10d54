/* medrobust eval: the robustness sweep (paper 001 Table 1), with the noise
 * contrast and the self-checks, to stdout and DIR/results.{json,csv}. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "medrobust.h"

int cli_parse_attacks(const char *text, AttackKind *out, int *n) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", text);
  *n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const int k = attack_parse(tok);
    if (k < 0 || *n == MAX_LIST) {
      fprintf(
          stderr,
          "medrobust: unknown attack '%s' (fgsm, bim, pgd, mifgsm, deepfool, cw, square, standard, "
          "apgd-ce, apgd-dlr, fmn)\n",
          tok);
      return 0;
    }
    out[(*n)++] = (AttackKind)k;
  }
  return *n > 0;
}

int cli_eps_valid(const char *cmd, double v, Norm norm, const char *text) {
  /* an L-inf budget above 1 covers every [0,1] image; an L2 one above 10^4 every image up to
   * 3x4096x4096 */
  const double max = norm == NORM_L2 ? 1e4 : 1.0;
  if (v >= 0 && v <= max) return 1;
  fprintf(stderr,
          "medrobust %s: --eps '%s' must be a number in [0, %g] for %s (4/255 notation "
          "accepted)\n",
          cmd, text, max, norm == NORM_L2 ? "L2" : "L-inf");
  return 0;
}

int cli_eps_physical(const char *text) {
  return strstr(text, "HU") || strstr(text, "hu") || strstr(text, "Hu");
}

int cli_parse_eps_list(const char *cmd, const char *text, Norm norm, const IntensityWindow *window,
                       float *out, int *n) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", text);
  *n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    double v = -1;
    if (*n == MAX_LIST) {
      fprintf(stderr, "medrobust %s: --eps lists more than %d values\n", cmd, MAX_LIST);
      return 0;
    }
    /* 5HU: modality units through the data's window; 2%: of the [0,1] range */
    const size_t len = strlen(tok);
    char number[64];
    snprintf(number, sizeof number, "%s", tok);
    if (len > 2 && cli_eps_physical(tok + len - 2)) {
      number[len - 2] = 0;
      if (!window || !(window->width > 0)) {
        fprintf(stderr,
                "medrobust %s: --eps %s is in modality units (HU), but this data has no "
                "intensity window: train on DICOM or NIfTI with --window\n",
                cmd, tok);
        return 0;
      }
      if (cli_parse_number(number, &v) && v >= 0)
        v /= window->width;
      else
        v = -1;
    } else if (len > 1 && tok[len - 1] == '%') {
      number[len - 1] = 0;
      if (cli_parse_number(number, &v) && v >= 0)
        v /= 100;
      else
        v = -1;
    } else if (!cli_parse_number(tok, &v)) {
      v = -1;
    }
    if (!cli_eps_valid(cmd, v, norm, tok)) return 0;
    out[(*n)++] = (float)v;
  }
  if (*n == 0) fprintf(stderr, "medrobust %s: --eps '%s' lists no value\n", cmd, text);
  return *n > 0;
}

int cli_volume_options(const char *cmd, const CliVolumeArgs *a, DataOptions *opt) {
  if (a->window && !window_parse(a->window, &opt->window)) {
    fprintf(stderr, "medrobust %s: --window %s: a preset (%s) or center,width\n", cmd, a->window,
            window_presets());
    return 0;
  }
  if (a->slices && strcmp(a->slices, "all") != 0 && strcmp(a->slices, "mask") != 0) {
    fprintf(stderr, "medrobust %s: --slices must be all or mask, got '%s'\n", cmd, a->slices);
    return 0;
  }
  opt->mask_slices = a->slices && !strcmp(a->slices, "mask");
  opt->spacing = a->spacing;
  return 1;
}

int cli_parse_eps_value(const char *cmd, const char *option, const char *text, Norm norm,
                        const IntensityWindow *window, float *out) {
  float values[MAX_LIST];
  int n = 0;
  if (!cli_parse_eps_list(cmd, text, norm, window, values, &n)) return 0;
  if (n != 1) {
    fprintf(stderr, "medrobust %s: %s takes one value, got '%s'\n", cmd, option, text);
    return 0;
  }
  *out = values[0];
  return 1;
}

int cli_parse_target(const char *text, AttackOptions *o) {
  if (strcmp(text, "none") == 0)
    o->target = TARGET_NONE;
  else if (strcmp(text, "least-likely") == 0 || strcmp(text, "ll") == 0)
    o->target = TARGET_LEAST_LIKELY;
  else {
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || v < 0 || v >= MR_MAX_CLASSES) {
      fprintf(stderr, "medrobust: --target must be none, least-likely or a class index, got '%s'\n",
              text);
      return 0;
    }
    o->target = TARGET_CLASS, o->target_class = (int)v;
  }
  return 1;
}

int cmd_eval(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL,
             *attacks_text = "fgsm,bim,pgd";
  const char *eps_text = "0.001,0.002,0.004,0.006", *norm_text = "linf", *target_text = "none";
  const char *suite = NULL;
  const char *positive = NULL;
  int batch = 128, no_noise = 0, no_checks = 0, quiet = 0, limit = 0, n_examples = 8, resume = 0,
      fresh_eps = 0;
  AttackOptions base = attack_options_default(ATTACK_PGD);
  base.iters = 0; /* each attack's own default */
  CliDataArgs dargs = {0};
  const char *dag_text = "A,B,C";
  AttackOptions dag_o = attack_options_default(ATTACK_DAG);
  DagTargetOptions dag_t = dag_target_options_default();
  float dag_gamma255 = dag_o.gamma * 255.0f;
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR",
       "folder for results.json and results.csv (required)"},
      {"--attacks", OPT_STRING, &attacks_text, 0, 0, " A,B", "attacks to sweep"},
      {"--suite", OPT_STRING, &suite, 0, 0, " standard",
       "APGD-CE, APGD-DLR (margin for 2 classes), Square and their per-image worst case"},
      {"--eps", OPT_STRING, &eps_text, 0, 0, " E,F",
       "perturbation sizes on the [0,1] scale (4/255 and 2% accepted; 5HU in modality units "
       "through the window of a model trained on DICOM/NIfTI)"},
      {"--norm", OPT_STRING, &norm_text, 0, 0, " linf|l2", "threat model"},
      {"--iters", OPT_INT, &base.iters, 0, 100000, " N", "iterations (0: each attack's default)"},
      {"--restarts", OPT_INT, &base.restarts, 1, 1000, " N", "PGD/APGD random restarts"},
      {"--step", OPT_FLOAT, &base.step, 0, 10, " X", "step size (0: the attack's default)"},
      {"--step-rel", OPT_FLOAT, &base.step_rel, 0, 10, " F",
       "step = F x eps (paper 004: 0.1 with 20 iterations)"},
      {"--target", OPT_STRING, &target_text, 0, 0, " none|least-likely|K", "targeted attacks"},
      {"--seed", OPT_U64, &base.seed, 0, 0, " S", "random starts and queries"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per batch"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--fresh-eps", OPT_FLAG, &fresh_eps, 0, 0, NULL,
       "attack every image at every eps (default: an image fooled at a smaller eps counts as "
       "fooled at the larger ones and is not attacked again; with this, the self-check that "
       "accuracy falls with eps runs)"},
      {"--examples", OPT_INT, &n_examples, 0, 1000, " N",
       "example images (first attack, largest eps) for the report"},
      {"--positive", OPT_STRING, &positive, 0, 0, " CLASS",
       "binary tasks: the finding whose misses are counted (default: by its name, else class 1)"},
      {"--dag", OPT_STRING, &dag_text, 0, 0, " A,B,C|none",
       "segmentation: DAG target types (A all background, B random cells to one class, C one "
       "class dilated)"},
      {"--dag-iters", OPT_INT, &dag_o.iters, 1, 100000, " N", "DAG: at most N iterations"},
      {"--dag-gamma", OPT_FLOAT, &dag_gamma255, 0.001, 255, " G",
       "DAG: L-inf size of each step in grey levels of 255 (Xie et al.: 0.5)"},
      {"--dag-eps", OPT_FLOAT, &dag_o.eps, 0, 1, " E", "DAG: L-inf bound (0: unbounded)"},
      {"--dag-threshold", OPT_FLOAT, &dag_o.threshold, 0.01, 1, " F",
       "DAG: done when this share of the pixels (and of those the target changes) is reached"},
      {"--dag-fraction", OPT_FLOAT, &dag_t.fraction, 0, 1, " F", "type B: share of the cells"},
      {"--dag-cell", OPT_INT, &dag_t.cell, 1, 1024, " N", "type B: cell side in pixels"},
      {"--dag-class", OPT_INT, &dag_t.cls, -1, MR_MAX_CLASSES - 1, " K",
       "type C: the class to dilate (-1: each image's largest foreground class)"},
      {"--dag-dilate", OPT_INT, &dag_t.dilate_iters, 1, 1000, " N",
       "type C: dilations by a 3x3 square"},
      {"--no-noise", OPT_FLAG, &no_noise, 0, 0, NULL, "skip the noise contrast"},
      {"--no-checks", OPT_FLAG, &no_checks, 0, 0, NULL, "skip the self-checks"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "eval", "eval --model M --data D --out DIR [options]",
      "Accuracy under each attack at each eps (eval mode, batchnorm frozen), % drop,\n"
      "success rate, mean L-inf/L2/MSE/SSIM/PSNR of the perturbations and mean confidence;\n"
      "Gaussian/Rician/Poisson/speckle noise at the SSIM of the first attack; and\n"
      "self-checks against a failed evaluation (Carlini et al. 2019).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust eval: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  if (suite && strcmp(suite, "standard") != 0) {
    fprintf(stderr, "medrobust eval: --suite must be 'standard'\n");
    return EXIT_USAGE;
  }
  if (suite) attacks_text = "apgd-ce,apgd-dlr,square,standard";
  AttackKind kinds[MAX_LIST];
  float eps[MAX_LIST];
  int n_kinds, n_eps;
  if (!cli_parse_norm("eval", norm_text, &base.norm) ||
      !cli_parse_attacks(attacks_text, kinds, &n_kinds) ||
      (!cli_eps_physical(eps_text) &&
       !cli_parse_eps_list("eval", eps_text, base.norm, NULL, eps, &n_eps)) ||
      !cli_parse_target(target_text, &base))
    return EXIT_USAGE;
  const int dag_mask = cli_parse_dag_types(dag_text); /* before any data is read */
  if (dag_mask < 0) return EXIT_USAGE;
  for (int i = 0; i < n_kinds; i++)
    if (kinds[i] == ATTACK_DAG) { /* it needs a target per image, which --dag builds */
      fprintf(stderr,
              "medrobust eval: DAG runs on segmentation models through --dag A,B,C (its target "
              "types), not --attacks\n");
      return EXIT_USAGE;
    }
  const int s_idx = cli_split("eval", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_rank_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("eval", journal_path, resume)) return EXIT_USAGE;
  if (!cli_make_dir(out)) return EXIT_RUNTIME;
  MrError err = {0};
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
  /* eps in HU: through the window the model's data record names */
  if (cli_eps_physical(eps_text) &&
      !cli_parse_eps_list("eval", eps_text, base.norm, &data->window, eps, &n_eps)) {
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (positive && positive_class(net, positive) < 0) {
    fprintf(stderr, "medrobust eval: --positive '%s' is not a class of this two-class model\n",
            positive);
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  Dataset set = data->split[s_idx];
  if (limit && limit < set.n) set.n = limit;
  int code;
  Journal *journal =
      cli_journal_open("eval", journal_path, resume, argc, argv, &net, 1, &set, NULL, &code);
  if (!journal) {
    net_free(net);
    data_free(data);
    return code;
  }
  if (net_output_pixels(net) > 1 && dist_size() > 1) {
    fprintf(stderr, "medrobust eval: segmentation sweeps run in one process (no mpirun)\n");
    journal_close(journal);
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (net_output_pixels(net) > 1) {
    dag_o.gamma = dag_gamma255 / 255.0f;
    SegSweepOptions so = {.attacks = kinds,
                          .n_attacks = n_kinds,
                          .eps = eps,
                          .n_eps = n_eps,
                          .base = base,
                          .dag = dag_mask,
                          .dag_o = dag_o,
                          .dag_targets = dag_t,
                          .noise = !no_noise,
                          .batch = batch,
                          .journal = journal};
    int rc_seg = cli_eval_segment(net, &set, &so, out, model, data_path, split, quiet, n_examples);
    if (rc_seg == 0)
      rc_seg = cli_journal_finish("eval", journal);
    else
      journal_close(journal);
    net_free(net);
    data_free(data);
    return rc_seg;
  }
  SweepOptions so = {.attacks = kinds,
                     .n_attacks = n_kinds,
                     .eps = eps,
                     .n_eps = n_eps,
                     .base = base,
                     .batch = batch,
                     .noise = !no_noise,
                     .checks = !no_checks,
                     .carry = !fresh_eps,
                     .positive = positive,
                     .journal = journal};
  SweepResult r;
  const double t0 = omp_get_wtime();
  CliProgress progress;
  cli_progress_init(&progress, quiet || dist_rank() > 0);
  Status st = robustness_sweep(net, &set, &so, cli_sweep_progress, &progress, &r, &err);
  cli_progress_done(&progress);
  if (dist_rank() > 0) { /* rank 0 writes */
    const int rc = cli_rank_done("eval", st, &err, journal);
    if (st == STATUS_OK) sweep_result_free(&r);
    net_free(net);
    data_free(data);
    return rc;
  }
  if (st == STATUS_OK) st = sweep_write(&r, &set, out, model, data_path, split, &err);
  if (st == STATUS_OK && n_examples) {
    AttackOptions ex = base;
    const AttackOptions defaults = attack_options_default(kinds[0]);
    ex.kind = kinds[0], ex.eps = eps[n_eps - 1];
    if (!ex.iters) ex.iters = defaults.iters;
    st = examples_write(net, &set, &ex, n_examples, out, &err);
  }
  if (st == STATUS_OK) st = report_render(out, &err);
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
    sweep_result_free(&r);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  dist_barrier(); /* the outputs exist: every rank may drop its journal */
  if (cli_journal_finish("eval", journal)) {
    sweep_result_free(&r);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  cli_print_sweep(&r, &set, model, data_path, split);
  if (r.n_noise) {
    printf("\nnoise at the SSIM of %s (paper 002)\n%-10s %8s %8s %8s %9s\n", attack_name(kinds[0]),
           "noise", "eps", "level", "SSIM", "accuracy");
    for (int i = 0; i < r.n_noise; i++)
      printf("%-10s %8.4g %8.4f %8.4f %8.2f%%\n", noise_name(r.noise[i].kind), r.noise[i].eps,
             r.noise[i].level, r.noise[i].ssim, 100 * r.noise[i].accuracy);
  }
  for (int i = 0; i < r.n_checks; i++)
    printf("%s %s: %s\n", i ? "" : "\nself-checks (Carlini et al. 2019)\n",
           r.checks[i].passed ? "ok     " : "WARNING", r.checks[i].message);
  printf(
      "\n%.1f s; results in %s/results.json, results.csv and images.csv; report %s/report.html\n",
      omp_get_wtime() - t0, out, out);
  sweep_result_free(&r);
  net_free(net);
  data_free(data);
  return 0;
}
