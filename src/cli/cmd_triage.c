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

/* --eps-max and --tol (each a number, P% or N HU through window) into eps_max and tol. */
static int triage_bounds(const char *eps_max_text, const char *tol_text, Norm norm,
                         const IntensityWindow *window, float *eps_max, float *tol) {
  if (eps_max_text &&
      !cli_parse_eps_value("triage", "--eps-max", eps_max_text, norm, window, eps_max))
    return 0;
  if (tol_text && !cli_parse_eps_value("triage", "--tol", tol_text, norm, window, tol)) return 0;
  if (!(*eps_max > 0) || !(*tol > 0) || *tol >= *eps_max) {
    fprintf(stderr,
            "medrobust triage: --tol (%g) must be positive and smaller than --eps-max (%g)\n", *tol,
            *eps_max);
    return 0;
  }
  return 1;
}

int cmd_triage(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL, *attack = NULL,
             *norm = "linf";
  float eps_max = TRIAGE_EPS_MAX, tol = TRIAGE_TOL, flag_pct = 100.0f * TRIAGE_FLAG_FRAC;
  const char *eps_max_text = NULL, *tol_text = NULL;
  int batch = 128, quiet = 0, limit = 0, iters = 0, resume = 0;
  float dice_threshold = 0.5f;
  uint64_t seed = 1;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR", "folder for triage.json and triage.csv (required)"},
      {"--attack", OPT_STRING, &attack, 0, 0, " A",
       "fmn (one minimal-norm run per image; the default for classifiers), or fgsm, bim, pgd "
       "or mifgsm bisected (pgd: the default for segmentation models)"},
      {"--norm", OPT_STRING, &norm, 0, 0, " linf|l2", "threat model"},
      {"--eps-max", OPT_STRING, &eps_max_text, 0, 0, " E",
       "upper bound of the search (default 0.05; 20HU through a model's window)"},
      {"--tol", OPT_STRING, &tol_text, 0, 0, " T",
       "bisection tolerance on eps (default 0.0001; HU accepted; fmn: unused)"},
      {"--flag", OPT_FLOAT, &flag_pct, 0, 100, " PCT",
       "percent of most fragile images flagged for review"},
      {"--iters", OPT_INT, &iters, 1, 10000, " N",
       "attack iterations (default: fmn 12 steps, else 10 per bisection step)"},
      {"--dice-threshold", OPT_FLOAT, &dice_threshold, 0.001, 1, " D",
       "segmentation models: an image counts as broken when the Dice between its adversarial "
       "and clean prediction falls below D"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "PGD random starts"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per batch"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "triage", "triage --model M --data D --out DIR [options]",
      "For every image, the smallest eps at which an attack changes the model's\n"
      "prediction (below --eps-max: read off one FMN minimal-norm run, or bisected to\n"
      "--tol with a bounded attack); the most fragile --flag percent\n"
      "are flagged for human review, with accuracy before and after excluding them and a\n"
      "deferral curve (paper 001, Table 2).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust triage: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  int kind = attack ? attack_parse(attack) : ATTACK_FMN; /* settled once the model is read */
  if (kind != ATTACK_FGSM && kind != ATTACK_BIM && kind != ATTACK_PGD && kind != ATTACK_MIFGSM &&
      kind != ATTACK_FMN) {
    fprintf(stderr,
            "medrobust triage: --attack must be fgsm, bim, pgd, mifgsm (bisection) or fmn (one "
            "minimal-norm run), got '%s'\n",
            attack);
    return EXIT_USAGE;
  }
  Norm norm_kind;
  if (!cli_parse_norm("triage", norm, &norm_kind)) return EXIT_USAGE;
  /* plain numbers now; HU once the model's window is known */
  const int physical =
      (eps_max_text && cli_eps_physical(eps_max_text)) || (tol_text && cli_eps_physical(tol_text));
  if (!physical && !triage_bounds(eps_max_text, tol_text, norm_kind, NULL, &eps_max, &tol))
    return EXIT_USAGE;
  const int s_idx = cli_split("triage", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_rank_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("triage", journal_path, resume)) return EXIT_USAGE;
  if (!cli_make_dir(out)) return EXIT_RUNTIME;
  MrError err = {0};
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
  if (physical &&
      !triage_bounds(eps_max_text, tol_text, norm_kind, &data->window, &eps_max, &tol)) {
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  Dataset set = data->split[s_idx];
  if (limit && limit < set.n) set.n = limit;
  int code;
  Journal *journal =
      cli_journal_open("triage", journal_path, resume, argc, argv, &net, 1, &set, NULL, &code);
  if (!journal) {
    net_free(net);
    data_free(data);
    return code;
  }
  if (net_output_pixels(net) > 1 && dist_size() > 1) {
    fprintf(stderr, "medrobust triage: segmentation triage runs in one process (no mpirun)\n");
    journal_close(journal);
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (!attack) { /* fmn needs per-image scores */
    kind = net_output_pixels(net) > 1 ? ATTACK_PGD : ATTACK_FMN;
    attack = attack_name((AttackKind)kind);
  }
  TriageOptions to = triage_options_default();
  AttackOptions o = attack_options_default((AttackKind)kind);
  o.norm = norm_kind, o.seed = seed;
  if (kind == ATTACK_FMN) o.iters = TRIAGE_FMN_STEPS;
  if (iters) o.iters = kind == ATTACK_FGSM ? 1 : iters;
  to.attack = o, to.eps_max = eps_max, to.tol = tol, to.flag_frac = flag_pct / 100.0f;
  to.dice_threshold = dice_threshold, to.batch = batch, to.journal = journal;
  const double t0 = omp_get_wtime();
  CliProgress progress;
  cli_progress_init(&progress, quiet || dist_rank() > 0);
  if (net_output_pixels(net) > 1) {
    SegTriageResult sr;
    Status st =
        kind == ATTACK_MIFGSM || kind == ATTACK_FMN
            ? mr_error_set(&err, STATUS_ERR_ARG, "segmentation triage takes fgsm, bim or pgd")
            : seg_triage_run(net, &set, &to, cli_sweep_progress, &progress, &sr, &err);
    cli_progress_done(&progress);
    if (st == STATUS_OK) st = seg_triage_write(&sr, &set, out, model, data_path, &err);
    if (st == STATUS_OK) st = report_render(out, &err);
    int code_seg = st == STATUS_OK ? cli_journal_finish("triage", journal) : EXIT_RUNTIME;
    if (st != STATUS_OK) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      journal_close(journal);
    }
    if (code_seg == 0) {
      printf(
          "%s on %s (%s, %d images): per image the smallest %s %s eps at which the Dice "
          "between the adversarial and the clean mask falls below %g\n",
          model, data_path, split, sr.n, attack, norm, dice_threshold);
      printf(
          "mean Dice against the truth: %.4f on all images, %.4f without the %.0f%% most "
          "fragile (%d flagged for review)\n\nmost fragile:\n%5s %-32s %14s %10s\n",
          sr.dice_all, sr.dice_aware, flag_pct, sr.n_flagged, "rank", "file", "min_eps",
          "clean Dice");
      for (int i = 0; i < sr.n && i < 10; i++) {
        char id[64], eps_text[64];
        eps_describe_set(sr.items[i].min_eps, &set, norm_kind, eps_text, sizeof eps_text);
        printf("%5d %-32s %14s %10.4f\n", i + 1,
               dataset_image_id(&set, sr.items[i].index, id, sizeof id),
               isinf(sr.items[i].min_eps) ? "none" : eps_text, sr.items[i].clean_dice);
      }
      printf(
          "\n%.1f s; list in %s/seg_triage.csv, details in %s/seg_triage.json, report "
          "%s/report.html\n",
          omp_get_wtime() - t0, out, out, out);
    }
    seg_triage_free(&sr);
    net_free(net);
    data_free(data);
    return code_seg;
  }
  TriageResult r;
  Status st = triage_run(net, &set, &to, cli_sweep_progress, &progress, &r, &err);
  cli_progress_done(&progress);
  if (dist_rank() > 0) { /* rank 0 writes */
    const int rc = cli_rank_done("triage", st, &err, journal);
    triage_free(&r);
    net_free(net);
    data_free(data);
    return rc;
  }
  if (st == STATUS_OK) st = triage_write_thumbnails(&r, &set, out, 30, &err);
  if (st == STATUS_OK) st = triage_write(&r, &set, net, out, model, data_path, &err);
  if (st == STATUS_OK) st = report_render(out, &err);
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
    triage_free(&r);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  dist_barrier(); /* the outputs exist: every rank may drop its journal */
  if (cli_journal_finish("triage", journal)) {
    triage_free(&r);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  char max_text[64];
  eps_describe_set(eps_max, &set, norm_kind, max_text, sizeof max_text);
  if (r.one_run)
    printf(
        "%s on %s (%s, %d images): minimal %s eps per image up to %s, one fmn minimal-norm "
        "run of %d steps\n",
        model, data_path, split, r.n, norm, max_text, r.iters);
  else
    printf("%s on %s (%s, %d images): minimal %s %s eps per image, bisection to %g below %s\n",
           model, data_path, split, r.n, attack, norm, tol, max_text);
  char id[64], eps_text[64], buf[16];
  if (r.labelled) {
    printf("%-34s %9s %9s\n", "", "accuracy", "balanced");
    printf("%-34s %8.2f%% %8.2f%%\n", "all images", 100 * r.accuracy_all, 100 * r.balanced_all);
    char without[64];
    snprintf(without, sizeof without, "without the %.0f%% most fragile", flag_pct);
    printf("%-34s %8.2f%% %8.2f%%  (%d flagged for review, %d of them already misclassified)\n",
           without, 100 * r.accuracy_aware, 100 * r.balanced_aware, r.n_flagged, r.n_flagged_wrong);
    /* the baselines triage must beat to be worth an attack per image */
    const int at20 = (int)lround(0.2 / 0.05);
    printf(
        "\ndeferral: accuracy of the kept images when the most doubtful share goes to a "
        "human\n%-12s %8s %8s %8s %8s  %s\n",
        "deferred by", "0%", "10%", "20%", "50%", "mean (0-50%)");
    for (int sc = 0; sc < DEFER_COUNT; sc++)
      printf("%-12s %7.2f%% %7.2f%% %7.2f%% %7.2f%%  %.4f\n", defer_name((DeferScore)sc),
             100 * r.curve_acc[sc][0], 100 * r.curve_acc[sc][2], 100 * r.curve_acc[sc][at20],
             100 * r.curve_acc[sc][TRIAGE_CURVE_POINTS - 1], r.curve_auc[sc]);
  } else {
    printf("unlabelled images: ranked by how small a change flips them (no accuracy)\n");
  }
  printf("\nmost fragile:\n%5s %-32s %-12s %-12s %7s %14s %-12s\n", "rank", "file", "true",
         "predicted", "conf", "min_eps", "flips to");
  for (int i = 0; i < r.n && i < 10; i++) {
    const TriageItem *t = &r.items[i];
    eps_describe_set(t->min_eps, &set, norm_kind, eps_text, sizeof eps_text);
    char true_name[64];
    snprintf(true_name, sizeof true_name, "%s",
             t->label >= 0 ? net_class_name(net, t->label, buf) : "-");
    char pred_name[64];
    snprintf(pred_name, sizeof pred_name, "%s", net_class_name(net, t->pred, buf));
    printf("%5d %-32s %-12s %-12s %7.3f %14s %-12s\n", i + 1,
           dataset_image_id(&set, t->index, id, sizeof id), true_name, pred_name, t->confidence,
           isinf(t->min_eps) ? "none" : eps_text,
           t->flip_class >= 0 ? net_class_name(net, t->flip_class, buf) : "-");
  }
  if (set.bits && norm_kind == NORM_LINF)
    printf(
        "(eps in grey levels of the %d-bit data; * below one level: such a change does not "
        "survive saving the image)\n",
        set.bits);
  int robust = 0;
  for (int i = 0; i < r.n; i++) robust += isinf(r.items[i].min_eps);
  if (robust) printf("%d images did not flip below eps %s\n", robust, max_text);
  if (r.n_volumes) {
    printf(
        "\nper volume (the mean of its slice probabilities, every slice attacked in its own "
        "ball)");
    if (r.volumes_labelled)
      printf(": accuracy %.2f%%, %.2f%% without the %d most fragile", 100 * r.volume_accuracy_all,
             100 * r.volume_accuracy_aware, r.n_volumes_flagged);
    printf("\n%5s %-40s %6s %-12s %7s %14s\n", "rank", "volume", "slices", "predicted", "conf",
           "min_eps");
    for (int i = 0; i < r.n_volumes && i < 10; i++) {
      const VolumeTriageItem *v = &r.volumes[i];
      char name[4200];
      eps_describe_set(v->min_eps, &set, norm_kind, eps_text, sizeof eps_text);
      printf("%5d %-40s %6d %-12s %7.3f %14s\n", i + 1,
             dataset_volume_name(&set, v->first, name, sizeof name), v->slices,
             net_class_name(net, v->pred, buf), v->confidence,
             isinf(v->min_eps) ? "none" : eps_text);
    }
  }
  printf("\n%.1f s; list in %s/triage.csv, details in %s/triage.json, report %s/report.html\n",
         omp_get_wtime() - t0, out, out, out);
  triage_free(&r);
  net_free(net);
  data_free(data);
  return 0;
}
