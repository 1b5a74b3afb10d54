/* The public API alone (include/medrobust.h, no src/ header): a user builds
 * their own graph, trains it for per-pixel segmentation, saves and reloads
 * it exactly; a hand-built classifier is attacked like any built-in one. */
#include "testutil.h"

#define S 16 /* image side */

/* A bright disk on a darker noisy background; label 1 inside the disk. */
static void disk_batch(float *x, int *y, int n, Rng *rng) {
  for (int b = 0; b < n; b++) {
    const float cy = 4 + 8 * rng_uniform(rng), cx = 4 + 8 * rng_uniform(rng);
    const float r = 2.5f + 2.5f * rng_uniform(rng);
    for (int i = 0; i < S; i++)
      for (int j = 0; j < S; j++) {
        const int in = (i - cy) * (i - cy) + (j - cx) * (j - cx) <= r * r;
        x[(size_t)b * S * S + i * S + j] = (in ? 0.7f : 0.3f) + 0.1f * rng_normal(rng);
        y[(size_t)b * S * S + i * S + j] = in;
      }
  }
}

/* encoder -> bottleneck -> transposed-conv decoder with a long skip */
static Net *build_small_unet(MrError *err) {
  ModelSpec spec = model_spec_default("cnn", 1, S, S, 2);
  snprintf(spec.arch, sizeof spec.arch, "my-unet");
  spec.norm_mean[0] = 0.5f, spec.norm_std[0] = 0.25f;
  spec.seg_loss = SEG_LOSS_XENT_DICE;
  Net *net = net_new(&spec);
  model_spec_free(&spec);
  const int e = net_add_relu(
      net, net_add_bn(net, "enc.bn", net_add_conv(net, "enc.conv", NET_INPUT, 8, 3, 1, 1, 1, 0)));
  const int m = net_add_relu(
      net, net_add_conv(net, "mid", net_add_maxpool(net, e, 2, 2, 0), 16, 3, 1, 1, 1, 1));
  const int u = net_add_conv_transpose(net, "up", m, 8, 2, 2, 0, 1);
  const int cat = net_add_concat(net, (int[]){e, u}, 2);
  net_add_conv(net, "head", net_add_relu(net, cat), 2, 1, 1, 0, 1, 1);
  if (net_finish(net, err) != STATUS_OK) {
    net_free(net);
    return NULL;
  }
  net_init_params(net, 3);
  return net;
}

static double pixel_accuracy(Net *net, const float *x, const int *y, int n) {
  float *probs = malloc(sizeof(float) * n * 2 * S * S);
  net_predict(net, x, n, probs);
  int right = 0;
  for (int b = 0; b < n; b++)
    for (int p = 0; p < S * S; p++) {
      const float *pb = probs + (size_t)b * 2 * S * S;
      right += (pb[S * S + p] > pb[p]) == y[(size_t)b * S * S + p];
    }
  free(probs);
  return (double)right / (n * S * S);
}

static void test_hand_built_segmentation(void **state) {
  (void)state;
  MrError err = {0};
  Net *net = build_small_unet(&err);
  if (!net) fail_msg("%s", err.msg);
  assert_int_equal(net_output_pixels(net), S * S);
  int dims[4];
  assert_int_equal(net_tensor_dims(net, net_last(net), dims), 3);
  assert_int_equal(dims[0], 2);
  assert_int_equal(dims[1], S);
  assert_int_equal(net_tensor_dims(net, 999, dims), 0);
  const int B = 16;
  float *x = malloc(sizeof(float) * B * S * S), *xt = malloc(sizeof(float) * 64 * S * S);
  int *y = malloc(sizeof(int) * B * S * S), *yt = malloc(sizeof(int) * 64 * S * S);
  Rng rng;
  rng_seed(&rng, 17);
  disk_batch(xt, yt, 64, &rng);
  const double before = pixel_accuracy(net, xt, yt, 64);
  Optimizer opt = {0};
  assert_int_equal(optim_init(&opt, OPTIM_ADAM, net_param_count(net), &err), STATUS_OK);
  opt.lr = 0.01f;
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 80; step++) {
    disk_batch(x, y, B, &rng);
    net_zero_grad(net);
    const float loss = net_train_step_grads(net, x, y, B, NULL);
    optim_step(&opt, net_params(net), net_grads(net));
    if (step == 0) first = loss;
    last = loss;
  }
  optim_free(&opt);
  const double after = pixel_accuracy(net, xt, yt, 64);
  print_message("  hand-built U-Net: loss %.3f -> %.3f, pixel accuracy %.3f -> %.3f\n", first, last,
                before, after);
  assert_true(last < 0.5f * first);
  assert_true(after > 0.95);
  /* the file carries the graph: it reloads with no family named "my-unet" */
  char dir[64], path[128];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "api"), 0);
  snprintf(path, sizeof path, "%s/my-unet.safetensors", dir);
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  Net *back = safetensors_load_net(path, &err);
  if (!back) fail_msg("%s", err.msg);
  assert_string_equal(net_spec(back)->arch, "my-unet");
  assert_int_equal(net_spec(back)->seg_loss, SEG_LOSS_XENT_DICE);
  const size_t n_out = (size_t)4 * 2 * S * S;
  float *o1 = malloc(sizeof(float) * n_out);
  memcpy(o1, net_forward(net, xt, 4, MODE_EVAL), sizeof(float) * n_out);
  assert_memory_equal(net_forward(back, xt, 4, MODE_EVAL), o1, sizeof(float) * n_out);
  /* per-image attacks refuse a per-pixel model rather than treat its map as class
   * scores; PGD attacks it on the per-pixel loss */
  AttackOptions o = attack_options_default(ATTACK_DEEPFOOL);
  assert_int_equal(attack_run(back, &o, xt, yt, 4, x, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "per pixel"));
  o = attack_options_default(ATTACK_PGD);
  assert_int_equal(attack_run(back, &o, xt, yt, 4, x, &err), STATUS_OK);
  assert_true(max_abs_diff(x, xt, (size_t)4 * S * S) <= o.eps + 1e-6);
  /* so do the dataset-level calls that take one label per image */
  Dataset ds = {.n = 4, .c = 1, .h = S, .w = S, .images = xt, .labels = yt};
  float probs[4 * 2];
  assert_int_equal(net_predict_dataset(back, &ds, 4, probs, &err), STATUS_ERR_ARG);
  assert_non_null(strstr(err.msg, "my-unet answers per pixel"));
  net_free(back);
  remove_dir(dir);
  free(o1), free(x), free(xt), free(y), free(yt);
  net_free(net);
}

/* A hand-built classifier (concat of a pooled and an upsampled path) is
 * attacked like any family: PGD stays in its eps ball and raises the loss. */
static void test_hand_built_classifier_attacked(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, S, S, 2);
  Net *net = net_new(&spec);
  model_spec_free(&spec);
  const int a = net_add_relu(net, net_add_conv(net, "a", NET_INPUT, 4, 3, 1, 1, 1, 1));
  const int b = net_add_upsample(net, net_add_maxpool(net, a, 2, 2, 0), 2, UPSAMPLE_BILINEAR);
  const int f =
      net_add_flatten(net, net_add_global_avgpool(net, net_add_concat(net, (int[]){a, b}, 2)));
  net_add_dense(net, "fc", f, 2);
  MrError err = {0};
  assert_int_equal(net_finish(net, &err), STATUS_OK);
  net_init_params(net, 5);
  const int B = 8;
  float x[8 * S * S], adv[8 * S * S], dx[8 * S * S];
  int y[8 * S * S], labels[8];
  Rng rng;
  rng_seed(&rng, 6);
  disk_batch(x, y, B, &rng);
  for (int i = 0; i < B; i++) labels[i] = i % 2;
  for (size_t i = 0; i < sizeof x / 4; i++) x[i] = fminf(fmaxf(x[i], 0.0f), 1.0f);
  AttackOptions o = attack_options_default(ATTACK_PGD);
  o.eps = 0.05f, o.iters = 10;
  assert_int_equal(attack_run(net, &o, x, labels, B, adv, &err), STATUS_OK);
  for (size_t i = 0; i < sizeof x / 4; i++) {
    assert_true(fabsf(adv[i] - x[i]) <= o.eps + 1e-6f);
    assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
  }
  const float clean = net_loss_and_input_grad(net, x, labels, B, dx);
  const float attacked = net_loss_and_input_grad(net, adv, labels, B, dx);
  assert_true(attacked > clean);
  net_free(net);
}

/* The layer profile counts each layer's forward and backward time where it ran, and nothing
 * before it is started. */
static void test_layer_profile(void **state) {
  (void)state;
  MrError err = {0};
  Net *net = build_small_unet(&err);
  assert_non_null(net);
  assert_null(net_profile_seconds(net));
  assert_int_equal(net_profile_start(net, &err), STATUS_OK);
  const int n = net_layer_count(net), B = 4;
  const double *s = net_profile_seconds(net);
  for (int i = 0; i < 2 * n; i++) assert_true(s[i] == 0.0);
  float x[4 * S * S], dx[4 * S * S];
  int y[4 * S * S];
  Rng rng;
  rng_seed(&rng, 2);
  disk_batch(x, y, B, &rng);
  net_forward(net, x, B, MODE_EVAL);
  int convs = 0; /* a ReLU fused into the op before it has no time of its own */
  for (int i = 0; i < n; i++) {
    const int conv = !strcmp(net_layer_info(net, i).op, "conv2d");
    assert_true(s[n + i] == 0.0 && (!conv || s[i] > 0.0));
    convs += conv;
  }
  assert_int_equal(convs, 3);
  net_loss_and_input_grad(net, x, y, B, dx);
  for (int i = 0; i < n; i++)
    if (!strcmp(net_layer_info(net, i).op, "conv2d")) assert_true(s[n + i] > 0.0);
  net_free(net);
}

/* A build error is reported by net_finish, not confused with the input. */
static void test_public_build_errors(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, S, S, 2);
  Net *net = net_new(&spec);
  model_spec_free(&spec);
  const int t = net_add_maxpool(net, NET_INPUT, 32, 32, 0); /* a 32x32 window on 16x16 */
  assert_int_equal(t, -1);
  assert_int_equal(net_add_dense(net, "fc", net_add_flatten(net, t), 2), -1);
  MrError err = {0};
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "does not fit a 16x16 input"));
  net_free(net);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hand_built_segmentation),
      cmocka_unit_test(test_hand_built_classifier_attacked),
      cmocka_unit_test(test_public_build_errors),
      cmocka_unit_test(test_layer_profile),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
