/* Each model family end to end: the net's gradient of the cross-entropy
 * w.r.t. sampled parameters and input pixels against central differences,
 * in eval mode (what attacks use) and train mode; parameter counts against
 * the published ones; state_dict names; determinism and 1 vs 2 threads. */
#include <omp.h>

#include "nn/net.h"
#include "testutil.h"

#define N_SAMPLES 40
#define TOL_NET 2e-2 /* per coordinate, the largest gradients */
#define TOL_DIR 1e-2 /* directional derivatives */

typedef struct {
  Net *net;
  const float *x;
  const int *y;
  int batch;
  Mode mode;
} NetCtx;

/* mean cross-entropy per image, or per pixel for a per-pixel output */
static double net_loss_of(void *p) {
  NetCtx *c = p;
  const float *logits = net_forward(c->net, c->x, c->batch, c->mode);
  const int k = net_num_classes(c->net), P = net_output_pixels(c->net);
  double loss = 0.0; /* cross-entropy in double: the check must not add rounding of its own */
  for (int b = 0; b < c->batch; b++)
    for (int px = 0; px < P; px++) {
      const float *z = logits + (size_t)b * k * P + px;
      double s = 0.0;
      for (int j = 0; j < k; j++) s += exp((double)z[(size_t)j * P]);
      loss += log(s) - z[(size_t)c->y[b * P + px] * P];
    }
  return loss / (c->batch * P);
}

/* tol_scale > 1 only for the deepest net, whose loss surface has so many
 * ReLU/max-pool kinks that differences converge only below float resolution */
static void check_family_tol(const char *arch, float width, int size, int channels, Mode mode,
                             double tol_scale) {
  ModelSpec spec = model_spec_default(arch, channels, size, size, 3);
  spec.width = width;
  spec.seg_loss = SEG_LOSS_XENT; /* the oracle below is cross-entropy; Dice: test_graph */
  if (channels == 3) spec.norm_mean[1] = 0.4f, spec.norm_std[2] = 0.5f; /* exercise normalisation */
  MrError err = {0};
  Net *net = model_build(&spec, 123, &err);
  if (!net) fail_msg("%s: %s", arch, err.msg);
  const int B = 3, in = net_input_size(net), K = 3, P = net_output_pixels(net);
  Rng rng;
  rng_seed(&rng, 77);
  float *x = malloc(sizeof(float) * B * in), *dx = malloc(sizeof(float) * B * in);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  int *y = malloc(sizeof(int) * B * P);
  for (int i = 0; i < B * P; i++) y[i] = P == 1 ? i % K : rng_int(&rng, K);
  /* BN statistics away from their initial values so eval mode is not trivial */
  for (int i = 0; i < 3; i++) net_forward(net, x, B, MODE_TRAIN);
  NetCtx c = {net, x, y, B, mode};

  const float *logits = net_forward(net, x, B, mode);
  float *dlogits = malloc(sizeof(float) * B * K * P);
  net_loss(net, logits, y, NULL, B, 0, dlogits);
  net_zero_grad(net);
  net_backward(net, dlogits, dx, 1);
  /* the train-mode forward inside the check updates running stats; harmless
   * for train-mode outputs, and eval mode does not touch them */
  const size_t n_in = (size_t)B * in, n_par = net_param_count(net);
  float *grads = malloc(sizeof(float) * n_par);
  memcpy(grads, net_grads(net), sizeof(float) * n_par);
  double e_dir_in = gradcheck_directional(net_loss_of, &c, x, dx, n_in, 1e-2f, 3, &rng);
  double e_dir_par =
      gradcheck_directional(net_loss_of, &c, net_params(net), grads, n_par, 1e-3f, 3, &rng);
  size_t idx[N_SAMPLES];
  top_indices(idx, N_SAMPLES, dx, n_in);
  double e_in = gradcheck_steps(net_loss_of, &c, x, dx, idx, N_SAMPLES, 1e-3f, 3);
  top_indices(idx, N_SAMPLES, grads, n_par);
  double e_par = gradcheck_steps(net_loss_of, &c, net_params(net), grads, idx, N_SAMPLES, 1e-3f, 3);
  print_message("  %-10s w=%.3g %dx%dx%d %s: input dir %.1e top %.1e | params dir %.1e top %.1e\n",
                arch, width, channels, size, size, mode == MODE_TRAIN ? "train" : "eval ", e_dir_in,
                e_in, e_dir_par, e_par);
  assert_true(e_dir_in < TOL_DIR * tol_scale);
  assert_true(e_dir_par < TOL_DIR * tol_scale);
  assert_true(e_in < TOL_NET * tol_scale);
  assert_true(e_par < TOL_NET * tol_scale);
  free(x), free(dx), free(dlogits), free(grads), free(y);
  net_free(net);
}

static void check_family(const char *arch, float width, int size, int channels, Mode mode) {
  check_family_tol(arch, width, size, channels, mode, 1.0);
}

static void test_grad_cnn(void **state) {
  (void)state;
  check_family("cnn", 0.5f, 28, 1, MODE_EVAL);
  check_family("cnn", 0.5f, 28, 3, MODE_TRAIN);
}
static void test_grad_cbr_larget(void **state) {
  (void)state;
  check_family("cbr-larget", 0.125f, 28, 1, MODE_EVAL);
  check_family("cbr-larget", 0.125f, 32, 1, MODE_TRAIN);
}
static void test_grad_vgg(void **state) {
  (void)state;
  check_family("vgg11", 0.125f, 28, 1, MODE_EVAL);
  check_family("vgg16", 0.0625f, 32, 3, MODE_EVAL);
  check_family("vgg11", 0.125f, 32, 1, MODE_TRAIN);
}
static void test_grad_resnet_cifar(void **state) {
  (void)state;
  check_family("resnet8", 1.0f, 28, 1, MODE_EVAL);
  check_family("resnet8", 0.5f, 28, 3, MODE_TRAIN);
  check_family("resnet20", 0.5f, 28, 1, MODE_EVAL);
  check_family("resnet32", 0.25f, 28, 1, MODE_EVAL);
  check_family("resnet44", 0.25f, 28, 1, MODE_EVAL);
  check_family("resnet56", 0.25f, 28, 1, MODE_EVAL);
}
static void test_grad_resnet50(void **state) {
  (void)state;
  check_family("resnet50", 0.125f, 28, 1, MODE_EVAL);
  /* eval mode only: with a batch of 3, train-mode BN on layer4's 1x1 or 2x2
   * maps normalises 3-12 values, a near-singular regime no real batch sees;
   * train-mode BN is checked through the other families */
  check_family_tol("resnet50", 0.125f, 64, 3, MODE_EVAL, 2.0);
}

static void test_grad_paper002_families(void **state) {
  (void)state;
  check_family("mobilenet", 0.125f, 32, 3, MODE_EVAL);
  /* eval mode only, as for resnet50: train-mode BN over its 1x1 maps with a
   * batch of 3 normalises 3 values per channel */
  check_family("mobilenet", 0.125f, 28, 1, MODE_EVAL);
  check_family("densenet", 0.5f, 28, 1, MODE_EVAL);
  check_family("densenet", 0.5f, 32, 3, MODE_TRAIN);
  check_family("densenet121", 0.125f, 32, 1, MODE_EVAL);
}

static void test_grad_segmentation_families(void **state) {
  (void)state;
  check_family("unet", 0.25f, 32, 1, MODE_EVAL);
  check_family("unet", 0.25f, 32, 3, MODE_TRAIN);
  check_family("segnet", 0.25f, 32, 1, MODE_EVAL);
  check_family("fc-densenet", 0.25f, 32, 1, MODE_EVAL);
  check_family("fc-densenet", 0.25f, 32, 3, MODE_TRAIN);
}

static size_t params_of(const char *arch, int c, int size, int k) {
  ModelSpec spec = model_spec_default(arch, c, size, size, k);
  Net *net = model_build(&spec, 0, NULL);
  assert_non_null(net);
  size_t n = net_param_count(net);
  net_free(net);
  return n;
}

static void test_param_counts(void **state) {
  (void)state;
  /* published counts: torchvision resnet50 (1000 classes) 25,557,032;
   * CIFAR ResNet-20/32/44/56 (10 classes) 0.27M/0.46M/0.66M/0.85M */
  assert_int_equal(params_of("resnet50", 3, 224, 1000), 25557032);
  assert_int_equal(params_of("resnet20", 3, 32, 10), 269722);
  assert_int_equal(params_of("resnet32", 3, 32, 10), 464154);
  assert_int_equal(params_of("resnet44", 3, 32, 10), 658586);
  assert_int_equal(params_of("resnet56", 3, 32, 10), 853018);
  /* torchvision densenet121 (1000 classes) 7,978,856; MobileNet v1 (Howard et
   * et al., Table 1: 4.2M) as counted by the usual PyTorch twin, 4,231,976 */
  assert_int_equal(params_of("densenet121", 3, 224, 1000), 7978856);
  assert_int_equal(params_of("mobilenet", 3, 224, 1000), 4231976);
}

static void test_state_dict_names(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("resnet20", 1, 28, 28, 2);
  Net *net = model_build(&spec, 0, NULL);
  const char *expect[] = {"conv1.weight",         "bn1.weight",      "bn1.bias",
                          "bn1.running_mean",     "bn1.running_var", "bn1.num_batches_tracked",
                          "layer1.0.conv1.weight"};
  for (int i = 0; i < 7; i++) assert_string_equal(net_tensor(net, i).name, expect[i]);
  TensorRef last = net_tensor(net, net_tensor_count(net) - 1);
  assert_string_equal(last.name, "fc.bias");
  TensorRef t = net_tensor(net, 6);
  assert_int_equal(t.ndim, 4);
  assert_int_equal(t.shape[0], 16);
  assert_int_equal(t.shape[1], 16);
  net_free(net);
  spec = model_spec_default("resnet50", 3, 28, 28, 2);
  net = model_build(&spec, 0, NULL);
  int found = 0;
  for (int i = 0; i < net_tensor_count(net); i++)
    found += strcmp(net_tensor(net, i).name, "layer4.0.downsample.1.running_var") == 0;
  assert_int_equal(found, 1);
  net_free(net);
}

static void test_bad_specs(void **state) {
  (void)state;
  MrError err = {0};
  ModelSpec spec = model_spec_default("resnet20", 2, 28, 28, 2);
  assert_null(model_build(&spec, 0, &err));
  assert_non_null(strstr(err.msg, "channels"));
  spec = model_spec_default("resnet20", 1, 16, 16, 2);
  assert_null(model_build(&spec, 0, &err));
  spec = model_spec_default("nosuchnet", 1, 28, 28, 2);
  assert_int_equal(spec.arch[0], 0);
  snprintf(spec.arch, sizeof spec.arch, "nosuchnet");
  assert_null(model_build(&spec, 0, &err));
  assert_non_null(strstr(err.msg, "unknown model"));
}

static void test_threads_and_seed(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("resnet8", 1, 28, 28, 2);
  Net *a = model_build(&spec, 5, NULL), *b = model_build(&spec, 5, NULL);
  assert_memory_equal(net_params(a), net_params(b), sizeof(float) * net_param_count(a));
  const int B = 8, in = net_input_size(a);
  float *x = malloc(sizeof(float) * B * in), *dx1 = malloc(sizeof(float) * B * in);
  float *dx2 = malloc(sizeof(float) * B * in);
  int y[8] = {0, 1, 0, 1, 1, 0, 0, 1};
  Rng rng;
  rng_seed(&rng, 9);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  float l1 = net_loss_and_input_grad(a, x, y, B, dx1);
  float t1 = net_train_step_grads(a, x, y, B, NULL);
  omp_set_num_threads(2);
  float l2 = net_loss_and_input_grad(b, x, y, B, dx2);
  float t2 = net_train_step_grads(b, x, y, B, NULL);
  omp_set_num_threads(threads);
  assert_float_equal(l1, l2, 1e-6);
  assert_float_equal(t1, t2, 1e-6);
  assert_true(max_abs_diff(dx1, dx2, (size_t)B * in) < 1e-6);
  assert_true(max_abs_diff(net_grads(a), net_grads(b), net_param_count(a)) < 1e-4);
  free(x), free(dx1), free(dx2);
  net_free(a), net_free(b);
}

/* The three convolution backends (oneDNN channels-last, oneDNN planar,
 * im2col) give the same logits, predictions, input gradients and parameter gradients, on
 * colour input through every layout-dependent layer: max-pool + flatten
 * (cnn, vgg11), option-A shortcut + global pool (resnet8); and on grey input at full width,
 * where channels-last gives oneDNN the 1- and 16-channel tensors as NCHW and nChw16c. */
static void check_conv_backends(const char *arch, int channels, float width) {
  const ConvBackend backends[3] = {CONV_BACKEND_DNNL, CONV_BACKEND_DNNL_NCHW, CONV_BACKEND_IM2COL};
  {
    ModelSpec spec = model_spec_default(arch, channels, 32, 32, 2);
    spec.width = width;
    const int B = 5, in = channels * 32 * 32;
    float *x = malloc(sizeof(float) * B * in), *dx[3], loss[3], *grads[3], *probs[3];
    int y[5 * 32 * 32];
    for (int i = 0; i < 5 * 32 * 32; i++) y[i] = (i * 7 / 5) % 2;
    Rng rng;
    rng_seed(&rng, 10);
    fill_uniform(x, (size_t)B * in, &rng, 0, 1);
    Net *nets[3];
    for (int k = 0; k < 3; k++) {
      nets[k] = model_build(&spec, 8, NULL);
      net_set_conv_backend(nets[k], backends[k]);
      dx[k] = malloc(sizeof(float) * B * in);
      probs[k] = malloc(sizeof(float) * B * 2 * 32 * 32);
      net_predict(nets[k], x, B, probs[k]);
      loss[k] = net_loss_and_input_grad(nets[k], x, y, B, dx[k]);
      assert_int_equal(nets[k]->engine.channels_last, k == 0);
      net_zero_grad(nets[k]);
      if (strcmp(arch, "mobilenet") == 0) {
        /* eval mode: train-mode batchnorm over its 1x1 maps (5 values a channel)
         * is so ill-conditioned (gradients 500x the eval ones) that float
         * rounding differs by 1e-3 between kernels; in eval mode they agree
         * to 1e-12 */
        const float *logits = net_forward(nets[k], x, B, MODE_EVAL);
        net_loss(nets[k], logits, y, NULL, B, 0, nets[k]->dlogits);
        net_backward(nets[k], nets[k]->dlogits, NULL, 1);
      } else {
        net_train_step_grads(nets[k], x, y, B, NULL);
      }
      grads[k] = net_grads(nets[k]);
    }
    const size_t n_probs = (size_t)B * 2 * net_output_pixels(nets[0]);
    for (int k = 1; k < 3; k++) {
      assert_float_equal(loss[0], loss[k], 1e-4);
      /* fc-densenet's planar oneDNN kernels round differently through its deep untrained stack
       * (2e-4 here; its gradients differ likewise, below) */
      if (max_abs_diff(probs[0], probs[k], n_probs) > (strcmp(arch, "fc-densenet") ? 1e-5 : 1e-3))
        fail_msg("%s: backend %d predictions differ by %g", arch, k,
                 max_abs_diff(probs[0], probs[k], n_probs));
      double dmax = 0.0;
      for (size_t i = 0; i < (size_t)B * in; i++) dmax = fmax(dmax, fabs(dx[0][i]));
      if (max_abs_diff(dx[0], dx[k], (size_t)B * in) > 1e-5 * fmax(1.0, dmax))
        fail_msg("%s: backend %d input gradients differ by %g (largest %g)", arch, k,
                 max_abs_diff(dx[0], dx[k], (size_t)B * in), dmax);
      const size_t np = net_param_count(nets[0]);
      double gmax = 0.0;
      for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(grads[0][i]));
      const double d = max_abs_diff(grads[0], grads[k], np);
      /* fc-densenet's train-mode batchnorm over 4x4 maps amplifies rounding:
       * oneDNN-planar differs from the other two by 8e-4 of the largest
       * gradient (im2col and channels-last agree to 2e-6; eval mode 1e-6) */
      const double tol = strcmp(arch, "fc-densenet") == 0 ? 2e-3 : 1e-4;
      if (d > tol * fmax(1.0, gmax))
        fail_msg("%s: backend %d weight gradients differ by %g (largest %g)", arch, k, d, gmax);
    }
    for (int k = 0; k < 3; k++) free(dx[k]), free(probs[k]), net_free(nets[k]);
    free(x);
  }
}

static void test_conv_backends_agree(void **state) {
  (void)state;
  const char *archs[] = {"cbr-larget", "resnet8",  "vgg11", "cnn",
                         "mobilenet",  "densenet", "unet",  "fc-densenet"};
  for (int a = 0; a < 8; a++) check_conv_backends(archs[a], 3, 0.25f);
  check_conv_backends("resnet8", 1, 1.0f);
  check_conv_backends("cnn", 1, 1.0f);
}

/* batchnorm -> ReLU -> 2x2 max-pool runs as one kernel in channels-last (net_fuse_pools): each
 * of cnn's stages on 32x32 images, none on 28x28 past the 7x7 maps (odd); test_conv_backends_agree
 * checks the fused gradients against the planar kernels' */
static void test_pools_fused(void **state) {
  (void)state;
  for (int size = 28; size <= 32; size += 4) {
    ModelSpec spec = model_spec_default("cnn", 1, size, size, 2);
    Net *net = model_build(&spec, 1, NULL);
    assert_non_null(net);
    int pools = 0, fused = 0;
    for (int i = 0; i < net->n_layers; i++)
      pools += net->layers[i].kind == OP_MAXPOOL, fused += net->layers[i].pool_fused > 0;
    assert_true(pools > 2);
    assert_int_equal(fused, size == 32 ? pools : 2);
    net_free(net);
  }
}

/* net_predict's lean buffer plan gives the probabilities of the full plan. */
/* Gradients share buffers by liveness (the gradient checks above run on the shared plan): a
 * chain keeps a few alive at once, skips and dense blocks more, never more than one each. */
static void test_gradient_buffers_shared(void **state) {
  (void)state;
  const struct {
    const char *arch;
    int size;
    double most; /* of the unshared bytes */
  } cases[] = {
      {"resnet20", 32, 0.25}, {"vgg11", 32, 0.5}, {"unet", 32, 0.6}, {"densenet", 32, 0.6}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    ModelSpec spec = model_spec_default(cases[k].arch, 1, cases[k].size, cases[k].size, 2);
    MrError err = {0};
    Net *net = model_build(&spec, 3, &err);
    assert_non_null(net);
    assert_int_equal(net_plan(net, 8, &err), STATUS_OK);
    const NetPlanMemory m = net_plan_memory(net);
    print_message("  %-9s gradients %6.2f MB shared, %6.2f MB one buffer each (plan %.2f MB)\n",
                  cases[k].arch, m.gradient_bytes / 1e6, m.unshared_gradient_bytes / 1e6,
                  m.total_bytes / 1e6);
    assert_true(m.gradient_bytes > 0 && m.gradient_bytes < m.total_bytes);
    assert_true(m.gradient_bytes <= cases[k].most * m.unshared_gradient_bytes);
    /* every residual add writes its sum over its last batchnorm's output (the gradient checks
     * above run on that plan) */
    int adds = 0, over_bn = 0;
    for (int i = 0; i < net->n_layers; i++) {
      const Layer *l = &net->layers[i];
      if (l->kind != OP_ADD) continue;
      adds++;
      if (l->overwrites)
        over_bn += net->layers[l->src[l->overwrites - 1] - 1].kind == OP_BATCHNORM2D;
    }
    assert_int_equal(over_bn, adds);
    if (strcmp(cases[k].arch, "resnet20") == 0) assert_int_equal(adds, 9);
    net_free(net);
  }
}

/* net_predict's probabilities against net_forward's in eval mode, on B random images after
 * one train-mode forward (batchnorm statistics away from the identity); a full forward
 * afterwards must be unaffected. Returns the largest difference. */
static double predict_vs_forward(Net *net, int B, uint64_t seed) {
  const int in = net_input_size(net), k = net->spec.n_classes;
  float *x = malloc(sizeof(float) * B * in), *probs = malloc(sizeof(float) * B * k);
  float *ref = malloc(sizeof(float) * B * k), *again = malloc(sizeof(float) * B * k);
  float *dl = malloc(sizeof(float) * B * k);
  int *y = malloc(sizeof(int) * B);
  for (int b = 0; b < B; b++) y[b] = b % k;
  Rng rng;
  rng_seed(&rng, seed);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  net_forward(net, x, B, MODE_TRAIN);
  softmax_xent(dl, ref, net_forward(net, x, B, MODE_EVAL), y, NULL, B, k, 0);
  net_predict(net, x, B, probs);
  const double diff = max_abs_diff(probs, ref, (size_t)B * k);
  softmax_xent(dl, again, net_forward(net, x, B, MODE_EVAL), y, NULL, B, k, 0);
  assert_memory_equal(again, ref, sizeof(float) * B * k);
  free(x), free(probs), free(ref), free(again), free(dl), free(y);
  return diff;
}

/* residual adds done by a convolution's sum post-op */
static int fused_adds(const Net *net) {
  int n = 0;
  for (int i = 0; i < net->n_layers; i++) n += conv2d_dnnl_folded_sums(net->layers[i].dnnl);
  return n;
}

/* 2x2 max-pools done by the direct convolution before them */
static int pooled_convs(const Net *net) {
  int n = 0;
  for (int i = 0; i + 3 < net->n_layers; i++)
    n += conv2d_dnnl_folded_pools(net->layers[i].dnnl) && net->layers[i + 3].kind == OP_MAXPOOL;
  return n;
}

/* A concatenation of a concatenation, read by a batchnorm two layers after its inner one: the
 * inner one's inputs must outlive it (the inference plan would hand their buffers to c2 else). */
static void test_predict_nested_concat(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 8, 8, 3);
  snprintf(spec.arch, sizeof spec.arch, "graph");
  Net *net = net_new(&spec);
  const int a = net_add_conv(net, "a", NET_INPUT, 4, 3, 1, 1, 1, 1);
  const int b = net_add_conv(net, "b", NET_INPUT, 12, 3, 1, 1, 1, 1);
  const int cat1 = net_add_concat(net, (int[]){a, b}, 2);
  const int c1 = net_add_conv(net, "c1", NET_INPUT, 4, 3, 1, 1, 1, 1);
  const int c2 = net_add_conv(net, "c2", c1, 16, 3, 1, 1, 1, 1);
  const int cat2 = net_add_concat(net, (int[]){cat1, c2}, 2);
  const int t = net_add_relu(net, net_add_bn(net, "bn", cat2));
  net_add_dense(net, "fc", net_add_flatten(net, net_add_global_avgpool(net, t)), 3);
  MrError err = {0};
  assert_int_equal(net_finish(net, &err), STATUS_OK);
  net_init_params(net, 4);
  assert_true(net->layers[cat1 - 1].gathered && net->layers[cat2 - 1].gathered);
  const double diff = predict_vs_forward(net, 5, 9);
  print_message("  nested concat predict vs forward %.3g\n", diff);
  assert_true(diff < 1e-5);
  net_free(net);
  model_spec_free(&spec);
}

/* whether the hand-written AVX-512 kernels (conv2d_direct, conv2d_depthwise, conv2d_separable)
 * are built: a 3x3 layer of 16 channels is direct unless built without them */
static int direct_kernels_built(void) {
  /* clang-format off */
  Conv2dDims probe = {.B = 1, .C = 16, .H = 4, .W = 4, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                      .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 1};
  /* clang-format on */
  assert_true(conv2d_dims_finish(&probe));
  return conv2d_direct_supported(probe);
}

/* Depthwise-separable pairs run in one pass (conv2d_separable) give what the layers give one
 * by one: a pair at stride 1 with both ReLUs, and one at stride 2 whose depthwise batchnorm has
 * none; the predictions differ between images, so the comparison sees every layer. */
static void test_predict_separable(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 8, 8, 3);
  snprintf(spec.arch, sizeof spec.arch, "graph");
  Net *net = net_new(&spec);
  int t = net_add_relu(
      net, net_add_bn(net, "bn0", net_add_conv(net, "c0", NET_INPUT, 16, 3, 1, 1, 1, 0)));
  t = net_add_relu(net, net_add_bn(net, "bn1", net_add_conv(net, "dw1", t, 16, 3, 1, 1, 16, 0)));
  t = net_add_relu(net, net_add_bn(net, "bn2", net_add_conv(net, "pw1", t, 32, 1, 1, 0, 1, 0)));
  t = net_add_bn(net, "bn3", net_add_conv(net, "dw2", t, 32, 3, 2, 1, 32, 0));
  t = net_add_relu(net, net_add_bn(net, "bn4", net_add_conv(net, "pw2", t, 64, 1, 1, 0, 1, 0)));
  net_add_dense(net, "fc", net_add_flatten(net, net_add_global_avgpool(net, t)), 3);
  MrError err = {0};
  assert_int_equal(net_finish(net, &err), STATUS_OK);
  net_init_params(net, 4);
  /* running statistics near the batch's, so that the outputs depend on the input */
  float x[5 * 64], probs[5 * 3];
  for (int i = 0; i < 5 * 64; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
  for (int r = 0; r < 50; r++) net_forward(net, x, 5, MODE_TRAIN);
  net_predict(net, x, 5, probs);
  assert_true(fabs(probs[0] - probs[3]) + fabs(probs[1] - probs[4]) > 1e-3);
  const double diff = predict_vs_forward(net, 5, 9);
  print_message("  separable pairs predict vs forward %.3g\n", diff);
  assert_true(diff < 1e-5);
  int separable = 0;
  for (int i = 0; i < net->n_layers; i++)
    separable += conv2d_dnnl_folded_separable(net->layers[i].dnnl);
  assert_int_equal(separable, direct_kernels_built() ? 2 : 0);
  net_free(net);
  model_spec_free(&spec);
}

/* resnet8 at 64x64 (small weights, 256 KB maps) predicts 20 images in chunks of 7 on primitives
 * of its own, the last chunk overlapping the one before; the probabilities stay net_forward's
 * through attack steps on the full batch and new weights. Nets with larger weights keep the
 * batch whole. */
static void test_predict_chunks(void **state) {
  (void)state;
  const int threads = mr_get_threads();
  mr_set_threads(2); /* the rule depends on the thread count */
  ModelSpec spec = model_spec_default("resnet8", 1, 64, 64, 3);
  Net *net = model_build(&spec, 2, NULL);
  assert_non_null(net);
  assert_int_equal(net_inference_chunk(net, 20), 7); /* 8 maps of 256 KB fill 2 MB: 3 chunks */
  assert_int_equal(net_inference_chunk(net, 128), 8);
  assert_int_equal(net_inference_chunk(net, 8), 8);
  enum { B = 20, K = 3 };
  const int in = net_input_size(net);
  float *x = malloc(sizeof(float) * B * in), *dx = malloc(sizeof(float) * B * in);
  float probs[B * K], again[B * K];
  int y[B];
  for (int b = 0; b < B; b++) y[b] = b % K;
  for (int round = 0; round < 2; round++) {
    const double diff = predict_vs_forward(net, B, 11 + round); /* new statistics each round */
    print_message("  resnet8 64x64 in chunks, round %d: predict vs forward %.3g\n", round, diff);
    assert_true(diff < 1e-5);
  }
  Rng rng;
  rng_seed(&rng, 5);
  fill_uniform(x, (size_t)B * in, &rng, 0, 1);
  net_predict(net, x, B, probs);
  double spread = 0;
  for (int b = 1; b < B; b++) spread = fmax(spread, fabs(probs[b * K] - probs[0]));
  assert_true(spread > 1e-3); /* the images are told apart: the check above can fail */
  net_loss_and_input_grad(net, x, y, B, dx);
  net_predict(net, x, B, again);
  assert_memory_equal(again, probs, sizeof probs);
  free(x), free(dx);
  net_free(net);
  model_spec_free(&spec);
  const char *whole[] = {"cnn", "mobilenet"};
  for (int m = 0; m < 2; m++) {
    spec = model_spec_default(whole[m], 1, 64, 64, 2);
    net = model_build(&spec, 2, NULL);
    assert_int_equal(net_inference_chunk(net, 128), 128);
    net_free(net);
    model_spec_free(&spec);
  }
  mr_set_threads(threads);
}

static void test_predict_matches_forward(void **state) {
  (void)state;
  const struct {
    const char *arch;
    int size;
    float width;
    int fused_adds, pooled; /* pooled: with the direct kernels (AVX-512) */
    int products;           /* pointwise layers folded as matrix products (few rows) */
    int separable; /* pointwise layers run with their depthwise one (with the direct kernels) */
  } cases[] = {
      /* residual adds done by the convolution before them (oneDNN's sum post-op): every block
       * of resnet20 (its shortcut pads built before the block's convolutions) and of resnet50 */
      /* the 3x3 convolutions of 16 channels and more before a 2x2 max-pool do it (cnn's last
       * before its 4x4 pool, vgg11's before three), in a direct kernel */
      {"cnn", 32, 0.25f, 0, 1, 0, 0},
      {"vgg11", 32, 0.25f, 0, 3, 0, 0},
      {"resnet20", 32, 0.25f, 9, 0, 0, 0},
      {"resnet50", 32, 0.25f, 16, 0, 17, 0}, /* pointwise layers on 2x2 and 1x1 maps by product */
      /* at full width, three, the last on 7x7 maps (odd: its last row and column are dropped) */
      {"cnn", 28, 1.0f, 0, 3, 0, 0},
      /* concatenations read by their batchnorms where their inputs are (net_gather_concats) */
      {"densenet", 32, 1.0f, 0, 0, 0, 0},
      /* the depthwise-separable pairs whose pointwise weights are 64K floats or fewer (16 -> 32
       * to 256 -> 256 channels: 11), the two wider pointwise layers by product (on 2x2 and 1x1
       * maps). (Its outputs hardly depend on the input at initialisation: test_predict_separable
       * is the sharper check of the pairs.) */
      {"mobilenet", 32, 0.5f, 0, 0, 2, 11}};
  const int direct = direct_kernels_built();
  for (size_t a = 0; a < sizeof cases / sizeof *cases; a++) {
    ModelSpec spec = model_spec_default(cases[a].arch, 3, cases[a].size, cases[a].size, 4);
    spec.width = cases[a].width;
    Net *net = model_build(&spec, 2, NULL);
    /* batchnorm folded into the convs: the same up to float rounding */
    const double diff = predict_vs_forward(net, 6, 6);
    print_message("  %s %d predict vs forward %.3g\n", cases[a].arch, cases[a].size, diff);
    assert_true(diff < 1e-5);
    assert_int_equal(fused_adds(net), cases[a].fused_adds);
    assert_int_equal(pooled_convs(net), direct ? cases[a].pooled : 0);
    int products = 0, separable = 0;
    for (int i = 0; i < net->n_layers; i++) {
      products += conv2d_dnnl_folded_by_product(net->layers[i].dnnl);
      separable += conv2d_dnnl_folded_separable(net->layers[i].dnnl);
    }
    if (direct || !cases[a].separable) assert_int_equal(products, cases[a].products);
    assert_int_equal(separable, direct ? cases[a].separable : 0);
    int concats = 0, gathered = 0;
    for (int i = 0; i < net->n_layers; i++)
      concats += net->layers[i].kind == OP_CONCAT, gathered += net->layers[i].gathered;
    assert_int_equal(gathered, concats); /* densenet's every one; the others have none */
    net_free(net);
  }
}

/* cnn at full width: its first convolution (1 or 3 channels, 16 out), batchnorm, ReLU and
 * max-pool go through conv2d_few in one pass; the probabilities stay net_forward's */
static void test_predict_few_channels(void **state) {
  (void)state;
  for (int channels = 1; channels <= 3; channels += 2) {
    ModelSpec spec = model_spec_default("cnn", channels, 28, 28, 2);
    Net *net = model_build(&spec, 5, NULL);
    assert_true(predict_vs_forward(net, 4, 12) < 1e-5);
    assert_non_null(net->few_scratch); /* the path ran */
    net_free(net);
  }
}

/* The residual adds the convolution does with its sum post-op, in the graphs the models do not
 * build: the identity read again after the add (copied into the add's buffer, not overwritten),
 * and the identity the network's input (outside the inference buffers). */
static int residual_graph(Net *net, int identity_is_input) {
  const int a = net_add_relu(
      net, net_add_bn(net, "bn0", net_add_conv(net, "c0", NET_INPUT, 3, 3, 1, 1, 1, 0)));
  const int b =
      net_add_relu(net, net_add_bn(net, "bn2", net_add_conv(net, "c2", a, 3, 3, 1, 1, 1, 0)));
  const int identity = identity_is_input ? NET_INPUT : a;
  const int t = net_add_bn(net, "bn1", net_add_conv(net, "c1", b, 3, 3, 1, 1, 1, 0));
  int s = net_add_relu(net, net_add_add(net, t, identity));
  if (!identity_is_input) s = net_add_add(net, s, identity); /* identity read after the add */
  return net_add_dense(net, "fc", net_add_flatten(net, net_add_global_avgpool(net, s)), 2);
}

static void test_predict_residual_copies(void **state) {
  (void)state;
  for (int identity_is_input = 0; identity_is_input < 2; identity_is_input++) {
    ModelSpec spec = model_spec_default("cnn", 3, 8, 8, 2);
    snprintf(spec.arch, sizeof spec.arch, "graph");
    Net *net = net_new(&spec);
    residual_graph(net, identity_is_input);
    MrError err = {0};
    assert_int_equal(net_finish(net, &err), STATUS_OK);
    net_init_params(net, 3);
    assert_true(predict_vs_forward(net, 5, 9) < 1e-5);
    assert_int_equal(fused_adds(net), 1);
    net_free(net);
    model_spec_free(&spec);
  }
}

/* A few SGD and Adam steps on a tiny net lower the training loss. */
static void test_optimisers_learn(void **state) {
  (void)state;
  for (int kind = 0; kind < 2; kind++) {
    ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
    spec.depth = 2, spec.base = 4;
    Net *net = model_build(&spec, 1, NULL);
    const int B = 16, in = net_input_size(net);
    float *x = malloc(sizeof(float) * B * in);
    int y[16];
    Rng rng;
    rng_seed(&rng, 4);
    for (int b = 0; b < B; b++) {
      y[b] = b % 2;
      for (int i = 0; i < in; i++) x[b * in + i] = 0.3f * rng_uniform(&rng) + (y[b] ? 0.5f : 0.2f);
    }
    Optimizer opt = {.lr = kind ? 0.01f : 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f};
    assert_int_equal(optim_init(&opt, kind ? OPTIM_ADAM : OPTIM_SGD, net_param_count(net), NULL),
                     STATUS_OK);
    float first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
      net_zero_grad(net);
      last = net_train_step_grads(net, x, y, B, NULL);
      if (step == 0) first = last;
      optim_step(&opt, net_params(net), net_grads(net));
    }
    assert_true(last < 0.5f * first);
    optim_free(&opt);
    free(x);
    net_free(net);
  }
}

/* Data-parallel training's step (BatchShare): two threads playing two processes, each with its
 * own copy of the net and some rows of the batch, get parameter gradients that add up to the
 * whole batch's and losses that add up to its loss, through batchnorm, the loss's normalisers
 * (class weights; per pixel: cross-entropy plus Dice) and dropout's row masks. */
typedef struct {
  Net *net;
  const float *x, *w;
  const int *y;
  int b;
  float loss;
  TestPairSide pair;
  BatchShare share;
} StepSide;

static void *step_side(void *p) {
  StepSide *s = p;
  net_zero_grad(s->net);
  s->loss = net_train_step_grads(s->net, s->x, s->y, s->b, s->w);
  return NULL;
}

static void check_shared_step(ModelSpec spec) {
  enum { B = 5, HALF = 2 };
  MrError err = {0};
  Net *whole = model_build(&spec, 3, &err),
      *net[2] = {model_build(&spec, 3, &err), model_build(&spec, 3, &err)};
  assert_non_null(whole), assert_non_null(net[0]), assert_non_null(net[1]);
  const int n = net_input_size(whole), k = spec.n_classes, P = net_output_pixels(whole);
  float *x = malloc(sizeof(float) * n * B), w[MR_MAX_CLASSES];
  int *y = malloc(sizeof(int) * P * B);
  Rng rng;
  rng_seed(&rng, 5);
  fill_uniform(x, (size_t)n * B, &rng, 0, 1);
  fill_uniform(w, k, &rng, 0.5f, 2.0f);
  for (int i = 0; i < P * B; i++) y[i] = rng_int(&rng, k);
  net_zero_grad(whole);
  const float loss = net_train_step_grads(whole, x, y, B, w);
  static TestPair pair;
  pthread_barrier_init(&pair.barrier, NULL, 2);
  StepSide side[2];
  for (int s = 0; s < 2; s++) {
    const int lo = s ? HALF : 0;
    side[s] = (StepSide){.net = net[s],
                         .x = x + (size_t)n * lo,
                         .w = w,
                         .y = y + (size_t)P * lo,
                         .b = s ? B - HALF : HALF,
                         .pair = {&pair, s}};
    side[s].share = (BatchShare){.sum = test_pair_sum, .ctx = &side[s].pair, .first_row = lo};
    net_set_batch_share(net[s], &side[s].share);
  }
  pthread_t other;
  pthread_create(&other, NULL, step_side, &side[1]);
  step_side(&side[0]);
  pthread_join(other, NULL);
  pthread_barrier_destroy(&pair.barrier);
  assert_float_equal(side[0].loss + side[1].loss, loss, 1e-5 * fabsf(loss));
  const float *g = net_grads(whole), *g0 = net_grads(net[0]), *g1 = net_grads(net[1]);
  double worst = 0.0, largest = 0.0;
  for (size_t i = 0; i < net_param_count(whole); i++) {
    const double d = fabs((double)g0[i] + g1[i] - g[i]);
    if (d > worst) worst = d;
    if (fabs(g[i]) > largest) largest = fabs(g[i]);
  }
  if (!(worst <= 1e-4 * largest))
    fail_msg("%s: the shared batch's gradients are %g from the whole batch's (largest %g)",
             spec.arch, worst, largest);
  free(x), free(y);
  net_free(whole), net_free(net[0]), net_free(net[1]);
}

static void test_shared_batch_step(void **state) {
  (void)state;
  ModelSpec cnn = model_spec_default("cnn", 1, 28, 28, 3);
  cnn.dropout = 0.3f;
  check_shared_step(cnn);
  ModelSpec resnet = model_spec_default("resnet8", 3, 32, 32, 2);
  check_shared_step(resnet);
  ModelSpec unet = model_spec_default("unet", 1, 28, 28, 3);
  unet.depth = 2, unet.base = 8, unet.seg_loss = SEG_LOSS_XENT_DICE;
  check_shared_step(unet);
}

/* b's parameters, batchnorm statistics and counters become a's. */
static void copy_tensors(Net *b, Net *a) {
  for (int i = 0; i < net_tensor_count(a); i++) {
    const TensorRef s = net_tensor(a, i), d = net_tensor(b, i);
    memcpy(d.is_int64 ? (void *)d.idata : (void *)d.data,
           s.is_int64 ? (void *)s.idata : (void *)s.data,
           (s.is_int64 ? sizeof(int64_t) : sizeof(float)) * s.numel);
  }
}

/* Inference keeps the folded convolution weights between calls: after the parameters are
 * written (net_params) or the running statistics move (a training step), its answers are those
 * of a fresh net holding the same numbers, not of the weights it folded before. */
static void test_inference_refolds(void **state) {
  (void)state;
  enum { B = 4 };
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  MrError err = {0};
  Net *net = model_build(&spec, 3, &err), *fresh = model_build(&spec, 4, &err);
  assert_non_null(net), assert_non_null(fresh);
  float x[B * 28 * 28], p1[B * 2], p2[B * 2], p3[B * 2];
  int y[B] = {0, 1, 1, 0};
  Rng rng;
  rng_seed(&rng, 9);
  fill_uniform(x, sizeof x / sizeof x[0], &rng, 0, 1);
  net_predict(net, x, B, p1);
  net_predict(net, x, B, p2); /* from the kept weights */
  assert_memory_equal(p1, p2, sizeof p1);
  float *w = net_params(net);
  for (size_t i = 0; i < 144; i++) w[i] *= -2.0f; /* the first convolution's weights */
  net_predict(net, x, B, p2);
  copy_tensors(fresh, net);
  net_predict(fresh, x, B, p3);
  assert_memory_equal(p2, p3, sizeof p2);
  assert_memory_not_equal(p1, p2, sizeof p1);
  net_predict(net, x, B, p2); /* folded again after copy_tensors' net_tensor calls */
  net_zero_grad(net);
  net_train_step_grads(net, x, y, B, NULL); /* moves the running statistics only */
  net_predict(net, x, B, p1);
  copy_tensors(fresh, net);
  net_predict(fresh, x, B, p3);
  assert_memory_equal(p1, p3, sizeof p1);
  assert_memory_not_equal(p1, p2, sizeof p1);
  net_free(net), net_free(fresh);
}

static void test_optim_closed_form(void **state) {
  (void)state;
  /* SGD momentum: buf1 = g, p1 = p0 - lr*g; buf2 = mu*g + g */
  float p[1] = {1.0f}, g[1] = {0.5f};
  Optimizer sgd = {.lr = 0.1f, .momentum = 0.9f};
  optim_init(&sgd, OPTIM_SGD, 1, NULL);
  optim_step(&sgd, p, g);
  assert_float_equal(p[0], 0.95f, 1e-6);
  optim_step(&sgd, p, g);
  assert_float_equal(p[0], 0.95f - 0.1f * 0.95f, 1e-6);
  optim_free(&sgd);
  /* Adam's first step moves by lr * sign(g) */
  float q[2] = {1.0f, -1.0f}, h[2] = {0.3f, -7.0f};
  Optimizer adam = {.lr = 0.01f};
  optim_init(&adam, OPTIM_ADAM, 2, NULL);
  optim_step(&adam, q, h);
  assert_float_equal(q[0], 0.99f, 1e-5);
  assert_float_equal(q[1], -0.99f, 1e-5);
  optim_free(&adam);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_batch_step),
      cmocka_unit_test(test_inference_refolds),
      cmocka_unit_test(test_grad_cnn),
      cmocka_unit_test(test_grad_cbr_larget),
      cmocka_unit_test(test_grad_vgg),
      cmocka_unit_test(test_grad_resnet_cifar),
      cmocka_unit_test(test_grad_resnet50),
      cmocka_unit_test(test_grad_paper002_families),
      cmocka_unit_test(test_grad_segmentation_families),
      cmocka_unit_test(test_param_counts),
      cmocka_unit_test(test_state_dict_names),
      cmocka_unit_test(test_bad_specs),
      cmocka_unit_test(test_threads_and_seed),
      cmocka_unit_test(test_optimisers_learn),
      cmocka_unit_test(test_optim_closed_form),
      cmocka_unit_test(test_conv_backends_agree),
      cmocka_unit_test(test_pools_fused),
      cmocka_unit_test(test_predict_separable),
      cmocka_unit_test(test_predict_chunks),
      cmocka_unit_test(test_predict_matches_forward),
      cmocka_unit_test(test_predict_nested_concat),
      cmocka_unit_test(test_predict_residual_copies),
      cmocka_unit_test(test_predict_few_channels),
      cmocka_unit_test(test_gradient_buffers_shared),
  };
  return cmocka_run_group_tests_name("models", tests, NULL, NULL);
}
