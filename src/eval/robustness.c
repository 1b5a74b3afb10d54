/* The robustness sweep of paper 001 Table 1 / paper 002 Table 1: accuracy,
 * % drop, success rate and perturbation statistics per attack and eps,
 * streamed batch by batch (memory does not grow with the test set); the
 * noise contrast at matched SSIM (paper 002); and the self-checks of Carlini
 * et al. 2019 against a failed evaluation (gradient masking). */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

typedef struct {
  Net *net;
  const Dataset *d;
  int batch, k, positive;
  size_t per;
  float *adv, *probs;
  float *all_probs; /* (n, k): one row's scores, for its AUC */
  const int *clean_pred;
  PerturbationOne *sizes; /* (batch): one batch's perturbation sizes */
  /* SweepOptions.carry: per image, fooled at a smaller eps of the current attack, with the
   * scores and size of that adversarial example; and a batch's uncarried images gathered */
  unsigned char *fooled;
  float *fooled_probs;
  PerturbationOne *fooled_sizes;
  float *sub_x, *sub_probs;
  int *sub_y, *sub_index;
  /* a row's batches are shared by the MPI ranks (dist.c): each image's sizes, each batch's
   * seconds, and which images this rank attacked, until the results are shared */
  PerturbationOne *row_sizes;
  double *batch_seconds;
  unsigned char *done, *batch_done;
  /* resumable: each batch of a row is a unit of the journal, keyed scope + key + start */
  Journal *journal;
  const char *scope;
  char key[48];
  /* progress: run_row reports `what` batch by batch as units of images */
  SweepProgressFn progress;
  void *ctx;
  char what[64];
  long done_units, total_units;
} Sweep;

static void report_progress(Sweep *s, long extra) {
  if (!s->progress || s->total_units <= 0) return;
  /* SweepProgressFn counts in int: scale to a fixed resolution */
  const double frac = (double)(s->done_units + extra) / s->total_units;
  s->progress(s->what, (int)(frac * 1000000), 1000000, s->ctx);
}

/* paper 002's % drop: the relative loss of accuracy */
static double drop_pct(double clean, double acc) {
  return clean > 0 ? 100.0 * (clean - acc) / clean : 0.0;
}

/* Clean predictions, confidences and metrics of the whole split. */
static Status clean_predictions(Sweep *s, SweepResult *r, MrError *err) {
  for (int start = 0; start < s->d->n; start += s->batch) {
    const int b = s->d->n - start < s->batch ? s->d->n - start : s->batch;
    net_predict(s->net, s->d->images + s->per * start, b, s->all_probs + (size_t)start * s->k);
  }
  for (int i = 0; i < s->d->n; i++) {
    const float *p = s->all_probs + (size_t)i * s->k;
    if (p[0] != p[0]) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory predicting");
    r->clean_pred[i] = argmax(p, s->k);
    r->clean_confidence[i] = p[r->clean_pred[i]];
  }
  Metrics m;
  Status st = metrics_compute(&m, s->all_probs, s->d->labels, s->d->n, s->k, err);
  if (st != STATUS_OK) return st;
  volume_accuracy(s->d, s->all_probs, s->k, &r->volumes, &r->volumes_labelled,
                  &r->clean_volume_correct);
  r->clean_accuracy = m.accuracy, r->clean_balanced_accuracy = m.balanced_accuracy;
  r->clean_auc = m.auc;
  memcpy(r->clean_confusion, m.confusion, sizeof(int) * s->k * s->k);
  r->majority_class = m.majority_class, r->majority_share = m.majority_share;
  metrics_free(&m);
  if (r->positive >= 0)
    for (int i = 0; i < s->d->n; i++) {
      r->positives += s->d->labels[i] == r->positive;
      r->clean_detected += s->d->labels[i] == r->positive && r->clean_pred[i] == r->positive;
    }
  return STATUS_OK;
}

/* Attacks the batch [start, start + b) into probs and s->sizes: with carry, only the images
 * not yet fooled, gathered (each by its own index: the same example as in the full batch). */
static Status attack_batch(Sweep *s, const AttackOptions *o, int start, int b, int carry,
                           float *probs, MrError *err) {
  const Dataset *d = s->d;
  const float *x = d->images + s->per * start;
  const int *y = d->labels + start;
  if (!carry) {
    const AttackOptions at = attack_at(o, start);
    Status st = attack_run(s->net, &at, x, y, b, s->adv, err);
    if (st != STATUS_OK) return st;
    net_predict(s->net, s->adv, b, probs);
    for (int i = 0; i < b; i++)
      s->sizes[i] = perturbation_measure(x + s->per * i, s->adv + s->per * i, d->c, d->h, d->w);
    return STATUS_OK;
  }
  int m = 0;
  for (int i = 0; i < b; i++) {
    const int at = start + i;
    if (s->fooled[at]) {
      memcpy(probs + (size_t)i * s->k, s->fooled_probs + (size_t)at * s->k, sizeof(float) * s->k);
      s->sizes[i] = s->fooled_sizes[at];
      continue;
    }
    memcpy(s->sub_x + s->per * m, x + s->per * i, sizeof(float) * s->per);
    s->sub_y[m] = y[i], s->sub_index[m] = at;
    m++;
  }
  if (!m) return STATUS_OK;
  AttackOptions at = *o;
  at.index = s->sub_index;
  Status st = attack_run(s->net, &at, s->sub_x, s->sub_y, m, s->adv, err);
  if (st != STATUS_OK) return st;
  net_predict(s->net, s->adv, m, s->sub_probs);
  for (int j = 0; j < m; j++) {
    const int i = s->sub_index[j] - start;
    memcpy(probs + (size_t)i * s->k, s->sub_probs + (size_t)j * s->k, sizeof(float) * s->k);
    s->sizes[i] =
        perturbation_measure(s->sub_x + s->per * j, s->adv + s->per * j, d->c, d->h, d->w);
  }
  return STATUS_OK;
}

/* Whether the sweep carries an attack's fooled images from eps to eps: bounded, untargeted. */
static int sweep_carries(const SweepOptions *o, AttackKind kind) {
  return o->carry && attack_is_bounded(kind) && o->base.target == TARGET_NONE;
}

static Status run_row(Sweep *s, const AttackOptions *o, int carry, SweepRow *row, MrError *err) {
  const Dataset *d = s->d;
  memset(row, 0, sizeof *row);
  snprintf(row->attack, sizeof row->attack, "%s", attack_name(o->kind));
  row->norm = o->norm, row->eps = o->eps, row->target = o->target, row->n = d->n;
  row->pred = malloc(sizeof(int) * (d->n + 1));
  row->pred_confidence = malloc(sizeof(float) * (d->n + 1));
  if (!row->pred || !row->pred_confidence)
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the sweep");
  double conf = 0;
  PerturbationSum size = {0};
  /* the batches from a queue the MPI ranks share (one process: in order); every rank then
   * has every image's scores and sizes, and sums the row alike (the carry needs them all) */
  const int n_batches = (d->n + s->batch - 1) / s->batch;
  memset(s->done, 0, (size_t)d->n), memset(s->batch_done, 0, (size_t)n_batches);
  DistQueue *queue = dist_queue_new(n_batches, 1);
  if (!queue) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the sweep");
  for (int bi; (bi = dist_queue_next(queue)) < n_batches;) {
    const int start = bi * s->batch, b = d->n - start < s->batch ? d->n - start : s->batch;
    float *probs = s->all_probs + (size_t)start * s->k;
    PerturbationOne *sizes = s->row_sizes + start;
    /* the batch's outputs: the scores of its adversarial images and their sizes */
    double *seconds = &s->batch_seconds[bi];
    *seconds = 0;
    const JournalPart unit[3] = {{probs, sizeof(float) * s->k * b},
                                 {sizes, sizeof(PerturbationOne) * b},
                                 {seconds, sizeof *seconds}};
    char key[128];
    snprintf(key, sizeof key, "%s%s/b%d", s->scope, s->key, start);
    report_progress(s, start);
    memset(s->done + start, 1, (size_t)b), s->batch_done[bi] = 1;
    if (!journal_restore(s->journal, key, unit, 3)) {
      const double t0 = omp_get_wtime();
      Status st = attack_batch(s, o, start, b, carry, probs, err);
      if (st == STATUS_OK) {
        memcpy(sizes, s->sizes, sizeof(PerturbationOne) * b);
        *seconds = omp_get_wtime() - t0;
        st = journal_record(s->journal, key, unit, 3, err);
      }
      if (st != STATUS_OK) {
        dist_queue_free(queue, 1);
        return st;
      }
    }
  }
  dist_queue_free(queue, 0);
  Status shared = dist_share(s->all_probs, sizeof(float) * s->k, d->n, s->done, err);
  if (shared == STATUS_OK)
    shared = dist_share(s->row_sizes, sizeof(PerturbationOne), d->n, s->done, err);
  if (shared == STATUS_OK)
    shared = dist_share(s->batch_seconds, sizeof(double), n_batches, s->batch_done, err);
  if (shared != STATUS_OK) return shared;
  for (int start = 0; start < d->n; start += s->batch) {
    const int b = d->n - start < s->batch ? d->n - start : s->batch;
    const int *y = d->labels + start;
    const float *probs = s->all_probs + (size_t)start * s->k;
    row->seconds += s->batch_seconds[start / s->batch];
    for (int i = 0; i < b; i++) {
      const float *p = probs + (size_t)i * s->k;
      const int pred = argmax(p, s->k), clean = s->clean_pred[start + i];
      const int clean_ok = clean == y[i];
      row->pred[start + i] = pred, row->pred_confidence[start + i] = p[pred];
      row->correct += pred == y[i];
      row->clean_correct += clean_ok;
      row->flipped += clean_ok && pred != y[i];
      const int at = start + i;
      if (carry && s->fooled[at]) {
        row->carried++;
      } else if (carry && pred != y[i]) { /* its example holds at every larger eps */
        s->fooled[at] = 1, s->fooled_sizes[at] = s->row_sizes[at];
        memcpy(s->fooled_probs + (size_t)at * s->k, p, sizeof(float) * s->k);
      }
      if (s->positive >= 0 && y[i] == s->positive) {
        row->positives_detected += pred == s->positive;
        row->missed += clean == s->positive && pred != s->positive;
      }
      conf += p[pred];
      perturbation_accumulate(&size, &s->row_sizes[at]);
    }
  }
  s->done_units += d->n;
  Metrics m;
  Status st = metrics_compute(&m, s->all_probs, d->labels, d->n, s->k, err);
  if (st != STATUS_OK) return st;
  int volumes, labelled; /* each slice in its own ball: for L-inf the volume's ball; for L2 a
                            budget per slice */
  volume_accuracy(d, s->all_probs, s->k, &volumes, &labelled, &row->volume_correct);
  row->balanced_accuracy = m.balanced_accuracy, row->auc = m.auc;
  row->confusion = m.confusion; /* the row owns it now */
  const double n = d->n ? d->n : 1;
  row->accuracy = row->correct / n;
  row->success_rate = row->clean_correct ? (double)row->flipped / row->clean_correct : 0.0;
  row->linf = size.linf / n, row->l2 = size.l2 / n, row->mse = size.mse / n,
  row->ssim = size.ssim / n, row->confidence = conf / n;
  row->psnr = size.psnr_finite ? size.psnr / size.psnr_finite : INFINITY;
  return STATUS_OK;
}

static void row_free(SweepRow *row) {
  free(row->confusion), free(row->pred), free(row->pred_confidence);
  row->confusion = NULL, row->pred = NULL, row->pred_confidence = NULL;
}

/* Image i's noise into dst: stream i of the seed, so it does not depend on the image's batch
 * or on which MPI rank draws it. */
static void noisy_image(float *dst, const Sweep *s, int i, NoiseKind kind, float level,
                        uint64_t seed) {
  Rng rng;
  rng_seed_stream(&rng, seed, (uint64_t)i);
  memcpy(dst, s->d->images + s->per * i, sizeof(float) * s->per);
  noise_apply(dst, s->per, kind, level, &rng);
}

/* Mean SSIM of the noisy vs clean images of the first `m`: each rank takes a slice, and
 * every rank adds the images' values in index order. each: (m, 2) scratch. */
static Status noisy_ssim(Sweep *s, int m, NoiseKind kind, float level, uint64_t seed, double *each,
                         double *mean, MrError *err) {
  const long rank = dist_rank(), ranks = dist_size();
  memset(s->done, 0, (size_t)m);
  for (int i = (int)(m * rank / ranks); i < (int)(m * (rank + 1) / ranks); i++) {
    noisy_image(s->adv, s, i, kind, level, seed);
    each[2 * i] = image_ssim(s->d->images + s->per * i, s->adv, s->d->c, s->d->h, s->d->w);
    s->done[i] = 1;
  }
  const Status st = dist_share(each, 2 * sizeof(double), m, s->done, err);
  double total = 0;
  for (int i = 0; i < m; i++) total += each[2 * i];
  *mean = total / m;
  return st;
}

/* A noise row: the level whose mean SSIM matches the reference attack row's, and the accuracy
 * at it. The batches come from a queue the MPI ranks share. */
static Status run_noise(Sweep *s, NoiseKind kind, const SweepRow *ref, NoiseRow *out, uint64_t seed,
                        MrError *err) {
  const Dataset *d = s->d;
  const int m = d->n < 64 ? d->n : 64;
  double *each = calloc((size_t)2 * d->n, sizeof(double)); /* per image: SSIM, correct */
  if (!each) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the noise contrast");
  /* SSIM falls as the level grows: bisect the level on a calibration subset */
  double lo = 0.0, hi = 1.0;
  Status st = STATUS_OK;
  for (int it = 0; st == STATUS_OK && it < 24; it++) {
    const double mid = 0.5 * (lo + hi);
    double ssim = 0.0;
    st = noisy_ssim(s, m, kind, (float)mid, seed, each, &ssim, err);
    if (ssim > ref->ssim)
      lo = mid;
    else
      hi = mid;
  }
  out->kind = kind, out->eps = ref->eps, out->level = 0.5 * (lo + hi);
  const int n_batches = (d->n + s->batch - 1) / s->batch;
  memset(s->done, 0, (size_t)d->n);
  DistQueue *queue = st == STATUS_OK ? dist_queue_new(n_batches, 1) : NULL;
  if (st == STATUS_OK && !queue) st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int bi; st == STATUS_OK && (bi = dist_queue_next(queue)) < n_batches;) {
    const int start = bi * s->batch, b = d->n - start < s->batch ? d->n - start : s->batch;
    for (int i = 0; i < b; i++)
      noisy_image(s->adv + s->per * i, s, start + i, kind, (float)out->level, seed + 1);
    net_predict(s->net, s->adv, b, s->probs);
    for (int i = 0; i < b; i++) {
      const float *x = d->images + s->per * (start + i);
      each[2 * (start + i)] = image_ssim(x, s->adv + s->per * i, d->c, d->h, d->w);
      each[2 * (start + i) + 1] = argmax(s->probs + (size_t)i * s->k, s->k) == d->labels[start + i];
    }
    memset(s->done + start, 1, (size_t)b);
  }
  dist_queue_free(queue, st != STATUS_OK);
  if (st == STATUS_OK) st = dist_share(each, 2 * sizeof(double), d->n, s->done, err);
  double ssim = 0.0, correct = 0.0;
  for (int i = 0; i < d->n; i++) ssim += each[2 * i], correct += each[2 * i + 1];
  out->accuracy = correct / d->n;
  out->ssim = ssim / d->n;
  free(each);
  return st;
}

static void add_check(SweepResult *r, const char *name, int passed, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_check(SweepResult *r, const char *name, int passed, const char *fmt, ...) {
  CheckRow *c = &r->checks[r->n_checks++];
  snprintf(c->name, sizeof c->name, "%s", name);
  c->passed = passed;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->message, sizeof c->message, fmt, ap);
  va_end(ap);
}

static const SweepRow *find_row(const SweepResult *r, const char *attack, float eps) {
  for (int i = 0; i < r->n_rows; i++)
    if (strcmp(r->rows[i].attack, attack) == 0 && r->rows[i].eps == eps) return &r->rows[i];
  return NULL;
}

/* The class a row predicts most, and the share of images it goes to. */
static int dominant_prediction(const SweepRow *row, int k, double *share) {
  int best = 0, best_count = -1;
  for (int c = 0; c < k; c++) {
    int col = 0;
    for (int t = 0; t < k; t++) col += row->confusion[t * k + c];
    if (col > best_count) best = c, best_count = col;
  }
  *share = row->n ? (double)best_count / row->n : 0.0;
  return best;
}

const char *sweep_class_name(const SweepResult *r, int c) {
  return c >= 0 && c < r->k && r->class_names && r->class_names[c] ? r->class_names[c] : "?";
}

double sweep_worst_balanced(const SweepResult *r, float eps) {
  double worst = NAN;
  for (int i = 0; i < r->n_rows; i++)
    if (r->rows[i].eps == eps && !(r->rows[i].balanced_accuracy >= worst))
      worst = r->rows[i].balanced_accuracy;
  return worst;
}

/* A model that answers (nearly) one class scores the majority share as
 * "robust accuracy" at every eps: accuracy alone would rank it above a real
 * model. A row is trivial when 80% of its answers are one class and its
 * balanced accuracy is within 5 points of chance or its accuracy within one
 * image of the majority share. (A model an attack breaks answers the wrong
 * class of each image: its balanced accuracy falls below chance instead.) */
static void check_trivial(Sweep *s, SweepResult *r) {
  const double chance = 1.0 / s->k, slack = 1.0 / (s->d->n ? s->d->n : 1) + 0.005;
  const int near_chance = r->clean_balanced_accuracy <= chance + 0.05;
  add_check(r, "clean balanced accuracy above chance", !near_chance,
            "clean balanced accuracy %.2f%% %s chance (%.0f%%); accuracy %.2f%%, the majority "
            "class '%s' is %.2f%% of the images",
            100 * r->clean_balanced_accuracy, near_chance ? "is near" : "is above", 100 * chance,
            100 * r->clean_accuracy, sweep_class_name(r, r->majority_class),
            100 * r->majority_share);
  int trivial = 0, rows = 0, answer = 0;
  double best_bal = 0.0, answer_share = 1.0;
  for (int i = 0; i < r->n_rows; i++) {
    const SweepRow *w = &r->rows[i];
    if (w->eps <= 0) continue;
    rows++;
    double share;
    const int c = dominant_prediction(w, s->k, &share);
    const int is_trivial = share >= 0.8 && (fabs(w->balanced_accuracy - chance) <= 0.05 ||
                                            fabs(w->accuracy - r->majority_share) <= slack);
    trivial += is_trivial;
    if (is_trivial && share <= answer_share) answer = c, answer_share = share;
    best_bal = fmax(best_bal, w->balanced_accuracy);
  }
  if (!rows) return;
  int of_class = 0;
  for (int j = 0; j < s->k; j++) of_class += r->clean_confusion[answer * s->k + j];
  if (trivial == rows)
    add_check(r, "not a constant classifier", 0,
              "under every attack and eps the model answers '%s' for %.0f%%%s of the "
              "images, so its robust accuracy is about the share of '%s' images (%.2f%%) and its "
              "balanced accuracy at most %.2f%%: this is not robustness; rank by balanced accuracy",
              sweep_class_name(r, answer), 100 * answer_share, answer_share < 1 ? " or more" : "",
              sweep_class_name(r, answer), 100.0 * of_class / (r->n ? r->n : 1), 100 * best_bal);
  else
    add_check(r, "not a constant classifier", 1,
              "%d of %d attacked rows score like a constant classifier", trivial, rows);
}

/* Carlini et al. 2019, "On Evaluating Adversarial Robustness", sec. 5. */
static Status run_checks(Sweep *s, const SweepOptions *o, SweepResult *r, MrError *err) {
  const double slack = 1.0 / (s->d->n ? s->d->n : 1) + 0.005; /* one image or half a point */
  check_trivial(s, r);
  int monotone = 1, tested = 0;
  char where[256] = "";
  for (int a = 0; a < o->n_attacks; a++)
    for (int e = 1; e < o->n_eps && !sweep_carries(o, o->attacks[a]); e++) {
      tested = 1;
      const SweepRow *p = find_row(r, attack_name(o->attacks[a]), o->eps[e - 1]);
      const SweepRow *q = find_row(r, attack_name(o->attacks[a]), o->eps[e]);
      if (p && q && o->eps[e] > o->eps[e - 1] && q->accuracy > p->accuracy + slack) {
        monotone = 0;
        snprintf(where, sizeof where, "%s: %.2f%% at eps %g but %.2f%% at eps %g", p->attack,
                 100 * p->accuracy, p->eps, 100 * q->accuracy, q->eps);
      }
    }
  if (tested) /* a carried attack's accuracy cannot rise with eps: not tested */
    add_check(r, "accuracy falls with eps", monotone, "%s",
              monotone ? "robust accuracy never rises as eps grows" : where);
  int iter_ok = 1, compared = 0;
  where[0] = 0;
  for (int e = 0; e < o->n_eps; e++) {
    const SweepRow *f = find_row(r, "fgsm", o->eps[e]);
    for (int a = 0; f && a < o->n_attacks; a++) {
      if (o->attacks[a] == ATTACK_FGSM || !attack_is_bounded(o->attacks[a]) ||
          o->attacks[a] == ATTACK_SQUARE)
        continue;
      const SweepRow *it = find_row(r, attack_name(o->attacks[a]), o->eps[e]);
      if (!it) continue;
      compared++;
      if (it->accuracy > f->accuracy + slack) {
        iter_ok = 0;
        snprintf(where, sizeof where, "%s leaves %.2f%% but FGSM %.2f%% at eps %g", it->attack,
                 100 * it->accuracy, 100 * f->accuracy, it->eps);
      }
    }
  }
  if (compared)
    add_check(r, "iterative attacks beat FGSM", iter_ok, "%s",
              iter_ok ? "every iterative attack is at least as strong as FGSM" : where);
  /* an unbounded-looking eps must break any undefended model */
  AttackOptions big = o->base;
  big.kind = ATTACK_PGD, big.norm = NORM_LINF, big.eps = 0.3f, big.iters = 20, big.step = 0;
  snprintf(s->what, sizeof s->what, "self-check: PGD-20 at eps 0.3");
  snprintf(s->key, sizeof s->key, "check-pgd");
  SweepRow row;
  Status st = run_row(s, &big, 0, &row, err);
  if (st != STATUS_OK) {
    row_free(&row);
    return st;
  }
  snprintf(row.attack, sizeof row.attack, "pgd (check)");
  row.drop_pct = drop_pct(r->clean_accuracy, row.accuracy);
  r->rows[r->n_rows++] = row;
  add_check(r, "large eps reaches ~0%", row.accuracy <= 0.05,
            "PGD-20 at L-inf eps 0.3 leaves %.2f%% accuracy%s", 100 * row.accuracy,
            row.accuracy <= 0.05 ? "" : ": the gradients may be masked or the attack broken");
  /* a query-only attack must not beat the white-box ones */
  const float eps_max = o->eps[o->n_eps - 1];
  double best_white = 2.0;
  for (int a = 0; a < o->n_attacks; a++) {
    const SweepRow *w = find_row(r, attack_name(o->attacks[a]), eps_max);
    if (w && o->attacks[a] != ATTACK_SQUARE && w->norm == NORM_LINF)
      best_white = fmin(best_white, w->accuracy);
  }
  if (best_white <= 1.0) {
    AttackOptions sq = attack_options_default(ATTACK_SQUARE);
    sq.eps = eps_max, sq.seed = o->base.seed;
    snprintf(s->what, sizeof s->what, "self-check: Square at eps %g", eps_max);
    snprintf(s->key, sizeof s->key, "check-square");
    st = run_row(s, &sq, 0, &row, err);
    if (st != STATUS_OK) {
      row_free(&row);
      return st;
    }
    snprintf(row.attack, sizeof row.attack, "square (check)");
    row.drop_pct = drop_pct(r->clean_accuracy, row.accuracy);
    r->rows[r->n_rows++] = row;
    const int ok = row.accuracy >= best_white - 0.05;
    add_check(
        r, "black-box no stronger than white-box", ok,
        "Square (1000 queries) leaves %.2f%%, the strongest white-box attack %.2f%% at eps %g%s",
        100 * row.accuracy, 100 * best_white, eps_max, ok ? "" : ": a sign of masked gradients");
  }
  return STATUS_OK;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Where the worst attack's balanced accuracy first falls to half the clean
 * one, interpolated between the eps of the grid (from eps 0 = clean). */
static double halving_eps(const SweepResult *r, const SweepOptions *o) {
  float *eps = malloc(sizeof(float) * (o->n_eps + 1));
  if (!eps) return NAN;
  memcpy(eps, o->eps, sizeof(float) * o->n_eps);
  qsort(eps, o->n_eps, sizeof(float), cmp_float);
  const double half = 0.5 * r->clean_balanced_accuracy;
  double prev_eps = 0, prev_bal = r->clean_balanced_accuracy, found = NAN;
  for (int e = 0; e < o->n_eps && isnan(found); e++) {
    const double worst = sweep_worst_balanced(r, eps[e]);
    if (isnan(worst) || eps[e] <= 0) continue;
    if (worst <= half)
      found = prev_bal > worst
                  ? prev_eps + (eps[e] - prev_eps) * (prev_bal - half) / (prev_bal - worst)
                  : eps[e];
    prev_eps = eps[e], prev_bal = worst;
  }
  free(eps);
  return found;
}

Status robustness_sweep(Net *net, const Dataset *d, const SweepOptions *o, SweepProgressFn progress,
                        void *ctx, SweepResult *r, MrError *err) {
  memset(r, 0, sizeof *r);
  const ModelSpec *spec = net_spec(net);
  if (d->c != spec->in_c || d->h != spec->in_h || d->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE, "data is %dx%dx%d but the model takes %dx%dx%d",
                        d->c, d->h, d->w, spec->in_c, spec->in_h, spec->in_w);
  for (int e = 0; e < o->n_eps; e++)
    if (!(o->eps[e] >= 0))
      return mr_error_set(err, STATUS_ERR_ARG, "eps must be >= 0, got %g", o->eps[e]);
  for (int i = 0; i < d->n; i++)
    if (d->labels[i] < 0)
      return mr_error_set(err, STATUS_ERR_ARG,
                          "image %d has no label: a robustness sweep needs labelled images "
                          "(triage and predict take unlabelled ones)",
                          i);
  Sweep s = {.net = net,
             .d = d,
             .batch = o->batch,
             .k = net_num_classes(net),
             .per = (size_t)net_input_size(net),
             .journal = o->journal,
             .scope = o->scope ? o->scope : "",
             .progress = progress,
             .ctx = ctx};
  /* the work in images attacked: every row, the noise contrast as one, two check rows */
  s.total_units = (long)d->n * (o->n_attacks * o->n_eps + (o->noise ? 1 : 0) + (o->checks ? 2 : 0));
  s.positive = r->positive = positive_class(net, o->positive);
  s.adv = malloc(sizeof(float) * s.per * s.batch);
  s.probs = malloc(sizeof(float) * s.k * s.batch);
  s.sizes = malloc(sizeof(PerturbationOne) * s.batch);
  if (o->carry) {
    s.fooled = malloc(d->n + 1);
    s.fooled_probs = malloc(sizeof(float) * ((size_t)s.k * d->n + 1));
    s.fooled_sizes = malloc(sizeof(PerturbationOne) * (d->n + 1));
    s.sub_x = malloc(sizeof(float) * s.per * s.batch);
    s.sub_probs = malloc(sizeof(float) * s.k * s.batch);
    s.sub_y = malloc(sizeof(int) * s.batch), s.sub_index = malloc(sizeof(int) * s.batch);
  }
  const int carry_ready = !o->carry || (s.fooled && s.fooled_probs && s.fooled_sizes && s.sub_x &&
                                        s.sub_probs && s.sub_y && s.sub_index);
  s.all_probs = malloc(sizeof(float) * ((size_t)s.k * d->n + 1));
  s.row_sizes = malloc(sizeof(PerturbationOne) * (d->n + 1));
  s.batch_seconds = malloc(sizeof(double) * (d->n / (s.batch > 0 ? s.batch : 1) + 2));
  s.done = malloc(d->n + 1), s.batch_done = malloc(d->n / (s.batch > 0 ? s.batch : 1) + 2);
  r->clean_pred = malloc(sizeof(int) * (d->n + 1));
  r->clean_confidence = malloc(sizeof(float) * (d->n + 1));
  r->clean_confusion = calloc((size_t)s.k * s.k, sizeof(int));
  r->class_names = calloc(s.k, sizeof(char *));
  s.clean_pred = r->clean_pred;
  const int max_rows = o->n_attacks * o->n_eps + 2;
  r->rows = calloc(max_rows, sizeof(SweepRow));
  r->noise = calloc((size_t)NOISE_COUNT * o->n_eps + 1, sizeof(NoiseRow));
  r->checks = calloc(10, sizeof(CheckRow));
  Status st = STATUS_OK;
  if (!carry_ready || !s.adv || !s.probs || !s.sizes || !s.all_probs || !s.row_sizes ||
      !s.batch_seconds || !s.done || !s.batch_done || !r->clean_pred || !r->clean_confidence ||
      !r->clean_confusion || !r->class_names || !r->rows || !r->noise || !r->checks)
    st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the sweep");
  r->n = d->n, r->k = s.k;
  for (int c = 0; st == STATUS_OK && c < s.k; c++) {
    char buf[16];
    r->class_names[c] = strdup(net_class_name(net, c, buf));
  }
  if (st == STATUS_OK) st = clean_predictions(&s, r, err);
  snprintf(r->training, sizeof r->training, "%s", net_spec(net)->training);
  /* rows in the order asked; each attack's eps run smallest first, for the carry */
  int *order = malloc(sizeof(int) * (o->n_eps + 1));
  if (st == STATUS_OK && !order) st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int e = 0; order && e < o->n_eps; e++) {
    int at = e;
    while (at > 0 && o->eps[order[at - 1]] > o->eps[e]) order[at] = order[at - 1], at--;
    order[at] = e;
  }
  if (st == STATUS_OK) r->n_rows = o->n_attacks * o->n_eps; /* zeroed until run: freeable */
  for (int a = 0; st == STATUS_OK && a < o->n_attacks; a++) {
    const int carry = sweep_carries(o, o->attacks[a]);
    r->carried |= carry;
    if (carry) memset(s.fooled, 0, d->n);
    for (int j = 0; st == STATUS_OK && j < o->n_eps; j++) {
      const int e = order[j];
      AttackOptions ao = o->base;
      const AttackOptions defaults = attack_options_default(o->attacks[a]);
      ao.kind = o->attacks[a], ao.eps = o->eps[e];
      if (!o->base.iters) ao.iters = defaults.iters;
      if (ao.kind == ATTACK_FGSM) ao.iters = 1;
      snprintf(s.what, sizeof s.what, "%s eps %g", attack_name(ao.kind), ao.eps);
      snprintf(s.key, sizeof s.key, "row%d.%d", a, e);
      SweepRow *row = &r->rows[a * o->n_eps + e];
      st = run_row(&s, &ao, carry, row, err);
      if (st == STATUS_OK) row->drop_pct = drop_pct(r->clean_accuracy, row->accuracy);
    }
  }
  free(order);
  if (st == STATUS_OK) r->halving_eps = halving_eps(r, o);
  /* noise at the SSIM of the first listed gradient attack, eps by eps */
  for (int e = 0; st == STATUS_OK && o->noise && e < o->n_eps && o->n_attacks; e++) {
    const SweepRow *ref = find_row(r, attack_name(o->attacks[0]), o->eps[e]);
    if (!ref || ref->ssim >= 1.0) continue;
    snprintf(s.what, sizeof s.what, "noise contrast at eps %g", o->eps[e]);
    report_progress(&s, (long)d->n * e / o->n_eps);
    for (int k = 0; st == STATUS_OK && k < NOISE_COUNT; k++) {
      NoiseRow *row = &r->noise[r->n_noise++];
      const JournalPart unit = {row, sizeof *row};
      char key[96];
      snprintf(key, sizeof key, "%snoise%d.%d", s.scope, e, k);
      /* a noise row is collective under MPI: restored only if every rank journaled it */
      double restored = journal_restore(s.journal, key, &unit, 1);
      if (dist_size() > 1) dist_sum_doubles(&restored, 1);
      if (restored == dist_size()) continue;
      st = run_noise(&s, (NoiseKind)k, ref, row, o->base.seed, err);
      if (st == STATUS_OK) st = journal_record(s.journal, key, &unit, 1, err);
    }
  }
  if (o->noise) s.done_units += d->n;
  if (st == STATUS_OK && o->checks) {
    st = run_checks(&s, o, r, err);
  }
  free(s.adv), free(s.probs), free(s.sizes), free(s.all_probs);
  free(s.row_sizes), free(s.batch_seconds), free(s.done), free(s.batch_done);
  free(s.fooled), free(s.fooled_probs), free(s.fooled_sizes), free(s.sub_x), free(s.sub_probs);
  free(s.sub_y), free(s.sub_index);
  if (st != STATUS_OK) sweep_result_free(r);
  return st;
}

void sweep_result_free(SweepResult *r) {
  for (int i = 0; r->rows && i < r->n_rows; i++) row_free(&r->rows[i]);
  for (int c = 0; r->class_names && c < r->k; c++) free(r->class_names[c]);
  free(r->class_names), free(r->clean_pred), free(r->clean_confidence), free(r->clean_confusion);
  free(r->rows), free(r->noise), free(r->checks);
  memset(r, 0, sizeof *r);
}

Status robust_accuracy(Net *net, const Dataset *d, const int *pick, int n, const AttackOptions *o,
                       int batch, double *acc, MrError *err) {
  if (!pick) n = d->n;
  const int k = net_num_classes(net);
  const size_t per = (size_t)d->c * d->h * d->w;
  if (n < 1) return mr_error_set(err, STATUS_ERR_ARG, "no images to measure accuracy on");
  float *adv = malloc(sizeof(float) * per * batch), *probs = malloc(sizeof(float) * k * batch);
  float *x = pick ? malloc(sizeof(float) * per * batch) : NULL; /* a batch of picked images */
  int *y = pick ? malloc(sizeof(int) * batch) : NULL;
  const int n_batches = (n + batch - 1) / batch;
  DistQueue *queue = dist_queue_new(n_batches, 1);
  Status s = adv && probs && queue && (!pick || (x && y))
                 ? STATUS_OK
                 : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  double count[2] = {0}; /* right, labelled */
  for (int bi; s == STATUS_OK && (bi = dist_queue_next(queue)) < n_batches;) {
    const int at = bi * batch, b = n - at < batch ? n - at : batch;
    AttackOptions a = attack_at(o, at);
    const float *xb = d->images + per * at;
    const int *yb = d->labels + at;
    if (pick) {
      for (int i = 0; i < b; i++) {
        memcpy(x + per * i, d->images + per * pick[at + i], sizeof(float) * per);
        y[i] = d->labels[pick[at + i]];
      }
      xb = x, yb = y, a.index = pick + at; /* each image from its own index's stream */
    }
    s = attack_run(net, &a, xb, yb, b, adv, err);
    if (s != STATUS_OK) break;
    net_predict(net, adv, b, probs);
    for (int i = 0; i < b; i++)
      if (yb[i] >= 0) count[1]++, count[0] += argmax(probs + (size_t)i * k, k) == yb[i];
  }
  dist_queue_free(queue, s != STATUS_OK);
  if (s == STATUS_OK) dist_sum_doubles(count, 2); /* whole counts: exact in any order */
  *acc = count[1] > 0 ? count[0] / count[1] : 0.0;
  free(adv), free(probs), free(x), free(y);
  return s;
}
