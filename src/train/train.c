/* Training: minibatch SGD/Adam with step or cosine schedules, the papers'
 * augmentation, class-balanced loss or sampling, best-validation model
 * selection, and a checkpoint after every epoch that --resume continues from
 * bit for bit (weights, BN statistics, optimiser state and every RNG state). */
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
  return o;
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

/* What must match for a checkpoint to be resumed. */
static void options_signature(char *buf, size_t n, const Net *net, const DataSplits *d,
                              const TrainOptions *o) {
  snprintf(buf, n, "%s|%zu|%d|%d|%d|%d|%g|%g|%g|%d|%d|%g|%d|%g|%d|%llu|%d", net_spec(net)->arch,
           net_param_count(net), d->split[SPLIT_TRAIN].n, o->epochs, o->batch, (int)o->optim, o->lr,
           o->momentum, o->weight_decay, (int)o->schedule, o->step_every, o->step_gamma, o->augment,
           o->rotate_deg, (int)o->balance, (unsigned long long)o->seed, mr_get_threads());
}

typedef struct {
  int epoch, best_epoch;
  float best_val;
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

static Status save_checkpoint(Net *net, const Optimizer *opt, const TrainState *st, const char *sig,
                              const char *path, MrError *err) {
  char epoch[32], best[32], best_epoch[32], step[32];
  snprintf(epoch, sizeof epoch, "%d", st->epoch);
  snprintf(best, sizeof best, "%.9g", st->best_val);
  snprintf(best_epoch, sizeof best_epoch, "%d", st->best_epoch);
  snprintf(step, sizeof step, "%ld", opt->step);
  const char *meta[] = {"train.epoch",
                        epoch,
                        "train.best_val_acc",
                        best,
                        "train.best_epoch",
                        best_epoch,
                        "train.optim_step",
                        step,
                        "train.signature",
                        sig,
                        NULL};
  TensorRef extra[4];
  const int n_extra = checkpoint_extras(extra, net, opt, st);
  return safetensors_save_checkpoint(net, path, extra, n_extra, meta, err);
}

static Status load_checkpoint(Net *net, Optimizer *opt, TrainState *st, const char *sig,
                              const char *path, MrError *err) {
  TensorRef extra[4];
  const int n_extra = checkpoint_extras(extra, net, opt, st);
  const char *keys[] = {"train.epoch",      "train.best_val_acc", "train.best_epoch",
                        "train.optim_step", "train.signature",    NULL};
  char *values[5] = {0};
  /* the options first: a checkpoint of another run would fail on its tensors
   * with a less helpful message */
  const char *sig_key[] = {"train.signature", NULL};
  char *saved_sig = NULL;
  Status s = safetensors_read_metadata(path, sig_key, &saved_sig, err);
  if (s == STATUS_OK && (!saved_sig || strcmp(saved_sig, sig) != 0))
    s = mr_error_set(
        err, STATUS_ERR_ARG,
        "%s: written by a run with other options, data or thread count; resume with the same ones",
        path);
  free(saved_sig);
  if (s == STATUS_OK) s = safetensors_load_checkpoint(net, path, extra, n_extra, keys, values, err);
  if (s == STATUS_OK) {
    st->epoch = atoi(values[0]);
    st->best_val = strtof(values[1], NULL);
    st->best_epoch = atoi(values[2]);
    opt->step = atol(values[3]);
  }
  for (int i = 0; i < 5; i++) free(values[i]);
  return s;
}

static float evaluate_accuracy(Net *net, const Dataset *d, int batch, float *probs) {
  if (!d->n || net_predict_dataset(net, d, batch, probs, NULL) != STATUS_OK) return -1.0f;
  const int k = net_num_classes(net);
  int correct = 0;
  for (int i = 0; i < d->n; i++) {
    int best = 0;
    for (int j = 1; j < k; j++)
      if (probs[(size_t)i * k + j] > probs[(size_t)i * k + best]) best = j;
    correct += best == d->labels[i];
  }
  return (float)correct / d->n;
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

Status train_run(Net *net, const DataSplits *data, const TrainOptions *o, TrainProgressFn progress,
                 void *ctx, TrainResult *result, MrError *err) {
  const Dataset *train = &data->split[SPLIT_TRAIN], *val = &data->split[SPLIT_VAL];
  const ModelSpec *spec = net_spec(net);
  const int k = spec->n_classes, B = o->batch;
  if (train->c != spec->in_c || train->h != spec->in_h || train->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "training images are %dx%dx%d, the model takes %dx%dx%d", train->c,
                        train->h, train->w, spec->in_c, spec->in_h, spec->in_w);
  if (train->n < 1 || B < 1 || o->epochs < 1)
    return mr_error_set(err, STATUS_ERR_ARG, "nothing to train: %d images, batch %d, %d epochs",
                        train->n, B, o->epochs);
  if (!o->out) return mr_error_set(err, STATUS_ERR_ARG, "no output model path");
  const size_t per = (size_t)train->c * train->h * train->w;
  const int steps = (train->n + B - 1) / B;
  Optimizer opt = {.lr = o->lr, .momentum = o->momentum, .weight_decay = o->weight_decay};
  Status status = optim_init(&opt, o->optim, net_param_count(net), err);
  if (status != STATUS_OK) return status;
  float *x = malloc(sizeof(float) * per * B), *scratch = malloc(sizeof(float) * per);
  int *y = malloc(sizeof(int) * B), *order = malloc(sizeof(int) * train->n);
  float *probs = malloc(sizeof(float) * k * (size_t)(val->n > B ? val->n : B) + sizeof(float));
  float class_weights[MR_MAX_CLASSES];
  if (!x || !scratch || !y || !order || !probs)
    status = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  if (o->balance == BALANCE_LOSS) {
    int counts[MR_MAX_CLASSES] = {0};
    for (int i = 0; i < train->n; i++) counts[train->labels[i]]++;
    for (int c = 0; c < k; c++)
      class_weights[c] = counts[c] ? (float)train->n / ((float)k * counts[c]) : 0.0f;
  }
  char sig[512];
  options_signature(sig, sizeof sig, net, data, o);
  TrainState st = {.epoch = 0, .best_epoch = 0, .best_val = -1.0f};
  rng_seed(&st.data_rng, o->seed);
  rng_seed(net_rng(net), o->seed ^ 0x5DEECE66DULL);
  if (status == STATUS_OK && o->resume) {
    if (!o->checkpoint || access(o->checkpoint, R_OK) != 0)
      status = mr_error_set(err, STATUS_ERR_IO, "%s: no checkpoint to resume from",
                            o->checkpoint ? o->checkpoint : "(none)");
    else
      status = load_checkpoint(net, &opt, &st, sig, o->checkpoint, err);
  }
  const double t0 = omp_get_wtime();
  int run_epochs = 0;
  memset(result, 0, sizeof *result);
  for (; status == STATUS_OK && st.epoch < o->epochs; st.epoch++) {
    if (o->stop_after && run_epochs == o->stop_after) {
      result->interrupted = 1;
      break;
    }
    epoch_order(order, train, k, o->balance, &st.data_rng);
    double loss_sum = 0.0;
    int correct = 0, seen = 0;
    for (int step = 0; step < steps; step++) {
      const int b = train->n - step * B < B ? train->n - step * B : B;
      for (int i = 0; i < b; i++) {
        const int idx = order[step * B + i];
        memcpy(x + per * i, train->images + per * idx, sizeof(float) * per);
        y[i] = train->labels[idx];
        if (o->augment)
          augment_image(x + per * i, scratch, train->c, train->h, train->w, o->rotate_deg,
                        &st.data_rng);
      }
      opt.lr = schedule_lr(o, st.epoch, step, steps);
      net_zero_grad(net);
      const float loss =
          net_train_step_grads(net, x, y, b, o->balance == BALANCE_LOSS ? class_weights : NULL);
      if (!isfinite(loss)) {
        status = mr_error_set(err, STATUS_ERR_NAN,
                              "the loss became %g at epoch %d step %d (lower --lr?)", loss,
                              st.epoch + 1, step + 1);
        break;
      }
      optim_step(&opt, net_params(net), net_grads(net));
      /* training accuracy from the logits of this very step */
      const float *logits = net_forward_last_logits(net);
      for (int i = 0; i < b; i++) {
        int best = 0;
        for (int j = 1; j < k; j++)
          if (logits[(size_t)i * k + j] > logits[(size_t)i * k + best]) best = j;
        correct += best == y[i];
      }
      loss_sum += (double)loss * b;
      seen += b;
      if (progress) {
        TrainProgress p = {st.epoch + 1,
                           o->epochs,
                           step + 1,
                           steps,
                           (float)(loss_sum / seen),
                           (float)correct / seen,
                           -1.0f,
                           0,
                           omp_get_wtime() - t0};
        progress(&p, ctx);
      }
    }
    if (status != STATUS_OK) break;
    const float val_acc = evaluate_accuracy(net, val->n ? val : train, B, probs);
    const int improved = val_acc > st.best_val;
    if (improved) {
      st.best_val = val_acc;
      st.best_epoch = st.epoch + 1;
      status = safetensors_save_net(net, o->out, err);
    }
    TrainState next = st;
    next.epoch = st.epoch + 1;
    if (status == STATUS_OK && o->checkpoint)
      status = save_checkpoint(net, &opt, &next, sig, o->checkpoint, err);
    run_epochs++;
    if (progress) {
      TrainProgress p = {st.epoch + 1,
                         o->epochs,
                         steps,
                         steps,
                         (float)(loss_sum / seen),
                         (float)correct / seen,
                         val_acc,
                         improved,
                         omp_get_wtime() - t0};
      progress(&p, ctx);
    }
  }
  result->best_epoch = st.best_epoch;
  result->best_val_acc = st.best_val;
  result->epochs_done = st.epoch;
  optim_free(&opt);
  free(x), free(scratch), free(y), free(order), free(probs);
  return status;
}
