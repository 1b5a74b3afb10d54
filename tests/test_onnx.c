/* ONNX import and export against PyTorch itself: models exported by torch.onnx (Debian's
 * python3-torch and python3-onnx; skipped without them) give the same logits
 * and the same input gradient of the cross-entropy as PyTorch computes; the
 * imported model saves and reloads exactly; files that are not ONNX, or hold
 * an op we cannot map, are refused naming the problem. Every built-in family
 * exports, passes onnx.checker, runs in PyTorch's operators to medrobust's
 * logits, and imports back to the same outputs bit for bit. */
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char dir[64];
static int have_torch;

static int setup(void **state) {
  (void)state;
  if (make_temp_dir(dir, sizeof dir, "onnx")) return -1;
  /* MEDROBUST_ONNX_TV="224 vgg11_bn,resnet50" checks torchvision models at another size
   * (bench/onnx/parity224.sh); the default is quick */
  const char *tv = getenv("MEDROBUST_ONNX_TV");
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/onnx_export.py %s %s >/dev/null 2>&1", dir,
           tv ? tv : "");
  have_torch =
      system("/usr/bin/python3 -c 'import torch, onnx' >/dev/null 2>&1") == 0 && system(cmd) == 0;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static float *read_floats(const char *name, const char *ext, size_t n) {
  char path[160];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE *f = fopen(path, "rb");
  float *v = malloc(sizeof(float) * n);
  if (!f || !v || fread(v, sizeof(float), n, f) != n) fail_msg("%s: cannot read", path);
  fclose(f);
  return v;
}

static void check_model(const char *name, int B) {
  char path[160];
  snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
  MrError err = {0};
  Net *net = onnx_import(path, NULL, &err);
  if (!net) fail_msg("%s", err.msg);
  const int in = net_input_size(net), P = net_output_pixels(net), k = net_num_classes(net) * P;
  float *x = read_floats(name, "x", (size_t)B * in),
        *want = read_floats(name, "logits", (size_t)B * k);
  float *grad = read_floats(name, "grad", (size_t)B * in), *dx = malloc(sizeof(float) * B * in);
  const float *z = net_forward(net, x, B, MODE_EVAL);
  const double e_logits = max_abs_diff(z, want, (size_t)B * k);
  /* the labels PyTorch's loss used; each image's own loss, summed as PyTorch did */
  int *y = (int *)read_floats(name, "y", (size_t)B * P);
  net_loss_and_input_grad(net, x, y, B, dx);
  double num = 0, den = 0;
  for (int i = 0; i < B * in; i++)
    num += (dx[i] - grad[i]) * (dx[i] - grad[i]), den += grad[i] * grad[i];
  print_message("  %s: %d ops, max |logit - PyTorch| %.2e, input gradient error %.2e\n", name,
                net_layer_count(net), e_logits, sqrt(num / den));
  assert_true(e_logits < 1e-4);
  assert_true(sqrt(num / den) < 1e-4);
  /* it exports back to ONNX and imports again to the same logits, bit for bit */
  snprintf(path, sizeof path, "%s/%s.again.onnx", dir, name);
  assert_int_equal(onnx_export(net, path, &err), STATUS_OK);
  Net *again = onnx_import(path, NULL, &err);
  if (!again) fail_msg("%s: %s", path, err.msg);
  float *z0 = malloc(sizeof(float) * B * k);
  memcpy(z0, net_forward(net, x, B, MODE_EVAL), sizeof(float) * B * k);
  assert_memory_equal(net_forward(again, x, B, MODE_EVAL), z0, sizeof(float) * B * k);
  net_free(again), free(z0);
  /* the imported model is a medrobust model: it saves and reloads exactly */
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  Net *back = safetensors_load_net(path, &err);
  if (!back) fail_msg("%s", err.msg);
  float *z1 = malloc(sizeof(float) * B * k);
  memcpy(z1, net_forward(net, x, B, MODE_EVAL), sizeof(float) * B * k);
  assert_memory_equal(net_forward(back, x, B, MODE_EVAL), z1, sizeof(float) * B * k);
  net_free(back), net_free(net);
  free(x), free(want), free(grad), free(dx), free(y), free(z1);
}

static void test_matches_pytorch(void **state) {
  (void)state;
  if (!have_torch) {
    print_message(
        "skipped: /usr/bin/python3 with torch and onnx (python3-torch, python3-onnx) not found\n");
    skip();
  }
  check_model("residual", 4);
  check_model("plain", 4);
  check_model("unet", 3);
  check_model("scaled", 4);
  static const int opsets[] = {9, 11, 17};
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "plain_opset%d", opsets[i]);
    check_model(name, 4);
    snprintf(name, sizeof name, "unet_opset%d", opsets[i]);
    check_model(name, 3);
  }
  /* medrobust's families as PyTorch twins a user exported (bench/torch_models.py) */
  static const char *const twins[] = {"cnn",       "vgg11",    "resnet8", "resnet50",
                                      "mobilenet", "densenet", "unet",    "unet_bilinear"};
  for (size_t i = 0; i < sizeof twins / sizeof twins[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "twin_%s", twins[i]);
    check_model(name, 2);
  }
}

/* torchvision's models: softmax within 1e-5 of PyTorch's, input gradient cosine >= 0.9999 */
static void test_torchvision_parity(void **state) {
  (void)state;
  static const char *const names[] = {"resnet18",    "resnet50",      "mobilenet_v2",
                                      "densenet121", "squeezenet1_1", "vgg11_bn"};
  char path[160];
  int found = 0;
  for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
    snprintf(path, sizeof path, "%s/tv_%s.onnx", dir, names[m]);
    found += access(path, R_OK) == 0;
  }
  if (!have_torch || !found) {
    print_message("skipped: torchvision (Debian python3-torchvision) not found\n");
    skip();
  }
  for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
    char name[64];
    snprintf(name, sizeof name, "tv_%s", names[m]);
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    if (access(path, R_OK) != 0) {
      print_message("  %-14s not exported at this size (vgg11_bn: 224, MEDROBUST_ONNX_TV)\n",
                    names[m]);
      continue;
    }
    MrError err = {0};
    Net *net = onnx_import(path, NULL, &err);
    if (!net) fail_msg("%s", err.msg);
    const int B = 2, in = net_input_size(net), k = net_num_classes(net);
    float *x = read_floats(name, "x", (size_t)B * in),
          *want = read_floats(name, "logits", (size_t)B * k);
    float *grad = read_floats(name, "grad", (size_t)B * in), *dx = malloc(sizeof(float) * B * in);
    int *y = (int *)read_floats(name, "y", (size_t)B);
    float probs[6];
    net_predict(net, x, B, probs);
    double worst = 0;
    for (int b = 0; b < B; b++) {
      double mx = want[b * k], s = 0;
      for (int j = 1; j < k; j++) mx = fmax(mx, want[b * k + j]);
      for (int j = 0; j < k; j++) s += exp(want[b * k + j] - mx);
      for (int j = 0; j < k; j++)
        worst = fmax(worst, fabs(probs[b * k + j] - exp(want[b * k + j] - mx) / s));
    }
    net_loss_and_input_grad(net, x, y, B, dx);
    double dot = 0, na = 0, nb = 0, rel = 0, gmax = 0;
    for (int i = 0; i < B * in; i++) {
      dot += (double)dx[i] * grad[i], na += (double)dx[i] * dx[i], nb += (double)grad[i] * grad[i];
      gmax = fmax(gmax, fabs(grad[i]));
    }
    for (int i = 0; i < B * in; i++) rel = fmax(rel, fabs(dx[i] - grad[i]) / gmax);
    const double cosine = dot / sqrt(na * nb);
    print_message(
        "  %-14s %4d ops: max |prob - PyTorch| %.1e, gradient cosine %.7f, max error "
        "%.1e of the largest component\n",
        names[m], net_layer_count(net), worst, cosine, rel);
    assert_true(worst <= 1e-5);
    assert_true(cosine >= 0.9999);
    net_free(net);
    free(x), free(want), free(grad), free(dx), free(y);
  }
}

static void test_refuses(void **state) {
  (void)state;
  char path[160];
  MrError err = {0};
  snprintf(path, sizeof path, "%s/junk.onnx", dir);
  FILE *f = fopen(path, "wb");
  fputs("this is not a protobuf \xff\xff\xff\xff", f);
  fclose(f);
  assert_null(onnx_import(path, NULL, &err));
  assert_non_null(strstr(err.msg, "not an ONNX model"));
  assert_null(onnx_import("/nonexistent.onnx", NULL, &err));
  if (!have_torch) skip();
  /* every truncation of a real model is refused, never read past */
  snprintf(path, sizeof path, "%s/residual.onnx", dir);
  size_t len = 0;
  f = fopen(path, "rb");
  unsigned char *bytes = malloc(1 << 20);
  len = fread(bytes, 1, 1 << 20, f);
  fclose(f);
  char cut[160];
  snprintf(cut, sizeof cut, "%s/cut.onnx", dir);
  for (size_t keep = 0; keep < len; keep += len / 37 + 1) {
    f = fopen(cut, "wb");
    fwrite(bytes, 1, keep, f);
    fclose(f);
    Net *net = onnx_import(cut, NULL, &err);
    if (net) fail_msg("%zu of %zu bytes imported", keep, len);
  }
  free(bytes);
  /* hand-made malformed graphs: each refused with what is wrong */
  char gen[256];
  snprintf(gen, sizeof gen, "/usr/bin/python3 tests/onnx_malformed.py %s >/dev/null 2>&1", dir);
  assert_int_equal(system(gen), 0);
  static const char *const cases[][2] = {
      {"missing", "no earlier node, input or initializer makes (missing, or a cycle): nowhere"},
      {"badsize", "holds 128 bytes for 34 floats"},
      {"cycle", "(missing, or a cycle): b"},
      {"hugeconst", "a folded constant too large"},
      {"gatherrange", "Gather index out of range"},
      {"sequence", "is not a 4-D (N, C, H, W) image tensor"}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    snprintf(path, sizeof path, "%s/%s.onnx", dir, cases[c][0]);
    assert_null(onnx_import(path, NULL, &err));
    if (!strstr(err.msg, cases[c][1])) fail_msg("%s: %s", cases[c][0], err.msg);
  }
  /* pads folded from F.pad's constant chain land on the right channels */
  snprintf(path, sizeof path, "%s/foldedpad.onnx", dir);
  Net *net = onnx_import(path, NULL, &err);
  if (!net) fail_msg("%s", err.msg);
  float x[16], sum = 0;
  for (int i = 0; i < 16; i++) x[i] = (float)(i + 1) / 16.0f, sum += x[i];
  const float *z = net_forward(net, x, 1, MODE_EVAL);
  assert_float_equal(z[0], sum, 1e-5);
  assert_float_equal(z[1], 0.0f, 1e-7);
  net_free(net);
  /* an op we do not map: ELU is not mapped */
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"import torch; m=torch.nn.Sequential(torch.nn.Conv2d(1,2,3),"
           "torch.nn.ELU(), torch.nn.Flatten(), torch.nn.Linear(2*6*6,2)).eval(); "
           "torch.onnx.export(m, torch.zeros(1,1,8,8), '%s/elu.onnx', opset_version=13)\" "
           ">/dev/null 2>&1",
           dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/elu.onnx", dir);
  assert_null(onnx_import(path, NULL, &err));
  assert_non_null(strstr(err.msg, "Elu"));
  assert_non_null(strstr(err.msg, "not supported"));
}

/* The command line: import with names and preprocessing, and .onnx given
 * directly as --model. */
static void test_cli(void **state) {
  (void)state;
  if (!have_torch) skip();
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "%s import %s/plain.onnx --out %s/plain-imported.safetensors --classes benign,malignant "
           "--mean 0.5 --std 0.25 > %s/import.txt 2>&1",
           bin, dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  char path[160];
  snprintf(path, sizeof path, "%s/plain-imported.safetensors", dir);
  MrError err = {0};
  Net *net = safetensors_load_net(path, &err);
  if (!net) fail_msg("%s", err.msg);
  char buf[16];
  assert_string_equal(net_class_name(net, 1, buf), "malignant");
  assert_true(net_spec(net)->norm_mean[0] == 0.5f && net_spec(net)->norm_std[0] == 0.25f);
  net_free(net);
  snprintf(cmd, sizeof cmd,
           "%s data phantom --n 100 --out %s/ph.npz > /dev/null && %s eval --model %s/plain.onnx "
           "--data %s/ph.npz --attacks pgd --eps 0.004 --no-noise --no-checks --examples 0 --quiet "
           "--out %s/ev > %s/eval.txt 2>&1",
           bin, dir, bin, dir, dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  /* an imported model trains like any other: adversarial fine-tuning from the .onnx */
  snprintf(
      cmd, sizeof cmd,
      "%s train --init %s/plain.onnx --data %s/ph.npz --epochs 1 --adv pgd --eps 0.004 --quiet "
      "--out %s/ft.safetensors > %s/ft.txt 2>&1",
      bin, dir, dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd,
           "%s import %s/plain.onnx --out %s/x.safetensors --mean 1,2 > /dev/null 2>&1", bin, dir,
           dir);
  assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

/* A built-in family's twin through ONNX: medrobust export, then import. */
typedef struct {
  const char *arch;
  int c, size, k;
  float width;
  int pool, decoder_up, depth;
  float dropout;
} ExportCase;

static const ExportCase export_cases[] = {
    {"cnn", 1, 28, 2, 1, 1, 0, 0, 0.3f},          {"cnn", 3, 28, 3, 1, 2, 0, 3, 0},
    {"cbr-larget", 1, 32, 2, 0.25f, 0, 0, 0, 0},  {"vgg11", 3, 32, 2, 0.25f, 0, 0, 0, 0},
    {"resnet8", 1, 28, 2, 1, 0, 0, 0, 0},         {"resnet50", 3, 32, 4, 0.25f, 0, 0, 0, 0},
    {"mobilenet", 3, 32, 2, 0.25f, 0, 0, 0, 0},   {"densenet", 1, 28, 2, 1, 0, 0, 0, 0},
    {"densenet121", 3, 32, 2, 0.25f, 0, 0, 0, 0}, {"unet", 1, 32, 3, 0.5f, 0, 0, 2, 0},
    {"unet", 3, 32, 2, 0.5f, 0, 1, 2, 0},         {"segnet", 1, 32, 2, 0.5f, 0, 0, 2, 0},
    {"fc-densenet", 1, 32, 3, 0.5f, 0, 0, 2, 0},
};
#define N_EXPORT_CASES (int)(sizeof export_cases / sizeof export_cases[0])

static void write_floats(const char *name, const char *ext, const float *v, size_t n) {
  char path[160];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(v, sizeof(float), n, f), n);
  fclose(f);
}

/* Every family: the export re-imports to the same outputs and input gradient,
 * bit for bit, with its class names and records; onnx.checker (full shape
 * inference) passes it and PyTorch's own operators, run node by node on the
 * exported graph, give medrobust's logits (tests/onnx_run.py). */
static void test_export_families(void **state) {
  (void)state;
  char names[N_EXPORT_CASES][32], cmd[2048];
  int n_cmd = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/onnx_run.py %s 1e-4", dir);
  Rng rng;
  rng_seed(&rng, 7);
  for (int i = 0; i < N_EXPORT_CASES; i++) {
    const ExportCase *e = &export_cases[i];
    ModelSpec spec = model_spec_default(e->arch, e->c, e->size, e->size, e->k);
    spec.width = e->width, spec.dropout = e->dropout, spec.decoder_up = e->decoder_up;
    if (e->pool) spec.pool = e->pool;
    if (e->depth) spec.depth = e->depth;
    for (int c = 0; c < 3; c++) spec.norm_mean[c] = 0.2f + 0.1f * c, spec.norm_std[c] = 0.3f;
    for (int k = 0; k < e->k; k++) {
      char label[24];
      snprintf(label, sizeof label, "class %d", k);
      spec.class_names[k] = strdup(label);
    }
    snprintf(spec.training, sizeof spec.training, "{\"case\":%d}", i);
    MrError err = {0};
    Net *net = model_build(&spec, (uint64_t)i + 1, &err);
    model_spec_free(&spec);
    if (!net) fail_msg("%s: %s", e->arch, err.msg);
    /* batchnorm statistics away from 0 and 1, so their export is tested */
    for (int t = 0; t < net_tensor_count(net); t++) {
      TensorRef r = net_tensor(net, t);
      const size_t len = strlen(r.name);
      if (len > 12 && strcmp(r.name + len - 12, "running_mean") == 0)
        fill_uniform(r.data, r.numel, &rng, -0.2f, 0.2f);
      if (len > 11 && strcmp(r.name + len - 11, "running_var") == 0)
        fill_uniform(r.data, r.numel, &rng, 0.5f, 1.5f);
    }
    const int B = 2, in = net_input_size(net), out = net_num_classes(net) * net_output_pixels(net);
    float *x = malloc(sizeof(float) * B * in), *z = malloc(sizeof(float) * B * out),
          *dx = malloc(sizeof(float) * B * in), *dx_back = malloc(sizeof(float) * B * in);
    int *y = calloc((size_t)B * net_output_pixels(net), sizeof(int));
    fill_uniform(x, (size_t)B * in, &rng, 0.0f, 1.0f);
    memcpy(z, net_forward(net, x, B, MODE_EVAL), sizeof(float) * B * out);
    net_loss_and_input_grad(net, x, y, B, dx);
    snprintf(names[i], sizeof names[i], "export%d_%s", i, e->arch);
    char path[160];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, names[i]);
    if (onnx_export(net, path, &err) != STATUS_OK) fail_msg("%s: %s", e->arch, err.msg);
    write_floats(names[i], "x", x, (size_t)B * in);
    write_floats(names[i], "logits", z, (size_t)B * out);
    n_cmd += snprintf(cmd + n_cmd, sizeof cmd - (size_t)n_cmd, " %s", names[i]);
    Net *back = onnx_import(path, NULL, &err);
    if (!back) fail_msg("%s: %s", e->arch, err.msg);
    assert_memory_equal(net_forward(back, x, B, MODE_EVAL), z, sizeof(float) * B * out);
    net_loss_and_input_grad(back, x, y, B, dx_back);
    double gmax = 0;
    for (int j = 0; j < B * in; j++) gmax = fmax(gmax, fabs(dx[j]));
    const double gdiff = max_abs_diff(dx, dx_back, (size_t)B * in) / gmax;
    print_message(
        "  %-12s %3d ops -> %3d ops, outputs identical, input gradient max diff %.1e "
        "of the largest\n",
        e->arch, net_layer_count(net), net_layer_count(back), gdiff);
    assert_true(gdiff <= 1e-6);
    char a[32], b[32];
    assert_string_equal(net_class_name(back, e->k - 1, a), net_class_name(net, e->k - 1, b));
    assert_string_equal(net_spec(back)->training, net_spec(net)->training);
    assert_true(net_spec(back)->norm_std[0] == net_spec(net)->norm_std[0]);
    net_free(back), net_free(net);
    free(x), free(z), free(dx), free(dx_back), free(y);
  }
  if (!have_torch) {
    print_message("skipped the outside check: /usr/bin/python3 with torch and onnx not found\n");
    return;
  }
  assert_int_equal(system(cmd), 0);
}

static void test_export_cli(void **state) {
  (void)state;
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  ModelSpec spec = model_spec_default("resnet8", 1, 28, 28, 2);
  MrError err = {0};
  Net *net = model_build(&spec, 3, &err);
  model_spec_free(&spec);
  char path[160], cmd[1024];
  snprintf(path, sizeof path, "%s/cli.safetensors", dir);
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  snprintf(cmd, sizeof cmd, "%s export --model %s --out %s/cli.onnx > /dev/null", bin, path, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/cli.onnx", dir);
  Net *back = model_load(path, &err);
  if (!back) fail_msg("%s", err.msg);
  assert_int_equal(net_param_count(back), net_param_count(net));
  net_free(back), net_free(net);
  /* the output may not be the input; a missing model is a runtime error; --out is required */
  snprintf(cmd, sizeof cmd, "%s export --model %s --out %s 2> /dev/null", bin, path, path);
  assert_int_equal(WEXITSTATUS(system(cmd)), 2);
  snprintf(cmd, sizeof cmd, "%s export --model %s/none.safetensors --out %s/x.onnx 2> /dev/null",
           bin, dir, dir);
  assert_int_equal(WEXITSTATUS(system(cmd)), 1);
  snprintf(cmd, sizeof cmd, "%s/x.onnx", dir);
  assert_int_equal(access(cmd, F_OK), -1);
  snprintf(cmd, sizeof cmd, "%s export --model %s 2> /dev/null", bin, path);
  assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_pytorch), cmocka_unit_test(test_torchvision_parity),
      cmocka_unit_test(test_refuses),         cmocka_unit_test(test_cli),
      cmocka_unit_test(test_export_families), cmocka_unit_test(test_export_cli)};
  return cmocka_run_group_tests_name("onnx import", tests, setup, teardown);
}
