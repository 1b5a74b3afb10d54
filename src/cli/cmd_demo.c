/* medrobust demo: the main job on built-in data. Generates the lesion
 * phantom, trains a small CNN and a ResNet-8, evaluates both, sweeps FGSM /
 * BIM / PGD over the papers' eps on the CNN with the noise contrast and the
 * self-checks, triages the test images, hardens the CNN by PGD adversarial
 * training, compares the three models (with the transfer matrix), maps the
 * CNN's saliency; then segments the phantom's lesions with a small U-Net and
 * attacks it (PGD, DAG types A/B/C, noise contrast); and renders the report. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "medrobust.h"

/* Trains `arch` (or, with `init`, fine-tunes that file adversarially) into
 * dir/name.safetensors and measures it on the test split. */
static int demo_train(const char *arch, const char *name, const char *init, const DataSplits *data,
                      const char *dir, uint64_t seed, int epochs, int quiet, Metrics *m) {
  MrError err = {0};
  const Dataset *tr = &data->split[SPLIT_TRAIN];
  ModelSpec spec = model_spec_default(arch, tr->c, tr->h, tr->w, data->n_classes);
  for (int k = 0; k < data->n_classes; k++) spec.class_names[k] = strdup(data->class_names[k]);
  spec.norm_mean[0] = 0.5f, spec.norm_std[0] = 0.25f;
  Net *net = init ? safetensors_load_net(init, &err) : model_build(&spec, seed, &err);
  model_spec_free(&spec);
  if (!net) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  char out[4096], ckpt[4200];
  snprintf(out, sizeof out, "%s/%s.safetensors", dir, name);
  snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
  TrainOptions o = train_options_default();
  o.epochs = epochs, o.seed = seed, o.out = out, o.checkpoint = ckpt;
  if (init) {
    /* paper 001: PGD examples for half of every batch; paper 004: from the standard model */
    o.adv = ADV_PGD, o.adv_eps = 0.006f, o.adv_steps = 7, o.adv_ratio = 0.5f;
    o.lr = 3e-4f, o.init_from = init;
  }
  TrainResult res;
  if (!quiet)
    fprintf(stderr, "%s %s (%zu parameters)\n", init ? "adversarially fine-tuning" : "training",
            name, net_param_count(net));
  Status s = train_run(net, data, &o, cli_train_progress, &quiet, &res, &err);
  net_free(net);
  Net *best = s == STATUS_OK ? safetensors_load_net(out, &err) : NULL;
  const Dataset *test = &data->split[SPLIT_TEST];
  float *probs = malloc(sizeof(float) * ((size_t)test->n * data->n_classes + 1));
  if (!best || !probs || net_predict_dataset(best, test, 256, probs, &err) != STATUS_OK ||
      metrics_compute(m, probs, test->labels, test->n, data->n_classes, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    free(probs);
    net_free(best);
    return EXIT_RUNTIME;
  }
  free(probs);
  net_free(best);
  return 0;
}

/* Hardens the CNN, then compares standard CNN, ResNet-8 and hardened CNN on
 * the test split: sweep, triage median, transfer matrix. */
static int demo_harden_and_compare(const DataSplits *data, const char *dir, const char *cnn_path,
                                   const char *report_dir, uint64_t seed, int quiet) {
  Metrics hm;
  if (demo_train("cnn", "cnn-hardened", cnn_path, data, dir, seed, 6, quiet, &hm))
    return EXIT_RUNTIME;
  printf(
      "6. hardened the cnn (PGD adversarial training, eps 0.006, 50%% of every batch) -> "
      "%s/cnn-hardened.safetensors: test accuracy %.2f%%\n",
      dir, 100 * hm.accuracy);
  metrics_free(&hm);
  const char *names[3] = {"cnn", "resnet8", "cnn-hardened"};
  Net *nets[3] = {0};
  MrError err = {0};
  Status s = STATUS_OK;
  for (int i = 0; s == STATUS_OK && i < 3; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[i]);
    nets[i] = safetensors_load_net(path, &err);
    if (!nets[i]) s = err.status;
  }
  const AttackKind kinds[2] = {ATTACK_FGSM, ATTACK_PGD};
  const float eps[4] = {0.001f, 0.002f, 0.004f, 0.006f};
  CompareOptions co = {.sweep = {.attacks = kinds,
                                 .n_attacks = 2,
                                 .eps = eps,
                                 .n_eps = 4,
                                 .base = attack_options_default(ATTACK_PGD),
                                 .batch = 128,
                                 .carry = 1}};
  co.sweep.base.iters = 0, co.sweep.base.seed = seed;
  co.triage = 1, co.triage_o = triage_options_default();
  co.triage_o.attack = attack_options_default(ATTACK_FMN);
  co.triage_o.attack.iters = TRIAGE_FMN_STEPS, co.triage_o.attack.seed = seed;
  co.transfer = 1, co.transfer_attack = attack_options_default(ATTACK_PGD);
  co.transfer_attack.seed = seed, co.transfer_attack.eps = 0.006f;
  CompareResult r = {0};
  if (!quiet && s == STATUS_OK)
    fprintf(stderr, "comparing cnn, resnet8 and cnn-hardened (sweep, triage, transfer)\n");
  if (s == STATUS_OK)
    s = compare_run(nets, names, 3, &data->split[SPLIT_TEST], &co, NULL, NULL, &r, &err);
  if (s == STATUS_OK) s = compare_write(&r, report_dir, "phantom", "test", &err);
  if (s == STATUS_OK) {
    printf(
        "7. compare (test split)   rank   clean  balanced  robust bal.  PGD 0.006   median eps  "
        "PGD 0.006 from cnn\n");
    for (int i = 0; i < 3; i++) {
      const CompareEntry *e = &r.models[i];
      double p6 = NAN;
      for (int j = 0; j < e->sweep.n_rows; j++)
        if (strcmp(e->sweep.rows[j].attack, "pgd") == 0 && e->sweep.rows[j].eps == 0.006f)
          p6 = e->sweep.rows[j].accuracy;
      printf("   %-22s %4d %7.2f%%  %7.2f%%     %7.2f%%   %7.2f%%   %9.4f    %7.2f%%\n", e->name,
             e->rank, 100 * e->sweep.clean_accuracy, 100 * e->sweep.clean_balanced_accuracy,
             100 * e->robust_balanced, 100 * p6, e->min_eps_median, 100 * r.transfer[0 * 3 + i]);
    }
    printf("   %s\n", r.verdict);
  }
  compare_result_free(&r);
  for (int i = 0; i < 3; i++) net_free(nets[i]);
  if (s != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  return 0;
}

/* Segmentation (paper 002's second half): the phantom with lesion masks, a
 * small U-Net, then PGD and DAG types A/B/C with the noise contrast and the
 * overlays, into the same report. */
static int demo_segment(const char *dir, const char *report_dir, uint64_t seed, int quiet) {
  MrError err = {0};
  DataSplits *data = phantom_generate_segment(64, 600, seed, &err);
  char path[4200], out[4200], ckpt[4300];
  snprintf(path, sizeof path, "%s/phantom-segment.npz", dir);
  snprintf(out, sizeof out, "%s/unet.safetensors", dir);
  snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
  Status s = data ? data_save_npz(data, path, &err) : err.status;
  ModelSpec spec = model_spec_default("unet", 1, 64, 64, 3);
  spec.depth = 3, spec.base = 8;
  spec.norm_mean[0] = 0.5f, spec.norm_std[0] = 0.25f;
  for (int k = 0; data && k < 3; k++) spec.class_names[k] = strdup(data->class_names[k]);
  Net *net = s == STATUS_OK ? model_build(&spec, seed, &err) : NULL;
  model_spec_free(&spec);
  TrainOptions o = train_options_default();
  o.epochs = 30, o.lr = 1e-2f, o.batch = 32, o.seed = seed, o.out = out, o.checkpoint = ckpt;
  /* unweighted cross-entropy + Dice: on this phantom the median-frequency weights of
   * train's segmentation default over-draw the lesions (validation Dice 0.66 against 0.78) */
  o.balance = BALANCE_NONE;
  TrainResult res;
  if (!quiet && net)
    fprintf(stderr, "training unet (%zu parameters) on the segmentation phantom\n",
            net_param_count(net));
  if (net) s = train_run(net, data, &o, cli_train_progress, &quiet, &res, &err);
  net_free(net);
  net = s == STATUS_OK && net ? safetensors_load_net(out, &err) : NULL;
  SegSweepResult r = {0};
  Dataset test = data ? data->split[SPLIT_TEST] : (Dataset){0};
  if (test.n > 48) test.n = 48;
  const AttackKind kinds[1] = {ATTACK_PGD};
  const float eps[2] = {0.002f, 0.004f};
  AttackOptions base = attack_options_default(ATTACK_PGD);
  base.seed = seed;
  SegSweepOptions so = {.attacks = kinds,
                        .n_attacks = 1,
                        .eps = eps,
                        .n_eps = 2,
                        .base = base,
                        .dag = DAG_TARGETS_ALL,
                        .dag_o = attack_options_default(ATTACK_DAG),
                        .dag_targets = dag_target_options_default(),
                        .noise = 1,
                        .batch = 48};
  if (net) {
    printf("8. segmentation: unet on %s -> %s: validation Dice %.3f\n", data->source, out,
           res.best_val_acc);
    if (!quiet)
      fprintf(stderr, "attacking the unet: PGD at eps 0.002 and 0.004, DAG types A, B, C\n");
    s = seg_sweep(net, &test, &so, NULL, NULL, &r, &err);
  }
  if (net && s == STATUS_OK) s = seg_sweep_write(&r, &test, report_dir, out, path, "test", &err);
  if (net && s == STATUS_OK) s = seg_examples_write(net, &test, &so, 4, report_dir, &err);
  if (net && s == STATUS_OK) {
    printf("   test Dice %.3f clean;", r.clean.mean_dice);
    for (int i = 0; i < r.n_rows; i++) {
      char eps[24] = "";
      if (r.rows[i].eps > 0) snprintf(eps, sizeof eps, "@%g", r.rows[i].eps);
      printf(" %s%s %.3f%s", r.rows[i].attack, eps, r.rows[i].dice, i + 1 < r.n_rows ? "," : "");
    }
    printf(
        "\n   paper 002 Table 1: clean %.3f, Rician at the DAG SSIM %.3f, DAG average %.3f "
        "(%.1f%% drop)\n",
        r.clean.mean_dice, r.n_noise ? r.noise[0].dice : NAN, r.adv_mean_dice, r.adv_drop_pct);
  }
  seg_sweep_result_free(&r);
  net_free(net);
  data_free(data);
  if (s != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  return 0;
}

int cmd_demo(int argc, char **argv) {
  const char *dir = "medrobust-demo";
  int n = 4000, epochs = 12, quiet = 0;
  uint64_t seed = 1;
  const CliOption options[] = {
      {"--out", OPT_STRING, &dir, 0, 0, " DIR", "folder for the data, models and results"},
      {"--n", OPT_INT, &n, 100, 1000000, " N", "phantom images"},
      {"--epochs", OPT_INT, &epochs, 1, 1000, " N", "training epochs per model"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "random seed"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {0}};
  const CliPath path_roles[] = {{"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "demo", "demo [options]",
      "The main job on built-in data: makes the synthetic lesion phantom, trains a small\n"
      "CNN and a ResNet-8, attacks the CNN (FGSM/BIM/PGD sweep, noise contrast, self-\n"
      "checks), triages its test images, hardens it by PGD adversarial training, compares\n"
      "the three models with their transfer matrix, maps saliency, trains a U-Net to\n"
      "segment the lesions and attacks it (PGD, DAG types A/B/C, noise), and writes the\n"
      "report.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  const double t0 = omp_get_wtime();
  if (!cli_make_dir(dir)) return EXIT_RUNTIME;
  MrError err = {0};
  DataSplits *data = phantom_generate(28, n, seed, &err);
  char path[4096];
  snprintf(path, sizeof path, "%s/phantom.npz", dir);
  if (!data || data_save_npz(data, path, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    data_free(data);
    return EXIT_RUNTIME;
  }
  printf("1. data: %s -> %s\n", data->source, path);
  const char *archs[] = {"cnn", "resnet8"};
  Metrics m[2];
  for (int a = 0; a < 2; a++) {
    if (demo_train(archs[a], archs[a], NULL, data, dir, seed, epochs, quiet, &m[a])) {
      data_free(data);
      return EXIT_RUNTIME;
    }
    printf("%d. trained %s -> %s/%s.safetensors\n", a + 2, archs[a], dir, archs[a]);
  }
  printf("\ntest split (%d images)   accuracy   balanced   ROC AUC\n", data->split[SPLIT_TEST].n);
  for (int a = 0; a < 2; a++) {
    printf("  %-22s %7.2f%%   %7.2f%%   %7.4f\n", archs[a], 100 * m[a].accuracy,
           100 * m[a].balanced_accuracy, m[a].auc);
    metrics_free(&m[a]);
  }
  /* attack, measure, triage and report the CNN */
  char model_path[4200], report_dir[4200];
  snprintf(model_path, sizeof model_path, "%s/cnn.safetensors", dir);
  snprintf(report_dir, sizeof report_dir, "%s/report", dir);
  Net *net = safetensors_load_net(model_path, &err);
  int code = 0;
  if (!net || !cli_make_dir(report_dir)) {
    if (!net) fprintf(stderr, "medrobust: %s\n", err.msg);
    code = EXIT_RUNTIME;
  } else {
    const Dataset *test = &data->split[SPLIT_TEST];
    const AttackKind kinds[3] = {ATTACK_FGSM, ATTACK_BIM, ATTACK_PGD};
    const float eps[4] = {0.001f, 0.002f, 0.004f, 0.006f};
    SweepOptions so = {.attacks = kinds,
                       .n_attacks = 3,
                       .eps = eps,
                       .n_eps = 4,
                       .base = attack_options_default(ATTACK_PGD),
                       .batch = 128,
                       .noise = 1,
                       .checks = 1,
                       .carry = 1};
    so.base.iters = 0, so.base.seed = seed;
    SweepResult r;
    TriageResult tr;
    AttackOptions pgd = attack_options_default(ATTACK_PGD);
    pgd.seed = seed, pgd.eps = 0.004f;
    if (!quiet)
      fprintf(
          stderr,
          "attacking cnn: FGSM, BIM, PGD at eps 0.001-0.006 with noise contrast and self-checks\n");
    Status s = robustness_sweep(net, test, &so, NULL, NULL, &r, &err);
    if (s == STATUS_OK) {
      s = sweep_write(&r, test, report_dir, model_path, path, "test", &err);
      printf("4. attacks on cnn (test split, clean %.2f%%):", 100 * r.clean_accuracy);
      for (int i = 0; i < r.n_rows && i < 12; i++)
        if (r.rows[i].eps == 0.002f || r.rows[i].eps == 0.006f)
          printf(" %s@%g %.1f%%", r.rows[i].attack, r.rows[i].eps, 100 * r.rows[i].accuracy);
      int warnings = 0;
      for (int i = 0; i < r.n_checks; i++) warnings += !r.checks[i].passed;
      printf("\n   self-checks against a failed evaluation: %d of %d passed\n",
             r.n_checks - warnings, r.n_checks);
      sweep_result_free(&r);
    }
    if (s == STATUS_OK) s = examples_write(net, test, &pgd, 8, report_dir, &err);
    if (!quiet && s == STATUS_OK)
      fprintf(stderr, "triage: the smallest eps that flips each test image (one FMN run)\n");
    TriageOptions to = triage_options_default();
    to.attack = attack_options_default(ATTACK_FMN);
    to.attack.iters = TRIAGE_FMN_STEPS, to.attack.seed = seed;
    if (s == STATUS_OK) s = triage_run(net, test, &to, NULL, NULL, &tr, &err);
    if (s == STATUS_OK) {
      printf(
          "5. triage: accuracy %.2f%% on all test images, %.2f%% without the 20%% most fragile\n",
          100 * tr.accuracy_all, 100 * tr.accuracy_aware);
      s = triage_write_thumbnails(&tr, test, report_dir, 30, &err);
      if (s == STATUS_OK) s = triage_write(&tr, test, net, report_dir, model_path, path, &err);
      triage_free(&tr);
    }
    if (s == STATUS_OK) {
      if (!quiet) fprintf(stderr, "saliency maps and the feature embedding of the cnn\n");
      s = saliency_write(net, test, &pgd, 6, 30, 0.15f, report_dir, &err);
    }
    if (s == STATUS_OK) s = embedding_write(net, test, &pgd, 400, report_dir, NULL, &err);
    if (s != STATUS_OK) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      code = EXIT_RUNTIME;
    }
  }
  net_free(net);
  if (code == 0) code = demo_harden_and_compare(data, dir, model_path, report_dir, seed, quiet);
  if (code == 0) code = demo_segment(dir, report_dir, seed, quiet);
  if (code == 0) {
    Status s = report_render(report_dir, &err);
    if (s != STATUS_OK) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      code = EXIT_RUNTIME;
    } else {
      printf("9. report: %s/report.html\n", report_dir);
    }
  }
  printf("\ndone in %.1f s; data, models and report in %s/\n", omp_get_wtime() - t0, dir);
  data_free(data);
  return code;
}
