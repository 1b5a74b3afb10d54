/* The segmentation side of eval: the sweep (paper 002's Table 1 for one
 * model), printed as a table and written beside the report. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomicfile.h"
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

int cli_parse_dag_types(const char *text) {
  if (strcmp(text, "none") == 0) return 0;
  char buf[64];
  snprintf(buf, sizeof buf, "%s", text);
  int mask = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const int t = dag_target_parse(tok);
    if (t < 0) {
      fprintf(stderr,
              "medrobust: --dag takes target types A, B, C (comma-separated) or none, "
              "got '%s'\n",
              tok);
      return -1;
    }
    mask |= 1 << t;
  }
  return mask;
}

int cli_eval_segment(Net *net, const Dataset *set, SegSweepOptions *so, const char *out,
                     const char *model, const char *data, const char *split, int quiet,
                     int n_examples) {
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
  for (int i = 0; st == STATUS_OK && i < n; i++, done++) {
    char scope[24];
    snprintf(scope, sizeof scope, "m%d/", i);
    grad_only.scope = scope;
    st = seg_sweep(nets[i], set, &grad_only, cli_sweep_progress, &progress, &res[i], &err);
  }
  for (int t = 0; st == STATUS_OK && (so->dag || transfer) && t < DAG_TARGET_COUNT; t++) {
    char what[32];
    snprintf(what, sizeof what, "DAG type %s", dag_target_name((DagTarget)t));
    cli_sweep_progress(what, t, DAG_TARGET_COUNT, &progress);
    st = seg_transfer_matrix(nets, n, set, &so->dag_o, t, &so->dag_targets, so->batch, so->journal,
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
      const JournalPart unit = {&r->noise[0], sizeof r->noise[0]};
      char key[48];
      snprintf(key, sizeof key, "m%d/seg-noise-rician", i);
      if (!journal_restore(so->journal, key, &unit, 1)) {
        st = seg_noise_row(nets[i], set, NOISE_RICIAN, ss, so->base.seed + 101, so->batch,
                           &r->noise[0], &err);
        if (st == STATUS_OK) st = journal_record(so->journal, key, &unit, 1, &err);
      }
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
        if (res[0].rows[j].dag_target >= 0)
          snprintf(head, sizeof head, "%s", res[0].rows[j].attack);
        else
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

/* The targets of a file: the test-split masks of a segmentation set, n (h, w)
 * label maps, each id below k; NULL after printing what is wrong. */
static int *read_target_masks(const char *path, int n, int h, int w, int k) {
  MrError err = {0};
  DataSplits *t = data_load(path, NULL, &err);
  const Dataset *ts = t ? &t->split[SPLIT_TEST] : NULL;
  if (!t || !t->segment) {
    fprintf(stderr, "medrobust: %s\n", t ? "the target file has no masks array" : err.msg);
  } else if (ts->n < n || ts->h != h || ts->w != w) {
    fprintf(stderr,
            "medrobust: %s holds %d target masks of %dx%d; the attack needs %d of %dx%d (its "
            "test-split masks, in the attacked split's order)\n",
            path, ts->n, ts->w, ts->h, n, w, h);
  } else {
    int *m = malloc(sizeof(int) * (size_t)n * h * w + 1);
    int bad = -1;
    for (size_t i = 0; m && i < (size_t)n * h * w; i++)
      if (ts->masks[i] >= k) bad = ts->masks[i];
    if (m && bad < 0) {
      memcpy(m, ts->masks, sizeof(int) * (size_t)n * h * w);
      data_free(t);
      return m;
    }
    free(m);
    fprintf(stderr, "medrobust: %s: target label %d, but the model has %d classes\n", path, bad, k);
  }
  data_free(t);
  return NULL;
}

int cli_attack_segment(Net *net, const Dataset *set, AttackOptions *o, const char *dag_type,
                       const char *target_masks, const char *out, const char *png_dir,
                       int png_count, int batch, Journal *journal) {
  const int k = net_num_classes(net), n = set->n, t = dag_type ? dag_target_parse(dag_type) : -1;
  if (!(attack_supports(o->kind) & ATTACK_SUPPORTS_PER_PIXEL) || (dag_type && t < 0) ||
      (dag_type && target_masks) ||
      (o->kind == ATTACK_DAG && !dag_type && !target_masks && o->target == TARGET_NONE)) {
    fprintf(stderr,
            "medrobust attack: a segmentation model takes fgsm, bim, pgd or dag; dag needs "
            "--dag-type A|B|C, --target-masks or --target; one target at a time\n");
    return EXIT_USAGE;
  }
  const size_t per = (size_t)set->c * set->h * set->w, P = (size_t)set->h * set->w;
  float *adv = malloc(sizeof(float) * per * (n ? n : 1));
  int *clean = malloc(sizeof(int) * P * (n ? n : 1)), *pred = malloc(sizeof(int) * P * (n ? n : 1));
  int *target = target_masks ? read_target_masks(target_masks, n, set->h, set->w, k)
                             : malloc(sizeof(int) * P * (n ? n : 1));
  MrError err = {0};
  Status st = adv && clean && pred && target
                  ? STATUS_OK
                  : mr_error_set(&err, STATUS_ERR_NOMEM, "%s",
                                 target_masks ? "the target masks are unusable" : "out of memory");
  if (st == STATUS_OK) st = net_segment_dataset(net, set, batch, clean, &err);
  const int targeted = t >= 0 || target_masks;
  const DagTargetOptions to = dag_target_options_default();
  for (int start = 0; st == STATUS_OK && start < n; start += batch) {
    const int b = n - start < batch ? n - start : batch;
    AttackOptions a = *o;
    if (t >= 0)
      dag_target((DagTarget)t, &to, clean + P * start, b, set->h, set->w, k, o->seed, start,
                 target + P * start);
    if (targeted) a.target = TARGET_MASK, a.target_mask = target + P * start;
    const JournalPart unit = {adv + per * start, sizeof(float) * per * b};
    char key[48];
    snprintf(key, sizeof key, "seg-attack/b%d", start);
    if (journal_restore(journal, key, &unit, 1)) continue;
    a.index_base = start;
    st = attack_run(net, &a, set->images + per * start, set->masks + P * start, b,
                    adv + per * start, &err);
    if (st == STATUS_OK) st = journal_record(journal, key, &unit, 1, &err);
  }
  if (st == STATUS_OK) {
    Dataset adv_set = *set;
    adv_set.images = adv;
    st = net_segment_dataset(net, &adv_set, batch, pred, &err);
  }
  if (st == STATUS_OK) {
    NpzWriter *w = npz_writer_open(out, &err);
    if (w) {
      const int ishape[4] = {n, set->c, set->h, set->w}, mshape[3] = {n, set->h, set->w};
      const int empty_i[4] = {0, set->c, set->h, set->w}, empty_m[3] = {0, set->h, set->w};
      npz_writer_add(w, "test_images", 'f', ishape, 4, adv);
      npz_writer_add(w, "test_masks", 'i', mshape, 3, set->masks);
      npz_writer_add(w, "train_images", 'f', empty_i, 4, adv);
      npz_writer_add(w, "train_masks", 'i', empty_m, 3, set->masks);
      npz_writer_add(w, "val_images", 'f', empty_i, 4, adv);
      npz_writer_add(w, "val_masks", 'i', empty_m, 3, set->masks);
      npz_writer_add(w, "clean_predictions", 'i', mshape, 3, clean);
      npz_writer_add(w, "adversarial_predictions", 'i', mshape, 3, pred);
      if (targeted) npz_writer_add(w, "target_masks", 'i', mshape, 3, target);
      st = npz_writer_close(w, &err);
    } else {
      st = err.status;
    }
  }
  double dice_clean = 0, dice_adv = 0, reached = 0;
  char csv[4200];
  snprintf(csv, sizeof csv, "%s.csv", out);
  AtomicFile af = {0};
  if (st == STATUS_OK) st = atomic_open(&af, csv, "w", &err);
  FILE *f = st == STATUS_OK ? af.f : NULL;
  if (f)
    fprintf(f, "index,file,id,dice_clean,dice_adversarial,dice_vs_clean,target_reached,linf\n");
  for (int i = 0; f && i < n; i++) {
    const int *pi = pred + P * i, *ci = clean + P * i, *yi = set->masks + P * i;
    const double dc = seg_image_dice(ci, yi, (int)P, k), da = seg_image_dice(pi, yi, (int)P, k);
    double linf = 0, hit = 0;
    for (size_t j = 0; j < per; j++)
      linf = fmax(linf, fabs((double)adv[per * i + j] - set->images[per * i + j]));
    for (size_t j = 0; targeted && j < P; j++) hit += pi[j] == target[P * i + j];
    char id[64];
    fprintf(f, "%d,", i);
    csv_write_field(f, dataset_image_id(set, i, id, sizeof id));
    fprintf(f, ",%s", dataset_image_hash(set, i, id, sizeof id));
    fprintf(f, ",%.6f,%.6f,%.6f,", dc, da, seg_image_dice(pi, ci, (int)P, k));
    if (targeted) fprintf(f, "%.6f", hit / P);
    fprintf(f, ",%.6g\n", linf);
    dice_clean += dc / n, dice_adv += da / n, reached += hit / P / n;
  }
  if (f) st = atomic_commit(&af, &err);
  if (st == STATUS_OK && png_dir) {
    SegSweepOptions so = {
        .base = *o, .dag = t >= 0 ? 1 << t : 0, .dag_o = *o, .dag_targets = to, .batch = 64};
    if (!cli_make_dir(png_dir))
      st = mr_error_set(&err, STATUS_ERR_IO, "%s: cannot create", png_dir);
    else if (!targeted || t >= 0) {
      so.n_attacks = t >= 0 ? 0 : 1;
      so.attacks = &o->kind, so.eps = &o->eps, so.n_eps = 1;
      st = seg_examples_write(net, set, &so, png_count < n ? png_count : n, png_dir, &err);
    }
  }
  if (st == STATUS_OK) {
    char bound[48] = "unbounded";
    if (o->eps > 0) snprintf(bound, sizeof bound, "eps %g", o->eps);
    printf("%s (%s) on %d images: mean Dice %.4f clean, %.4f adversarial", attack_name(o->kind),
           bound, n, dice_clean, dice_adv);
    if (targeted) printf("; %.1f%% of the pixels show the target", 100 * reached);
    printf(
        "\nwrote %s (a segmentation set: 'medrobust eval --data %s' scores other models on it)"
        " and %s\n",
        out, out, csv);
  } else {
    fprintf(stderr, "medrobust: %s\n", err.msg);
  }
  free(adv), free(clean), free(pred), free(target);
  return st == STATUS_OK ? 0 : EXIT_RUNTIME;
}
