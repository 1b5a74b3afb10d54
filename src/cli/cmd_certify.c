/* medrobust certify: certified L2 robustness of every image by randomized smoothing (Cohen et
 * al. 2019), beside the empirical PGD-L2 robust accuracy of the base model at the same radii:
 * DIR/certify.{json,csv} and the report. Journaled per image for --resume. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

/* The radii the curve is read at: a comma list, ascending, or the default 0..1 by 0.25. */
static int parse_radii(const char *text, double *radii, int cap) {
  if (!text) {
    for (int i = 0; i < 5; i++) radii[i] = 0.25 * i;
    return 5;
  }
  int n = 0;
  const char *p = text;
  while (*p && n < cap) {
    char *end;
    const double r = strtod(p, &end);
    if (end == p || !isfinite(r) || r < 0 || (n && r <= radii[n - 1])) return 0;
    radii[n++] = r;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return 0;
  }
  return *p ? 0 : n;
}

/* Robust accuracy of the base model under PGD-L2 at each radius over the certified images
 * (collective under MPI: robust_accuracy shares the batches). */
static Status empirical_l2(Net *net, const Dataset *set, const int *pick, int n,
                           const double *radii, int n_radii, int steps, uint64_t seed,
                           double *accuracy, MrError *err) {
  Status st = STATUS_OK;
  for (int r = 0; st == STATUS_OK && r < n_radii; r++) {
    AttackOptions o = attack_options_default(ATTACK_PGD);
    o.norm = NORM_L2, o.eps = (float)radii[r], o.iters = steps, o.seed = seed;
    st = robust_accuracy(net, set, pick, n, &o, 64, &accuracy[r], err);
  }
  return st;
}

int cmd_certify(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL, *radii_text = NULL;
  SmoothOptions so = smooth_options_default();
  float alpha = (float)so.alpha;
  int n = (int)so.n, every = 1, limit = 0, quiet = 0, resume = 0, pgd_steps = 20;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR",
       "folder for certify.json and certify.csv (required)"},
      {"--sigma", OPT_FLOAT, &so.sigma, 1e-6, 100, " S",
       "std of the Gaussian noise on [0,1] pixels (default 0.25)"},
      {"--n0", OPT_INT, &so.n0, 1, 100000000, " N", "samples that select the class (default 100)"},
      {"--n", OPT_INT, &n, 1, 2000000000, " N",
       "samples that bound its probability (default 100000)"},
      {"--alpha", OPT_FLOAT, &alpha, 1e-12, 0.5, " A",
       "failure probability of each certificate (default 0.001)"},
      {"--radii", OPT_STRING, &radii_text, 0, 0, " R,R,..",
       "L2 radii of the curve, ascending (default 0,0.25,0.5,0.75,1)"},
      {"--pgd-steps", OPT_INT, &pgd_steps, 0, 10000, " N",
       "PGD-L2 iterations of the empirical check at each radius (0: none; default 20)"},
      {"--every", OPT_INT, &every, 1, 100000000, " K", "certify every K-th image (the paper: 20)"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--batch", OPT_INT, &so.batch, 1, 65536, " N", "noisy copies per forward pass"},
      {"--seed", OPT_U64, &so.seed, 0, 0, " S", "noise seed (image i uses stream i)"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "certify", "certify --model M --data D --out DIR [options]",
      "Randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019): per image, the class the\n"
      "smoothed model g(x) = argmax P(f(x + noise) = c) gives and an L2 radius within which\n"
      "no change of the pixels can alter it, each wrong with probability at most --alpha; or\n"
      "abstention. The certified accuracy at each radius is set beside the base model's\n"
      "accuracy under a PGD-L2 attack of that size: the guarantee and the attack side by side.\n"
      "Train the model with --noise-sd equal to --sigma for a smoothed model worth certifying.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust certify: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  so.n = n, so.alpha = alpha;
  double radii[32];
  const int n_radii = parse_radii(radii_text, radii, 32);
  if (!n_radii) {
    fprintf(stderr,
            "medrobust certify: --radii takes up to 32 ascending non-negative numbers separated "
            "by commas, got '%s'\n",
            radii_text);
    return EXIT_USAGE;
  }
  const int s_idx = cli_split("certify", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_rank_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("certify", journal_path, resume)) return EXIT_USAGE;
  if (!cli_make_dir(out)) return EXIT_RUNTIME;
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
  MrError err = {0};
  if (net_require_per_image(net, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust certify: %s\n", err.msg);
    net_free(net), data_free(data);
    return EXIT_USAGE;
  }
  Dataset set = data->split[s_idx];
  if (limit && limit < set.n) set.n = limit;
  int code;
  Journal *journal =
      cli_journal_open("certify", journal_path, resume, argc, argv, &net, 1, &set, NULL, &code);
  if (!journal) {
    net_free(net), data_free(data);
    return code;
  }
  const int n_pick = set.n ? (set.n - 1) / every + 1 : 0;
  int *pick = malloc(sizeof(int) * (n_pick + 1));
  int *labels = malloc(sizeof(int) * (n_pick + 1));
  SmoothCertificate *certs = calloc((size_t)n_pick + 1, sizeof *certs);
  double *seconds = calloc((size_t)n_pick + 1, sizeof(double));
  double *empirical = malloc(sizeof(double) * n_radii);
  unsigned char *done = calloc((size_t)n_pick + 1, 1);
  Status st = pick && labels && certs && seconds && empirical && done
                  ? STATUS_OK
                  : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory for %d images", n_pick);
  for (int i = 0; st == STATUS_OK && i < n_pick; i++)
    pick[i] = i * every, labels[i] = set.labels[pick[i]];
  const size_t per = (size_t)net_input_size(net);
  const double t0 = omp_get_wtime();
  CliProgress progress;
  cli_progress_init(&progress, quiet || dist_rank() > 0);
  /* the images' costs vary (the model's speed does not, but a rank's may): a shared queue,
   * one image at a time; under one process, 0, 1, 2, ... */
  DistQueue *queue = st == STATUS_OK ? dist_queue_new(n_pick, 1) : NULL;
  if (st == STATUS_OK && !queue) st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  for (int i; st == STATUS_OK && (i = dist_queue_next(queue)) < n_pick;) {
    cli_sweep_progress("certify: sampling each image under noise", i, n_pick, &progress);
    const JournalPart parts[2] = {{&certs[i], sizeof certs[i]}, {&seconds[i], sizeof seconds[i]}};
    char key[64];
    snprintf(key, sizeof key, "certify/i%d", pick[i]);
    done[i] = 1;
    if (journal_restore(journal, key, parts, 2)) continue;
    const double t_image = omp_get_wtime();
    st = smooth_certify(net, &so, set.images + per * pick[i], (uint64_t)pick[i], &certs[i], &err);
    seconds[i] = omp_get_wtime() - t_image;
    if (st == STATUS_OK) st = journal_record(journal, key, parts, 2, &err);
  }
  if (st != STATUS_OK && dist_size() > 1) { /* the others may be waiting in a collective */
    fprintf(stderr, "medrobust: rank %d: %s\n", dist_rank(), err.msg);
    dist_abort(EXIT_RUNTIME);
  }
  dist_queue_free(queue, st != STATUS_OK);
  if (st == STATUS_OK) st = dist_gather(certs, sizeof *certs, n_pick, done, &err);
  if (st == STATUS_OK) st = dist_gather(seconds, sizeof *seconds, n_pick, done, &err);
  int empirical_done = 0;
  if (st == STATUS_OK && pgd_steps > 0) {
    cli_sweep_progress("certify: PGD-L2 on the base model", n_pick, n_pick + 1, &progress);
    st = empirical_l2(net, &set, pick, n_pick, radii, n_radii, pgd_steps, so.seed, empirical, &err);
    empirical_done = st == STATUS_OK;
  }
  if (dist_rank() > 0) { /* rank 0 writes */
    const int rc = cli_rank_done("certify", st, &err, journal);
    free(pick), free(labels), free(certs), free(seconds), free(empirical), free(done);
    net_free(net), data_free(data);
    return rc;
  }
  cli_progress_done(&progress);
  const double elapsed = omp_get_wtime() - t0;
  if (st == STATUS_OK) {
    CertifyReport cr = {.model = model,
                        .data = data_path,
                        .split = split,
                        .options = so,
                        .every = every,
                        .certs = certs,
                        .pick = pick,
                        .seconds = seconds,
                        .n = n_pick,
                        .radii = radii,
                        .n_radii = n_radii,
                        .empirical = empirical_done ? empirical : NULL,
                        .pgd_steps = pgd_steps,
                        .elapsed = elapsed};
    st = certify_write(&cr, &set, net, out, &err);
  }
  if (st == STATUS_OK) st = report_render(out, &err);
  if (st != STATUS_OK && dist_size() > 1) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    dist_abort(EXIT_RUNTIME);
  }
  dist_barrier();
  int exit_code = 0;
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
    exit_code = EXIT_RUNTIME;
  } else if (cli_journal_finish("certify", journal)) {
    exit_code = EXIT_RUNTIME;
  }
  if (!exit_code) {
    int abstained = 0;
    for (int i = 0; i < n_pick; i++) abstained += certs[i].predicted == SMOOTH_ABSTAIN;
    printf(
        "%s on %s (%s, %d images): randomized smoothing, sigma %g, n0 %d, n %ld, alpha %g; "
        "%d abstained\n\n%8s %22s %22s\n",
        model, data_path, split, n_pick, so.sigma, so.n0, so.n, so.alpha, abstained, "L2 radius",
        "certified (smoothed)", empirical_done ? "PGD-L2 (base model)" : "");
    for (int r = 0; r < n_radii; r++) {
      printf("%8.3g %21.2f%%", radii[r],
             100 * smooth_certified_accuracy(certs, labels, n_pick, radii[r]));
      if (empirical_done) printf(" %21.2f%%", 100 * empirical[r]);
      printf("\n");
    }
    printf(
        "\ncertified: right, and provably unchanged by any change of that L2 size (a lower "
        "bound on the smoothed model's accuracy under any attack); PGD-L2: what one attack did "
        "to the base model.\n%.1f s; details in %s/certify.json and %s/certify.csv, report "
        "%s/report.html\n",
        elapsed, out, out, out);
  }
  free(pick), free(labels), free(certs), free(seconds), free(empirical), free(done);
  net_free(net), data_free(data);
  return exit_code;
}
