/* Robustness of segmentation models (paper 002's second half): every image
 * attacked by the gradient attacks on the per-pixel cross-entropy at each eps
 * and by DAG toward target types A, B and C; Dice against the truth and
 * against the clean prediction, how much of the target was reached, the size
 * of the perturbation (L-inf, L2, MSE, SSIM, PSNR); and the noise contrast:
 * Rician (the MRI model), Gaussian and speckle noise at the SSIM the
 * adversarial images have, scored by Dice too (paper 002 Table 1). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

typedef struct {
  Net *net;
  const Dataset *d;
  int batch, k;
  size_t per, P;
  int *clean_pred;        /* (n, P) */
  float *adv;             /* (batch, per) */
  int *pred;              /* (n, P) of the row in progress */
  int *target;            /* (batch, P) */
  PerturbationOne *sizes; /* (batch) */
  Journal *journal;       /* each batch of a row is a unit, keyed scope + key + start */
  const char *scope;
  char key[48];
  SweepProgressFn progress;
  void *ctx;
  long done_units, total_units;
  char what[64];
} SegSweep;

void seg_dag_targets(Net *net, const float *x, int b, int first, DagTarget t,
                     const DagTargetOptions *to, uint64_t seed, int *clean, int *target) {
  const ModelSpec *spec = net_spec(net);
  net_segment(net, x, b, clean);
  dag_target(t, to, clean, b, spec->in_h, spec->in_w, net_num_classes(net), seed, first, target);
}

/* Attacks the set with o (DAG: toward target type t), filling row. */
static Status run_row(SegSweep *s, const AttackOptions *o, int t, const DagTargetOptions *to,
                      SegRow *row, MrError *err) {
  const Dataset *d = s->d;
  row->seconds = 0;
  long reached = 0, valid = 0, changed = 0, changed_reached = 0;
  double vs_clean = 0;
  PerturbationSum size = {0};
  Status st = STATUS_OK;
  for (int start = 0; st == STATUS_OK && start < d->n; start += s->batch) {
    const int b = d->n - start < s->batch ? d->n - start : s->batch;
    const float *x = d->images + s->per * start;
    const int *y = d->masks + s->P * start;
    AttackOptions a = *o;
    if (t >= 0) {
      /* from the clean prediction the sweep already made */
      dag_target((DagTarget)t, to, s->clean_pred + s->P * start, b, d->h, d->w, s->k, o->seed,
                 start, s->target);
      a.target = TARGET_MASK, a.target_mask = s->target;
    }
    int *pred = s->pred + s->P * start;
    double seconds = 0;
    const JournalPart unit[3] = {{pred, sizeof(int) * s->P * b},
                                 {s->sizes, sizeof(PerturbationOne) * b},
                                 {&seconds, sizeof seconds}};
    char key[128];
    snprintf(key, sizeof key, "%s%s/b%d", s->scope, s->key, start);
    if (!journal_restore(s->journal, key, unit, 3)) {
      const double t0 = omp_get_wtime();
      a.index_base = start;
      st = attack_run(s->net, &a, x, y, b, s->adv, err);
      if (st != STATUS_OK) break;
      net_segment(s->net, s->adv, b, pred);
      for (int i = 0; i < b; i++)
        s->sizes[i] = perturbation_measure(x + s->per * i, s->adv + s->per * i, d->c, d->h, d->w);
      seconds = omp_get_wtime() - t0;
      st = journal_record(s->journal, key, unit, 3, err);
      if (st != STATUS_OK) break;
    }
    row->seconds += seconds;
    for (int i = 0; i < b; i++) {
      perturbation_accumulate(&size, &s->sizes[i]);
      const int *pi = pred + s->P * i, *ci = s->clean_pred + s->P * (start + i);
      vs_clean += seg_image_dice(pi, ci, (int)s->P, s->k);
      if (t < 0 && a.target == TARGET_NONE) continue;
      const int *ti = t >= 0 ? s->target + s->P * i : NULL;
      for (size_t j = 0; j < s->P; j++) {
        const int want = ti ? ti[j] : a.target_class;
        valid++, reached += pi[j] == want;
        if (want != ci[j]) changed++, changed_reached += pi[j] == want;
      }
    }
    s->done_units += b;
    if (s->progress) s->progress(s->what, (int)s->done_units, (int)s->total_units, s->ctx);
  }
  if (st != STATUS_OK) return st;
  SegMetrics m;
  st = seg_metrics_compute(&m, s->pred, d->masks, d->n, (int)s->P, s->k, err);
  if (st != STATUS_OK) return st;
  snprintf(row->attack, sizeof row->attack, "%s%s%s", attack_name(o->kind), t >= 0 ? "-" : "",
           t >= 0 ? dag_target_name((DagTarget)t) : "");
  row->norm = o->norm, row->eps = o->eps, row->dag_target = t;
  row->dice = m.mean_dice, row->iou = m.mean_iou, row->pixel_acc = m.pixel_accuracy;
  row->class_dice = m.class_dice, row->image_dice = m.image_dice;
  m.class_dice = NULL, m.image_dice = NULL; /* the row owns them */
  seg_metrics_free(&m);
  const double n = d->n;
  row->dice_vs_clean = vs_clean / n;
  row->target_reached = valid ? (double)reached / valid : -1.0;
  row->changed_reached = changed ? (double)changed_reached / changed : valid ? 1.0 : -1.0;
  row->linf = size.linf / n, row->l2 = size.l2 / n, row->mse = size.mse / n;
  row->ssim = size.ssim / n;
  /* an image the attack left untouched counts as 100 dB */
  row->psnr = (size.psnr + 100.0 * (size.n - size.psnr_finite)) / n;
  return STATUS_OK;
}

/* The mean SSIM of the first n_images under noise kind at level (seeded)
 * and, when dice is given, their mean Dice (the calibration needs SSIM only). */
static double noisy_ssim(SegSweep *s, NoiseKind kind, double level, uint64_t seed, int n_images,
                         double *dice) {
  Rng rng;
  rng_seed(&rng, seed);
  double ss = 0, sum = 0;
  int *pred = dice ? malloc(sizeof(int) * s->P * s->batch) : NULL;
  if (dice && !pred) return NAN;
  for (int start = 0; start < n_images; start += s->batch) {
    const int b = n_images - start < s->batch ? n_images - start : s->batch;
    const float *x = s->d->images + s->per * start;
    memcpy(s->adv, x, sizeof(float) * s->per * b);
    noise_apply(s->adv, s->per * b, kind, (float)level, &rng);
    for (int i = 0; i < b; i++)
      ss += image_ssim(x + s->per * i, s->adv + s->per * i, s->d->c, s->d->h, s->d->w);
    if (!dice) continue;
    net_segment(s->net, s->adv, b, pred);
    for (int i = 0; i < b; i++)
      sum += seg_image_dice(pred + s->P * i, s->d->masks + s->P * (start + i), (int)s->P, s->k);
  }
  free(pred);
  if (dice) *dice = sum / n_images;
  return ss / n_images;
}

static void run_noise(SegSweep *s, NoiseKind kind, double target, uint64_t seed, SegNoiseRow *out) {
  const int m = s->d->n < 64 ? s->d->n : 64;
  double lo = 0.0, hi = 1.0;
  for (int it = 0; it < 20; it++) { /* SSIM falls as the level grows */
    const double mid = 0.5 * (lo + hi);
    if (noisy_ssim(s, kind, mid, seed, m, NULL) > target)
      lo = mid;
    else
      hi = mid;
  }
  out->kind = kind, out->ssim_target = target, out->level = 0.5 * (lo + hi);
  /* the Dice, and the SSIM actually reached, on the whole set */
  out->ssim = noisy_ssim(s, kind, out->level, seed + 1, s->d->n, &out->dice);
}

static double drop(double clean, double v) { return clean > 0 ? 100.0 * (clean - v) / clean : 0; }

Status seg_sweep(Net *net, const Dataset *d, const SegSweepOptions *o, SweepProgressFn progress,
                 void *ctx, SegSweepResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  const ModelSpec *spec = net_spec(net);
  if (!d->masks)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "the data has no masks: segmentation robustness needs image + mask pairs");
  if (d->n < 1) return mr_error_set(err, STATUS_ERR_ARG, "no images to attack");
  SegSweep s = {.net = net,
                .d = d,
                .batch = o->batch,
                .k = net_num_classes(net),
                .per = (size_t)net_input_size(net),
                .P = (size_t)d->h * d->w,
                .journal = o->journal,
                .scope = o->scope ? o->scope : "",
                .progress = progress,
                .ctx = ctx};
  s.clean_pred = malloc(sizeof(int) * s.P * d->n);
  s.pred = malloc(sizeof(int) * s.P * d->n);
  s.adv = malloc(sizeof(float) * s.per * s.batch);
  s.target = malloc(sizeof(int) * s.P * s.batch);
  s.sizes = malloc(sizeof(PerturbationOne) * s.batch);
  const int max_rows = o->n_attacks * o->n_eps + (o->dag ? DAG_TARGET_COUNT : 0);
  r->rows = calloc(max_rows + 1, sizeof(SegRow));
  r->noise = calloc(NOISE_COUNT, sizeof(SegNoiseRow));
  r->class_names = calloc(s.k, sizeof(char *));
  Status st = STATUS_OK;
  if (!s.clean_pred || !s.pred || !s.adv || !s.target || !s.sizes || !r->rows || !r->noise ||
      !r->class_names)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the segmentation sweep");
  r->n = d->n, r->k = s.k;
  for (int c = 0; st == STATUS_OK && c < s.k; c++) {
    char buf[16];
    r->class_names[c] = strdup(net_class_name(net, c, buf));
  }
  snprintf(r->training, sizeof r->training, "%s", spec->training);
  s.total_units = (long)d->n * (max_rows + (o->noise ? 3 : 0));
  if (st == STATUS_OK) st = net_segment_dataset(net, d, s.batch, s.clean_pred, err);
  if (st == STATUS_OK)
    st = seg_metrics_compute(&r->clean, s.clean_pred, d->masks, d->n, (int)s.P, s.k, err);
  for (int a = 0; st == STATUS_OK && a < o->n_attacks; a++)
    for (int e = 0; st == STATUS_OK && e < o->n_eps; e++) {
      AttackOptions ao = o->base;
      const AttackOptions defaults = attack_options_default(o->attacks[a]);
      ao.kind = o->attacks[a], ao.eps = o->eps[e];
      if (!ao.iters) ao.iters = defaults.iters;
      snprintf(s.what, sizeof s.what, "%s eps %g", attack_name(ao.kind), ao.eps);
      snprintf(s.key, sizeof s.key, "seg-row%d.%d", a, e);
      st = run_row(&s, &ao, -1, NULL, &r->rows[r->n_rows], err);
      if (st == STATUS_OK) r->n_rows++;
    }
  for (int t = 0; st == STATUS_OK && t < DAG_TARGET_COUNT; t++) {
    if (!(o->dag & (1 << t))) continue;
    AttackOptions ao = o->dag_o;
    ao.kind = ATTACK_DAG, ao.seed = o->base.seed;
    snprintf(s.what, sizeof s.what, "dag type %s", dag_target_name((DagTarget)t));
    snprintf(s.key, sizeof s.key, "seg-dag%d", t);
    st = run_row(&s, &ao, t, &o->dag_targets, &r->rows[r->n_rows], err);
    if (st == STATUS_OK) r->n_rows++;
  }
  /* Table 1's "adversarial average" is over the DAG types when DAG ran (paper
   * 002's attacks), else over every row; the noise matches those rows' SSIM */
  double ssim_sum = 0, dice_sum = 0;
  int averaged = 0;
  for (int i = 0; i < r->n_rows; i++) {
    r->rows[i].drop_pct = drop(r->clean.mean_dice, r->rows[i].dice);
    if (o->dag && r->rows[i].dag_target < 0) continue;
    ssim_sum += r->rows[i].ssim, dice_sum += r->rows[i].dice, averaged++;
  }
  if (averaged) {
    r->adv_mean_dice = dice_sum / averaged;
    r->adv_drop_pct = drop(r->clean.mean_dice, r->adv_mean_dice);
  }
  if (st == STATUS_OK && o->noise && averaged) {
    static const NoiseKind kinds[3] = {NOISE_RICIAN, NOISE_GAUSSIAN, NOISE_SPECKLE};
    for (int i = 0; st == STATUS_OK && i < 3; i++) {
      snprintf(s.what, sizeof s.what, "%s noise", noise_name(kinds[i]));
      SegNoiseRow *row = &r->noise[r->n_noise++];
      const JournalPart unit = {row, sizeof *row};
      char key[96];
      snprintf(key, sizeof key, "%sseg-noise%d", s.scope, i);
      if (!journal_restore(s.journal, key, &unit, 1)) {
        run_noise(&s, kinds[i], ssim_sum / averaged, o->base.seed + 101 * (i + 1), row);
        st = journal_record(s.journal, key, &unit, 1, err);
      }
      s.done_units += d->n;
      if (progress) progress(s.what, (int)s.done_units, (int)s.total_units, ctx);
    }
  }
  free(s.clean_pred), free(s.pred), free(s.adv), free(s.target), free(s.sizes);
  if (st != STATUS_OK) seg_sweep_result_free(r);
  return st;
}

void seg_sweep_result_free(SegSweepResult *r) {
  for (int i = 0; r->rows && i < r->n_rows; i++)
    free(r->rows[i].class_dice), free(r->rows[i].image_dice);
  for (int c = 0; r->class_names && c < r->k; c++) free(r->class_names[c]);
  free(r->rows), free(r->noise), free(r->class_names);
  seg_metrics_free(&r->clean);
  memset(r, 0, sizeof *r);
}

Status seg_robust_dice(Net *net, const Dataset *d, const AttackOptions *o, int batch, double *dice,
                       MrError *err) {
  if (!d->masks) return mr_error_set(err, STATUS_ERR_ARG, "the data has no masks");
  const size_t per = (size_t)net_input_size(net), P = (size_t)d->h * d->w;
  const int k = net_num_classes(net);
  float *adv = malloc(sizeof(float) * per * batch);
  int *pred = malloc(sizeof(int) * P * batch);
  Status st = adv && pred ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  double sum = 0;
  for (int start = 0; st == STATUS_OK && start < d->n; start += batch) {
    const int b = d->n - start < batch ? d->n - start : batch;
    const float *x = d->images + per * start;
    const float *in = x;
    if (o->eps > 0 || !attack_is_bounded(o->kind)) {
      const AttackOptions at = attack_at(o, start);
      st = attack_run(net, &at, x, d->masks + P * start, b, adv, err);
      in = adv;
    }
    net_segment(net, in, b, pred);
    for (int i = 0; i < b; i++)
      sum += seg_image_dice(pred + P * i, d->masks + P * (start + i), (int)P, k);
  }
  free(adv), free(pred);
  *dice = d->n ? sum / d->n : 0.0;
  return st;
}

Status seg_transfer_matrix(Net *const *nets, int n, const Dataset *d, const AttackOptions *a, int t,
                           const DagTargetOptions *to, int batch, Journal *journal, double *dice,
                           double *ssim, double *mse, MrError *err) {
  Status s = compare_check_models(nets, NULL, n, err);
  if (s != STATUS_OK) return s;
  if (!d->masks || d->n < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "no segmentation images for the transfer matrix");
  const int k = net_num_classes(nets[0]);
  const size_t per = (size_t)d->c * d->h * d->w, P = (size_t)d->h * d->w;
  float *adv = malloc(sizeof(float) * per * batch);
  int *pred = malloc(sizeof(int) * P * batch), *clean = malloc(sizeof(int) * P * batch);
  int *target = malloc(sizeof(int) * P * batch);
  double *sum = calloc((size_t)n * n, sizeof(double));
  /* a batch's outputs (its unit in the journal): Dice sums per target model, sizes */
  double *batch_sum = calloc(n, sizeof(double));
  PerturbationOne *sizes = malloc(sizeof(PerturbationOne) * batch);
  if (!adv || !pred || !clean || !target || !sum || !batch_sum || !sizes)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int src = 0; s == STATUS_OK && src < n; src++) {
    PerturbationSum size = {0};
    for (int start = 0; s == STATUS_OK && start < d->n; start += batch) {
      const int b = d->n - start < batch ? d->n - start : batch;
      const float *x = d->images + per * start;
      const JournalPart unit[2] = {{batch_sum, sizeof(double) * n},
                                   {sizes, sizeof(PerturbationOne) * b}};
      char key[64];
      snprintf(key, sizeof key, "seg-transfer%d/m%d/b%d", t, src, start);
      if (!journal_restore(journal, key, unit, 2)) {
        AttackOptions o = *a;
        if (t >= 0) {
          seg_dag_targets(nets[src], x, b, start, (DagTarget)t, to, a->seed, clean, target);
          o.kind = ATTACK_DAG, o.target = TARGET_MASK, o.target_mask = target;
        }
        o.index_base = start;
        s = attack_run(nets[src], &o, x, d->masks + P * start, b, adv, err);
        for (int i = 0; s == STATUS_OK && i < b; i++)
          sizes[i] = perturbation_measure(x + per * i, adv + per * i, d->c, d->h, d->w);
        for (int dst = 0; s == STATUS_OK && dst < n; dst++) {
          net_segment(nets[dst], adv, b, pred);
          batch_sum[dst] = 0;
          for (int i = 0; i < b; i++)
            batch_sum[dst] += seg_image_dice(pred + P * i, d->masks + P * (start + i), (int)P, k);
        }
        if (s == STATUS_OK) s = journal_record(journal, key, unit, 2, err);
      }
      for (int i = 0; s == STATUS_OK && i < b; i++) perturbation_accumulate(&size, &sizes[i]);
      for (int dst = 0; s == STATUS_OK && dst < n; dst++) sum[src * n + dst] += batch_sum[dst];
    }
    if (ssim) ssim[src] = size.ssim / d->n;
    if (mse) mse[src] = size.mse / d->n;
  }
  for (int i = 0; s == STATUS_OK && i < n * n; i++) dice[i] = sum[i] / d->n;
  free(adv), free(pred), free(clean), free(target), free(sum), free(batch_sum), free(sizes);
  return s;
}

Status seg_noise_row(Net *net, const Dataset *d, NoiseKind kind, double ssim_target, uint64_t seed,
                     int batch, SegNoiseRow *out, MrError *err) {
  SegSweep s = {.net = net,
                .d = d,
                .batch = batch,
                .k = net_num_classes(net),
                .per = (size_t)net_input_size(net),
                .P = (size_t)d->h * d->w};
  if (!d->masks || d->n < 1) return mr_error_set(err, STATUS_ERR_ARG, "no segmentation images");
  s.adv = malloc(sizeof(float) * s.per * batch);
  if (!s.adv) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  run_noise(&s, kind, ssim_target, seed, out);
  free(s.adv);
  return STATUS_OK;
}
