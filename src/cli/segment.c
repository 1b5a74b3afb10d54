/* The segmentation side of eval: the sweep (paper 002's Table 1 for one
 * model), printed as a table and written beside the report. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

static void print_segment_sweep(const SegSweepResult *r, const Dataset *d, const char *model,
                                const char *data, const char *split) {
  printf("segmentation robustness of %s on %s (%s split, %d images, %d classes)\n", model, data,
         split, r->n, r->k);
  printf("clean: Dice %.4f, IoU %.4f, pixel accuracy %.2f%%; per class Dice", r->clean.mean_dice,
         r->clean.mean_iou, 100 * r->clean.pixel_accuracy);
  for (int c = 1; c < r->k; c++) printf(" %s %.3f", r->class_names[c], r->clean.class_dice[c]);
  printf("\n\n%-8s %-16s %7s %7s %8s %7s %7s %7s %9s %6s %6s %6s\n", "attack", "eps", "Dice", "IoU",
         "vsClean", "target", "drop%", "Linf", "MSE", "SSIM", "PSNR", "s");
  for (int i = 0; i < r->n_rows; i++) {
    const SegRow *w = &r->rows[i];
    char eps[40], target[16] = "-";
    if (w->eps > 0)
      eps_describe(w->eps, d->bits, eps, sizeof eps);
    else
      snprintf(eps, sizeof eps, "unbounded");
    if (w->changed_reached >= 0) snprintf(target, sizeof target, "%.3f", w->changed_reached);
    printf("%-8s %-16s %7.4f %7.4f %8.4f %7s %7.2f %7.4f %9.6f %6.4f %6.2f %6.1f\n", w->attack, eps,
           w->dice, w->iou, w->dice_vs_clean, target, w->drop_pct, w->linf, w->mse, w->ssim,
           w->psnr, w->seconds);
  }
  printf("(target: the share of the pixels each DAG target changes that show it afterwards)\n");
  if (r->n_noise) {
    printf("\nnoise at the adversarial rows' mean SSIM %.4f (paper 002)\n%-10s %8s %8s %8s\n",
           r->noise[0].ssim_target, "noise", "level", "SSIM", "Dice");
    for (int i = 0; i < r->n_noise; i++)
      printf("%-10s %8.4f %8.4f %8.4f\n", noise_name(r->noise[i].kind), r->noise[i].level,
             r->noise[i].ssim, r->noise[i].dice);
  }
  printf(
      "\npaper 002 Table 1 (segmentation): clean %.3f | %s %.3f | adversarial average %.3f |"
      " %% drop %.2f\n",
      r->clean.mean_dice, r->n_noise ? "Rician" : "no noise", r->n_noise ? r->noise[0].dice : 0.0,
      r->adv_mean_dice, r->adv_drop_pct);
}

int cli_eval_segment(Net *net, const Dataset *set, SegSweepOptions *so, const char *dag_text,
                     const char *out, const char *model, const char *data, const char *split,
                     int quiet, int n_examples) {
  if (strcmp(dag_text, "none") != 0 && strcmp(dag_text, "A,B,C") != 0) {
    fprintf(stderr, "medrobust eval: --dag takes A,B,C or none\n");
    return EXIT_USAGE;
  }
  if (!set->masks) {
    fprintf(stderr, "medrobust eval: %s answers per pixel but %s has no masks\n", model, data);
    return EXIT_RUNTIME;
  }
  MrError err = {0};
  SegSweepResult r;
  const double t0 = omp_get_wtime();
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  Status st = seg_sweep(net, set, so, cli_sweep_progress, &progress, &r, &err);
  cli_progress_done(&progress);
  if (st == STATUS_OK) st = seg_sweep_write(&r, set, out, model, data, split, &err);
  if (st == STATUS_OK && n_examples) st = seg_examples_write(net, set, so, n_examples, out, &err);
  if (st == STATUS_OK) st = report_render(out, &err);
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  print_segment_sweep(&r, set, model, data, split);
  printf(
      "\n%.1f s; results in %s/seg_results.json, seg_results.csv and seg_images.csv; report "
      "%s/report.html\n",
      omp_get_wtime() - t0, out, out);
  seg_sweep_result_free(&r);
  return 0;
}

int cli_compare_segment(Net *const *nets, const char *const *names, int n, const Dataset *set,
                        const SegSweepOptions *so, int transfer, const char *out, const char *data,
                        int quiet) {
  MrError err = {0};
  SegSweepResult *res = calloc(n, sizeof *res);
  double *matrices = calloc((size_t)DAG_TARGET_COUNT * n * n, sizeof(double));
  double *ssim = calloc((size_t)DAG_TARGET_COUNT * n, sizeof(double));
  double *mse = calloc((size_t)DAG_TARGET_COUNT * n, sizeof(double));
  Status st = res && matrices && ssim && mse
                  ? STATUS_OK
                  : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  const double t0 = omp_get_wtime();
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  /* DAG's examples are crafted once per model and type, for the transfer
   * matrices, whose diagonal is each model's white-box DAG score: the sweep
   * itself runs only the gradient attacks */
  SegSweepOptions grad_only = *so;
  grad_only.dag = 0, grad_only.noise = 0;
  int done = 0;
  for (int i = 0; st == STATUS_OK && i < n; i++, done++)
    st = seg_sweep(nets[i], set, &grad_only, cli_sweep_progress, &progress, &res[i], &err);
  for (int t = 0; st == STATUS_OK && (so->dag || transfer) && t < DAG_TARGET_COUNT; t++) {
    char what[32];
    snprintf(what, sizeof what, "DAG type %s", dag_target_name((DagTarget)t));
    cli_sweep_progress(what, t, DAG_TARGET_COUNT, &progress);
    st = seg_transfer_matrix_stats(nets, n, set, &so->dag_o, t, &so->dag_targets, so->batch,
                                   matrices + (size_t)t * n * n, ssim + (size_t)t * n,
                                   mse + (size_t)t * n, &err);
  }
  /* Table 1 per model: the DAG average (the diagonal) and Rician noise at its SSIM */
  for (int i = 0; st == STATUS_OK && i < n; i++) {
    SegSweepResult *r = &res[i];
    double dice = 0, ss = 0;
    for (int t = 0; t < DAG_TARGET_COUNT; t++)
      dice += matrices[(size_t)t * n * n + i * n + i] / DAG_TARGET_COUNT,
          ss += ssim[(size_t)t * n + i] / DAG_TARGET_COUNT;
    r->adv_mean_dice = dice;
    /* the white-box DAG rows, from the diagonal, after the gradient attacks' rows */
    SegRow *grown = realloc(r->rows, sizeof(SegRow) * (r->n_rows + DAG_TARGET_COUNT));
    if (!grown) {
      st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
      break;
    }
    r->rows = grown;
    for (int t = 0; t < DAG_TARGET_COUNT; t++) {
      SegRow *w = &r->rows[r->n_rows++];
      memset(w, 0, sizeof *w);
      snprintf(w->attack, sizeof w->attack, "dag-%s", dag_target_name((DagTarget)t));
      w->eps = so->dag_o.eps, w->dag_target = t;
      w->dice = matrices[(size_t)t * n * n + i * n + i];
      w->dice_vs_clean = w->target_reached = w->changed_reached = NAN;
      w->ssim = ssim[(size_t)t * n + i], w->mse = mse[(size_t)t * n + i];
      w->drop_pct =
          r->clean.mean_dice > 0 ? 100.0 * (r->clean.mean_dice - w->dice) / r->clean.mean_dice : 0;
    }
    r->adv_drop_pct =
        r->clean.mean_dice > 0 ? 100.0 * (r->clean.mean_dice - dice) / r->clean.mean_dice : 0;
    if (so->noise && !r->noise) r->noise = calloc(1, sizeof(SegNoiseRow));
    if (so->noise && r->noise) {
      cli_sweep_progress("Rician noise", i, n, &progress);
      st = seg_noise_row(nets[i], set, NOISE_RICIAN, ss, so->base.seed + 101, so->batch,
                         &r->noise[0], &err);
      r->n_noise = st == STATUS_OK;
    }
  }
  cli_progress_done(&progress);
  if (st == STATUS_OK) {
    printf(
        "%d segmentation models on %s (%d images)\n\npaper 002 Table 1 (segmentation, mean "
        "Dice; adversarial: DAG types A-C, white-box)\n%-22s %8s %8s %8s %8s %9s\n",
        n, data, set->n, "model", "params", "clean", "Rician", "adv avg", "% drop");
    for (int i = 0; i < n; i++) {
      const SegSweepResult *r = &res[i];
      printf("%-22.22s %8zu %8.3f %8.3f %8.3f %9.2f\n", names[i], net_param_count(nets[i]),
             r->clean.mean_dice, r->n_noise ? r->noise[0].dice : NAN, r->adv_mean_dice,
             r->adv_drop_pct);
    }
    for (int i = 0; i < n && res[0].n_rows; i++) {
      if (!i) printf("\nevery attack (mean Dice; DAG white-box, with its MSE)\n%-22s", "model");
      for (int j = 0; !i && j < res[0].n_rows; j++) {
        char head[64];
        snprintf(head, sizeof head, "%s %.4g", res[0].rows[j].attack, res[0].rows[j].eps);
        printf(" %14s", head);
      }
      if (!i) printf("\n");
      printf("%-22.22s", names[i]);
      for (int j = 0; j < res[i].n_rows; j++)
        if (res[i].rows[j].dag_target >= 0)
          printf("  %5.3f (%.4f)", res[i].rows[j].dice, res[i].rows[j].mse);
        else
          printf(" %14.3f", res[i].rows[j].dice);
      printf("\n");
    }
    for (int t = 0; transfer && t < DAG_TARGET_COUNT; t++) {
      if (!t)
        printf(
            "\npaper 002 Table 2 (segmentation): mean Dice of each column's model on DAG "
            "examples crafted on each row's model (diagonal: white-box)\n");
      printf("type %s%-17s", dag_target_name((DagTarget)t), "");
      for (int j = 0; j < n; j++) printf(" %10.10s", names[j]);
      printf("\n");
      for (int i = 0; i < n; i++) {
        printf("  %-20.20s", names[i]);
        for (int j = 0; j < n; j++) printf(" %10.3f", matrices[(size_t)t * n * n + i * n + j]);
        printf("\n");
      }
    }
    st = seg_compare_write(res, nets, names, n, transfer ? matrices : NULL, out, data, &err);
    if (st == STATUS_OK) st = report_render(out, &err);
  }
  for (int i = 0; i < done; i++) seg_sweep_result_free(&res[i]);
  free(res), free(matrices), free(ssim), free(mse);
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  printf("\n%.1f s; %s/seg_compare.json, report.html\n", omp_get_wtime() - t0, out);
  return 0;
}
