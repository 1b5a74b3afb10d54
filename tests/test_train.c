/* Training: a short run on the phantom beats chance by a wide margin; an
 * interrupted run resumed from its checkpoint ends with exactly the weights
 * of an uninterrupted one; checkpoints from other options are refused; and
 * the metrics on hand-made cases. */
#include <unistd.h>

#include "testutil.h"

static char dir[256];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "train");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static Net *small_cnn(const DataSplits *d, uint64_t seed) {
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.depth = 3, spec.base = 8;
  spec.dropout = 0.2f; /* exercises the dropout RNG across a resume */
  spec.norm_mean[0] = 0.4f, spec.norm_std[0] = 0.2f;
  (void)d;
  return model_build(&spec, seed, NULL);
}

static void test_training_beats_chance(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate(28, 1200, 2, &err);
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.norm_mean[0] = 0.4f, spec.norm_std[0] = 0.2f;
  Net *net = model_build(&spec, 3, NULL);
  char out[300];
  snprintf(out, sizeof out, "%s/beat.safetensors", dir);
  TrainOptions o = train_options_default();
  o.epochs = 8, o.batch = 32, o.out = out, o.seed = 3;
  TrainResult res;
  if (train_run(net, d, &o, NULL, NULL, &res, &err) != STATUS_OK) fail_msg("%s", err.msg);
  Net *best = safetensors_load_net(out, &err);
  assert_non_null(best);
  const Dataset *test = &d->split[SPLIT_TEST];
  float *probs = malloc(sizeof(float) * test->n * 2);
  assert_int_equal(net_predict_dataset(best, test, 64, probs, &err), STATUS_OK);
  Metrics m;
  assert_int_equal(metrics_compute(&m, probs, test->labels, test->n, 2, &err), STATUS_OK);
  print_message("  phantom test accuracy after 8 epochs: %.1f%% (AUC %.3f)\n", 100 * m.accuracy,
                m.auc);
  assert_true(m.accuracy > 0.8);
  assert_true(m.auc > 0.88);
  metrics_free(&m);
  free(probs);
  net_free(best), net_free(net);
  data_free(d);
}

static void run(const DataSplits *d, const char *tag, int stop_after, int resume, Net **net_io) {
  char out[300], ckpt[320];
  snprintf(out, sizeof out, "%s/%s.safetensors", dir, tag);
  snprintf(ckpt, sizeof ckpt, "%s/%s.ckpt", dir, tag);
  TrainOptions o = train_options_default();
  o.epochs = 3, o.batch = 32, o.out = out, o.checkpoint = ckpt, o.seed = 11;
  o.optim = OPTIM_SGD, o.lr = 0.05f, o.schedule = SCHEDULE_STEP, o.step_every = 2;
  o.stop_after = stop_after, o.resume = resume;
  o.balance = BALANCE_SAMPLE;
  MrError err = {0};
  TrainResult res;
  if (train_run(*net_io, d, &o, NULL, NULL, &res, &err) != STATUS_OK) fail_msg("%s", err.msg);
  assert_int_equal(res.interrupted, stop_after > 0);
}

static void test_resume_matches_uninterrupted(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate(28, 300, 5, &err);
  Net *whole = small_cnn(d, 7);
  run(d, "whole", 0, 0, &whole);
  Net *part = small_cnn(d, 7);
  run(d, "part", 1, 0, &part); /* "interrupted" after epoch 1 */
  net_free(part);
  Net *resumed = small_cnn(d, 99); /* a fresh process: even another init */
  run(d, "part", 0, 1, &resumed);
  assert_memory_equal(net_params(whole), net_params(resumed),
                      sizeof(float) * net_param_count(whole));
  for (int i = 0; i < net_tensor_count(whole); i++) {
    TensorRef a = net_tensor(whole, i), b = net_tensor(resumed, i);
    if (a.is_int64)
      assert_memory_equal(a.idata, b.idata, 8 * a.numel);
    else
      assert_memory_equal(a.data, b.data, 4 * a.numel);
  }
  /* a checkpoint from other options is refused */
  char out[300], ckpt[320];
  snprintf(out, sizeof out, "%s/part.safetensors", dir);
  snprintf(ckpt, sizeof ckpt, "%s/part.ckpt", dir);
  TrainOptions o = train_options_default();
  o.epochs = 5, o.out = out, o.checkpoint = ckpt, o.resume = 1;
  TrainResult res;
  assert_int_not_equal(train_run(resumed, d, &o, NULL, NULL, &res, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "other options"));
  o.checkpoint = "/nonexistent/ckpt";
  assert_int_not_equal(train_run(resumed, d, &o, NULL, NULL, &res, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "no checkpoint"));
  net_free(whole), net_free(resumed);
  data_free(d);
}

static void test_metrics(void **state) {
  (void)state;
  /* perfectly separated, reversed, and tied scores */
  float p[8] = {0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f, 0.4f, 0.6f};
  int y[4] = {0, 0, 1, 1};
  Metrics m;
  assert_int_equal(metrics_compute(&m, p, y, 4, 2, NULL), STATUS_OK);
  assert_float_equal(m.auc, 1.0, 1e-12);
  assert_float_equal(m.accuracy, 1.0, 1e-12);
  metrics_free(&m);
  int yr[4] = {1, 1, 0, 0};
  assert_int_equal(metrics_compute(&m, p, yr, 4, 2, NULL), STATUS_OK);
  assert_float_equal(m.auc, 0.0, 1e-12);
  metrics_free(&m);
  float tie[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  assert_int_equal(metrics_compute(&m, tie, y, 4, 2, NULL), STATUS_OK);
  assert_float_equal(m.auc, 0.5, 1e-12);
  metrics_free(&m);
  /* imbalanced: all predicted class 0 -> accuracy 0.75, balanced 0.5 */
  float q[8] = {0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f};
  int yi[4] = {0, 0, 0, 1};
  assert_int_equal(metrics_compute(&m, q, yi, 4, 2, NULL), STATUS_OK);
  assert_float_equal(m.accuracy, 0.75, 1e-12);
  assert_float_equal(m.balanced_accuracy, 0.5, 1e-12);
  assert_int_equal(m.confusion[1 * 2 + 0], 1);
  metrics_free(&m);
  /* three classes: macro one-vs-rest */
  float r[9] = {0.8f, 0.1f, 0.1f, 0.1f, 0.8f, 0.1f, 0.1f, 0.1f, 0.8f};
  int y3[3] = {0, 1, 2};
  assert_int_equal(metrics_compute(&m, r, y3, 3, 3, NULL), STATUS_OK);
  assert_float_equal(m.auc, 1.0, 1e-12);
  metrics_free(&m);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_training_beats_chance),
      cmocka_unit_test(test_resume_matches_uninterrupted),
      cmocka_unit_test(test_metrics),
  };
  return cmocka_run_group_tests_name("train", tests, setup, teardown);
}
