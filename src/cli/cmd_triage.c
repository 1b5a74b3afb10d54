/* medrobust triage: rank every image by its adversarial sensitivity, flag the
 * most fragile for human review, DIR/triage.{json,csv}. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "medrobust.h"

static void triage_progress(const char *what, int done, int total, void *ctx) {
  const int *quiet = ctx;
  if (*quiet || !isatty(fileno(stderr))) return;
  fprintf(stderr, "\r\033[K%s %d/%d images", what, done, total);
  fflush(stderr);
}

int cmd_triage(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL, *attack = "pgd",
             *norm = "linf";
  float eps_max = TRIAGE_EPS_MAX, tol = TRIAGE_TOL, flag_pct = 100.0f * TRIAGE_FLAG_FRAC;
  int batch = 128, quiet = 0, limit = 0, iters = 10;
  uint64_t seed = 1;
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR", "folder for triage.json and triage.csv (required)"},
      {"--attack", OPT_STRING, &attack, 0, 0, " A", "fgsm, bim, pgd or mifgsm"},
      {"--norm", OPT_STRING, &norm, 0, 0, " linf|l2", "threat model"},
      {"--eps-max", OPT_FLOAT, &eps_max, 1e-6, 100, " E", "upper bound of the search"},
      {"--tol", OPT_FLOAT, &tol, 1e-7, 1, " T", "bisection tolerance on eps"},
      {"--flag", OPT_FLOAT, &flag_pct, 0, 100, " PCT",
       "percent of most fragile images flagged for review"},
      {"--iters", OPT_INT, &iters, 1, 10000, " N", "attack iterations"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "PGD random starts"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per batch"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {0}};
  const CliSpec spec = {
      "triage", "triage --model M --data D --out DIR [options]",
      "For every image, the smallest eps at which the attack changes the model's\n"
      "prediction (bisection to --tol below --eps-max); the most fragile --flag percent\n"
      "are flagged for human review, with accuracy before and after excluding them and a\n"
      "deferral curve (paper 001, Table 2).",
      options};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust triage: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  const int kind = attack_parse(attack);
  if (kind != ATTACK_FGSM && kind != ATTACK_BIM && kind != ATTACK_PGD && kind != ATTACK_MIFGSM) {
    fprintf(stderr, "medrobust triage: --attack must be fgsm, bim, pgd or mifgsm, got '%s'\n",
            attack);
    return EXIT_USAGE;
  }
  Norm norm_kind;
  if (!cli_parse_norm("triage", norm, &norm_kind)) return EXIT_USAGE;
  if (tol >= eps_max) {
    fprintf(stderr, "medrobust triage: --tol must be smaller than --eps-max\n");
    return EXIT_USAGE;
  }
  const int s_idx = cli_split("triage", split);
  if (s_idx < 0) return EXIT_USAGE;
  if (!cli_make_dir(out)) return EXIT_RUNTIME;
  MrError err = {0};
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, seed, &net, &data)) return EXIT_RUNTIME;
  Dataset set = data->split[s_idx];
  if (limit && limit < set.n) set.n = limit;
  AttackOptions o = attack_options_default((AttackKind)kind);
  o.norm = norm_kind, o.iters = kind == ATTACK_FGSM ? 1 : iters, o.seed = seed;
  TriageResult r;
  const double t0 = omp_get_wtime();
  Status st = triage_run(net, &set, &o, eps_max, tol, flag_pct / 100.0f, batch, triage_progress,
                         &quiet, &r, &err);
  if (!quiet && isatty(fileno(stderr))) fprintf(stderr, "\r\033[K");
  if (st == STATUS_OK) st = triage_write_thumbnails(&r, &set, out, 30, &err);
  if (st == STATUS_OK) st = triage_write(&r, out, model, data_path, &err);
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  printf("%s on %s (%s, %d images): minimal %s %s eps per image, bisection to %g below %g\n", model,
         data_path, split, r.n, attack, norm, tol, eps_max);
  printf("accuracy on all images           %.2f%%\n", 100 * r.accuracy_all);
  printf("without the %4.1f%% most fragile   %.2f%%  (%d images flagged for review)\n", flag_pct,
         100 * r.accuracy_aware, r.n_flagged);
  printf("deferral curve AUC (0-50%%)       %.4f\n\nmost fragile:\n%6s %6s %6s %6s %8s %10s\n",
         r.curve_auc, "rank", "index", "label", "pred", "conf", "min_eps");
  for (int i = 0; i < r.n && i < 10; i++) {
    const TriageItem *t = &r.items[i];
    printf("%6d %6d %6d %6d %8.3f %10.3g\n", i + 1, t->index, t->label, t->pred, t->confidence,
           t->min_eps);
  }
  int robust = 0;
  for (int i = 0; i < r.n; i++) robust += isinf(r.items[i].min_eps);
  if (robust) printf("%d images did not flip below eps %g\n", robust, eps_max);
  printf("\n%.1f s; list in %s/triage.csv, details in %s/triage.json\n", omp_get_wtime() - t0, out,
         out);
  triage_free(&r);
  net_free(net);
  data_free(data);
  return 0;
}
