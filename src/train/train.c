/* Training: minibatch SGD/Adam with step or cosine schedules, the papers'
 * augmentation, class-balanced loss or sampling, best-validation model
 * selection, and a checkpoint after every epoch that --resume continues from
 * bit for bit (weights, BN statistics, optimiser state and every RNG state).
 * Adversarial training (Madry et al. 2018; paper 001's mixed batches) replaces
 * a counted share of every batch by PGD or FGSM-RS examples of the current
 * weights and selects the checkpoint by validation accuracy under PGD. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medrobust.h"

TrainOptions train_options_default(void) {
  TrainOptions o;
  memset(&o, 0, sizeof o);
  o.epochs = 10, o.batch = 64;
  o.optim = OPTIM_ADAM, o.lr = 1e-3f, o.momentum = 0.9f, o.weight_decay = 1e-4f;
  o.schedule = SCHEDULE_COSINE, o.step_every = 10, o.step_gamma = 0.1f;
  o.augment = 1, o.rotate_deg = 20.0f;
  o.balance = BALANCE_NONE;
  o.seed = 1;
  o.adv_norm = NORM_LINF, o.adv_eps = 0.004f, o.adv_steps = 7, o.adv_ratio = 0.5f;
  o.adv_mode = MODE_EVAL, o.val_attack_steps = 10;
  return o;
}

static const char *adv_name(AdvTraining a) {
  return a == ADV_PGD ? "pgd" : a == ADV_FGSM_RS ? "fgsm-rs" : "none";
}

/* The attack crafting training examples at this eps. */
static AttackOptions adv_attack(const TrainOptions *o, float eps, uint64_t seed) {
  AttackOptions a = attack_options_default(ATTACK_PGD);
  a.norm = o->adv_norm, a.eps = eps, a.seed = seed, a.mode = o->adv_mode, a.last_iterate = 1;
  a.iters = o->adv == ADV_FGSM_RS ? 1 : o->adv_steps;
  a.step = o->adv_step > 0 ? o->adv_step : o->adv == ADV_FGSM_RS ? 1.25f * eps : 0.0f;
  return a;
}

/* Linear warm-up of eps over the first adv_warmup epochs, by step. */
static float adv_eps_at(const TrainOptions *o, int epoch, int step, int steps_per_epoch) {
  if (o->adv_warmup <= 0) return o->adv_eps;
  const double t = (double)(epoch * steps_per_epoch + step + 1) / (o->adv_warmup * steps_per_epoch);
  return t >= 1.0 ? o->adv_eps : (float)(o->adv_eps * t);
}

static float schedule_lr(const TrainOptions *o, int epoch, int step, int steps_per_epoch) {
  switch (o->schedule) {
    case SCHEDULE_STEP:
      return o->lr * powf(o->step_gamma, (float)(epoch / (o->step_every ? o->step_every : 1)));
    case SCHEDULE_COSINE: {
      const double t =
          (double)(epoch * steps_per_epoch + step) / ((double)o->epochs * steps_per_epoch);
      return (float)(o->lr * 0.5 * (1.0 + cos(M_PI * t)));
    }
    default:
      return o->lr;
  }
}

/* What must match for a checkpoint to be resumed: the options, data and thread and process
 * counts ("s2": each image's augmentation from its own random stream). */
static void options_signature(char *buf, size_t n, const Net *net, const DataSplits *d,
                              const TrainOptions *o) {
  snprintf(buf, n,
           "s2|%d|%s|%zu|%d|%d|%d|%d|%g|%g|%g|%d|%d|%g|%d|%g|%d|%llu|%d|%d|%d|%g|%d|%g|%g|%d|%d|%d|"
           "%g",
           dist_size(), net_spec(net)->arch, net_param_count(net), d->split[SPLIT_TRAIN].n,
           o->epochs, o->batch, (int)o->optim, o->lr, o->momentum, o->weight_decay,
           (int)o->schedule, o->step_every, o->step_gamma, o->augment, o->rotate_deg,
           (int)o->balance, (unsigned long long)o->seed, mr_get_threads(), (int)o->adv,
           (int)o->adv_norm, o->adv_eps, o->adv_steps, o->adv_step, o->adv_ratio, o->adv_warmup,
           (int)o->adv_mode, o->val_attack_steps, o->noise_sd);
}

typedef struct {
  int epoch, best_epoch;
  float best_score; /* what selects the checkpoint: validation accuracy, robust when adversarial */
  float best_val, best_robust;
  long images, adv_images; /* trained on, and how many of them were adversarial */
  Rng data_rng;
} TrainState;

/* The training state a checkpoint holds beyond the model: optimiser moments
 * and the data and dropout RNG states (the second moment only for Adam). */
static int checkpoint_extras(TensorRef extra[4], Net *net, const Optimizer *opt,
                             const TrainState *st) {
  const TensorRef moments = {.ndim = 1, .shape = {(int64_t)opt->n}, .numel = opt->n};
  const TensorRef rng = {.ndim = 1, .shape = {4}, .is_int64 = 1, .numel = 4};
  extra[0] = moments, extra[0].name = "train.optim.state1", extra[0].data = opt->state1;
  extra[1] = rng, extra[1].name = "train.rng.data", extra[1].idata = (int64_t *)st->data_rng.s;
  extra[2] = rng, extra[2].name = "train.rng.net", extra[2].idata = (int64_t *)net_rng(net)->s;
  extra[3] = moments, extra[3].name = "train.optim.state2", extra[3].data = opt->state2;
  return opt->state2 ? 4 : 3;
}

#define STATE_KEYS 8
/* the state a checkpoint must hold, then the kept weights' training record (optional),
 * read in the same load */
static const char *const state_keys[STATE_KEYS + 2] = {"train.epoch",      "train.best_val_acc",
                                                       "train.best_epoch", "train.optim_step",
                                                       "train.best_score", "train.best_robust",
                                                       "train.images",     "train.adv_images",
                                                       "training",         NULL};

static Status save_checkpoint(Net *net, const Optimizer *opt, const TrainState *st, const char *sig,
                              const char *path, MrError *err) {
  char v[STATE_KEYS][32];
  snprintf(v[0], 32, "%d", st->epoch);
  snprintf(v[1], 32, "%.9g", st->best_val);
  snprintf(v[2], 32, "%d", st->best_epoch);
  snprintf(v[3], 32, "%ld", opt->step);
  snprintf(v[4], 32, "%.9g", st->best_score);
  snprintf(v[5], 32, "%.9g", st->best_robust);
  snprintf(v[6], 32, "%ld", st->images);
  snprintf(v[7], 32, "%ld", st->adv_images);
  const char *meta[2 * STATE_KEYS + 3];
  for (int i = 0; i < STATE_KEYS; i++) meta[2 * i] = state_keys[i], meta[2 * i + 1] = v[i];
  meta[2 * STATE_KEYS] = "train.signature", meta[2 * STATE_KEYS + 1] = sig;
  meta[2 * STATE_KEYS + 2] = NULL;
  TensorRef extra[4];
  const int n_extra = checkpoint_extras(extra, net, opt, st);
  return safetensors_save_checkpoint(net, path, extra, n_extra, meta, err);
}

static Status load_checkpoint(Net *net, Optimizer *opt, TrainState *st, const char *sig,
                              int max_epochs, const char *path, MrError *err) {
  TensorRef extra[4];
  const int n_extra = checkpoint_extras(extra, net, opt, st);
  char *values[STATE_KEYS + 1] = {0};
  /* the options first: a checkpoint of another run would fail on its tensors
   * with a less helpful message */
  const char *sig_key[] = {"train.signature", NULL};
  char *saved_sig = NULL;
  Status s = safetensors_read_metadata(path, sig_key, &saved_sig, err);
  if (s == STATUS_OK && (!saved_sig || strcmp(saved_sig, sig) != 0))
    s = mr_error_set(
        err, STATUS_ERR_ARG,
        "%s: written by a run with other options, data, thread or process count; resume with the "
        "same ones",
        path);
  free(saved_sig);
  if (s == STATUS_OK)
    s = safetensors_load_checkpoint(net, path, extra, n_extra, state_keys, values, err);
  for (int i = 0; s == STATUS_OK && i < STATE_KEYS; i++)
    if (!values[i])
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: no %s in the checkpoint's metadata", path,
                       state_keys[i]);
  /* the file is untrusted: every number whole, in range, or the resume is refused */
  long n[STATE_KEYS];
  double f[STATE_KEYS];
  static const int is_float[STATE_KEYS] = {0, 1, 0, 0, 1, 1, 0, 0};
  for (int i = 0; s == STATUS_OK && i < STATE_KEYS; i++) {
    char *end = NULL;
    errno = 0;
    if (is_float[i])
      f[i] = strtod(values[i], &end);
    else
      n[i] = strtol(values[i], &end, 10);
    const int bad = end == values[i] || *end || errno ||
                    (is_float[i] ? !(f[i] >= -1.0 && f[i] <= 1.0) : n[i] < 0);
    if (bad)
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s='%.40s' is not a valid value", path,
                       state_keys[i], values[i]);
  }
  if (s == STATUS_OK && (n[0] > max_epochs || n[2] > n[0]))
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: epoch %ld (best %ld) is outside this run's %d epochs", path, n[0], n[2],
                     max_epochs);
  if (s == STATUS_OK) {
    st->epoch = (int)n[0];
    st->best_val = (float)f[1];
    st->best_epoch = (int)n[2];
    opt->step = n[3];
    st->best_score = (float)f[4];
    st->best_robust = (float)f[5];
    st->images = n[6];
    st->adv_images = n[7];
  }
  /* the kept weights' record (what record_training wrote), so a resumed run that keeps them
   * writes it too */
  const char *record = values[STATE_KEYS];
  if (s == STATUS_OK && record && strlen(record) < MR_TRAINING_LEN)
    net_set_training_info(net, record);
  for (int i = 0; i < STATE_KEYS + 1; i++) free(values[i]);
  return s;
}

/* Data parallelism (MPI ranks): every rank draws the same batches and takes every ranks-th
 * row of each, from its rank on (interleaved, so the adversarial rows at the batch's head are
 * shared out evenly); batchnorm and the loss add up the ranks' statistics through share
 * (net_set_batch_share) and the step adds up the parameter gradients, so the ranks train as
 * one process would on the whole batch. A rank left without rows (a batch smaller than the
 * rank count) runs row 0 and contributes zeros to every sum. */
typedef struct {
  BatchShare share;
  int ranks, rank;
  int rows, phantom;
  int *row; /* per local row: its row in the batch */
} Parallel;

static void parallel_sum(double *v, int n, void *ctx) {
  const Parallel *par = ctx;
  if (par->phantom) memset(v, 0, sizeof(double) * n);
  dist_sum_doubles(v, n);
}

/* This rank's rows of a batch of b. */
static void parallel_rows(Parallel *par, int b) {
  par->rows = b > par->rank ? (b - par->rank + par->ranks - 1) / par->ranks : 0;
  par->phantom = par->rows == 0;
  for (int i = 0; i < par->rows; i++) par->row[i] = par->rank + i * par->ranks;
  if (par->phantom) par->rows = 1, par->row[0] = 0;
  par->share.first_row = par->row[0], par->share.row_stride = par->ranks;
}

/* This rank's slice of a validation set. */
static Dataset parallel_slice(const Parallel *par, const Dataset *d) {
  Dataset s = *d;
  const size_t per = (size_t)d->c * d->h * d->w;
  const int lo = (int)((long)d->n * par->rank / par->ranks);
  s.n = (int)((long)d->n * (par->rank + 1) / par->ranks) - lo;
  s.images = d->images + per * lo;
  s.labels = d->labels + lo;
  return s;
}

/* Validation accuracy; *degenerate set when every image gets the same class
 * (no classifier at all, however accurate that is on a skewed or an attacked set). The ranks
 * each take a slice and add up their counts. */
static float evaluate_accuracy(Net *net, const Dataset *d, int batch, float *probs, int *degenerate,
                               const Parallel *par) {
  *degenerate = 0;
  const Dataset mine = parallel_slice(par, d);
  const int k = net_num_classes(net);
  double count[MR_MAX_CLASSES + 2] = {0}; /* correct, failed, then per predicted class */
  if (mine.n && net_predict_dataset(net, &mine, batch, probs, NULL) != STATUS_OK) count[1] = 1;
  for (int i = 0; !count[1] && i < mine.n; i++) {
    const int best = argmax(probs + (size_t)i * k, k);
    count[0] += best == mine.labels[i];
    count[2 + best]++;
  }
  if (par->ranks > 1) dist_sum_doubles(count, k + 2);
  if (!d->n || count[1]) return -1.0f;
  int classes = 0;
  for (int c = 0; c < k; c++) classes += count[2 + c] > 0;
  *degenerate = d->n > 1 && classes == 1;
  return (float)((int)count[0]) / d->n;
}

/* Segmentation: the validation set's mean foreground Dice (paper 002's score). */
static float evaluate_dice(Net *net, const Dataset *d, int batch, int *pred) {
  if (!d->n || net_segment_dataset(net, d, batch, pred, NULL) != STATUS_OK) return -1.0f;
  SegMetrics m;
  if (seg_metrics_compute(&m, pred, d->masks, d->n, d->h * d->w, net_num_classes(net), NULL) !=
      STATUS_OK)
    return -1.0f;
  const float dice = (float)m.mean_dice;
  seg_metrics_free(&m);
  return dice;
}

/* Median frequency balancing (Eigen & Fergus 2015, as SegNet trains): class
 * c weighs median(freq) / freq(c), freq(c) = pixels of c / pixels of the
 * images where c appears; 0 for a class never seen. */
static void pixel_class_weights(const Dataset *d, int k, float *w) {
  const size_t P = (size_t)d->h * d->w;
  double *pixels = calloc(k, sizeof(double)), *image_pixels = calloc(k, sizeof(double));
  long *in_image = calloc(k, sizeof(long));
  double freq[MR_MAX_CLASSES], sorted[MR_MAX_CLASSES];
  int n_seen = 0;
  for (int i = 0; pixels && image_pixels && in_image && i < d->n; i++) {
    memset(in_image, 0, sizeof(long) * k);
    for (size_t p = 0; p < P; p++) {
      const int c = d->masks[P * i + p];
      if (c >= 0 && c < k) in_image[c]++;
    }
    for (int c = 0; c < k; c++)
      if (in_image[c]) pixels[c] += in_image[c], image_pixels[c] += P;
  }
  for (int c = 0; c < k; c++) {
    freq[c] = image_pixels && image_pixels[c] > 0 ? pixels[c] / image_pixels[c] : 0.0;
    if (freq[c] > 0) sorted[n_seen++] = freq[c];
  }
  for (int i = 1; i < n_seen; i++) /* insertion sort: k is small */
    for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
      const double t = sorted[j];
      sorted[j] = sorted[j - 1], sorted[j - 1] = t;
    }
  const double median = n_seen ? (n_seen % 2 ? sorted[n_seen / 2]
                                             : 0.5 * (sorted[n_seen / 2 - 1] + sorted[n_seen / 2]))
                               : 1.0;
  for (int c = 0; c < k; c++) w[c] = freq[c] > 0 ? (float)(median / freq[c]) : 0.0f;
  free(pixels), free(image_pixels), free(in_image);
}

/* The epoch's image order: a shuffle, or class-balanced draws with replacement. */
static void epoch_order(int *order, const Dataset *d, int k, Balance balance, Rng *rng) {
  const int n = d->n;
  if (balance == BALANCE_SAMPLE) {
    int *by_class = malloc(sizeof(int) * n), start[MR_MAX_CLASSES + 1] = {0};
    for (int i = 0; i < n; i++) start[d->labels[i] + 1]++;
    for (int c = 0; c < k; c++) start[c + 1] += start[c];
    int fill[MR_MAX_CLASSES] = {0};
    for (int i = 0; i < n; i++) by_class[start[d->labels[i]] + fill[d->labels[i]]++] = i;
    int present[MR_MAX_CLASSES], np = 0;
    for (int c = 0; c < k; c++)
      if (start[c + 1] > start[c]) present[np++] = c;
    for (int i = 0; i < n; i++) {
      const int c = present[rng_int(rng, np)];
      order[i] = by_class[start[c] + rng_int(rng, start[c + 1] - start[c])];
    }
    free(by_class);
    return;
  }
  for (int i = 0; i < n; i++) order[i] = i;
  for (int i = n - 1; i > 0; i--) {
    const int j = rng_int(rng, i + 1), t = order[i];
    order[i] = order[j], order[j] = t;
  }
}

/* The record of how the kept weights were made, into the model's metadata. */
static void record_training(Net *net, const TrainOptions *o, const TrainState *st) {
  cJSON *r = cJSON_CreateObject();
  cJSON_AddNumberToObject(r, "epochs", o->epochs);
  cJSON_AddNumberToObject(r, "best_epoch", st->best_epoch);
  cJSON_AddStringToObject(r, "optimizer", o->optim == OPTIM_ADAM ? "adam" : "sgd");
  cJSON_AddNumberToObject(r, "lr", o->lr);
  cJSON_AddNumberToObject(r, "batch", o->batch);
  cJSON_AddNumberToObject(r, "seed", (double)o->seed);
  if (o->init_from) cJSON_AddStringToObject(r, "init", o->init_from);
  if (o->noise_sd > 0) cJSON_AddNumberToObject(r, "noise_sd", o->noise_sd);
  const int segment = net_output_pixels(net) > 1;
  cJSON_AddNumberToObject(r, segment ? "val_dice" : "val_acc", st->best_val);
  cJSON_AddStringToObject(r, "selected_by",
                          segment ? (o->adv ? "val_robust_dice" : "val_dice")
                                  : (o->adv ? "val_robust_acc" : "val_acc"));
  if (segment) {
    const ModelSpec *spec = net_spec(net);
    cJSON_AddStringToObject(r, "loss",
                            spec->seg_loss == SEG_LOSS_XENT   ? "xent"
                            : spec->seg_loss == SEG_LOSS_DICE ? "dice"
                                                              : "xent+dice");
    if (o->balance == BALANCE_LOSS) cJSON_AddStringToObject(r, "class_weights", "median frequency");
  }
  if (o->adv) {
    cJSON *a = cJSON_AddObjectToObject(r, "adversarial");
    cJSON_AddStringToObject(a, "kind", adv_name(o->adv));
    cJSON_AddStringToObject(a, "norm", o->adv_norm == NORM_L2 ? "l2" : "linf");
    cJSON_AddNumberToObject(a, "eps", o->adv_eps);
    cJSON_AddNumberToObject(a, "steps", o->adv == ADV_FGSM_RS ? 1 : o->adv_steps);
    cJSON_AddNumberToObject(a, "step", adv_attack(o, o->adv_eps, 0).step);
    cJSON_AddNumberToObject(a, "warmup_epochs", o->adv_warmup);
    cJSON_AddStringToObject(a, "bn_mode", o->adv_mode == MODE_EVAL ? "eval" : "train");
    cJSON_AddNumberToObject(a, "ratio_requested", o->adv_ratio);
    cJSON_AddNumberToObject(a, "ratio_effective",
                            st->images ? (double)st->adv_images / st->images : 0.0);
    cJSON_AddNumberToObject(a, "adversarial_images", (double)st->adv_images);
    cJSON_AddNumberToObject(a, "images", (double)st->images);
    cJSON_AddNumberToObject(a, segment ? "val_robust_dice" : "val_robust_acc", st->best_robust);
    cJSON_AddNumberToObject(a, "val_attack_steps", o->val_attack_steps);
  }
  char *text = cJSON_PrintUnformatted(r);
  net_set_training_info(net, text && strlen(text) < MR_TRAINING_LEN ? text : "");
  free(text);
  cJSON_Delete(r);
}

static Status check_adv_options(const TrainOptions *o, MrError *err) {
  if (!o->adv) return STATUS_OK;
  if (!(o->adv_eps > 0.0f) || (o->adv_norm == NORM_LINF && o->adv_eps > 1.0f))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "adversarial training needs an eps in (0, 1] on [0,1] pixels, got %g",
                        o->adv_eps);
  if (!(o->adv_ratio >= 0.0f && o->adv_ratio <= 1.0f))
    return mr_error_set(err, STATUS_ERR_ARG, "--adv-ratio must be in [0, 1], got %g", o->adv_ratio);
  if (o->adv_steps < 1 || o->val_attack_steps < 1 || o->adv_step < 0 || o->adv_warmup < 0)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "adversarial steps must be >= 1, step size and warm-up >= 0");
  if (o->adv_mode == MODE_TRAIN)
    return mr_error_set(err, STATUS_ERR_ARG, "craft in MODE_EVAL or MODE_TRAIN_FROZEN");
  return STATUS_OK;
}

/* Replaces the first images of the batch of b by adversarial ones: as many as keep
 * the running share at adv_ratio (error diffusion: the count is exact over
 * the run, whatever the batch size). x and y hold this rank's rows of the batch, in order; each
 * row's random start is its own stream, whichever rank attacks it. */
static Status adversarial_batch(Net *net, const TrainOptions *o, TrainState *st, float *x,
                                const int *y, int b, const Parallel *par, float eps, float *x_adv,
                                MrError *err) {
  long want = lround(o->adv_ratio * (double)(st->images + b)) - st->adv_images;
  const int n_adv = want < 0 ? 0 : want > b ? b : (int)want;
  int mine = 0;
  while (!par->phantom && mine < par->rows && par->row[mine] < n_adv) mine++;
  if (n_adv > 0) {
    AttackOptions a = adv_attack(o, eps, rng_next(&st->data_rng));
    a.index = par->row;
    const size_t per = (size_t)net_input_size(net);
    Status s = mine > 0 ? attack_run(net, &a, x, y, mine, x_adv, err) : STATUS_OK;
    if (s != STATUS_OK) return s;
    if (mine > 0) memcpy(x, x_adv, sizeof(float) * per * mine);
  }
  st->images += b, st->adv_images += n_adv;
  return STATUS_OK;
}

/* Validation accuracy (segmentation: mean Dice) under PGD at the training
 * eps (a fixed seed, so epochs are compared on the same attack). Classification: the ranks
 * share the batches (robust_accuracy); segmentation: every rank scores the whole set. */
static float validate_robust(Net *net, const TrainOptions *o, const Dataset *val, MrError *err) {
  AttackOptions a = attack_options_default(ATTACK_PGD);
  a.norm = o->adv_norm, a.eps = o->adv_eps, a.iters = o->val_attack_steps, a.seed = o->seed;
  double acc = -1.0;
  const Status s = net_output_pixels(net) > 1
                       ? seg_robust_dice(net, val, &a, o->batch, &acc, err)
                       : robust_accuracy(net, val, NULL, 0, &a, o->batch, &acc, err);
  return s == STATUS_OK ? (float)acc : -1.0f;
}

Status train_run(Net *net, const DataSplits *data, const TrainOptions *o, TrainProgressFn progress,
                 void *ctx, TrainResult *result, MrError *err) {
  const Dataset *train = &data->split[SPLIT_TRAIN], *val = &data->split[SPLIT_VAL];
  const ModelSpec *spec = net_spec(net);
  const int k = spec->n_classes, B = o->batch, P = net_output_pixels(net), segment = P > 1;
  if (data_require_task(data, net, "the training data", err) != STATUS_OK) return STATUS_ERR_ARG;
  if (segment && P != spec->in_h * spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s answers %d values per class, not one per pixel",
                        spec->arch, P);
  if (train->c != spec->in_c || train->h != spec->in_h || train->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "training images are %dx%dx%d, the model takes %dx%dx%d", train->c,
                        train->h, train->w, spec->in_c, spec->in_h, spec->in_w);
  if (train->n < 1 || B < 1 || o->epochs < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "nothing to train: %d images, batch %d, %d epochs",
                        train->n, B, o->epochs);
  if (!o->out) return mr_error_set(err, STATUS_ERR_ARG, "no output model path");
  Status status = check_adv_options(o, err);
  if (status != STATUS_OK) return status;
  Parallel par = {.share = {.sum = parallel_sum}, .ranks = dist_size(), .rank = dist_rank()};
  par.share.ctx = &par;
  if (par.ranks > 1 && o->adv && o->adv_mode != MODE_EVAL)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "--adv-bn train crafts with the batch's own statistics, which the ranks "
                        "do not share while attacking: use --adv-bn eval or one process");
  if (par.ranks > 1 && B < par.ranks)
    return mr_error_set(err, STATUS_ERR_ARG,
                        "--batch %d is split across %d processes: give at least one image each", B,
                        par.ranks);
  const size_t per = (size_t)train->c * train->h * train->w;
  const int steps = (train->n + B - 1) / B;
  Optimizer opt = {.lr = o->lr, .momentum = o->momentum, .weight_decay = o->weight_decay};
  status = optim_init(&opt, o->optim, net_param_count(net), err);
  if (status != STATUS_OK) return status;
  /* augmentation scratch per thread: rows are augmented in parallel */
  const int threads = mr_get_threads() > 0 ? mr_get_threads() : 1;
  float *x = malloc(sizeof(float) * per * B), *scratch = malloc(sizeof(float) * per * threads);
  float *x_adv = o->adv ? malloc(sizeof(float) * per * B) : NULL;
  int *y = malloc(sizeof(int) * B * P), *order = malloc(sizeof(int) * train->n);
  par.row = malloc(sizeof(int) * B);
  int *step_pred = malloc(sizeof(int) * B * P); /* this step's answers, for the accuracy */
  int *mask_scratch = segment ? malloc(sizeof(int) * P * threads) : NULL;
  const size_t n_eval = (size_t)(val->n > B ? val->n : B > train->n ? B : train->n);
  float *probs = segment ? NULL : malloc(sizeof(float) * k * n_eval + sizeof(float));
  int *val_pred = segment ? malloc(sizeof(int) * P * n_eval) : NULL;
  float class_weights[MR_MAX_CLASSES];
  if (!x || !scratch || !y || !order || !step_pred || !(probs || val_pred) || (o->adv && !x_adv) ||
      (segment && !mask_scratch) || !par.row)
    status = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  if (o->balance == BALANCE_LOSS && segment) {
    pixel_class_weights(train, k, class_weights);
  } else if (o->balance == BALANCE_LOSS) {
    int counts[MR_MAX_CLASSES] = {0};
    for (int i = 0; i < train->n; i++) counts[train->labels[i]]++;
    for (int c = 0; c < k; c++)
      class_weights[c] = counts[c] ? (float)train->n / ((float)k * counts[c]) : 0.0f;
  }
  char sig[512];
  options_signature(sig, sizeof sig, net, data, o);
  TrainState st = {.best_score = -1.0f, .best_val = -1.0f, .best_robust = -1.0f};
  rng_seed(&st.data_rng, o->seed);
  rng_seed(net_rng(net), o->seed ^ 0x5DEECE66DULL);
  if (status == STATUS_OK && o->resume) {
    if (!o->checkpoint || access(o->checkpoint, R_OK) != 0)
      status = mr_error_set(err, STATUS_ERR_IO, "%s: no checkpoint to resume from",
                            o->checkpoint ? o->checkpoint : "(none)");
    else
      status = load_checkpoint(net, &opt, &st, sig, o->epochs, o->checkpoint, err);
  }
  const double t0 = omp_get_wtime();
  int run_epochs = 0;
  memset(result, 0, sizeof *result);
  if (par.ranks > 1) net_set_batch_share(net, &par.share);
  for (; status == STATUS_OK && st.epoch < o->epochs; st.epoch++) {
    if (o->stop_after && run_epochs == o->stop_after) {
      result->interrupted = 1;
      break;
    }
    epoch_order(order, train, k, o->balance, &st.data_rng);
    double loss_sum = 0.0;
    long correct = 0, seen = 0; /* per label: an image, or a pixel */
    int images = 0;
    TrainProgress p = {.epoch = st.epoch + 1, .epochs = o->epochs, .steps = steps};
    p.val_acc = p.val_robust_acc = -1.0f;
    for (int step = 0; step < steps; step++) {
      const int b = train->n - step * B < B ? train->n - step * B : B;
      parallel_rows(&par, b);
      const int rows = par.rows;
      /* each row's augmentation and noise from its own stream: the same image whichever
       * rank holds the row */
      const uint64_t batch_seed = rng_next(&st.data_rng);
#pragma omp parallel for schedule(static) num_threads(threads)
      for (int i = 0; i < rows; i++) {
        const int t = omp_get_thread_num();
        const int idx = order[step * B + par.row[i]];
        Rng rng;
        rng_seed_stream(&rng, batch_seed, (uint64_t)par.row[i]);
        memcpy(x + per * i, train->images + per * idx, sizeof(float) * per);
        if (segment)
          memcpy(y + (size_t)P * i, train->masks + (size_t)P * idx, sizeof(int) * P);
        else
          y[i] = train->labels[idx];
        if (o->augment)
          augment_image_mask(x + per * i, segment ? y + (size_t)P * i : NULL, scratch + per * t,
                             segment ? mask_scratch + (size_t)P * t : NULL, train->c, train->h,
                             train->w, o->rotate_deg, &rng);
        if (o->noise_sd > 0)
          for (size_t p = 0; p < per; p++) x[per * i + p] += o->noise_sd * rng_normal(&rng);
      }
      if (o->adv) {
        p.adv_eps = adv_eps_at(o, st.epoch, step, steps);
        status = adversarial_batch(net, o, &st, x, y, b, &par, p.adv_eps, x_adv, err);
        if (status != STATUS_OK) break;
        p.adv_ratio = (double)st.adv_images / st.images;
      }
      opt.lr = schedule_lr(o, st.epoch, step, steps);
      net_zero_grad(net);
      /* this rank's share of the batch's mean loss, and its gradient */
      double tally[2] = {
          net_train_step_grads(net, x, y, rows, o->balance == BALANCE_LOSS ? class_weights : NULL),
          0.0};
      /* training accuracy (per pixel: pixel accuracy) from the logits of this very step */
      scores_argmax(net_forward_last_logits(net), rows, k, P, step_pred);
      for (size_t i = 0; i < (size_t)rows * P; i++) tally[1] += step_pred[i] == y[i];
      if (par.ranks > 1) {
        if (par.phantom) memset(net_grads(net), 0, sizeof(float) * net_param_count(net));
        dist_sum_floats(net_grads(net), net_param_count(net));
        parallel_sum(tally, 2, &par);
      }
      const float loss = (float)tally[0];
      if (!isfinite(loss)) {
        status = mr_error_set(err, STATUS_ERR_NAN,
                              "the loss became %g at epoch %d step %d (lower --lr?)", loss,
                              st.epoch + 1, step + 1);
        break;
      }
      optim_step(&opt, net_params(net), net_grads(net));
      correct += (long)tally[1];
      loss_sum += (double)loss * b;
      seen += (long)b * P, images += b;
      p.step = step + 1, p.loss = (float)(loss_sum / images), p.acc = (float)correct / seen;
      p.elapsed = omp_get_wtime() - t0;
      if (progress) progress(&p, ctx);
    }
    if (status != STATUS_OK) break;
    const Dataset *check = val->n ? val : train;
    int degenerate = 0;
    const float val_acc = segment ? evaluate_dice(net, check, B, val_pred)
                                  : evaluate_accuracy(net, check, B, probs, &degenerate, &par);
    float score = val_acc;
    if (o->adv) {
      score = p.val_robust_acc = validate_robust(net, o, check, err);
      if (score < 0.0f) {
        status = err && err->status ? err->status : STATUS_ERR_NOMEM;
        break;
      }
      /* a constant answer is "robust" at the majority share: never prefer it */
      if (degenerate) score -= 1.0f;
    }
    /* ties keep the better clean accuracy */
    const int improved = score > st.best_score || (score == st.best_score && val_acc > st.best_val);
    if (improved) {
      st.best_score = score;
      st.best_val = val_acc;
      st.best_robust = o->adv ? score : -1.0f;
      st.best_epoch = st.epoch + 1;
      record_training(net, o, &st);
      if (par.rank == 0) status = safetensors_save_net(net, o->out, err);
    }
    TrainState next = st;
    next.epoch = st.epoch + 1;
    if (status == STATUS_OK && o->checkpoint && par.rank == 0)
      status = save_checkpoint(net, &opt, &next, sig, o->checkpoint, err);
    run_epochs++;
    p.step = steps, p.val_acc = val_acc, p.improved = improved;
    p.elapsed = omp_get_wtime() - t0;
    if (progress) progress(&p, ctx);
  }
  result->best_epoch = st.best_epoch;
  result->best_val_acc = st.best_val;
  result->best_val_robust_acc = st.best_robust;
  result->images = st.images, result->adv_images = st.adv_images;
  result->epochs_done = st.epoch;
  net_set_batch_share(net, NULL);
  optim_free(&opt);
  free(x), free(scratch), free(x_adv), free(y), free(order), free(probs), free(val_pred);
  free(mask_scratch), free(step_pred), free(par.row);
  return status;
}
