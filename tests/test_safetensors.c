/* Model files: save/load round trips give identical logits for every family,
 * and corrupt, truncated and mismatched files are refused with a message
 * naming the problem. Files go to a fresh temporary directory. */
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

static char dir[256];

static void path_in_dir(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "test");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static Net *build(const char *arch, float width, int c, int size) {
  ModelSpec spec = model_spec_default(arch, c, size, size, 3);
  spec.width = width;
  spec.norm_mean[0] = 0.25f;
  spec.norm_std[0] = 0.5f;
  spec.class_names[0] = strdup("benign");
  spec.class_names[1] = strdup("malignant");
  spec.class_names[2] = strdup("other \"quoted\"");
  MrError err = {0};
  Net *net = model_build(&spec, 3, &err);
  model_spec_free(&spec);
  if (!net) fail_msg("%s", err.msg);
  return net;
}

static void round_trip(const char *arch, float width, int c, int size) {
  Net *net = build(arch, width, c, size);
  const int B = 2, in = net_input_size(net);
  float *x = malloc(sizeof(float) * B * in);
  Rng rng;
  rng_seed(&rng, 2);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  net_forward(net, x, B, MODE_TRAIN); /* non-trivial running statistics */
  float before[6];
  memcpy(before, net_forward(net, x, B, MODE_EVAL), sizeof before);
  char path[300];
  path_in_dir(path, sizeof path, "m.safetensors");
  MrError err = {0};
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  Net *loaded = safetensors_load_net(path, &err);
  if (!loaded) fail_msg("%s: %s", arch, err.msg);
  assert_string_equal(net_spec(loaded)->arch, arch);
  assert_string_equal(net_spec(loaded)->class_names[1], "malignant");
  assert_string_equal(net_spec(loaded)->class_names[2], "other \"quoted\"");
  assert_float_equal(net_spec(loaded)->norm_std[0], 0.5f, 0);
  assert_memory_equal(before, net_forward(loaded, x, B, MODE_EVAL), sizeof before);
  /* the counters survive too */
  for (int i = 0; i < net_tensor_count(net); i++)
    if (net_tensor(net, i).is_int64) assert_int_equal(*net_tensor(loaded, i).idata, 1);
  net_free(loaded);
  net_free(net);
  free(x);
}

static void test_round_trip(void **state) {
  (void)state;
  round_trip("cnn", 0.5f, 1, 28);
  round_trip("cbr-larget", 0.125f, 1, 28);
  round_trip("vgg16", 0.125f, 3, 32);
  round_trip("resnet20", 1.0f, 1, 28);
  round_trip("resnet50", 0.125f, 3, 28);
}

static void test_header_layout(void **state) {
  (void)state;
  Net *net = build("resnet8", 1.0f, 1, 28);
  char path[300];
  path_in_dir(path, sizeof path, "layout.safetensors");
  assert_int_equal(safetensors_save_net(net, path, NULL), STATUS_OK);
  FILE *f = fopen(path, "rb");
  uint8_t len[8];
  assert_int_equal(fread(len, 1, 8, f), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)len[i] << (8 * i);
  assert_int_equal(n % 8, 0);
  char *header = calloc(n + 1, 1);
  assert_int_equal(fread(header, 1, n, f), n);
  fclose(f);
  assert_int_equal(header[0], '{');
  assert_non_null(
      strstr(header, "\"layer1.0.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[16,16,3,3]"));
  assert_non_null(strstr(header, "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[]"));
  assert_non_null(strstr(header, "\"arch\":\"resnet8\""));
  free(header);
  net_free(net);
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* Copies a model file, replacing its graph's ops[op].key with `value` (a
 * JSON text; NULL removes the key), or with op < 0 dropping the graph
 * entirely (and renaming arch when given). */
typedef struct {
  int op;
  const char *key, *value, *arch;
} GraphEdit;

static void edit_graph(cJSON *h, const void *ctx) {
  const GraphEdit *e = ctx;
  cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
  if (e->op < 0) {
    cJSON_DeleteItemFromObject(meta, "graph");
    if (e->arch) cJSON_ReplaceItemInObject(meta, "arch", cJSON_CreateString(e->arch));
    return;
  }
  cJSON *g = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(meta, "graph")->valuestring);
  cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g, "ops"), e->op);
  cJSON_DeleteItemFromObject(o, e->key);
  if (e->value) cJSON_AddItemToObject(o, e->key, cJSON_Parse(e->value));
  char *text = cJSON_PrintUnformatted(g);
  cJSON_ReplaceItemInObject(meta, "graph", cJSON_CreateString(text));
  free(text);
  cJSON_Delete(g);
}

static void rewrite_graph_at(const char *from, const char *to, int op, const char *key,
                             const char *value, const char *arch) {
  const GraphEdit e = {op, key, value, arch};
  rewrite_safetensors_header(from, to, edit_graph, &e);
}

/* Copies a model file with tensor `name`'s data_offsets set to [begin, end]. */
typedef struct {
  const char *name;
  double begin, end;
} OffsetEdit;

static void edit_offsets(cJSON *h, const void *ctx) {
  const OffsetEdit *e = ctx;
  cJSON *t = cJSON_GetObjectItemCaseSensitive(h, e->name);
  cJSON *offs = cJSON_CreateArray();
  cJSON_AddItemToArray(offs, cJSON_CreateNumber(e->begin));
  cJSON_AddItemToArray(offs, cJSON_CreateNumber(e->end));
  cJSON_ReplaceItemInObject(t, "data_offsets", offs);
}

static double offset_of(const char *path, const char *name, int which) {
  size_t n;
  uint8_t *b = read_all(path, &n);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
  cJSON *h = cJSON_ParseWithLength((const char *)b + 8, hlen);
  const double v =
      cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, name),
                                                          "data_offsets"),
                         which)
          ->valuedouble;
  cJSON_Delete(h);
  free(b);
  return v;
}

/* Loads path and expects failure with `needle` in the message. */
static void expect_rejected(const char *path, const char *needle) {
  MrError err = {0};
  Net *net = safetensors_load_net(path, &err);
  if (net) fail_msg("%s loaded but should have been refused (%s)", path, needle);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
  assert_non_null(strstr(err.msg, path));
}

static void test_rejects_bad_files(void **state) {
  (void)state;
  Net *net = build("resnet8", 1.0f, 1, 28);
  char good[300], bad[300];
  path_in_dir(good, sizeof good, "good.safetensors");
  path_in_dir(bad, sizeof bad, "bad.safetensors");
  assert_int_equal(safetensors_save_net(net, good, NULL), STATUS_OK);
  size_t n;
  uint8_t *bytes = read_all(good, &n);

  expect_rejected("/nonexistent/dir/x.safetensors", "cannot open");
  write_bytes(bad, bytes, 5);
  expect_rejected(bad, "too short");
  write_bytes(bad, bytes, 100); /* header cut */
  expect_rejected(bad, "header length");
  write_bytes(bad, bytes, n - 1000); /* data cut */
  expect_rejected(bad, "truncated");

  uint8_t *copy = malloc(n);
  memcpy(copy, bytes, n);
  copy[8] = 'X'; /* header no longer JSON */
  write_bytes(bad, copy, n);
  expect_rejected(bad, "not a JSON object");

  memcpy(copy, bytes, n);
  char *hit = memmem(copy, n, "[16,16,3,3]", 11);
  assert_non_null(hit);
  memcpy(hit, "[16,16,3,1]", 11);
  write_bytes(bad, copy, n);
  expect_rejected(bad, "has shape [16,16,3,1], expected [16,16,3,3]");

  memcpy(copy, bytes, n);
  hit = memmem(copy, n, "\"F32\"", 5);
  memcpy(hit, "\"F16\"", 5);
  write_bytes(bad, copy, n);
  expect_rejected(bad, "dtype F16, expected F32");

  memcpy(copy, bytes, n);
  hit = memmem(copy, n, "layer1.0.conv2.weight", 21);
  memcpy(hit, "layer1.0.conv9.weight", 21);
  write_bytes(bad, copy, n);
  expect_rejected(bad, "unexpected tensor 'layer1.0.conv9.weight'");

  /* with its graph the file needs no known family: arch is a label */
  memcpy(copy, bytes, n);
  hit = memmem(copy, n, "\"arch\":\"resnet8\"", 16);
  memcpy(hit, "\"arch\":\"resnetX\"", 16);
  write_bytes(bad, copy, n);
  MrError lerr = {0};
  Net *relabelled = safetensors_load_net(bad, &lerr);
  assert_non_null(relabelled);
  net_free(relabelled);
  /* a file written before files carried their graph rebuilds its family */
  rewrite_graph_at(good, bad, -1, NULL, NULL, NULL);
  Net *old = safetensors_load_net(bad, &lerr);
  if (!old) fail_msg("graph-less file: %s", lerr.msg);
  assert_int_equal(net_param_count(old), net_param_count(net));
  net_free(old);
  rewrite_graph_at(good, bad, -1, NULL, NULL, "resnetX");
  expect_rejected(bad, "unknown architecture 'resnetX'");

  /* files that lie about their graph (resnet8: op 0 conv1, 1 bn1, 2 relu,
   * op 8 is the first block's add) */
  rewrite_graph_at(good, bad, 0, "op", "\"warp\"", NULL);
  expect_rejected(bad, "graph op 0: unknown op \"warp\"");
  rewrite_graph_at(good, bad, 8, "inputs", "[7]", NULL);
  expect_rejected(bad, "add takes 2..2 inputs, got 1");
  rewrite_graph_at(good, bad, 2, "inputs", "[99]", NULL);
  expect_rejected(bad, "tensor 99, which does not exist");
  rewrite_graph_at(good, bad, 0, "out_channels", "8", NULL);
  expect_rejected(bad, "graph op 8 (add): add: residual add of 16x28x28 and 8x28x28");
  rewrite_graph_at(good, bad, 3, "stride", "[2,2]", NULL);
  expect_rejected(bad, "residual add of");
  const int last = net_layer_count(net) - 1;
  rewrite_graph_at(good, bad, last, "out_channels", "4", NULL);
  expect_rejected(bad, "network ends in 4 channels (1-D), not 3 class scores");
  rewrite_graph_at(good, bad, 0, "kernel", "[3]", NULL);
  expect_rejected(bad, "\"kernel\" needs 2 integers");
  rewrite_graph_at(good, bad, 0, "name", "\"renamed\"", NULL);
  expect_rejected(bad, "unexpected tensor 'conv1.weight'");
  /* a stride of 0 runs as the 1 it was completed to, never as 0 */
  rewrite_graph_at(good, bad, 0, "stride", "[0,0]", NULL);
  Net *zero_stride = safetensors_load_net(bad, &lerr);
  assert_non_null(zero_stride);
  float *xs = calloc(28 * 28, sizeof(float)), p1[3], p2[3];
  net_predict(zero_stride, xs, 1, p1);
  net_predict(net, xs, 1, p2);
  assert_true(fabsf(p1[0] - p2[0]) < 1e-6f);
  free(xs);
  net_free(zero_stride);
  rewrite_graph_at(good, bad, 0, "out_channels", "1e9", NULL);
  expect_rejected(bad, "is not an integer");

  /* data_offsets that overlap (bn1.bias reading bn1.weight's bytes: each range alone is in
   * bounds and of the right size, which once loaded silently) or do not start on a byte */
  const double w0 = offset_of(good, "bn1.weight", 0), w1 = offset_of(good, "bn1.weight", 1);
  OffsetEdit overlap = {"bn1.bias", w0, w1};
  rewrite_safetensors_header(good, bad, edit_offsets, &overlap);
  expect_rejected(bad, "tile the data without overlaps or holes");
  OffsetEdit fractional = {"bn1.bias", offset_of(good, "bn1.bias", 0) + 0.5,
                           offset_of(good, "bn1.bias", 1) + 0.5};
  rewrite_safetensors_header(good, bad, edit_offsets, &fractional);
  expect_rejected(bad, "data_offsets");

  /* a NaN in the weights: the last 4 bytes are fc.bias's last float */
  memcpy(copy, bytes, n);
  const float nan_value = NAN;
  memcpy(copy + n - 4, &nan_value, 4);
  write_bytes(bad, copy, n);
  expect_rejected(bad, "non-finite value");

  /* a file of another architecture into a built net: names the mismatch */
  Net *other = build("resnet20", 1.0f, 1, 28);
  MrError err = {0};
  assert_int_not_equal(safetensors_load_into(other, good, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "missing tensor 'layer1.1.conv1.weight'"));
  net_free(other);
  /* a narrower net of the same family: the first shape differs */
  Net *narrow = build("resnet8", 0.5f, 1, 28);
  assert_int_not_equal(safetensors_load_into(narrow, good, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "'conv1.weight' has shape [16,1,3,3], expected [8,1,3,3]"));
  net_free(narrow);

  /* a failed save leaves no file and reports the directory problem */
  assert_int_not_equal(safetensors_save_net(net, "/nonexistent/dir/m.safetensors", &err),
                       STATUS_OK);
  assert_non_null(strstr(err.msg, "/nonexistent/dir/m.safetensors"));
  free(copy);
  free(bytes);
  net_free(net);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_header_layout),
      cmocka_unit_test(test_rejects_bad_files),
  };
  return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
