/* The general graph: every op kind inside small hand-built graphs, checked
 * end to end on every backend (oneDNN channels-last, oneDNN planar, im2col):
 * the outputs agree, the input and parameter gradients of L = <out, R> match
 * finite differences, and the new kernels match naive oracles written here
 * from their definitions. Also the per-pixel losses and the builder's
 * sticky errors. */
#include <omp.h>

#include "nn/net.h"
#include "testutil.h"

#define TOL_GRAPH 2e-2 /* directional, through several float32 layers */

typedef void (*BuildFn)(Net *net);

typedef struct {
  Net *net;
  float *x, *R;
  int B;
  size_t n_out;
} GraphCtx;

static double graph_loss(void *p) {
  GraphCtx *g = p;
  const float *out = net_forward(g->net, g->x, g->B, MODE_EVAL);
  return dot_double(out, g->R, g->n_out);
}

static Net *graph_new(BuildFn build, int c, int h, int w, int k, uint64_t seed) {
  ModelSpec spec = model_spec_default("cnn", c, h, w, k);
  snprintf(spec.arch, sizeof spec.arch, "graph");
  spec.norm_mean[0] = 0.25f, spec.norm_std[0] = 0.5f;
  Net *net = net_new(&spec);
  build(net);
  MrError err = {0};
  if (net_finish(net, &err) != STATUS_OK) fail_msg("build: %s", err.msg);
  net_init_params(net, seed);
  /* batchnorm statistics away from the identity, so eval mode is a real test */
  Rng rng;
  rng_seed(&rng, seed + 1);
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (!l->running_var) continue;
    for (int j = 0; j < shape_c(l->in_shape); j++) {
      l->running_mean[j] = 0.2f * rng_normal(&rng);
      l->running_var[j] = 0.5f + rng_uniform(&rng);
      l->bias[j] = 0.1f * rng_normal(&rng);
    }
  }
  model_spec_free(&spec);
  return net;
}

/* Builds the graph, runs it on the three backends and checks gradients. */
static void check_graph(const char *what, BuildFn build, int c, int h, int w, int k,
                        int expect_channels_last) {
  const int B = 2;
  const ConvBackend backends[3] = {CONV_BACKEND_DNNL, CONV_BACKEND_DNNL_NCHW, CONV_BACKEND_IM2COL};
  Net *net = graph_new(build, c, h, w, k, 11);
  const size_t n_in = (size_t)B * c * h * w;
  const size_t n_out = (size_t)B * k * net_output_pixels(net);
  Rng rng;
  rng_seed(&rng, 5);
  GraphCtx g = {.net = net, .B = B, .n_out = n_out};
  g.x = malloc(4 * n_in), g.R = malloc(4 * n_out);
  fill_distinct(g.x, n_in, &rng, 1.0f);
  for (size_t i = 0; i < n_in; i++) g.x[i] = 0.5f + g.x[i];
  fill_uniform(g.R, n_out, &rng, -1, 1);
  float *ref = malloc(4 * n_out), *dx = malloc(4 * n_in), *dx_ref = malloc(4 * n_in);
  const size_t np = net_param_count(net);
  float *dp_ref = malloc(4 * (np ? np : 1));
  for (int b = 0; b < 3; b++) {
    net_set_conv_backend(net, backends[b]);
    const float *out = net_forward(net, g.x, B, MODE_EVAL);
    assert_non_null(out);
    if (b == 0) {
      if (net->engine.channels_last != expect_channels_last)
        fail_msg("%s: channels-last %d, expected %d", what, net->engine.channels_last,
                 expect_channels_last);
      memcpy(ref, out, 4 * n_out);
    } else if (max_abs_diff(ref, out, n_out) > 1e-4) {
      fail_msg("%s: backend %d output differs by %g", what, b, max_abs_diff(ref, out, n_out));
    }
    net_zero_grad(net);
    net_backward(net, g.R, dx, 1);
    if (b == 0) {
      memcpy(dx_ref, dx, 4 * n_in);
      memcpy(dp_ref, net_grads(net), 4 * np);
    } else {
      if (max_abs_diff(dx_ref, dx, n_in) > 1e-4)
        fail_msg("%s: backend %d input gradient differs", what, b);
      if (np && max_abs_diff(dp_ref, net_grads(net), np) > 1e-3)
        fail_msg("%s: backend %d parameter gradient differs by %g", what, b,
                 max_abs_diff(dp_ref, net_grads(net), np));
    }
    const double ex = gradcheck_directional(graph_loss, &g, g.x, dx, n_in, 1e-2f, 3, &rng);
    if (ex > TOL_GRAPH) fail_msg("%s: backend %d input gradient error %g", what, b, ex);
    if (np) {
      float *dp = malloc(4 * np);
      memcpy(dp, net_grads(net), 4 * np);
      const double ep =
          gradcheck_directional(graph_loss, &g, net_params(net), dp, np, 1e-2f, 3, &rng);
      free(dp);
      if (ep > TOL_GRAPH) fail_msg("%s: backend %d parameter gradient error %g", what, b, ep);
    }
  }
  free(g.x), free(g.R), free(ref), free(dx), free(dx_ref), free(dp_ref);
  net_free(net);
}

/* ---- graphs ---------------------------------------------------------------- */

static void build_conv_geometry(Net *net) {
  OpAttrs a = op_attrs_default();
  a.out_channels = 4, a.kernel[0] = 3, a.kernel[1] = 2, a.stride[0] = 2;
  a.pad[0] = 1, a.pad[3] = 1, a.bias = 1;
  int t = NET_INPUT;
  t = net_add(net, OP_CONV2D, "rect", &t, 1, &a);
  a = op_attrs_default();
  a.out_channels = 4, a.kernel[0] = a.kernel[1] = 3, a.dilation[0] = a.dilation[1] = 2;
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = 2;
  t = net_add(net, OP_CONV2D, "dilated", &t, 1, &a);
  t = net_add_relu(net, net_add_bn(net, "bn", t));
  a = op_attrs_default();
  a.kernel[0] = 2, a.kernel[1] = 3, a.stride[0] = 1, a.stride[1] = 2, a.pad[2] = 1;
  a.dilation[0] = 2; /* nn.MaxPool2d(dilation=(2, 1)) */
  t = net_add(net, OP_MAXPOOL, "", &t, 1, &a);
  t = net_add_conv(net, "dw", t, 4, 3, 1, 1, 4, 1); /* depthwise */
  net_add_conv(net, "head", t, 3, 1, 1, 0, 1, 1);
}

static void build_conv_transpose(Net *net) {
  int t = net_add_conv_transpose(net, "up2", NET_INPUT, 4, 2, 2, 0, 1); /* U-Net's up-convolution */
  OpAttrs a = op_attrs_default();
  a.out_channels = 4, a.groups = 2, a.kernel[0] = a.kernel[1] = 3;
  a.stride[0] = a.stride[1] = 2, a.output_padding[0] = a.output_padding[1] = 1;
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = 1;
  t = net_add(net, OP_CONV_TRANSPOSE2D, "grouped", &t, 1, &a);
  net_add_conv(net, "head", net_add_relu(net, t), 3, 3, 1, 1, 1, 1);
}

static void build_concat_upsample(Net *net) {
  const int a = net_add_conv(net, "a", NET_INPUT, 3, 3, 1, 1, 1, 1);
  const int b = net_add_conv(net, "b", NET_INPUT, 2, 3, 2, 1, 1, 1);
  const int b_up = net_add_upsample(net, b, 2, UPSAMPLE_BILINEAR);
  const int a_near = net_add_upsample(net, net_add_maxpool(net, a, 2, 2, 0), 2, UPSAMPLE_NEAREST);
  const int parts[4] = {a, b_up, a_near, a}; /* a twice: its gradient is the sum */
  const int cat = net_add_concat(net, parts, 4);
  OpAttrs up = op_attrs_default();
  up.scale[0] = 2, up.scale[1] = 3, up.mode = UPSAMPLE_BILINEAR;
  int t = net_add(net, OP_UPSAMPLE, "", &cat, 1, &up);
  net_add_conv(net, "head", t, 2, 3, 2, 1, 1, 1);
}

/* squeeze-and-excitation style gating and per-pixel scaling: broadcasting */
static void build_elementwise(Net *net) {
  const int t = net_add_conv(net, "c", NET_INPUT, 4, 3, 1, 1, 1, 1);
  const int gate = net_add(
      net, OP_SIGMOID, "",
      (int[]){net_add_conv(net, "se", net_add_global_avgpool(net, t), 4, 1, 1, 0, 1, 1)}, 1, NULL);
  const int gated = net_add(net, OP_MUL, "", (int[]){t, gate}, 2, NULL);
  OpAttrs k = op_attrs_default();
  k.value = -1.0f; /* sub -1: + 1, so the divisor stays in (1, 2) */
  const int pix =
      net_add(net, OP_SIGMOID, "", (int[]){net_add_conv(net, "px", t, 1, 1, 1, 0, 1, 1)}, 1, NULL);
  const int denom = net_add(net, OP_SUB, "", &pix, 1, &k);
  int u = net_add(net, OP_DIV, "", (int[]){gated, denom}, 2, NULL);
  u = net_add(net, OP_SUB, "", (int[]){u, gate}, 2, NULL);
  OpAttrs c6 = op_attrs_default();
  c6.lo = 0.0f, c6.hi = 0.6f; /* a ReLU6 scaled to the range these values reach */
  u = net_add(net, OP_CLIP, "", &u, 1, &c6);
  k.value = 2.5f;
  u = net_add(net, OP_MUL, "", &u, 1, &k);
  u = net_add(net, OP_DIV, "", &u, 1, &k);
  k.value = 0.1f; /* leaky ReLU's negative slope */
  u = net_add(net, OP_LEAKY_RELU, "", (int[]){net_add(net, OP_SUB, "", (int[]){u, gate}, 2, NULL)},
              1, &k);
  net_add_conv(net, "head", u, 2, 3, 1, 1, 1, 1);
}

/* a classifier head on flat tensors: dense, dropout (eval), broadcast scalar */
static void build_flat(Net *net) {
  int t = net_add_flatten(net, net_add_avgpool(net, NET_INPUT, 2, 2, 0));
  t = net_add_dense(net, "fc1", t, 6);
  const int s = net_add_dense(net, "scale", t, 1);
  t = net_add(net, OP_MUL, "", (int[]){t, net_add(net, OP_SIGMOID, "", &s, 1, NULL)}, 2, NULL);
  t = net_add_dropout(net, net_add_relu(net, t), 0.3f);
  net_add_dense(net, "fc2", t, 3);
}

/* a residual block with the option-A shortcut on the channels-last path */
static void build_residual(Net *net) {
  int t = net_add_relu(
      net, net_add_bn(net, "bn0", net_add_conv(net, "c0", NET_INPUT, 2, 3, 1, 1, 1, 0)));
  int u = net_add_bn(net, "bn1", net_add_conv(net, "c1", t, 4, 3, 2, 1, 1, 0));
  u = net_add_relu(net, net_add_add(net, u, net_add_shortcut_pad(net, t, 4, 2)));
  net_add_dense(net, "fc", net_add_flatten(net, net_add_global_avgpool(net, u)), 3);
}

/* one of every op kind, in one graph */
static void build_every_op(Net *net) {
  int t =
      net_add_relu(net, net_add_bn(net, "bn", net_add_conv(net, "c", NET_INPUT, 4, 3, 1, 1, 1, 0)));
  const int u = net_add_conv_transpose(net, "up", net_add_maxpool(net, t, 2, 2, 0), 4, 2, 2, 0, 1);
  const int a = net_add_add(net, t, u);
  const int sc = net_add_shortcut_pad(net, a, 6, 2);
  const int up = net_add_upsample(net, net_add_avgpool(net, a, 2, 2, 0), 2, UPSAMPLE_NEAREST);
  const int cat = net_add_concat(net, (int[]){a, up}, 2);
  const int gate =
      net_add(net, OP_SIGMOID, "",
              (int[]){net_add_conv(net, "se", net_add_global_avgpool(net, cat), 8, 1, 1, 0, 1, 1)},
              1, NULL);
  OpAttrs k = op_attrs_default();
  k.lo = -0.5f, k.hi = 0.5f, k.value = 2.0f;
  int m = net_add(net, OP_MUL, "", (int[]){cat, gate}, 2, NULL);
  m = net_add(net, OP_CLIP, "", &m, 1, &k);
  m = net_add(net, OP_DIV, "", &m, 1, &k);
  m = net_add(net, OP_SUB, "", (int[]){m, gate}, 2, NULL);
  k.value = 0.2f;
  m = net_add(net, OP_LEAKY_RELU, "", &m, 1, &k);
  const int f1 = net_add_flatten(net, net_add_global_avgpool(net, m));
  const int f2 = net_add_flatten(net, net_add_global_avgpool(net, sc));
  t = net_add_dropout(net, net_add_concat(net, (int[]){f1, f2}, 2), 0.25f);
  net_add_dense(net, "fc", t, 3);
}

static void test_graph_ops(void **state) {
  (void)state;
  check_graph("conv geometry", build_conv_geometry, 2, 9, 8, 3, 1);
  check_graph("conv transpose", build_conv_transpose, 2, 4, 5, 3, 1);
  check_graph("concat + upsample", build_concat_upsample, 1, 6, 6, 2, 1);
  check_graph("elementwise", build_elementwise, 3, 5, 6, 2, 1);
  check_graph("flat head", build_flat, 1, 6, 6, 3, 1);
  check_graph("residual", build_residual, 3, 6, 6, 3, 1);
  check_graph("every op", build_every_op, 2, 8, 8, 3, 1);
}

/* A hand-built graph with every op kind, and a segmentation net, through a
 * model file: the same graph, the same parameters, bitwise the same outputs. */
static void round_trip_file(Net *net, const char *path) {
  const int B = 2;
  const size_t n_in = (size_t)B * net_input_size(net);
  const size_t n_out = (size_t)B * net_num_classes(net) * net_output_pixels(net);
  float *x = malloc(4 * n_in), *before = malloc(4 * n_out);
  Rng rng;
  rng_seed(&rng, 3);
  fill_uniform(x, n_in, &rng, 0, 1);
  memcpy(before, net_forward(net, x, B, MODE_EVAL), 4 * n_out);
  MrError err = {0};
  if (safetensors_save_net(net, path, &err) != STATUS_OK) fail_msg("%s", err.msg);
  Net *loaded = safetensors_load_net(path, &err);
  if (!loaded) fail_msg("%s", err.msg);
  char *g1 = graph_to_json(net), *g2 = graph_to_json(loaded);
  assert_string_equal(g1, g2);
  free(g1), free(g2);
  assert_int_equal(net_param_count(loaded), net_param_count(net));
  assert_memory_equal(net_params(loaded), net_params(net), 4 * net_param_count(net));
  assert_int_equal(net_output_pixels(loaded), net_output_pixels(net));
  assert_int_equal(net_spec(loaded)->seg_loss, net_spec(net)->seg_loss);
  assert_int_equal(net_spec(loaded)->ignore_label, net_spec(net)->ignore_label);
  assert_memory_equal(net_forward(loaded, x, B, MODE_EVAL), before, 4 * n_out);
  net_free(loaded);
  free(x), free(before);
}

static void seg_head(Net *net) {
  const int e = net_add_relu(net, net_add_conv(net, "enc", NET_INPUT, 4, 3, 1, 1, 1, 1));
  const int d = net_add_conv_transpose(net, "dec", net_add_maxpool(net, e, 2, 2, 0), 4, 2, 2, 0, 1);
  net_add_conv(net, "out", net_add_concat(net, (int[]){e, d}, 2), 3, 1, 1, 0, 1, 1);
}

static void test_graph_file_round_trip(void **state) {
  (void)state;
  char dir[64], path[128];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "graph"), 0);
  snprintf(path, sizeof path, "%s/every.safetensors", dir);
  Net *net = graph_new(build_every_op, 2, 8, 8, 3, 21);
  int seen[OP_KIND_COUNT] = {0};
  for (int i = 0; i < net->n_layers; i++) seen[net->layers[i].kind] = 1;
  for (int k = 0; k < OP_KIND_COUNT; k++)
    if (!seen[k]) fail_msg("op %s missing from the every-op graph", op_def((OpKind)k)->name);
  round_trip_file(net, path);
  net_free(net);
  net = graph_new(seg_head, 1, 8, 6, 3, 22);
  net->spec.seg_loss = SEG_LOSS_XENT_DICE, net->spec.ignore_label = 255;
  round_trip_file(net, path);
  net_free(net);
  remove_dir(dir);
}

/* ---- the new kernels against definitions ------------------------------------ */

/* PyTorch's ConvTranspose2d by its definition: every input pixel scatters
 * its weighted kernel into the output. */
static void conv_transpose_naive(float *out, const float *x, const float *w, const float *bias,
                                 int B, int C, int H, int W, int OC, int OH, int OW, int K, int s,
                                 int p, int g) {
  const int Cg = C / g, OCg = OC / g;
  for (size_t i = 0; i < (size_t)B * OC * OH * OW; i++) out[i] = 0.0f;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int ih = 0; ih < H; ih++)
        for (int iw = 0; iw < W; iw++)
          for (int o = 0; o < OCg; o++)
            for (int kh = 0; kh < K; kh++)
              for (int kw = 0; kw < K; kw++) {
                const int oh = ih * s - p + kh, ow = iw * s - p + kw, oc = (c / Cg) * OCg + o;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                out[(((size_t)b * OC + oc) * OH + oh) * OW + ow] +=
                    x[(((size_t)b * C + c) * H + ih) * W + iw] *
                    w[(((size_t)c * OCg + o) * K + kh) * K + kw];
              }
  for (int b = 0; b < B; b++)
    for (int oc = 0; oc < OC; oc++)
      for (int i = 0; i < OH * OW; i++) out[((size_t)b * OC + oc) * OH * OW + i] += bias[oc];
}

static void single_convt(Net *net) {
  OpAttrs a = op_attrs_default();
  a.out_channels = 4, a.groups = 2, a.kernel[0] = a.kernel[1] = 3, a.bias = 1;
  a.stride[0] = a.stride[1] = 2, a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = 1;
  a.output_padding[0] = a.output_padding[1] = 1;
  net_add(net, OP_CONV_TRANSPOSE2D, "t", (int[]){NET_INPUT}, 1, &a);
}

static void test_conv_transpose_oracle(void **state) {
  (void)state;
  Net *net = graph_new(single_convt, 2, 4, 5, 4, 3);
  const Shape out = net_tensor_shape(net, net_last(net));
  assert_int_equal(shape_h(out), 8); /* (4-1)*2 - 2 + 3 + 1 */
  assert_int_equal(shape_w(out), 10);
  const int B = 2;
  float x[2 * 2 * 4 * 5], *want = malloc(4 * B * 4 * 8 * 10), *xn = malloc(sizeof x);
  Rng rng;
  rng_seed(&rng, 2);
  fill_uniform(x, sizeof x / 4, &rng, 0, 1);
  const ModelSpec *s = net_spec(net);
  for (size_t i = 0; i < sizeof x / 4; i++) {
    const int ch = (int)(i / 20) % 2;
    xn[i] = (x[i] - s->norm_mean[ch]) / s->norm_std[ch];
  }
  const Layer *l = &net->layers[0];
  conv_transpose_naive(want, xn, l->weight, l->bias, B, 2, 4, 5, 4, 8, 10, 3, 2, 1, 2);
  const ConvBackend backends[3] = {CONV_BACKEND_DNNL, CONV_BACKEND_DNNL_NCHW, CONV_BACKEND_IM2COL};
  for (int b = 0; b < 3; b++) {
    net_set_conv_backend(net, backends[b]);
    const float *got = net_forward(net, x, B, MODE_EVAL);
    assert_true(max_abs_diff(want, got, (size_t)B * 4 * 80) < 1e-4);
  }
  free(want), free(xn);
  net_free(net);
}

/* torch.nn.Upsample(scale_factor, mode="bilinear", align_corners=False) by
 * its formula, in double */
static double bilinear_at(const float *plane, int H, int W, int s_h, int s_w, int oh, int ow) {
  double sh = (oh + 0.5) / s_h - 0.5, sw = (ow + 0.5) / s_w - 0.5;
  if (sh < 0) sh = 0;
  if (sw < 0) sw = 0;
  const int h0 = (int)sh, w0 = (int)sw, h1 = h0 < H - 1 ? h0 + 1 : h0,
            w1 = w0 < W - 1 ? w0 + 1 : w0;
  const double lh = sh - h0, lw = sw - w0;
  return (1 - lh) * ((1 - lw) * plane[h0 * W + w0] + lw * plane[h0 * W + w1]) +
         lh * ((1 - lw) * plane[h1 * W + w0] + lw * plane[h1 * W + w1]);
}

static void test_upsample_oracle(void **state) {
  (void)state;
  const int B = 2, C = 3, H = 4, W = 5, SH = 2, SW = 3;
  float x[2 * 3 * 4 * 5], out[2 * 3 * 8 * 15], nhwc_in[2 * 3 * 4 * 5], nhwc_out[2 * 3 * 8 * 15],
      back[2 * 3 * 8 * 15];
  Rng rng;
  rng_seed(&rng, 4);
  fill_uniform(x, sizeof x / 4, &rng, -1, 1);
  for (int bil = 0; bil < 2; bil++) {
    UpsampleDims d = {.B = B, .C = C, .H = H, .W = W, .SH = SH, .SW = SW, .bilinear = bil};
    upsample_forward(out, x, d);
    for (int p = 0; p < B * C; p++)
      for (int oh = 0; oh < H * SH; oh++)
        for (int ow = 0; ow < W * SW; ow++) {
          const float *plane = x + (size_t)p * H * W;
          const double want =
              bil ? bilinear_at(plane, H, W, SH, SW, oh, ow) : plane[(oh / SH) * W + ow / SW];
          assert_true(fabs(want - out[((size_t)p * H * SH + oh) * W * SW + ow]) < 1e-6);
        }
    /* channels-last gives the transposed result */
    nchw_to_nhwc(nhwc_in, 0, x, B, C, H * W);
    d.channels_last = 1;
    upsample_forward(nhwc_out, nhwc_in, d);
    nhwc_to_nchw(back, 0, nhwc_out, B, C, H * SH * W * SW);
    assert_true(max_abs_diff(back, out, sizeof out / 4) < 1e-6);
  }
}

/* ---- per-pixel losses ------------------------------------------------------- */

typedef struct {
  Net *net;
  float *logits, *dl;
  const int *y;
  const float *w;
  int B, per_sample;
} LossCtx;

static double seg_loss(void *p) {
  LossCtx *c = p;
  const double v = net_loss(c->net, c->logits, c->y, c->w, c->B, c->per_sample, c->dl);
  return c->per_sample ? v * c->B : v; /* per_sample returns the mean of the summed losses */
}

static void identity_head(Net *net) {
  OpAttrs one = op_attrs_default();
  one.value = 1.0f;
  net_add(net, OP_MUL, "", (int[]){NET_INPUT}, 1, &one);
}

static void test_pixel_losses(void **state) {
  (void)state;
  const int B = 2, K = 3, H = 4, W = 5, P = H * W;
  Net *net = graph_new(identity_head, K, H, W, K, 1);
  assert_int_equal(net_output_pixels(net), P);
  assert_int_equal(net_plan(net, B, NULL), STATUS_OK);
  net->spec.ignore_label = 7;
  Rng rng;
  rng_seed(&rng, 9);
  float logits[2 * 3 * 20], dl[2 * 3 * 20], grad[2 * 3 * 20];
  int y[2 * 20];
  fill_uniform(logits, sizeof logits / 4, &rng, -2, 2);
  for (int i = 0; i < B * P; i++) y[i] = i % 6 == 5 ? 7 : rng_int(&rng, K);
  const float weights[3] = {1.0f, 2.0f, 0.5f};
  const SegLoss kinds[3] = {SEG_LOSS_XENT, SEG_LOSS_DICE, SEG_LOSS_XENT_DICE};
  for (int kk = 0; kk < 3; kk++)
    for (int ps = 0; ps < 2; ps++)
      for (int wt = 0; wt < 2; wt++) {
        net->spec.seg_loss = kinds[kk];
        LossCtx c = {net, logits, dl, y, wt ? weights : NULL, B, ps};
        seg_loss(&c);
        memcpy(grad, dl, sizeof grad);
        const double e = gradcheck(seg_loss, &c, logits, grad, NULL, sizeof logits / 4, 1e-3f);
        if (e > 5e-3) fail_msg("loss %d per_sample %d weights %d: error %g", kk, ps, wt, e);
        /* ignored pixels get no gradient */
        for (int b = 0; b < B; b++)
          for (int px = 0; px < P; px++)
            if (y[b * P + px] == 7)
              for (int j = 0; j < K; j++) assert_true(grad[((size_t)b * K + j) * P + px] == 0.0f);
      }
  /* per image: an image's gradient does not depend on the other images */
  net->spec.seg_loss = SEG_LOSS_XENT_DICE;
  net_loss(net, logits, y, NULL, B, 1, dl);
  float alone[3 * 20];
  memcpy(alone, dl, sizeof alone);
  net_loss(net, logits, y, NULL, 1, 1, dl);
  assert_true(max_abs_diff(alone, dl, 3 * 20) < 1e-7);
  /* a perfect, confident prediction has a loss near 0 */
  for (int b = 0; b < B; b++)
    for (int px = 0; px < P; px++)
      for (int j = 0; j < K; j++)
        logits[((size_t)b * K + j) * P + px] = (y[b * P + px] == j) ? 30.0f : -30.0f;
  assert_true(net_loss(net, logits, y, NULL, B, 0, dl) < 0.05f);
  net_free(net);
}

/* ---- builder errors ---------------------------------------------------------- */

static void test_sticky_build_errors(void **state) {
  (void)state;
  ModelSpec spec = model_spec_default("cnn", 1, 8, 8, 2);
  Net *net = net_new(&spec);
  /* a 9x9 kernel does not fit 8x8: the error is kept, later calls are no-ops */
  const int bad = net_add_conv(net, "too_big", NET_INPUT, 4, 9, 1, 0, 1, 0);
  assert_int_equal(bad, -1);
  assert_int_equal(net_add_relu(net, bad), -1);
  assert_int_equal(net_add_conv(net, "fine", NET_INPUT, 2, 3, 1, 1, 1, 0), -1);
  MrError err = {0};
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "too_big"));
  net_free(net);
  /* more input channels than the normalisation holds */
  ModelSpec four = model_spec_default("cnn", 4, 8, 8, 2);
  net = net_new(&four);
  net_add_dense(net, "fc", net_add_flatten(net, NET_INPUT), 2);
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "4 input channels"));
  net_free(net);
  model_spec_free(&four);
  /* an input that does not exist, a wrong input count, a shape mismatch */
  net = net_new(&spec);
  assert_int_equal(net_add_relu(net, 5), -1);
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "does not exist"));
  net_free(net);
  net = net_new(&spec);
  assert_int_equal(net_add(net, OP_ADD, "", (int[]){NET_INPUT}, 1, NULL), -1);
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "inputs"));
  net_free(net);
  net = net_new(&spec);
  const int a = net_add_conv(net, "a", NET_INPUT, 2, 3, 2, 1, 1, 0);
  assert_int_equal(net_add_concat(net, (int[]){NET_INPUT, a}, 2), -1);
  assert_int_equal(net_finish(net, &err), STATUS_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "only channels may differ"));
  net_free(net);
  /* the input id is an ordinary tensor: tensor 0, never -1 */
  assert_int_equal(NET_INPUT, 0);
  model_spec_free(&spec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_graph_ops),           cmocka_unit_test(test_conv_transpose_oracle),
      cmocka_unit_test(test_upsample_oracle),     cmocka_unit_test(test_pixel_losses),
      cmocka_unit_test(test_sticky_build_errors), cmocka_unit_test(test_graph_file_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
