/* Every attack: stays in its eps ball and [0,1], returns the input at
 * eps = 0, raises the loss it attacks (untargeted) or the target's
 * probability (targeted); FGSM matches its closed form on a linear model;
 * DeepFool and C&W find smaller perturbations than FGSM where FGSM succeeds;
 * bad options are refused. The model is a small CNN trained on the phantom. */
#include "attacks/attack.h"
#include "nn/net.h"
#include "testutil.h"

static Net *net;
static DataSplits *data;
#define B 48

static int setup(void **state) {
  (void)state;
  mr_set_threads(2);
  MrError err = {0};
  data = phantom_generate(28, 1200, 4, &err);
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.norm_mean[0] = 0.4f, spec.norm_std[0] = 0.2f;
  net = model_build(&spec, 5, &err);
  TrainOptions o = train_options_default();
  o.epochs = 8, o.batch = 32, o.out = "/tmp/medrobust-attack-test.safetensors";
  TrainResult res;
  if (!data || !net || train_run(net, data, &o, NULL, NULL, &res, &err) != STATUS_OK) return -1;
  remove(o.out);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  net_free(net);
  data_free(data);
  return 0;
}

static double ce_of(Net *n, const float *x, int i, int label) {
  const float *z = net_forward(n, x, B, MODE_EVAL) + (size_t)i * 2;
  const double m = fmax(z[0], z[1]);
  return log(exp(z[0] - m) + exp(z[1] - m)) + m - z[label];
}

static void check_attack(AttackKind kind, Norm norm, TargetMode target, float eps) {
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 28 * 28;
  AttackOptions o = attack_options_default(kind);
  o.norm = norm, o.eps = eps, o.target = target, o.target_class = 1;
  if (kind == ATTACK_SQUARE) o.queries = 300;
  if (kind == ATTACK_CW) o.iters = 50, o.cw_search_steps = 3;
  if (kind == ATTACK_APGD_CE || kind == ATTACK_APGD_MARGIN) o.iters = 30;
  float *adv = malloc(sizeof(float) * per * B);
  MrError err = {0};
  if (attack_run(net, &o, t->images, t->labels, B, adv, &err) != STATUS_OK) fail_msg("%s", err.msg);
  int *labels = malloc(sizeof(int) * B);
  /* the labels the attack aims at: y, or the targets */
  if (target == TARGET_CLASS) {
    for (int i = 0; i < B; i++) labels[i] = 1;
  } else if (target == TARGET_LEAST_LIKELY) {
    const float *z = net_forward(net, t->images, B, MODE_EVAL);
    for (int i = 0; i < B; i++) labels[i] = z[2 * i] < z[2 * i + 1] ? 0 : 1;
  } else {
    memcpy(labels, t->labels, sizeof(int) * B);
  }
  int worse = 0;
  double sum_before = 0, sum_after = 0;
  for (int i = 0; i < B; i++) {
    const float *a = adv + per * i, *x = t->images + per * i;
    double l2 = 0, linf = 0;
    for (size_t p = 0; p < per; p++) {
      assert_true(a[p] >= 0.0f && a[p] <= 1.0f);
      l2 += (double)(a[p] - x[p]) * (a[p] - x[p]);
      linf = fmax(linf, fabs(a[p] - x[p]));
    }
    if (attack_is_bounded(kind)) {
      if (norm == NORM_LINF)
        assert_true(linf <= eps + 1e-6);
      else
        assert_true(sqrt(l2) <= eps + 1e-5);
    }
    const double before = ce_of(net, t->images, i, labels[i]),
                 after = ce_of(net, adv, i, labels[i]);
    sum_before += before, sum_after += after;
    /* untargeted: CE of y must not fall; targeted: CE of the target must not rise */
    if (target == TARGET_NONE ? after < before - 1e-4 : after > before + 1e-4) worse++;
  }
  print_message("  %-9s %s %-12s eps %-6g mean CE %.3f -> %.3f (%d of %d images not improved)\n",
                attack_name(kind), norm == NORM_LINF ? "Linf" : "L2  ",
                target == TARGET_NONE    ? "untargeted"
                : target == TARGET_CLASS ? "target 1"
                                         : "least-likely",
                eps, sum_before, sum_after, worse, B);
  /* gradient attacks keep their strongest iterate: never worse on any image.
   * Square and APGD-margin optimise the margin, not CE, and DeepFool crosses
   * away from the clean prediction (towards y when that was wrong): for
   * those the mean must still move. */
  assert_true(target == TARGET_NONE ? sum_after > sum_before : sum_after < sum_before);
  if (kind == ATTACK_FGSM)
    assert_true(worse <= B / 10); /* one linearised step can overshoot on a few images */
  else if (kind != ATTACK_SQUARE && kind != ATTACK_APGD_MARGIN && kind != ATTACK_CW &&
           kind != ATTACK_DEEPFOOL)
    assert_int_equal(worse, 0);
  /* eps = 0 returns the input exactly */
  if (attack_is_bounded(kind)) {
    o.eps = 0.0f;
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
    assert_memory_equal(adv, t->images, sizeof(float) * per * B);
  }
  free(adv), free(labels);
}

static void test_bounded_attacks(void **state) {
  (void)state;
  const AttackKind kinds[] = {ATTACK_FGSM,   ATTACK_BIM,     ATTACK_PGD,
                              ATTACK_MIFGSM, ATTACK_APGD_CE, ATTACK_APGD_MARGIN};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    check_attack(kinds[k], NORM_LINF, TARGET_NONE, 0.03f);
    check_attack(kinds[k], NORM_L2, TARGET_NONE, 0.5f);
  }
  check_attack(ATTACK_SQUARE, NORM_LINF, TARGET_NONE, 0.05f);
  check_attack(ATTACK_DEEPFOOL, NORM_L2, TARGET_NONE, 0.0f); /* unbounded: [0,1] and the loss */
  check_attack(ATTACK_CW, NORM_L2, TARGET_NONE, 0.0f);
  check_attack(ATTACK_FMN, NORM_LINF, TARGET_NONE, 0.0f);
  check_attack(ATTACK_FMN, NORM_L2, TARGET_NONE, 0.0f);
}

static void test_targeted_attacks(void **state) {
  (void)state;
  const AttackKind kinds[] = {ATTACK_FGSM, ATTACK_BIM, ATTACK_PGD, ATTACK_MIFGSM, ATTACK_APGD_CE};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    check_attack(kinds[k], NORM_LINF, TARGET_CLASS, 0.03f);
    check_attack(kinds[k], NORM_LINF, TARGET_LEAST_LIKELY, 0.03f);
  }
  check_attack(ATTACK_CW, NORM_L2, TARGET_CLASS, 0.0f);
  check_attack(ATTACK_FMN, NORM_LINF, TARGET_CLASS, 0.0f);
}

static double linf_dist(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

/* FMN's point is adversarial whenever it moved, and it is smaller than a bounded attack's: every
 * image PGD fools at eps, FMN fools within eps (L-inf) -- in one run, short or long. */
static void test_fmn_minimal(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 784;
  float *pg = malloc(sizeof(float) * per * B), *fm = malloc(sizeof(float) * per * B);
  float probs_p[2 * B], probs_f[2 * B], probs_x[2 * B];
  MrError err = {0};
  const float eps = 0.006f;
  AttackOptions o = attack_options_default(ATTACK_PGD);
  o.eps = eps, o.iters = 20;
  assert_int_equal(attack_run(net, &o, t->images, t->labels, B, pg, &err), STATUS_OK);
  net_predict(net, pg, B, probs_p);
  net_predict(net, t->images, B, probs_x);
  const int steps[] = {100, 15};
  for (int s = 0; s < 2; s++) {
    o = attack_options_default(ATTACK_FMN);
    o.iters = steps[s];
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, fm, &err), STATUS_OK);
    net_predict(net, fm, B, probs_f);
    int pgd_fooled = 0, fmn_within = 0, moved = 0;
    double sum = 0;
    for (int i = 0; i < B; i++) {
      const int fooled_f = (probs_f[2 * i + 1] > probs_f[2 * i]) != t->labels[i],
                fooled_p = (probs_p[2 * i + 1] > probs_p[2 * i]) != t->labels[i],
                clean_ok = (probs_x[2 * i + 1] > probs_x[2 * i]) == t->labels[i];
      const double size = linf_dist(fm + per * i, t->images + per * i, per);
      if (size > 0) moved++, assert_true(fooled_f); /* it moves only to an adversarial point */
      if (!clean_ok || !fooled_p) continue;
      pgd_fooled++, sum += size, fmn_within += fooled_f && size <= eps;
    }
    print_message(
        "  fmn %d steps: %d moved; PGD fooled %d at eps %g, FMN within it on %d (mean "
        "%.4g)\n",
        steps[s], moved, pgd_fooled, eps, fmn_within, pgd_fooled ? sum / pgd_fooled : 0);
    assert_true(pgd_fooled >= 10);
    assert_true(fmn_within >= pgd_fooled * 9 / 10);
  }
  free(pg), free(fm);
}

/* An option an attack cannot honour is refused, never silently dropped:
 * APGD used to ignore --target and still label its rows as targeted (APGD-CE
 * now runs targeted, checked in test_targeted_attacks). */
static void test_unsupported_options_refused(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  float *adv = malloc(sizeof(float) * 784 * B);
  MrError err = {0};
  const AttackKind untargeted[] = {ATTACK_APGD_MARGIN, ATTACK_STANDARD, ATTACK_DEEPFOOL};
  for (size_t k = 0; k < sizeof untargeted / sizeof untargeted[0]; k++) {
    AttackOptions o = attack_options_default(untargeted[k]);
    o.eps = 0.03f, o.iters = 2, o.target = TARGET_LEAST_LIKELY;
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_ERR_ARG);
    assert_non_null(strstr(err.msg, "no targeted version"));
    assert_int_equal(attack_supports(untargeted[k]) & ATTACK_SUPPORTS_TARGETED, 0);
  }
  AttackOptions sq = attack_options_default(ATTACK_SQUARE);
  sq.eps = 0.5f, sq.norm = NORM_L2;
  assert_int_equal(attack_run(net, &sq, t->images, t->labels, B, adv, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "only the L-inf version"));
  free(adv);
}

/* On logits z = W x + b, d CE / dx = W^T (softmax(z) - e_y): FGSM is exact. */
static void test_fgsm_closed_form_linear(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 3);
  Net *lin = net_new(&spec);
  int t = net_add_flatten(lin, NET_INPUT);
  MrError err = {0};
  assert_true(net_add_dense(lin, "fc", t, 3) >= 0);
  assert_int_equal(net_finish(lin, &err), STATUS_OK);
  Rng rng;
  rng_seed(&rng, 8);
  float *w = net_params(lin);
  for (size_t i = 0; i < net_param_count(lin); i++) w[i] = 0.1f * rng_normal(&rng);
  const int n = 4, d = 784;
  float x[4 * 784], adv[4 * 784];
  int y[4] = {0, 1, 2, 1};
  fill_uniform(x, (size_t)n * d, &rng, 0, 1);
  AttackOptions o = attack_options_default(ATTACK_FGSM);
  o.eps = 0.01f;
  assert_int_equal(attack_run(lin, &o, x, y, n, adv, &err), STATUS_OK);
  for (int i = 0; i < n; i++) {
    double z[3], p[3], s = 0;
    for (int k = 0; k < 3; k++) {
      z[k] = w[3 * d + k];
      for (int j = 0; j < d; j++) z[k] += (double)w[k * d + j] * x[i * d + j];
    }
    for (int k = 0; k < 3; k++) s += exp(z[k]);
    for (int k = 0; k < 3; k++) p[k] = exp(z[k]) / s;
    for (int j = 0; j < d; j++) {
      double g = 0;
      for (int k = 0; k < 3; k++) g += w[k * d + j] * (p[k] - (k == y[i]));
      const double want = fmin(fmax(x[i * d + j] + 0.01 * ((g > 0) - (g < 0)), 0.0), 1.0);
      assert_float_equal(adv[i * d + j], want, 1e-6);
    }
  }
  net_free(lin);
}

static double mean_ce(Net *n, const float *x, const int *y, Mode mode) {
  const float *z = net_forward(n, x, B, mode);
  double s = 0;
  for (int i = 0; i < B; i++) {
    const double m = fmax(z[2 * i], z[2 * i + 1]);
    s += log(exp(z[2 * i] - m) + exp(z[2 * i + 1] - m)) + m - z[2 * i + y[i]];
  }
  return s / B;
}

/* Adversarial training may craft against the batch's own batchnorm
 * statistics: the attack then ascends that loss, stays in its ball, and
 * leaves the running statistics alone; plain training mode is refused. */
static void test_crafting_in_training_mode(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 784;
  size_t stat_bytes = 0;
  for (int i = 0; i < net_tensor_count(net); i++) {
    TensorRef r = net_tensor(net, i);
    stat_bytes += r.numel * (r.is_int64 ? 8 : 4);
  }
  unsigned char *before = malloc(stat_bytes), *after = malloc(stat_bytes);
  float *adv = malloc(sizeof(float) * per * B);
  for (int pass = 0; pass < 2; pass++) {
    unsigned char *dst = pass ? after : before;
    for (int i = 0; i < net_tensor_count(net); i++) {
      TensorRef r = net_tensor(net, i);
      const size_t bytes = r.numel * (r.is_int64 ? 8 : 4);
      memcpy(dst, r.is_int64 ? (void *)r.idata : (void *)r.data, bytes);
      dst += bytes;
    }
    if (pass) break;
    AttackOptions o = attack_options_default(ATTACK_PGD);
    o.eps = 0.01f, o.mode = MODE_TRAIN_FROZEN, o.last_iterate = 1;
    MrError err = {0};
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
    o.mode = MODE_TRAIN;
    assert_int_not_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
  }
  assert_memory_equal(before, after, stat_bytes);
  for (size_t i = 0; i < per * B; i++) {
    assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
    assert_true(fabsf(adv[i] - t->images[i]) <= 0.01f + 1e-6f);
  }
  const double clean = mean_ce(net, t->images, t->labels, MODE_TRAIN_FROZEN);
  const double attacked = mean_ce(net, adv, t->labels, MODE_TRAIN_FROZEN);
  assert_true(attacked > clean);
  free(before), free(after), free(adv);
}

static double l2_dist(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

static void test_minimal_attacks_beat_fgsm(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 784;
  float *fg = malloc(sizeof(float) * per * B), *df = malloc(sizeof(float) * per * B),
        *cw = malloc(sizeof(float) * per * B);
  MrError err = {0};
  AttackOptions o = attack_options_default(ATTACK_FGSM);
  o.eps = 0.1f;
  assert_int_equal(attack_run(net, &o, t->images, t->labels, B, fg, &err), STATUS_OK);
  o = attack_options_default(ATTACK_DEEPFOOL);
  assert_int_equal(attack_run(net, &o, t->images, t->labels, B, df, &err), STATUS_OK);
  o = attack_options_default(ATTACK_CW);
  o.iters = 60, o.cw_search_steps = 3;
  assert_int_equal(attack_run(net, &o, t->images, t->labels, B, cw, &err), STATUS_OK);
  float probs_f[2 * B], probs_d[2 * B], probs_c[2 * B], probs_x[2 * B];
  net_predict(net, fg, B, probs_f);
  net_predict(net, df, B, probs_d);
  net_predict(net, cw, B, probs_c);
  net_predict(net, t->images, B, probs_x);
  int compared = 0, df_smaller = 0, cw_smaller = 0, clean_ok = 0, fgsm_ok = 0;
  for (int i = 0; i < B; i++) {
    clean_ok += (probs_x[2 * i + 1] > probs_x[2 * i]) == t->labels[i];
    fgsm_ok += (probs_f[2 * i + 1] > probs_f[2 * i]) == t->labels[i];
  }
  print_message("  clean accuracy %d/%d, under FGSM eps 0.1 %d/%d\n", clean_ok, B, fgsm_ok, B);
  for (int i = 0; i < B; i++) {
    const int clean = probs_x[2 * i + 1] > probs_x[2 * i], f = probs_f[2 * i + 1] > probs_f[2 * i];
    const int dpred = probs_d[2 * i + 1] > probs_d[2 * i],
              cpred = probs_c[2 * i + 1] > probs_c[2 * i];
    if (clean != t->labels[i] || f == t->labels[i]) continue; /* FGSM fooled a correct image */
    compared++;
    const double lf = l2_dist(fg + per * i, t->images + per * i, per);
    df_smaller += dpred != clean && l2_dist(df + per * i, t->images + per * i, per) < lf;
    cw_smaller += cpred != t->labels[i] && l2_dist(cw + per * i, t->images + per * i, per) < lf;
  }
  print_message("  FGSM fooled %d images; DeepFool smaller on %d, C&W smaller on %d\n", compared,
                df_smaller, cw_smaller);
  assert_true(compared >= 5);
  assert_int_equal(df_smaller, compared);
  assert_int_equal(cw_smaller, compared);
  free(fg), free(df), free(cw);
}

/* The standard suite reports, per image, the worst case of its parts. */
static void test_standard_suite_worst_case(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const AttackKind kinds[4] = {ATTACK_APGD_CE, ATTACK_APGD_MARGIN, ATTACK_SQUARE, ATTACK_STANDARD};
  int correct[4];
  float *adv = malloc(sizeof(float) * 784 * B), probs[2 * B];
  for (int a = 0; a < 4; a++) {
    AttackOptions o = attack_options_default(kinds[a]);
    o.eps = 0.01f;
    MrError err = {0};
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
    for (size_t i = 0; i < 784 * (size_t)B; i++)
      assert_true(fabsf(adv[i] - t->images[i]) <= 0.01f + 1e-6f);
    net_predict(net, adv, B, probs);
    correct[a] = 0;
    for (int i = 0; i < B; i++) correct[a] += (probs[2 * i + 1] > probs[2 * i]) == t->labels[i];
  }
  print_message("  correct at eps 0.01: apgd-ce %d, apgd-margin %d, square %d, standard %d of %d\n",
                correct[0], correct[1], correct[2], correct[3], B);
  for (int a = 0; a < 3; a++) assert_true(correct[3] <= correct[a]);
  free(adv);
}

/* JSMA changes at most gamma of the features, only upwards, and moves the
 * prediction towards its target. */
static void test_jsma(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 784;
  float *adv = malloc(sizeof(float) * per * B), probs_x[2 * B], probs_a[2 * B];
  AttackOptions o = attack_options_default(ATTACK_JSMA);
  o.target = TARGET_CLASS, o.target_class = 1;
  MrError err = {0};
  assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
  net_predict(net, t->images, B, probs_x);
  net_predict(net, adv, B, probs_a);
  int reached = 0, wanted = 0;
  double gain = 0;
  for (int i = 0; i < B; i++) {
    int changed = 0;
    for (size_t p = 0; p < per; p++) {
      const float a = adv[per * i + p], x = t->images[per * i + p];
      assert_true(a >= x && a <= 1.0f);
      changed += a != x;
    }
    assert_true(changed <= (int)(0.1 * per) + 1);
    if (probs_x[2 * i + 1] < 0.5f) wanted++, reached += probs_a[2 * i + 1] > 0.5f;
    gain += probs_a[2 * i + 1] - probs_x[2 * i + 1];
  }
  print_message("  JSMA to class 1: %d of %d images reached it, mean p(1) gain %.3f\n", reached,
                wanted, gain / B);
  assert_true(gain > 0);
  assert_true(reached * 2 >= wanted);
  free(adv);
}

static void test_bad_options(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  float *adv = malloc(sizeof(float) * 784 * B);
  MrError err = {0};
  AttackOptions o = attack_options_default(ATTACK_PGD);
  o.eps = -0.1f;
  assert_int_not_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "eps must be >= 0"));
  o.eps = 0.01f, o.target = TARGET_CLASS, o.target_class = 7;
  assert_int_not_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "target class 7"));
  assert_int_equal(attack_parse("nosuch"), -1);
  assert_int_equal(attack_parse("pgd"), ATTACK_PGD);
  free(adv);
}

/* Attack buffers are planned once per shape: repeating a call allocates
 * nothing, including the standard suite's nested attacks. */
static void test_attack_scratch_planned(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  float *adv = malloc(sizeof(float) * 784 * B), *again = malloc(sizeof(float) * 784 * B);
  MrError err = {0};
  const AttackKind kinds[] = {ATTACK_PGD, ATTACK_STANDARD, ATTACK_JSMA, ATTACK_CW};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    AttackOptions o = attack_options_default(kinds[k]);
    o.eps = kinds[k] == ATTACK_JSMA ? 0.05f : 0.03f, o.iters = 3, o.queries = 20;
    if (kinds[k] == ATTACK_CW) o.norm = NORM_L2, o.cw_search_steps = 1;
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, adv, &err), STATUS_OK);
    const long before = attack_workspace_allocations(net);
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, again, &err), STATUS_OK);
    assert_int_equal(attack_workspace_allocations(net), before);
    /* reused buffers start zeroed: the same call gives the same images */
    assert_memory_equal(adv, again, sizeof(float) * 784 * B);
  }
  free(adv), free(again);
}

/* Each image draws from its own random stream and decided images leave the batch, so an
 * image's adversarial example is the same whatever shares its batch: attacked with the rest,
 * alone, or among a shuffled few (AttackOptions.index) -- bit for bit. */
static void test_attack_batch_independent(void **state) {
  (void)state;
  const Dataset *t = &data->split[SPLIT_TEST];
  const size_t per = 784;
  float *all = malloc(sizeof(float) * per * B), *one = malloc(sizeof(float) * per * B);
  float *x = malloc(sizeof(float) * per * B);
  int y[B], index[B];
  MrError err = {0};
  const struct {
    AttackKind kind;
    Norm norm;
    int restarts;
  } cases[] = {{ATTACK_PGD, NORM_LINF, 2},     {ATTACK_PGD, NORM_L2, 1},
               {ATTACK_BIM, NORM_LINF, 1},     {ATTACK_MIFGSM, NORM_LINF, 1},
               {ATTACK_APGD_CE, NORM_LINF, 2}, {ATTACK_APGD_MARGIN, NORM_L2, 1},
               {ATTACK_SQUARE, NORM_LINF, 1}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    AttackOptions o = attack_options_default(cases[k].kind);
    o.norm = cases[k].norm, o.restarts = cases[k].restarts, o.queries = 100, o.iters = 12;
    o.eps = cases[k].norm == NORM_LINF ? 0.004f : 0.08f, o.seed = 7;
    o.index_base = 100;
    assert_int_equal(attack_run(net, &o, t->images, t->labels, B, all, &err), STATUS_OK);
    /* some fooled early, some never: both paths are exercised */
    float probs[2 * B];
    net_predict(net, all, B, probs);
    int fooled = 0;
    for (int i = 0; i < B; i++) fooled += (probs[2 * i + 1] > probs[2 * i]) != t->labels[i];
    print_message("%s %s: %d of %d fooled\n", attack_name(o.kind),
                  o.norm == NORM_LINF ? "linf" : "l2", fooled, B);
    assert_true(fooled > 0 && fooled < B);
    for (int i = 0; i < 5; i++) { /* alone */
      AttackOptions a = o;
      a.index_base = 100 + i;
      assert_int_equal(
          attack_run(net, &a, t->images + per * i, t->labels + i, 1, one + per * i, &err),
          STATUS_OK);
      assert_memory_equal(one + per * i, all + per * i, sizeof(float) * per);
    }
    /* every third image, last first, named by index */
    int n = 0;
    for (int i = B - 1; i >= 0; i -= 3, n++) {
      memcpy(x + per * n, t->images + per * i, sizeof(float) * per);
      y[n] = t->labels[i], index[n] = 100 + i;
    }
    AttackOptions a = o;
    a.index = index;
    assert_int_equal(attack_run(net, &a, x, y, n, one, &err), STATUS_OK);
    for (int j = 0; j < n; j++)
      assert_memory_equal(one + per * j, all + per * (index[j] - 100), sizeof(float) * per);
  }
  free(all), free(one), free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attack_batch_independent),
      cmocka_unit_test(test_bounded_attacks),
      cmocka_unit_test(test_targeted_attacks),
      cmocka_unit_test(test_crafting_in_training_mode),
      cmocka_unit_test(test_fgsm_closed_form_linear),
      cmocka_unit_test(test_minimal_attacks_beat_fgsm),
      cmocka_unit_test(test_fmn_minimal),
      cmocka_unit_test(test_standard_suite_worst_case),
      cmocka_unit_test(test_jsma),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_unsupported_options_refused),
      cmocka_unit_test(test_attack_scratch_planned),
  };
  return cmocka_run_group_tests_name("attacks", tests, setup, teardown);
}
