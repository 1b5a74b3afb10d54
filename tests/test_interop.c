/* PyTorch interop: our safetensors files load into the PyTorch twin of each
 * family (bench/torch_models.py, strict state_dict) with the same logits, and
 * files PyTorch wrote load into medrobust with PyTorch's logits. Skips when
 * Debian's python3-torch is absent. */
#include <unistd.h>

#include "testutil.h"

static char dir[256];

static int have_torch(void) {
  return access("tests/interop_torch.py", R_OK) == 0 &&
         system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
}

static float *read_floats(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("missing %s", path);
  float *v = malloc(sizeof(float) * n);
  size_t got = fread(v, sizeof(float), n, f);
  fclose(f);
  if (got != n) fail_msg("%s: %zu of %zu floats", path, got, n);
  return v;
}

static void check_arch(const char *arch, float width, int c, int size) {
  ModelSpec spec = model_spec_default(arch, c, size, size, 3);
  spec.width = width;
  spec.norm_mean[0] = 0.5f;
  spec.norm_std[0] = 0.25f;
  Net *net = model_build(&spec, 11, NULL);
  assert_non_null(net);
  const int B = 4, in = net_input_size(net), K = 3 * net_output_pixels(net); /* scores per image */
  float *x = malloc(sizeof(float) * B * in);
  Rng rng;
  rng_seed(&rng, 12);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  net_forward(net, x, B, MODE_TRAIN);
  char ours[300], inputs[300], lo[300], theirs[300], lt[300], cmd[2048];
  snprintf(ours, sizeof ours, "%s/ours.safetensors", dir);
  snprintf(inputs, sizeof inputs, "%s/x.bin", dir);
  snprintf(lo, sizeof lo, "%s/lo.bin", dir);
  snprintf(theirs, sizeof theirs, "%s/theirs.safetensors", dir);
  snprintf(lt, sizeof lt, "%s/lt.bin", dir);
  assert_int_equal(safetensors_save_net(net, ours, NULL), STATUS_OK);
  FILE *f = fopen(inputs, "wb");
  assert_int_equal(fwrite(x, sizeof(float), (size_t)B * in, f), (size_t)B * in);
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/interop_torch.py %s %s %d %s %s %s", ours,
           inputs, B, lo, theirs, lt);
  if (system(cmd) != 0) fail_msg("%s: the PyTorch side failed", arch);
  const float *mine = net_forward(net, x, B, MODE_EVAL);
  float *torch_logits = read_floats(lo, (size_t)B * K);
  double d = max_abs_diff(mine, torch_logits, (size_t)B * K);
  MrError err = {0};
  Net *loaded = safetensors_load_net(theirs, &err);
  if (!loaded) fail_msg("%s: %s", arch, err.msg);
  float *their_logits = read_floats(lt, (size_t)B * K);
  double d2 = max_abs_diff(net_forward(loaded, x, B, MODE_EVAL), their_logits, (size_t)B * K);
  /* after one step, running statistics barely moved: resnet50's eval-mode logits reach 1e10
   * (float rounding then is 1e3), so the errors are against max(1, the largest logit) */
  double scale = 1.0;
  for (int i = 0; i < B * K; i++)
    if (fabs(their_logits[i]) > scale) scale = fabs(their_logits[i]);
  print_message("  %-10s ours->torch max|dlogit| %.2e, torch->ours %.2e of max(1, %.2g)\n", arch, d,
                d2, scale);
  assert_true(d < 1e-3);
  assert_true(d2 < 1e-3 * scale);
  free(x), free(torch_logits), free(their_logits);
  net_free(net), net_free(loaded);
}

static void test_interop(void **state) {
  (void)state;
  if (!have_torch()) {
    print_message("skipped: /usr/bin/python3 with torch (Debian python3-torch) not found\n");
    skip();
  }
  check_arch("cnn", 0.5f, 1, 28);
  check_arch("cbr-larget", 0.25f, 1, 28);
  check_arch("vgg11", 0.25f, 3, 32);
  check_arch("vgg16", 0.125f, 1, 28);
  check_arch("resnet8", 1.0f, 1, 28);
  check_arch("resnet20", 1.0f, 3, 28);
  check_arch("resnet50", 0.125f, 3, 32);
  check_arch("mobilenet", 0.25f, 3, 32);
  check_arch("densenet", 0.5f, 1, 28);
  check_arch("densenet121", 0.125f, 3, 32);
  check_arch("unet", 0.25f, 1, 32);
  check_arch("segnet", 0.25f, 3, 32);
}

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "interop");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_interop)};
  return cmocka_run_group_tests_name("interop", tests, setup, teardown);
}
