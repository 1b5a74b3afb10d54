/* The robustness sweep, its self-checks and triage: on a normal model the
 * checks stay silent and accuracy falls with eps; on a model whose input is
 * quantised (gradients masked) they fire; noise is calibrated to the
 * adversarial SSIM; triage's bisection brackets each image's flip point;
 * SSIM/PSNR on known cases; results JSON is written and parses; the transfer
 * matrix's diagonal is the white-box accuracy and compare refuses models
 * that do not share an input and a label set; a linear model's saliency is
 * its weights; PCA recovers a plane hidden in more dimensions. */
#include <cjson/cJSON.h>

#include "nn/net.h"
#include "testutil.h"

static Net *plain, *masked;
static DataSplits *data;

static Net *train(Net *net) {
  TrainOptions o = train_options_default();
  o.epochs = 6, o.batch = 32, o.out = "/tmp/medrobust-eval-test.safetensors";
  TrainResult res;
  MrError err = {0};
  if (train_run(net, data, &o, NULL, NULL, &res, &err) != STATUS_OK) return NULL;
  remove(o.out), remove("/tmp/medrobust-eval-test.safetensors.ckpt");
  return net;
}

static int setup(void **state) {
  (void)state;
  mr_set_threads(2);
  MrError err = {0};
  data = phantom_generate(28, 1000, 6, &err);
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.norm_mean[0] = 0.4f, spec.norm_std[0] = 0.2f;
  plain = train(model_build(&spec, 7, &err));
  /* the same trained weights behind a 16-level input quantiser: zero input gradients */
  masked = model_build(&spec, 7, &err);
  for (int i = 0; plain && masked && i < net_tensor_count(plain); i++) {
    TensorRef a = net_tensor(plain, i), b = net_tensor(masked, i);
    if (a.is_int64)
      memcpy(b.idata, a.idata, 8 * a.numel);
    else
      memcpy(b.data, a.data, 4 * a.numel);
  }
  if (masked) net_set_input_quantization(masked, 16);
  return plain && masked ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  net_free(plain), net_free(masked);
  data_free(data);
  return 0;
}

static void slurp_first_line(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(out, (int)n, f));
  fclose(f);
}

static const CheckRow *check_named(const SweepResult *r, const char *prefix) {
  for (int i = 0; i < r->n_checks; i++)
    if (strncmp(r->checks[i].name, prefix, strlen(prefix)) == 0) return &r->checks[i];
  return NULL;
}

static void test_sweep_and_checks(void **state) {
  (void)state;
  Dataset test = data->split[SPLIT_TEST];
  test.n = 80;
  const AttackKind kinds[] = {ATTACK_FGSM, ATTACK_PGD};
  const float eps[] = {0.02f, 0.06f};
  SweepOptions so = {.attacks = kinds,
                     .n_attacks = 2,
                     .eps = eps,
                     .n_eps = 2,
                     .base = attack_options_default(ATTACK_PGD),
                     .batch = 64,
                     .noise = 1,
                     .checks = 1};
  so.base.iters = 0;
  SweepResult r;
  MrError err = {0};
  assert_int_equal(robustness_sweep(plain, &test, &so, NULL, NULL, &r, &err), STATUS_OK);
  for (int i = 0; i < r.n_checks; i++)
    print_message("  plain  %-40s %s %s\n", r.checks[i].name, r.checks[i].passed ? "ok" : "FIRED",
                  r.checks[i].message);
  for (int i = 0; i < r.n_checks; i++) assert_true(r.checks[i].passed);
  assert_true(r.clean_accuracy > 0.75);
  for (int i = 0; i < 4; i++) {
    const SweepRow *w = &r.rows[i];
    assert_true(w->linf <= w->eps + 1e-6);
    assert_true(w->ssim > 0 && w->ssim <= 1.0);
    assert_true(w->accuracy <= r.clean_accuracy + 1e-9);
    assert_float_equal(w->drop_pct, 100 * (r.clean_accuracy - w->accuracy) / r.clean_accuracy,
                       1e-9);
  }
  /* noise calibrated to the adversarial SSIM of its row */
  assert_true(r.n_noise == 4 * 2);
  for (int i = 0; i < r.n_noise; i++) {
    const SweepRow *ref = &r.rows[i / 4]; /* fgsm rows come first */
    assert_true(fabs(r.noise[i].ssim - ref->ssim) < 0.02);
  }
  /* the metrics under attack agree with each row's confusion matrix */
  assert_int_equal(r.positive, 1); /* "malignant" */
  for (int i = 0; i < r.n_rows; i++) {
    const SweepRow *w = &r.rows[i];
    int total = 0;
    for (int c = 0; c < 4; c++) total += w->confusion[c];
    assert_int_equal(total, w->n);
    assert_int_equal(w->confusion[0] + w->confusion[3], w->correct);
    const double r0 = (double)w->confusion[0] / (w->confusion[0] + w->confusion[1]);
    const double r1 = (double)w->confusion[3] / (w->confusion[2] + w->confusion[3]);
    assert_float_equal(w->balanced_accuracy, 0.5 * (r0 + r1), 1e-12);
    assert_int_equal(w->positives_detected, w->confusion[3]);
    assert_true(w->missed <= r.clean_detected);
    assert_true(w->auc >= 0 && w->auc <= 1);
  }
  assert_int_equal(sweep_write(&r, &test, "/tmp", "m", "d", "test", &err), STATUS_OK);
  FILE *f = fopen("/tmp/results.json", "r");
  char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  cJSON *j = cJSON_Parse(buf);
  assert_non_null(j);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rows")), r.n_rows);
  cJSON_Delete(j);
  remove("/tmp/results.json"), remove("/tmp/results.csv");
  slurp_first_line("/tmp/images.csv", buf, sizeof buf);
  assert_non_null(strstr(buf, "file,id,true,clean_pred,clean_confidence,fgsm@0.02"));
  remove("/tmp/images.csv");
  sweep_result_free(&r);

  assert_int_equal(robustness_sweep(masked, &test, &so, NULL, NULL, &r, &err), STATUS_OK);
  print_message("  masked model: clean accuracy %.1f%%\n", 100 * r.clean_accuracy);
  for (int i = 0; i < r.n_checks; i++)
    print_message("  masked %-40s %s %s\n", r.checks[i].name, r.checks[i].passed ? "ok" : "FIRED",
                  r.checks[i].message);
  assert_false(check_named(&r, "large eps")->passed);
  assert_false(check_named(&r, "black-box")->passed);
  sweep_result_free(&r);
}

static void test_triage_brackets_flip(void **state) {
  (void)state;
  Dataset test = data->split[SPLIT_TEST];
  test.n = 64;
  TriageOptions o = triage_options_default();
  o.attack = attack_options_default(ATTACK_BIM); /* deterministic: no random start */
  o.eps_max = 0.1f, o.tol = 1e-4f, o.flag_frac = 0.2f, o.batch = 64;
  TriageResult r;
  MrError err = {0};
  assert_int_equal(triage_run(plain, &test, &o, NULL, NULL, &r, &err), STATUS_OK);
  assert_int_equal(r.n_flagged, 13);
  for (int i = 1; i < r.n; i++) assert_true(r.items[i - 1].min_eps <= r.items[i].min_eps);
  /* replay: at min_eps every image flips, at eps_below none does */
  float hi[64], lo[64], adv[64 * 784], probs[128];
  int pred[64];
  for (int i = 0; i < r.n; i++) {
    const TriageItem *t = &r.items[i];
    assert_true(isinf(t->min_eps) || t->min_eps - t->eps_below <= 1e-4f + 1e-7f);
    hi[t->index] = isinf(t->min_eps) ? 0.1f : t->min_eps;
    lo[t->index] = t->eps_below;
    pred[t->index] = t->pred;
  }
  o.attack.eps = 0.1f;
  for (int pass = 0; pass < 2; pass++) {
    o.attack.eps_each = pass ? lo : hi;
    assert_int_equal(attack_run(plain, &o.attack, test.images, pred, 64, adv, &err), STATUS_OK);
    net_predict(plain, adv, 64, probs);
    for (int i = 0; i < r.n; i++) {
      const TriageItem *t = &r.items[i];
      const int now = probs[2 * t->index + 1] > probs[2 * t->index];
      if (pass == 0 && !isinf(t->min_eps)) assert_int_not_equal(now, t->pred);
      if (pass == 1) assert_int_equal(now, t->pred);
    }
  }
  /* the flagged images are the most fragile, and excluding them does not lower accuracy here */
  assert_true(r.accuracy_aware >= r.accuracy_all);
  assert_float_equal(r.curve_acc[DEFER_ADVERSARIAL][0], r.accuracy_all, 1e-12);
  for (int sc = 0; sc < DEFER_COUNT; sc++)
    assert_float_equal(r.curve_acc[sc][0], r.accuracy_all, 1e-12);
  triage_free(&r);
  o.attack.kind = ATTACK_SQUARE;
  assert_int_not_equal(triage_run(plain, &test, &o, NULL, NULL, &r, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "not square"));
}

/* Triage by one FMN run: the ranking is sorted, no eps below is claimed, and its bound is no
 * looser than the BIM bisection's on most images (it is a minimal-norm attack). */
static void test_triage_fmn_against_bisection(void **state) {
  (void)state;
  Dataset test = data->split[SPLIT_TEST];
  test.n = 64;
  TriageOptions o = triage_options_default();
  o.attack = attack_options_default(ATTACK_BIM);
  o.eps_max = 0.1f, o.tol = 1e-4f, o.batch = 32;
  TriageResult bis, fmn;
  MrError err = {0};
  assert_int_equal(triage_run(plain, &test, &o, NULL, NULL, &bis, &err), STATUS_OK);
  o.attack = attack_options_default(ATTACK_FMN);
  o.attack.iters = TRIAGE_FMN_STEPS;
  assert_int_equal(triage_run(plain, &test, &o, NULL, NULL, &fmn, &err), STATUS_OK);
  assert_true(fmn.one_run && !bis.one_run);
  float by_index[64];
  for (int i = 0; i < bis.n; i++) by_index[bis.items[i].index] = bis.items[i].min_eps;
  int no_larger = 0, found = 0;
  for (int i = 0; i < fmn.n; i++) {
    const TriageItem *t = &fmn.items[i];
    if (i) assert_true(fmn.items[i - 1].min_eps <= t->min_eps);
    assert_true(isinf(t->min_eps) ? t->flip_class < 0 && t->eps_below == o.eps_max
                                  : t->flip_class >= 0 && t->eps_below == 0.0f);
    found += isfinite(t->min_eps);
    no_larger += t->min_eps <= by_index[t->index];
  }
  print_message("  fmn: %d of %d flipped below eps_max; no larger than bisection on %d\n", found,
                fmn.n, no_larger);
  assert_true(found >= 32);
  assert_true(no_larger >= fmn.n * 9 / 10);
  triage_free(&bis), triage_free(&fmn);
}

/* The eps carry: an image fooled at a smaller eps is not attacked again. Accuracy is never
 * above the uncarried sweep's; every image not carried gets the uncarried sweep's answer (its
 * own random stream, whatever else is in its batch); rows keep the order asked. */
static void test_sweep_carry(void **state) {
  (void)state;
  Dataset test = data->split[SPLIT_TEST];
  test.n = 80;
  const AttackKind kinds[] = {ATTACK_PGD, ATTACK_FGSM};
  const float eps[] = {0.03f, 0.005f, 0.015f};
  SweepOptions so = {.attacks = kinds,
                     .n_attacks = 2,
                     .eps = eps,
                     .n_eps = 3,
                     .base = attack_options_default(ATTACK_PGD),
                     .batch = 32};
  so.base.iters = 0;
  SweepResult fresh, carried;
  MrError err = {0};
  assert_int_equal(robustness_sweep(plain, &test, &so, NULL, NULL, &fresh, &err), STATUS_OK);
  so.carry = 1;
  assert_int_equal(robustness_sweep(plain, &test, &so, NULL, NULL, &carried, &err), STATUS_OK);
  assert_int_equal(carried.n_rows, 6);
  int total_carried = 0;
  for (int i = 0; i < 6; i++) {
    const SweepRow *f = &fresh.rows[i], *c = &carried.rows[i];
    assert_float_equal(c->eps, eps[i % 3], 0);
    assert_string_equal(c->attack, attack_name(kinds[i / 3]));
    assert_true(c->accuracy <= f->accuracy);
    total_carried += c->carried;
    print_message("  %s eps %g: accuracy %.3f fresh, %.3f carried (%d carried)\n", c->attack,
                  c->eps, f->accuracy, c->accuracy, c->carried);
  }
  for (int a = 0; a < 2; a++) { /* eps ascending: 0.005 (row 1), 0.015 (row 2), 0.03 (row 0) */
    const SweepRow *lo = &carried.rows[3 * a + 1], *mid = &carried.rows[3 * a + 2],
                   *hi = &carried.rows[3 * a];
    assert_int_equal(lo->carried, 0);
    assert_true(mid->accuracy <= lo->accuracy && hi->accuracy <= mid->accuracy);
    for (int i = 0; i < test.n; i++) {
      const int fooled_before = lo->pred[i] != test.labels[i];
      /* not carried into the middle eps: attacked as in the fresh sweep */
      if (!fooled_before) assert_int_equal(mid->pred[i], fresh.rows[3 * a + 2].pred[i]);
    }
  }
  assert_true(total_carried > 0);
  sweep_result_free(&fresh), sweep_result_free(&carried);
}

/* Volumes of slices (Dataset.volume): the mean-probability prediction by hand, and volume
 * triage's bracket replayed: at each volume's min_eps attacking every slice away from its
 * class changes the mean prediction, at eps_below it does not. */
static void test_volume_triage_brackets_flip(void **state) {
  (void)state;
  enum { SLICES = 6, VOLUMES = 6, N = SLICES * VOLUMES + 1, PER = 784 };
  static float images[N * PER];
  int labels[N], volume[N], taken[2] = {0, 0};
  const Dataset *src = &data->split[SPLIT_TEST];
  /* three volumes of each class from the test images, then one 2-D image */
  for (int i = 0; i < src->n; i++) {
    const int y = src->labels[i];
    if (taken[y] == SLICES * VOLUMES / 2) continue;
    const int v = 2 * (taken[y] / SLICES) + y, at = v * SLICES + taken[y] % SLICES;
    memcpy(images + (size_t)at * PER, src->images + (size_t)i * PER, sizeof(float) * PER);
    labels[at] = y, volume[at] = v, taken[y]++;
  }
  memcpy(images + (size_t)(N - 1) * PER, src->images, sizeof(float) * PER);
  labels[N - 1] = src->labels[0], volume[N - 1] = -1;
  Dataset d = {
      .n = N, .c = 1, .h = 28, .w = 28, .images = images, .labels = labels, .volume = volume};
  assert_int_equal(dataset_volume_end(&d, 0), SLICES);
  assert_int_equal(dataset_volume_end(&d, N - 1), N);
  static float probs[N * 2];
  net_predict(plain, images, N, probs);
  int right = 0;
  for (int v = 0; v < VOLUMES; v++) {
    double p1 = 0;
    for (int s = 0; s < SLICES; s++) p1 += probs[2 * (v * SLICES + s) + 1] / SLICES;
    right += (p1 > 0.5) == labels[v * SLICES];
  }
  int volumes, labelled, correct;
  volume_accuracy(&d, probs, 2, &volumes, &labelled, &correct);
  assert_int_equal(volumes, VOLUMES);
  assert_int_equal(labelled, VOLUMES);
  assert_int_equal(correct, right);
  TriageOptions o = triage_options_default();
  o.attack = attack_options_default(ATTACK_BIM); /* deterministic: no random start */
  o.eps_max = 0.2f, o.tol = 1e-3f, o.batch = 4;  /* volumes span batches */
  TriageResult r;
  MrError err = {0};
  assert_int_equal(triage_run(plain, &d, &o, NULL, NULL, &r, &err), STATUS_OK);
  assert_int_equal(r.n_volumes, VOLUMES);
  int flipped = 0;
  for (int i = 0; i < r.n_volumes; i++) {
    const VolumeTriageItem *v = &r.volumes[i];
    if (i) assert_true(r.volumes[i - 1].min_eps <= v->min_eps);
    assert_int_equal(v->slices, SLICES);
    if (isinf(v->min_eps)) continue;
    flipped++;
    assert_true(v->min_eps - v->eps_below <= o.tol + 1e-7f);
    int y[SLICES];
    static float adv[SLICES * PER], p[SLICES * 2];
    for (int s = 0; s < SLICES; s++) y[s] = v->pred;
    for (int pass = 0; pass < 2; pass++) {
      AttackOptions a = o.attack;
      a.eps = pass ? v->eps_below : v->min_eps;
      assert_int_equal(attack_run(plain, &a, images + (size_t)v->first * PER, y, SLICES, adv, &err),
                       STATUS_OK);
      net_predict(plain, adv, SLICES, p);
      double p1 = 0;
      for (int s = 0; s < SLICES; s++) p1 += p[2 * s + 1] / SLICES;
      if (pass == 0) assert_int_not_equal(p1 > 0.5, v->pred);
      if (pass == 1 && v->eps_below > 0) assert_int_equal(p1 > 0.5, v->pred);
    }
  }
  assert_true(flipped > 0);
  triage_free(&r);
}

/* A model that answers "malignant" whatever it sees: every attack leaves it
 * at the majority share, which accuracy alone would call robust. */
static void test_constant_classifier_caught(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.class_names[0] = strdup("benign"), spec.class_names[1] = strdup("malignant");
  Net *constant = model_build(&spec, 1, NULL);
  model_spec_free(&spec);
  for (int i = 0; i < net_tensor_count(constant); i++) {
    TensorRef t = net_tensor(constant, i);
    if (!t.is_int64) memset(t.data, 0, 4 * t.numel);
    if (!t.is_int64 && strstr(t.name, "var")) /* running variances stay valid */
      for (size_t j = 0; j < t.numel; j++) t.data[j] = 1.0f;
  }
  TensorRef bias = net_tensor(constant, net_tensor_count(constant) - 1);
  assert_int_equal((int)bias.numel, 2);
  bias.data[1] = 3.0f;
  Dataset test = data->split[SPLIT_TEST];
  test.n = 60;
  const AttackKind kinds[] = {ATTACK_FGSM, ATTACK_PGD};
  const float eps[] = {0.01f, 0.03f};
  SweepOptions so = {.attacks = kinds,
                     .n_attacks = 2,
                     .eps = eps,
                     .n_eps = 2,
                     .base = attack_options_default(ATTACK_PGD),
                     .batch = 64,
                     .noise = 0,
                     .checks = 1};
  SweepResult r;
  MrError err = {0};
  assert_int_equal(robustness_sweep(constant, &test, &so, NULL, NULL, &r, &err), STATUS_OK);
  int ones = 0;
  for (int i = 0; i < test.n; i++) ones += test.labels[i] == 1;
  assert_float_equal(r.clean_accuracy, (double)ones / test.n, 1e-12);
  assert_float_equal(r.majority_share, fmax(ones, test.n - ones) / (double)test.n, 1e-12);
  assert_float_equal(r.clean_balanced_accuracy, 0.5, 1e-12);
  for (int i = 0; i < 4; i++) {
    assert_float_equal(r.rows[i].accuracy, r.clean_accuracy, 1e-12);
    assert_float_equal(r.rows[i].balanced_accuracy, 0.5, 1e-12);
    assert_int_equal(r.rows[i].positives_detected, ones);
  }
  print_message("  constant: %s\n", check_named(&r, "not a constant")->message);
  assert_false(check_named(&r, "not a constant")->passed);
  assert_false(check_named(&r, "clean balanced accuracy")->passed);
  sweep_result_free(&r);
  /* the trained model is not flagged */
  assert_int_equal(robustness_sweep(plain, &test, &so, NULL, NULL, &r, &err), STATUS_OK);
  assert_true(check_named(&r, "not a constant")->passed);
  assert_true(check_named(&r, "clean balanced accuracy")->passed);
  sweep_result_free(&r);
  net_free(constant);
}

/* Deferral by each score against a case computed by hand. */
static void test_deferral_by_hand(void **state) {
  (void)state;
  /* label, pred, confidence, margin, entropy, min_eps */
  const TriageItem items[6] = {
      {.label = 0,
       .pred = 0,
       .confidence = 0.9f,
       .margin = 2.0f,
       .entropy = 0.3f,
       .min_eps = 0.01f},
      {.label = 0,
       .pred = 1,
       .confidence = 0.6f,
       .margin = 0.4f,
       .entropy = 0.67f,
       .min_eps = 0.001f},
      {.label = 1,
       .pred = 1,
       .confidence = 0.55f,
       .margin = 0.2f,
       .entropy = 0.69f,
       .min_eps = 0.02f},
      {.label = 1,
       .pred = 0,
       .confidence = 0.95f,
       .margin = 3.0f,
       .entropy = 0.2f,
       .min_eps = 0.002f},
      {.label = 1,
       .pred = 1,
       .confidence = 0.8f,
       .margin = 1.4f,
       .entropy = 0.5f,
       .min_eps = INFINITY},
      {.label = 0,
       .pred = 0,
       .confidence = 0.7f,
       .margin = 0.8f,
       .entropy = 0.6f,
       .min_eps = 0.03f},
  };
  double acc, bal;
  for (int sc = 0; sc < DEFER_COUNT; sc++) {
    triage_deferral(items, 6, 2, (DeferScore)sc, 0.0, &acc, &bal);
    assert_float_equal(acc, 4.0 / 6, 1e-12);
    assert_float_equal(bal, 2.0 / 3, 1e-12);
  }
  /* deferring a third: the adversarial score sends both mistakes to a human */
  triage_deferral(items, 6, 2, DEFER_ADVERSARIAL, 1.0 / 3, &acc, &bal);
  assert_float_equal(acc, 1.0, 1e-12);
  assert_float_equal(bal, 1.0, 1e-12);
  /* the confident mistake (item 3) survives every confidence baseline */
  for (int sc = DEFER_CONFIDENCE; sc < DEFER_COUNT; sc++) {
    triage_deferral(items, 6, 2, (DeferScore)sc, 1.0 / 3, &acc, &bal);
    assert_float_equal(acc, 0.75, 1e-12);
    assert_float_equal(bal, 0.75, 1e-12);
  }
  triage_deferral(items, 6, 2, DEFER_ADVERSARIAL, 0.5, &acc, &bal);
  assert_float_equal(acc, 1.0, 1e-12);
}

static void test_shape_mismatch_refused(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 3, 28, 28, 2);
  Net *rgb = model_build(&spec, 1, NULL);
  const AttackKind kinds[] = {ATTACK_PGD};
  const float eps[] = {0.01f};
  SweepOptions so = {.attacks = kinds,
                     .n_attacks = 1,
                     .eps = eps,
                     .n_eps = 1,
                     .base = attack_options_default(ATTACK_PGD),
                     .batch = 64,
                     .noise = 0,
                     .checks = 0};
  SweepResult r;
  MrError err = {0};
  assert_int_not_equal(robustness_sweep(rgb, &data->split[SPLIT_TEST], &so, NULL, NULL, &r, &err),
                       STATUS_OK);
  assert_non_null(strstr(err.msg, "data is 1x28x28 but the model takes 3x28x28"));
  net_free(rgb);
}

static void test_transfer_and_compare(void **state) {
  (void)state;
  MrError err = {0};
  Dataset test = data->split[SPLIT_TEST];
  test.n = 100;
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.norm_mean[0] = 0.4f, spec.norm_std[0] = 0.2f;
  spec.depth = 3;
  Net *other = train(model_build(&spec, 8, &err));
  assert_non_null(other);
  Net *nets[2] = {plain, other};
  const char *names[2] = {"plain", "other"};
  AttackOptions a = attack_options_default(ATTACK_PGD);
  a.eps = 0.01f, a.iters = 5;
  double acc[4], white_box[2];
  assert_int_equal(transfer_matrix(nets, 2, &test, &a, 32, NULL, acc, &err), STATUS_OK);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(robust_accuracy(nets[i], &test, NULL, 0, &a, 32, &white_box[i], &err),
                     STATUS_OK);
    assert_float_equal(acc[i * 2 + i], white_box[i], 0.0);
  }
  print_message("  transfer PGD eps 0.01: [%.2f %.2f; %.2f %.2f]\n", acc[0], acc[1], acc[2],
                acc[3]);
  /* crafted on the other model, an attack is weaker than white-box */
  assert_true(acc[0 * 2 + 1] >= acc[1 * 2 + 1]);
  assert_true(acc[1 * 2 + 0] >= acc[0 * 2 + 0]);

  /* compare: the same numbers through the whole pipeline */
  AttackKind kinds[1] = {ATTACK_PGD};
  float eps[1] = {0.01f};
  CompareOptions co = {
      .sweep = {.attacks = kinds, .n_attacks = 1, .eps = eps, .n_eps = 1, .base = a, .batch = 32},
      .transfer = 1,
      .transfer_attack = a,
      .triage = 1,
      .triage_o = {.attack = a, .eps_max = 0.05f, .tol = 1e-3f, .flag_frac = 0.2f}};
  CompareResult r;
  assert_int_equal(compare_run(nets, names, 2, &test, &co, NULL, NULL, &r, &err), STATUS_OK);
  for (int i = 0; i < 2; i++) {
    assert_float_equal(r.models[i].sweep.rows[0].accuracy, white_box[i], 0.0);
    assert_float_equal(r.transfer[i * 2 + i], white_box[i], 0.0);
    assert_true(r.models[i].min_eps_median > 0 && r.models[i].min_eps_median <= 0.05);
    assert_int_equal(r.models[i].params, net_param_count(nets[i]));
  }
  char dir[256];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "compare"), 0);
  assert_int_equal(compare_write(&r, dir, "phantom", "test", &err), STATUS_OK);
  assert_int_equal(report_render(dir, &err), STATUS_OK);
  compare_result_free(&r);
  char path[300];
  snprintf(path, sizeof path, "%s/transfer.csv", dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[256];
  assert_non_null(fgets(line, sizeof line, f));
  assert_string_equal(line, "source\\target,plain,other\n");
  fclose(f);
  remove_dir(dir);

  /* incompatible inputs or label sets are refused, naming both files */
  ModelSpec three = model_spec_default("cnn", 1, 28, 28, 3);
  ModelSpec big = model_spec_default("cnn", 1, 32, 32, 2);
  Net *bad[2] = {model_build(&three, 1, &err), model_build(&big, 1, &err)};
  const char *bad_names[2] = {"plain.safetensors", "bad.safetensors"};
  for (int i = 0; i < 2; i++) {
    Net *pair[2] = {plain, bad[i]};
    assert_int_equal(compare_check_models(pair, bad_names, 2, &err), STATUS_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "bad.safetensors"));
    assert_non_null(strstr(err.msg, "one input and one label set"));
    assert_int_not_equal(compare_run(pair, bad_names, 2, &test, &co, NULL, NULL, &r, &err),
                         STATUS_OK);
    net_free(bad[i]);
  }
  ModelSpec named[2] = {model_spec_default("cnn", 1, 28, 28, 2),
                        model_spec_default("cnn", 1, 28, 28, 2)};
  named[0].class_names[1] = strdup("malignant"), named[1].class_names[1] = strdup("tumour");
  Net *tasks[2] = {model_build(&named[0], 1, &err), model_build(&named[1], 1, &err)};
  assert_int_equal(compare_check_models(tasks, bad_names, 2, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "not the same task"));
  model_spec_free(&named[0]), model_spec_free(&named[1]);
  net_free(tasks[0]), net_free(tasks[1]);
  net_free(other);
}

/* For logits z = W (x - mean) / std + b, d z_c / dx = W_c / std: the
 * saliency of a linear model is its weight row, and SmoothGrad (the mean
 * gradient over noisy copies) is the same. */
static void test_linear_saliency_is_weights(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 3);
  spec.norm_mean[0] = 0.3f, spec.norm_std[0] = 0.5f;
  Net *lin = net_new(&spec);
  MrError err = {0};
  assert_true(net_add_dense(lin, "fc", net_add_flatten(lin, NET_INPUT), 3) >= 0);
  assert_int_equal(net_finish(lin, &err), STATUS_OK);
  Rng rng;
  rng_seed(&rng, 12);
  const int d = 784, n = 4;
  float *w = net_params(lin);
  for (size_t i = 0; i < net_param_count(lin); i++) w[i] = rng_normal(&rng);
  float x[4 * 784], grad[4 * 784], smooth[4 * 784], map[784];
  fill_uniform(x, (size_t)n * d, &rng, 0, 1);
  const int cls[4] = {0, 2, 1, 2};
  assert_int_equal(saliency_gradient(lin, x, cls, n, 0, 0, 1, grad, &err), STATUS_OK);
  assert_int_equal(saliency_gradient(lin, x, cls, n, 16, 0.2f, 1, smooth, &err), STATUS_OK);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < d; j++) {
      const float want = w[cls[i] * d + j] / 0.5f;
      assert_float_equal(grad[i * d + j], want, 1e-5 * fabsf(want) + 1e-6);
      assert_float_equal(smooth[i * d + j], want, 1e-4 * fabsf(want) + 1e-5);
    }
    saliency_map(grad + i * d, 1, 28, 28, map);
    for (int j = 0; j < d; j++) assert_float_equal(map[j], fabsf(grad[i * d + j]), 0.0);
  }
  const int bad[4] = {0, 3, 0, 0};
  assert_int_not_equal(saliency_gradient(lin, x, bad, n, 0, 0, 1, grad, &err), STATUS_OK);
  net_free(lin);
}

/* Points a*u + b*v + c on a plane in 6-D: PCA's two axes hold all the
 * variance, the first the larger, and distances within the plane survive. */
static void test_pca_recovers_plane(void **state) {
  (void)state;
  enum { N = 60, D = 6 };
  const double u[D] = {0.5, 0.5, 0.5, 0.5, 0, 0}, v[D] = {0, 0, 0, 0, 0.6, 0.8};
  float f[N * D], xy[N * 2];
  Rng rng;
  rng_seed(&rng, 3);
  for (int i = 0; i < N; i++) {
    const double a = 3.0 * rng_normal(&rng), b = rng_normal(&rng);
    for (int j = 0; j < D; j++) f[i * D + j] = (float)(a * u[j] + b * v[j] + 0.25 * j);
  }
  double explained[2];
  MrError err = {0};
  assert_int_equal(pca_2d(f, N, D, N - 10, xy, explained, &err), STATUS_OK);
  assert_true(explained[0] > explained[1]);
  assert_float_equal(explained[0] + explained[1], 1.0, 1e-4);
  for (int i = 1; i < N; i++) {
    double d_in = 0, d_out = 0;
    for (int j = 0; j < D; j++) d_in += pow(f[i * D + j] - f[j], 2);
    for (int a = 0; a < 2; a++) d_out += pow(xy[i * 2 + a] - xy[a], 2);
    assert_float_equal(sqrt(d_out), sqrt(d_in), 1e-3 * (1 + sqrt(d_in)));
  }
  assert_int_not_equal(pca_2d(f, N, D, 2, xy, explained, &err), STATUS_OK);
}

static void test_image_metrics(void **state) {
  (void)state;
  float a[784], b[784];
  Rng rng;
  rng_seed(&rng, 1);
  fill_uniform(a, 784, &rng, 0, 1);
  memcpy(b, a, sizeof a);
  assert_float_equal(image_ssim(a, b, 1, 28, 28), 1.0, 1e-9);
  assert_true(isinf(image_psnr(a, b, 784)));
  for (int i = 0; i < 784; i++) b[i] = a[i] + 0.1f;
  assert_float_equal(image_psnr(a, b, 784), 20.0, 1e-3); /* MSE 0.01 */
  const double small = image_ssim(a, b, 1, 28, 28);
  for (int i = 0; i < 784; i++) b[i] = rng_uniform(&rng);
  assert_true(image_ssim(a, b, 1, 28, 28) < small);
  assert_true(small < 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sweep_and_checks),
      cmocka_unit_test(test_triage_brackets_flip),
      cmocka_unit_test(test_triage_fmn_against_bisection),
      cmocka_unit_test(test_sweep_carry),
      cmocka_unit_test(test_volume_triage_brackets_flip),
      cmocka_unit_test(test_constant_classifier_caught),
      cmocka_unit_test(test_deferral_by_hand),
      cmocka_unit_test(test_shape_mismatch_refused),
      cmocka_unit_test(test_image_metrics),
      cmocka_unit_test(test_transfer_and_compare),
      cmocka_unit_test(test_linear_saliency_is_weights),
      cmocka_unit_test(test_pca_recovers_plane),
  };
  return cmocka_run_group_tests_name("eval", tests, setup, teardown);
}
