/* Randomized smoothing (src/eval/smooth.c, src/eval/stats.cpp): the distributions against
 * scipy's values, and CERTIFY / PREDICT on a linear classifier, whose smoothed classifier is
 * itself and whose exact robust radius is its distance to the boundary (Cohen et al. 2019,
 * section 3.2): a certificate must never exceed it and should come close. */
#include "testutil.h"

#define SIDE 4
#define PER (SIDE * SIDE)

/* f(x) = class 1 iff sum(x) > t: logits (0, sum(x) - t) on raw pixels. Its distance from x
 * to the boundary in L2 is |sum(x) - t| / sqrt(PER). */
static Net *linear_net(float t) {
  ModelSpec spec = model_spec_default("cnn", 1, SIDE, SIDE, 2);
  Net *net = net_new(&spec);
  model_spec_free(&spec);
  net_add_dense(net, "fc", net_add_flatten(net, NET_INPUT), 2);
  MrError err = {0};
  if (net_finish(net, &err) != STATUS_OK) fail_msg("%s", err.msg);
  const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  net_set_normalization(net, mean, std);
  assert_int_equal(net_param_count(net), 2 * PER + 2);
  float *p = net_params(net); /* fc.weight (2, PER) then fc.bias (2) */
  for (int i = 0; i < PER; i++) p[i] = 0.0f, p[PER + i] = 1.0f;
  p[2 * PER] = 0.0f, p[2 * PER + 1] = -t;
  return net;
}

static void fill(float *x, float v) {
  for (int i = 0; i < PER; i++) x[i] = v;
}

static void test_distributions(void **state) {
  (void)state;
  /* scipy.stats: beta.ppf(0.05, 50, 51), beta.ppf(0.001, 9000, 1001), norm.ppf(0.975),
   * binomtest(2, 10).pvalue, binomtest(60, 100).pvalue */
  assert_float_equal(clopper_pearson_lower(50, 100, 0.05), 0.41362171463091163, 1e-12);
  assert_float_equal(clopper_pearson_lower(9000, 10000, 0.001), 0.8904097336749064, 1e-12);
  assert_float_equal(clopper_pearson_lower(100, 100, 0.01), pow(0.01, 1.0 / 100), 1e-12);
  assert_true(clopper_pearson_lower(0, 100, 0.01) == 0.0);
  assert_float_equal(normal_quantile(0.975), 1.959963984540054, 1e-12);
  assert_float_equal(normal_quantile(0.5), 0.0, 1e-15);
  assert_float_equal(binomial_test_half(2, 10), 0.109375, 1e-12);
  assert_float_equal(binomial_test_half(8, 10), 0.109375, 1e-12);
  assert_float_equal(binomial_test_half(60, 100), 0.05688793364098088, 1e-12);
  assert_true(binomial_test_half(5, 10) == 1.0);
  assert_true(isnan(clopper_pearson_lower(5, 3, 0.01)) && isnan(binomial_test_half(-1, 3)));
  assert_true(isnan(clopper_pearson_lower(5, 10, 0.0)) && isnan(normal_quantile(NAN)));
}

static void test_certify_linear(void **state) {
  (void)state;
  const float t = 8.0f; /* the boundary: mean pixel 0.5 */
  Net *net = linear_net(t);
  float x[PER];
  SmoothOptions o = smooth_options_default();
  o.n0 = 100, o.n = 20000, o.sigma = 0.25f, o.alpha = 0.001;
  MrError err = {0};
  /* distances 0.2 and 0.4 on either side of the boundary */
  const float means[4] = {0.55f, 0.6f, 0.45f, 0.4f};
  for (int k = 0; k < 4; k++) {
    fill(x, means[k]);
    const double distance = fabs(PER * means[k] - t) / sqrt((double)PER);
    SmoothCertificate c;
    assert_int_equal(smooth_certify(net, &o, x, (uint64_t)k, &c, &err), STATUS_OK);
    assert_int_equal(c.predicted, means[k] > 0.5f);
    assert_int_equal(c.selected, c.predicted);
    /* sound: never beyond the exact radius; tight: within 10% of it at n = 20000 */
    print_message("  distance %.3f: certified radius %.4f (p_lower %.4f, %ld of %ld)\n", distance,
                  c.radius, c.p_lower, c.count, o.n);
    assert_true(c.radius <= distance);
    assert_true(c.radius > 0.9 * distance);
    assert_float_equal(c.radius, o.sigma * normal_quantile(c.p_lower), 1e-12);
    int predicted;
    assert_int_equal(smooth_predict(net, &o, x, (uint64_t)k, &predicted, &err), STATUS_OK);
    assert_int_equal(predicted, c.predicted);
  }
  /* on the boundary: half the noise falls each way, so both abstain */
  fill(x, 0.5f);
  SmoothCertificate c;
  assert_int_equal(smooth_certify(net, &o, x, 7, &c, &err), STATUS_OK);
  assert_int_equal(c.predicted, SMOOTH_ABSTAIN);
  assert_true(c.radius == 0.0 && c.p_lower < 0.5);
  int predicted;
  assert_int_equal(smooth_predict(net, &o, x, 7, &predicted, &err), STATUS_OK);
  assert_int_equal(predicted, SMOOTH_ABSTAIN);
  net_free(net);
}

/* The certificate depends on (seed, index) only: not on the batch size; another index or
 * seed draws other noise. */
static void test_certify_deterministic(void **state) {
  (void)state;
  Net *net = linear_net(8.0f);
  float x[PER];
  fill(x, 0.53f);
  SmoothOptions o = smooth_options_default();
  o.n0 = 50, o.n = 3001;
  MrError err = {0};
  SmoothCertificate a, b, other, reseeded;
  o.batch = 400;
  assert_int_equal(smooth_certify(net, &o, x, 11, &a, &err), STATUS_OK);
  o.batch = 7;
  assert_int_equal(smooth_certify(net, &o, x, 11, &b, &err), STATUS_OK);
  assert_int_equal(a.count, b.count);
  assert_memory_equal(&a, &b, sizeof a);
  assert_int_equal(smooth_certify(net, &o, x, 12, &other, &err), STATUS_OK);
  o.seed = 2;
  assert_int_equal(smooth_certify(net, &o, x, 11, &reseeded, &err), STATUS_OK);
  assert_true(other.count != a.count || reseeded.count != a.count);
  /* the paper's certified accuracy: right and at least the radius */
  SmoothCertificate certs[3] = {{.predicted = 1, .radius = 0.3},
                                {.predicted = SMOOTH_ABSTAIN},
                                {.predicted = 0, .radius = 0.1}};
  const int labels[3] = {1, 1, 1};
  assert_float_equal(smooth_certified_accuracy(certs, labels, 3, 0.0), 1.0 / 3, 1e-12);
  assert_float_equal(smooth_certified_accuracy(certs, labels, 3, 0.3), 1.0 / 3, 1e-12);
  assert_float_equal(smooth_certified_accuracy(certs, labels, 3, 0.31), 0.0, 1e-12);
  /* bad options are refused with the reason */
  o.sigma = 0;
  assert_int_equal(smooth_certify(net, &o, x, 1, &a, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "sigma"));
  net_free(net);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_distributions),
      cmocka_unit_test(test_certify_linear),
      cmocka_unit_test(test_certify_deterministic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
