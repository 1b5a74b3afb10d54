/* medrobust compare: several model files on the same data, one table
 * (parameters, FLOPs, training, clean and robust accuracy, % drop, median
 * minimal eps) and the transfer matrix, into DIR/compare.{json,csv},
 * DIR/transfer.csv and DIR/report.html. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "medrobust.h"

#define MAX_MODELS 16

/* The file name without folders and extension, for tables. */
static void short_name(const char *path, char *out, size_t n) {
  const char *base = strrchr(path, '/');
  snprintf(out, n, "%s", base ? base + 1 : path);
  char *dot = strstr(out, ".safetensors");
  if (dot && dot != out) *dot = 0;
}

static void print_table(const CompareResult *r) {
  const double hu = r->window.width; /* eps in HU too */
  printf("\n%4s %-22s %-11s %9s %-20s %8s %8s", "rank", "model", "arch", "MFLOPs", "training",
         "clean", "bal.");
  const SweepResult *first = &r->models[0].sweep;
  for (int j = 0; j < first->n_rows; j++) {
    char head[40];
    if (hu > 0)
      snprintf(head, sizeof head, "%s %.3gHU", first->rows[j].attack, first->rows[j].eps * hu);
    else
      snprintf(head, sizeof head, "%s %.4g", first->rows[j].attack, first->rows[j].eps);
    printf(" %16s", head);
  }
  printf(" %9s %10s\n", "robust", "median eps");
  for (int rank = 1; rank <= r->n; rank++)
    for (int i = 0; i < r->n; i++) {
      const CompareEntry *e = &r->models[i];
      if (e->rank != rank) continue;
      char training[48];
      training_summary(e->training, training, sizeof training);
      printf("%4d %-22.22s %-11s %9.1f %-20s %7.2f%% %7.2f%%", e->rank, e->name, e->arch,
             e->flops / 1e6, training, 100 * e->sweep.clean_accuracy,
             100 * e->sweep.clean_balanced_accuracy);
      for (int j = 0; j < e->sweep.n_rows; j++)
        printf("  %6.2f%% (%5.1f%%)", 100 * e->sweep.rows[j].balanced_accuracy,
               100 * e->sweep.rows[j].accuracy);
      printf(" %8.2f%%", 100 * e->robust_balanced);
      if (!e->triaged)
        printf(" %10s", "-");
      else if (isinf(e->min_eps_median))
        printf(" %9s%g", ">", r->triage_eps_max);
      else
        printf(" %10.4g", e->min_eps_median);
      printf("%s\n", e->near_chance ? "  near chance" : "");
    }
  printf(
      "(under attack: balanced accuracy, accuracy in brackets; robust: the mean over eps of the "
      "worst balanced accuracy, what the rank follows)\n\n%s\n",
      r->verdict);
  if (!r->transfer) return;
  printf("\ntransfer: %s eps %g crafted on the row's model, accuracy of the column's\n%-22s",
         attack_name(r->transfer_attack.kind), r->transfer_attack.eps, "source \\ target");
  for (int j = 0; j < r->n; j++) printf(" %12.12s", r->models[j].name);
  printf("\n");
  for (int i = 0; i < r->n; i++) {
    printf("%-22.22s", r->models[i].name);
    for (int j = 0; j < r->n; j++) printf(" %11.2f%%", 100 * r->transfer[i * r->n + j]);
    printf("\n");
  }
}

int cmd_compare(int argc, char **argv) {
  const char *models_text = NULL, *data_path = NULL, *split = "test", *out = NULL,
             *attacks_text = "fgsm,pgd", *eps_text = "0.001,0.002,0.004,0.006", *norm_text = "linf",
             *target_text = "none", *transfer_text = "pgd";
  int fresh_eps = 0;
  const char *triage_attack = "fmn";
  int batch = 128, quiet = 0, limit = 0, no_triage = 0, no_transfer = 0, dag_iters = 200,
      resume = 0;
  float triage_eps_max = TRIAGE_EPS_MAX, triage_tol = TRIAGE_TOL, transfer_eps = 0.0f;
  AttackOptions base = attack_options_default(ATTACK_PGD);
  base.iters = 0;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--models", OPT_STRING, &models_text, 0, 0, " A,B,...",
       "model files (required; same input and classes)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR", "output folder (required)"},
      {"--attacks", OPT_STRING, &attacks_text, 0, 0, " A,B", "attacks to sweep"},
      {"--eps", OPT_STRING, &eps_text, 0, 0, " E,F",
       "perturbation sizes on [0,1] pixels (4/255, 2%; 5HU through the models' window)"},
      {"--norm", OPT_STRING, &norm_text, 0, 0, " linf|l2", "threat model"},
      {"--iters", OPT_INT, &base.iters, 0, 100000, " N", "iterations (0: each attack's default)"},
      {"--step-rel", OPT_FLOAT, &base.step_rel, 0, 10, " F", "step = F x eps (paper 004: 0.1)"},
      {"--target", OPT_STRING, &target_text, 0, 0, " none|least-likely|K", "targeted attacks"},
      {"--seed", OPT_U64, &base.seed, 0, 0, " S", "random starts"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per batch"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--no-triage", OPT_FLAG, &no_triage, 0, 0, NULL, "skip the per-image minimal eps"},
      {"--fresh-eps", OPT_FLAG, &fresh_eps, 0, 0, NULL,
       "attack every image at every eps (default: an image fooled at a smaller eps counts as "
       "fooled at the larger ones)"},
      {"--triage-eps-max", OPT_FLOAT, &triage_eps_max, 1e-6, 100, " E", "triage search bound"},
      {"--triage-attack", OPT_STRING, &triage_attack, 0, 0, " A",
       "fmn (one minimal-norm run per image), or pgd, bim, fgsm or mifgsm bisected"},
      {"--triage-tol", OPT_FLOAT, &triage_tol, 1e-7, 1, " T", "triage bisection tolerance"},
      {"--no-transfer", OPT_FLAG, &no_transfer, 0, 0, NULL, "skip the transfer matrix"},
      {"--transfer-attack", OPT_STRING, &transfer_text, 0, 0, " A",
       "attack crafting the transferred examples"},
      {"--transfer-eps", OPT_FLOAT, &transfer_eps, 0, 1e6, " E",
       "its eps (0: the largest of --eps)"},
      {"--dag-iters", OPT_INT, &dag_iters, 1, 100000, " N",
       "segmentation models: DAG's iterations (types A, B, C)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {{"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "compare", "compare --models A,B,... --data D --out DIR [options]",
      "Evaluates several models on the same images: parameters, FLOPs, how each was\n"
      "trained, clean and robust accuracy per attack and eps with % drop, the median\n"
      "smallest eps that flips an image (triage), and the transfer matrix: examples\n"
      "crafted on each model (rows) shown to every model (columns); the diagonal is\n"
      "white-box. Paper 004's complexity study, paper 002's Tables 1 and 2.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!models_text || !data_path || !out) {
    fprintf(stderr, "medrobust compare: --models, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  AttackKind kinds[MAX_LIST];
  float eps[MAX_LIST];
  int n_kinds, n_eps = 0, transfer_kind = attack_parse(transfer_text);
  if (!cli_parse_norm("compare", norm_text, &base.norm) ||
      !cli_parse_attacks(attacks_text, kinds, &n_kinds) ||
      (!cli_eps_physical(eps_text) &&
       !cli_parse_eps_list("compare", eps_text, base.norm, NULL, eps, &n_eps)) ||
      !cli_parse_target(target_text, &base))
    return EXIT_USAGE;
  if (transfer_kind < 0) {
    fprintf(stderr, "medrobust compare: unknown --transfer-attack '%s'\n", transfer_text);
    return EXIT_USAGE;
  }
  const int triage_kind = attack_parse(triage_attack);
  if (triage_kind != ATTACK_FMN && triage_kind != ATTACK_PGD && triage_kind != ATTACK_BIM &&
      triage_kind != ATTACK_FGSM && triage_kind != ATTACK_MIFGSM) {
    fprintf(stderr,
            "medrobust compare: --triage-attack must be fmn, pgd, bim, fgsm or mifgsm, got '%s'\n",
            triage_attack);
    return EXIT_USAGE;
  }
  if (triage_tol >= triage_eps_max) {
    fprintf(stderr, "medrobust compare: --triage-tol must be smaller than --triage-eps-max\n");
    return EXIT_USAGE;
  }
  char list[4096], *paths[MAX_MODELS], names[MAX_MODELS][160];
  const char *name_ptrs[MAX_MODELS];
  int n = 0;
  snprintf(list, sizeof list, "%s", models_text);
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    if (n == MAX_MODELS) {
      fprintf(stderr, "medrobust compare: at most %d models\n", MAX_MODELS);
      return EXIT_USAGE;
    }
    paths[n] = tok;
    short_name(tok, names[n], sizeof names[n]);
    name_ptrs[n] = names[n];
    n++;
  }
  if (n < 2) {
    fprintf(stderr, "medrobust compare: --models needs at least two files, comma-separated\n");
    return EXIT_USAGE;
  }
  const int s_idx = cli_split("compare", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_rank_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("compare", journal_path, resume)) return EXIT_USAGE;

  MrError err = {0};
  Net *nets[MAX_MODELS] = {0};
  DataSplits *data = NULL;
  int ok = 1;
  for (int i = 0; ok && i < n; i++) {
    nets[i] = model_load(paths[i], &err);
    if (!nets[i]) fprintf(stderr, "medrobust: %s\n", err.msg), ok = 0;
  }
  if (ok && compare_check_models(nets, (const char *const *)paths, n, &err) != STATUS_OK)
    fprintf(stderr, "medrobust compare: %s\n", err.msg), ok = 0;
  if (ok) {
    DataCheck check;
    char warning[512] = "";
    if (!cli_data_check("compare", &dargs, &check)) ok = 0;
    if (ok) data = data_load_for_model(data_path, nets[0], &check, warning, sizeof warning, &err);
    if (ok && !data) fprintf(stderr, "medrobust: %s: %s\n", paths[0], err.msg), ok = 0;
    /* every other model must have been trained on this very split */
    for (int i = 1; ok && i < n; i++) {
      if (data_check_for_model(data, data_path, nets[i], &check, warning, sizeof warning, &err) !=
          STATUS_OK)
        fprintf(stderr, "medrobust: %s: %s\n", paths[i], err.msg), ok = 0;
    }
    if (warning[0]) fprintf(stderr, "medrobust: warning: %s\n", warning);
    if (data) cli_data_notes(data);
    /* eps in HU: through the window the models' data record names */
    if (ok && cli_eps_physical(eps_text) &&
        !cli_parse_eps_list("compare", eps_text, base.norm, &data->window, eps, &n_eps)) {
      for (int i = 0; i < n; i++) net_free(nets[i]);
      data_free(data);
      return EXIT_USAGE;
    }
  }
  if (ok && !cli_make_dir(out)) ok = 0;
  CompareResult r = {0};
  const double t0 = omp_get_wtime();
  Dataset set = {0};
  Journal *journal = NULL;
  int code = EXIT_RUNTIME;
  if (ok) {
    set = data->split[s_idx];
    if (limit && limit < set.n) set.n = limit;
    journal =
        cli_journal_open("compare", journal_path, resume, argc, argv, nets, n, &set, NULL, &code);
    ok = journal != NULL;
  }
  if (ok && net_output_pixels(nets[0]) > 1 && dist_size() > 1) {
    fprintf(stderr, "medrobust compare: segmentation models run in one process (no mpirun)\n");
    journal_close(journal);
    for (int i = 0; i < n; i++) net_free(nets[i]);
    data_free(data);
    return EXIT_USAGE;
  }
  if (ok && net_output_pixels(nets[0]) > 1) {
    AttackOptions dag_o = attack_options_default(ATTACK_DAG);
    dag_o.iters = dag_iters;
    SegSweepOptions so = {.attacks = kinds,
                          .n_attacks = n_kinds,
                          .eps = eps,
                          .n_eps = n_eps,
                          .base = base,
                          .dag = DAG_TARGETS_ALL,
                          .dag_o = dag_o,
                          .dag_targets = dag_target_options_default(),
                          .noise = 1,
                          .batch = batch,
                          .journal = journal};
    int rc_seg =
        cli_compare_segment(nets, name_ptrs, n, &set, &so, !no_transfer, out, data_path, quiet);
    if (rc_seg == 0)
      rc_seg = cli_journal_finish("compare", journal);
    else
      journal_close(journal);
    for (int i = 0; i < n; i++) net_free(nets[i]);
    data_free(data);
    return rc_seg;
  }
  if (ok) {
    CompareOptions co = {.sweep = {.attacks = kinds,
                                   .n_attacks = n_kinds,
                                   .eps = eps,
                                   .n_eps = n_eps,
                                   .base = base,
                                   .batch = batch,
                                   .carry = !fresh_eps,
                                   .journal = journal}};
    co.triage = !no_triage;
    co.triage_o = triage_options_default();
    co.triage_o.attack = attack_options_default((AttackKind)triage_kind);
    if (triage_kind == ATTACK_FMN) co.triage_o.attack.iters = TRIAGE_FMN_STEPS;
    co.triage_o.attack.norm = base.norm, co.triage_o.attack.seed = base.seed;
    co.triage_o.eps_max = triage_eps_max, co.triage_o.tol = triage_tol;
    co.transfer = !no_transfer;
    co.transfer_attack = attack_options_default((AttackKind)transfer_kind);
    co.transfer_attack.norm = base.norm, co.transfer_attack.seed = base.seed;
    co.transfer_attack.eps = transfer_eps > 0 ? transfer_eps : eps[n_eps - 1];
    CliProgress progress;
    cli_progress_init(&progress, quiet || dist_rank() > 0);
    /* under MPI the sweeps and triage share their batches; the transfer matrix runs whole on
     * every rank */
    Status st = compare_run(nets, name_ptrs, n, &set, &co, cli_sweep_progress, &progress, &r, &err);
    cli_progress_done(&progress);
    if (dist_rank() > 0) { /* rank 0 writes */
      const int rc = cli_rank_done("compare", st, &err, journal);
      compare_result_free(&r);
      for (int i = 0; i < n; i++) net_free(nets[i]);
      data_free(data);
      return rc;
    }
    /* each model's ranked list of files to re-read, beside the comparison */
    for (int i = 0; st == STATUS_OK && i < n; i++) {
      CompareEntry *e = &r.models[i];
      if (!e->triaged) continue;
      char sub[4200];
      snprintf(e->triage_csv, sizeof e->triage_csv, "triage-%s/triage.csv", e->name);
      snprintf(sub, sizeof sub, "%s/triage-%s", out, e->name);
      if (!cli_make_dir(sub)) st = mr_error_set(&err, STATUS_ERR_IO, "%s: cannot create", sub);
      if (st == STATUS_OK)
        st = triage_write(&e->triage, &set, nets[i], sub, paths[i], data_path, &err);
    }
    if (st == STATUS_OK) st = compare_write(&r, out, data_path, split, &err);
    if (st == STATUS_OK) st = report_render(out, &err);
    if (st != STATUS_OK) fprintf(stderr, "medrobust: %s\n", err.msg), ok = 0;
    if (ok) dist_barrier(); /* the outputs exist: every rank may drop its journal */
    if (ok)
      ok = cli_journal_finish("compare", journal) == 0;
    else
      journal_close(journal);
  }
  if (ok) {
    printf("%d models on %s (%s, %d images), %s", n, data_path, split, r.n_images,
           base.norm == NORM_LINF ? "L-inf" : "L2");
    print_table(&r);
    printf("\n%.1f s; %s/compare.json, compare.csv, transfer.csv, report.html\n",
           omp_get_wtime() - t0, out);
  }
  compare_result_free(&r);
  for (int i = 0; i < n; i++) net_free(nets[i]);
  data_free(data);
  return ok ? 0 : code ? code : EXIT_RUNTIME;
}
