/* The white-box surrogate of radiomics features (src/radiomics/surrogate.c):
 * every supported feature's gradient against central differences of the
 * surrogate itself; the surrogate against the exact features as its
 * temperature goes to 0; the refusal of models it cannot follow. */
#include "testutil.h"

#define NX 12
#define NY 10

/* An image whose intensities are distinct and evenly spaced (no ties, so the order
 * statistics are smooth under small moves) and a ROI covering most of it. */
static void make_image(float *x, float *mask, uint64_t seed) {
  Rng rng;
  rng_seed(&rng, seed);
  fill_distinct(x, NX * NY, &rng, 0.9f);
  /* (0.05, 0.95) on a grid of 2^-12, so that x +- 2^-10 is exact in float */
  for (int i = 0; i < NX * NY; i++) x[i] = roundf((x[i] + 0.5f) * 4096) / 4096;
  for (int y = 0; y < NY; y++)
    for (int x0 = 0; x0 < NX; x0++) mask[y * NX + x0] = x0 >= 1 && x0 < NX - 2 && y >= 1;
}

static RadiomicsOptions surrogate_options(void) {
  RadiomicsOptions o = radiomics_options_default();
  o.bin_count = 8;
  o.families = RAD_FAMILY_MORPHOLOGY | RAD_FAMILY_INTENSITY | RAD_FAMILY_GLCM;
  return o;
}

static double feature_value(const Volume *v, const Volume *m, const RadiomicsOptions *o, double tau,
                            const char *tag) {
  RadiomicsFeatures f;
  MrError err = {0};
  if (radiomics_surrogate_extract(v, m, o, tau, NULL, &f, NULL, &err) != STATUS_OK)
    fail_msg("surrogate: %s", err.msg);
  const RadiomicsFeature *it = radiomics_find(&f, tag);
  if (!it) fail_msg("no feature %s", tag);
  const double value = it->value;
  radiomics_features_free(&f);
  return value;
}

/* Features that are piecewise constant in the intensities (integers: a level, an argmax),
 * and morphology (the mask's): their gradient is zero by construction. */
static int constant_by_design(const char *tag) {
  static const char *const tags[] = {"ih_mode", "ih_max_grad_g", "ih_min_grad_g",
                                     "ivh_i10", "ivh_i90",       "ivh_diff_i10_i90"};
  for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
    if (!strcmp(tag, tags[i])) return 1;
  return !strncmp(tag, "morph_", 6);
}

/* For every feature the surrogate computes: its gradient along a random direction against
 * the central difference of the surrogate along it. */
static void test_gradients_match_finite_differences(void **state) {
  (void)state;
  float x[NX * NY], mask[NX * NY], moved[NX * NY], direction[NX * NY];
  make_image(x, mask, 3);
  const Volume v = {.nx = NX, .ny = NY, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = x},
               m = {.nx = NX, .ny = NY, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = mask};
  Volume vm = v;
  vm.data = moved;
  Rng rng;
  rng_seed(&rng, 11);
  for (int i = 0; i < NX * NY; i++) direction[i] = rng_uniform(&rng) < 0.5f ? -1.0f : 1.0f;
  const double tau = 0.5, h = 1.0 / 4096;
  for (int binning = 0; binning < 2; binning++) {
    RadiomicsOptions o = surrogate_options();
    if (binning) o.binning = RAD_BIN_WIDTH, o.bin_width = 0.125, o.bin_min = 0;
    RadiomicsFeatures all;
    MrError err = {0};
    assert_int_equal(radiomics_surrogate_extract(&v, &m, &o, tau, NULL, &all, NULL, &err),
                     STATUS_OK);
    int checked = 0, failed = 0, moving = 0;
    for (int k = 0; k < all.n; k++) {
      const char *tag = all.items[k].tag;
      if (!isfinite(all.items[k].value)) continue;
      const double one = 1;
      const char(*tags)[48] = (const char(*)[48])all.items[k].tag;
      const RadCotangents ct = {1, tags, &one};
      double grad[NX * NY];
      RadiomicsFeatures f;
      assert_int_equal(radiomics_surrogate_extract(&v, &m, &o, tau, &ct, &f, grad, &err),
                       STATUS_OK);
      radiomics_features_free(&f);
      double analytic = 0;
      for (int i = 0; i < NX * NY; i++) analytic += grad[i] * direction[i];
      for (int i = 0; i < NX * NY; i++) moved[i] = x[i] + (float)h * direction[i];
      const double up = feature_value(&vm, &m, &o, tau, tag);
      for (int i = 0; i < NX * NY; i++) moved[i] = x[i] - (float)h * direction[i];
      const double down = feature_value(&vm, &m, &o, tau, tag);
      const double numeric = (up - down) / (2 * h);
      if (constant_by_design(tag)) {
        if (analytic != 0) fail_msg("%s: gradient %g where the feature is constant", tag, analytic);
        continue;
      }
      const double scale = fmax(fabs(numeric), fabs(analytic));
      if (fabs(analytic - numeric) > 2e-3 * scale + 1e-6 * fabs(all.items[k].value) + 1e-9) {
        print_message("%s (%s binning): analytic %.8g, numeric %.8g\n", tag,
                      binning ? "width" : "count", analytic, numeric);
        failed++;
      }
      checked++, moving += fabs(numeric) > 1e-4;
    }
    radiomics_features_free(&all);
    assert_true(checked > 150); /* statistics, histograms, peaks, 6 GLCM aggregations */
    if (moving < 120) fail_msg("only %d of %d features move along the direction", moving, checked);
    assert_int_equal(failed, 0);
  }
}

/* As the temperature goes to 0 the soft levels become the hard bins: the surrogate's
 * features become the exact ones (intensities kept away from the bins' edges). */
static void test_surrogate_approaches_exact(void **state) {
  (void)state;
  float x[NX * NY], mask[NX * NY];
  make_image(x, mask, 5);
  RadiomicsOptions o = surrogate_options();
  o.binning = RAD_BIN_WIDTH, o.bin_width = 0.125, o.bin_min = 0;
  for (int i = 0; i < NX * NY; i++) { /* to the middle third of its bin */
    const double bin = floor(x[i] / 0.125);
    x[i] = (float)(0.125 * (bin + 0.35 + 0.3 * (x[i] / 0.125 - bin)));
  }
  const Volume v = {.nx = NX, .ny = NY, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = x},
               m = {.nx = NX, .ny = NY, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = mask};
  RadiomicsFeatures exact, soft;
  MrError err = {0};
  assert_int_equal(radiomics_extract(&v, &m, &o, &exact, &err), STATUS_OK);
  assert_int_equal(radiomics_surrogate_extract(&v, &m, &o, 0.01, NULL, &soft, NULL, &err),
                   STATUS_OK);
  int compared = 0;
  for (int k = 0; k < soft.n; k++) {
    const RadiomicsFeature *e = radiomics_find(&exact, soft.items[k].tag);
    assert_non_null(e);
    const double a = e->value, b = soft.items[k].value;
    if (isnan(a) && isnan(b)) continue;
    if (!(fabs(a - b) <= 1e-6 * fmax(1, fabs(a))))
      fail_msg("%s: exact %.10g, surrogate at temperature 0.01 %.10g", e->tag, a, b);
    compared++;
  }
  /* and nothing the surrogate leaves out besides the families it refuses */
  for (int k = 0; k < exact.n; k++)
    if (radiomics_surrogate_supports(exact.items[k].tag))
      assert_non_null(radiomics_find(&soft, exact.items[k].tag));
  assert_true(compared > 150);
  radiomics_features_free(&exact), radiomics_features_free(&soft);
  /* a warm surrogate differs, which is what makes it differentiable */
  assert_int_equal(radiomics_surrogate_extract(&v, &m, &o, 1.0, NULL, &soft, NULL, &err),
                   STATUS_OK);
  assert_true(fabs(radiomics_find(&soft, "cm_joint_entr_2D_avg")->value -
                   feature_value(&v, &m, &o, 0.01, "cm_joint_entr_2D_avg")) > 1e-3);
  radiomics_features_free(&soft);
}

/* A model reading run lengths (no surrogate) is refused, naming the feature. */
static void test_refuses_what_it_cannot_follow(void **state) {
  (void)state;
  char tags[2][48] = {"ivh_auc", "rlm_sre_2D_avg"};
  RadiomicsModel m = {0};
  m.setup = radiomics_setup_default();
  m.n_features = 2, m.tags = tags;
  MrError err = {0};
  assert_int_equal(radiomics_surrogate_check(&m, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "rlm_sre_2D_avg"));
  strcpy(tags[1], "cm_contrast_3D_comb");
  assert_int_equal(radiomics_surrogate_check(&m, &err), STATUS_OK);
  m.setup.extraction.binning = RAD_BIN_NONE;
  assert_int_equal(radiomics_surrogate_check(&m, &err), STATUS_ERR_ARG);
  float x[NX * NY], mask[NX * NY];
  make_image(x, mask, 7);
  const Volume v = {.nx = NX, .ny = NY, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = x};
  RadiomicsOptions o = surrogate_options();
  RadiomicsFeatures f;
  assert_int_equal(radiomics_surrogate_extract(&v, NULL, &o, 0, NULL, &f, NULL, &err),
                   STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "temperature"));
}

/* A three-class model on texture and histogram features (hand-set weights): the white-box
 * attack, untargeted and targeted, L-inf and L2, must stay in its ball, in [0,1] and in its
 * region, never raise the exact margin, and lower it where it may move the ROI. */
static void test_white_box_attack(void **state) {
  (void)state;
  enum { H = 20, W = 20, F = 4 };
  static const char *const names[F] = {"cm_contrast_2D_avg", "cm_joint_entr_3D_comb", "ih_entropy",
                                       "stat_var"};
  RadiomicsModel m = {0};
  m.setup = radiomics_setup_default();
  m.setup.extraction.bin_count = 16;
  m.n_features = F, m.k = 3, m.classifier = RAD_LOGISTIC_L2;
  m.tags = calloc(F, sizeof *m.tags);
  m.mean = calloc(F, sizeof(double)), m.scale = calloc(F, sizeof(double));
  m.weights = calloc(3 * F, sizeof(double)), m.bias = calloc(3, sizeof(double));
  float image[H * W], adv[H * W];
  int mask[H * W];
  Rng rng;
  rng_seed(&rng, 9);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      const int in = (x - 10) * (x - 10) + (y - 10) * (y - 10) < 49;
      mask[y * W + x] = in;
      image[y * W + x] = (in ? 0.55f : 0.25f) + 0.1f * rng_uniform(&rng);
    }
  MrError err = {0};
  /* centred on this image's own features, so that its class is decided by the weights */
  double z[F];
  for (int k = 0; k < F; k++) {
    snprintf(m.tags[k], sizeof m.tags[k], "%s", names[k]);
    m.mean[k] = 0, m.scale[k] = 1;
  }
  assert_int_equal(radiomics_model_zscores(&m, image, 1, H, W, mask, z, &err), STATUS_OK);
  static const double w[3][F] = {{-1, -1, -1, -1}, {1, 0.5, 0, 0}, {0, 0, 1, 1}};
  for (int k = 0; k < F; k++) {
    m.mean[k] = z[k], m.scale[k] = fabs(z[k]) * 0.05 + 1e-3;
    for (int c = 0; c < 3; c++) m.weights[c * F + k] = w[c][k];
  }
  m.bias[0] = 0.5; /* class 0 with a margin of 0.5 at the image itself */
  for (int norm = 0; norm < 2; norm++)
    for (int target = -1; target < 3; target += 3)
      for (int region = 0; region < RAD_REGION_COUNT; region++) {
        RadiomicsAttackOptions o = radiomics_attack_options_default();
        o.kind = RAD_ATTACK_SURROGATE, o.norm = norm ? NORM_L2 : NORM_LINF;
        o.eps = norm ? 0.5f : 0.03f, o.queries = 30, o.target = target < 0 ? -1 : 2;
        o.region = (RadiomicsRegion)region;
        RadiomicsAttackResult r;
        assert_int_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err),
                         STATUS_OK);
        assert_int_equal(r.clean_pred, 0);
        assert_true(r.queries >= 1 && r.queries <= o.queries);
        assert_true(r.adv_margin <= r.clean_margin);
        double l2 = 0;
        for (int i = 0; i < H * W; i++) {
          assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
          const double d = adv[i] - image[i];
          if (!norm) assert_true(fabs(d) <= o.eps + 1e-6);
          l2 += d * d;
          if (region == RAD_REGION_ROI && !mask[i]) assert_true(d == 0);
          if (region == RAD_REGION_BACKGROUND && mask[i]) assert_true(d == 0);
        }
        if (norm) assert_true(sqrt(l2) <= o.eps + 1e-4);
        /* every feature reads the ROI: the background cannot move them, the ROI can */
        if (region == RAD_REGION_BACKGROUND)
          assert_true(r.adv_margin == r.clean_margin && r.queries == 1);
        else if (!(r.adv_margin < r.clean_margin - 0.1))
          fail_msg("norm %d, target %d, region %d: margin %g -> %g", norm, target, region,
                   r.clean_margin, r.adv_margin);
        if (region == RAD_REGION_ALL && target >= 0 && r.adv_margin < 0)
          assert_int_equal(r.adv_pred, 2);
      }
  /* a model reading run lengths is refused, before any work */
  snprintf(m.tags[3], sizeof m.tags[3], "rlm_sre_2D_avg");
  RadiomicsAttackOptions o = radiomics_attack_options_default();
  o.kind = RAD_ATTACK_SURROGATE;
  RadiomicsAttackResult r;
  assert_int_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err),
                   STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "rlm_sre_2D_avg"));
  /* L2 is the surrogate's alone */
  o.kind = RAD_ATTACK_SQUARE, o.norm = NORM_L2;
  assert_int_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err),
                   STATUS_ERR_ARG);
  radiomics_model_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_gradients_match_finite_differences),
                                     cmocka_unit_test(test_surrogate_approaches_exact),
                                     cmocka_unit_test(test_refuses_what_it_cannot_follow),
                                     cmocka_unit_test(test_white_box_attack)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
