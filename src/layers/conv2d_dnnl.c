/* conv2d through oneDNN (Debian libdnnl): the fast path. Channels-last tensors
 * go to the primitives as they are (planar ones are reordered into the blocked
 * layouts oneDNN's direct JIT kernels want and back, as PyTorch does);
 * pointwise convolutions' passes run as oneDNN sgemm calls where that measured
 * faster (below), and 3x3 "same" convolutions' passes by hand-written kernels: conv2d_direct's,
 * conv2d_narrow's forward into 12 channels, conv2d_depthwise's (direct_kernels, direct_plan).
 * Reorders into our gradients use a
 * sum post-op so backward accumulates (+=) like every other op. Primitives
 * are built once per layer and batch size; blocked buffers are shared by all
 * layers (ConvDnnlWorkspace), since layers run one at a time. */
#include <dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

#define CHECK_DNNL(call)                      \
  do {                                        \
    if ((call) != dnnl_success) goto failure; \
  } while (0)

static dnnl_engine_t engine;
static dnnl_stream_t stream;

/* A reorder between our plain layout and a primitive's, NULL when they match. */
typedef struct {
  dnnl_primitive_t prim;
  dnnl_memory_t from, to;
} Reorder;

/* What runs inference's convolution with a batchnorm folded in: a oneDNN primitive with its
 * post-ops; conv2d_direct's or conv2d_narrow's kernel; or, for a pointwise layer with few rows,
 * a matrix product on weights kept transposed (pointwise_fold_by_product); or, for a pointwise
 * layer reading a depthwise one, conv2d_separable's product on weights kept in panels, alone or
 * with the depthwise layer (conv2d_dnnl_enable_folded_separable). */
typedef enum { FOLD_NONE, FOLD_PRIMITIVE, FOLD_DIRECT, FOLD_PRODUCT, FOLD_PANELS } FoldKind;

/* A hand-written kernel's passes (direct_plan takes the first row whose forward supports the
 * layer); NULL members: that pass stays oneDNN's. */
typedef struct {
  int (*supported)(Conv2dDims d);
  size_t (*packed_floats)(Conv2dDims d);
  void (*pack)(float *packed, const float *weight, Conv2dDims d);
  void (*forward)(float *out, const float *inp, const float *packed, const float *bias,
                  Conv2dDims d, int sum, int relu);
  int (*input_grad_supported)(Conv2dDims d);
  /* dinp (+)= the input gradient, the weights packed into packed first */
  void (*input_grad)(float *dinp, float *packed, const float *dout, const float *weight,
                     Conv2dDims d, int accumulate);
  int (*wgrad_supported)(Conv2dDims d);
  size_t (*wgrad_floats)(Conv2dDims d, int slices);
  void (*weight_grad)(float *dweight, float *partials, const float *dout, const float *inp,
                      Conv2dDims d, int slices);
  int pools; /* inference's folded forward can do the 2x2 max-pool (conv2d_direct_pool2) */
} DirectKernel;

static const DirectKernel direct_kernels[] = {
    {conv2d_narrow_supported, conv2d_narrow_packed_floats, conv2d_narrow_pack,
     conv2d_narrow_forward, NULL, NULL, NULL, NULL, NULL, 0},
    {conv2d_depthwise_supported, conv2d_depthwise_packed_floats, conv2d_depthwise_pack,
     conv2d_depthwise_forward, conv2d_depthwise_input_grad_supported, conv2d_depthwise_input_grad,
     NULL, NULL, NULL, 0},
    {conv2d_direct_supported, conv2d_direct_packed_floats, conv2d_direct_pack,
     conv2d_direct_forward, conv2d_direct_transposed_supported, conv2d_direct_input_grad,
     conv2d_direct_wgrad_supported, conv2d_direct_wgrad_floats, conv2d_direct_weight_grad, 1},
    {0},
};

struct ConvDnnl {
  Conv2dDims d;
  int has_bias, channels_last;
  /* a pointwise convolution: its backward (POINTWISE_BACKWARD), or forward too (POINTWISE_ALL),
   * as matrix products */
  int pointwise;
  /* which passes the direct kernel runs: DIRECT_FORWARD (training's and the folded one),
   * DIRECT_BACKWARD_DATA, DIRECT_WEIGHT_GRAD */
  unsigned direct;
  const DirectKernel *kernel; /* the direct passes' kernel, when direct */
  int wgrad_slices; /* the pointwise or direct weight gradient's sum, in this many slices */
  dnnl_primitive_desc_t fwd_pd, bwd_data_pd, bwd_weights_pd;
  dnnl_primitive_t fwd, bwd_data, bwd_weights;
  /* memories at the primitives' layouts (handles set per call) */
  dnnl_memory_t src, wei, bias, dst;                /* forward */
  dnnl_memory_t bd_wei, bd_ddst, bd_dsrc;           /* backward data */
  dnnl_memory_t bw_src, bw_ddst, bw_dwei, bw_dbias; /* backward weights */
  Reorder r_src, r_wei, r_dst, r_bd_wei, r_bd_ddst, r_bw_src, r_bw_ddst, r_bw_dwei;
  Reorder r_bd_dsrc_add, r_bd_dsrc_set; /* diff_src into our gradient: += or = */
  int ddst_shared; /* backward data and weights read diff_dst in one layout: reorder it once */
  /* inference with a batchnorm folded in (and maybe a ReLU post-op) */
  dnnl_primitive_desc_t fold_pd;
  dnnl_primitive_t fold;
  dnnl_memory_t fold_src, fold_wei, fold_bias, fold_dst;
  Reorder r_fold_src, r_fold_wei, r_fold_dst;
  /* the folded weights in the primitive's layout and the folded bias, kept between calls
   * (conv2d_dnnl_set_folded): inference reorders them once, not every batch */
  void *fold_weights;
  float *fold_biases;
  uint64_t fold_version; /* the caller's version of the weights they came from; 0: none */
  int fold_sums;         /* the folded primitive adds dst's contents (a residual add) */
  FoldKind fold_kind;    /* what runs the folded convolution, once enabled */
  int fold_relu;         /* the direct kernel's or the product's ReLU (oneDNN's: a post-op) */
  int fold_threads;      /* FOLD_PANELS: the threads conv2d_separable's scratch is sized for */
  size_t bytes[CONV_WS_COUNT];
};

static int dnnl_ready(void) {
  if (engine) return 1;
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return 0;
  if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(engine);
    engine = NULL;
    return 0;
  }
  return 1;
}

static void reorder_free(Reorder *r) {
  if (r->prim) dnnl_primitive_destroy(r->prim);
  if (r->from) dnnl_memory_destroy(r->from);
  if (r->to) dnnl_memory_destroy(r->to);
  memset(r, 0, sizeof *r);
}

/* Builds a reorder from -> to (accumulating into `to` if accumulate), or
 * leaves it empty when the layouts are the same and no sum is needed. */
static int reorder_make(Reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        int accumulate) {
  memset(r, 0, sizeof *r);
  if (!accumulate && dnnl_memory_desc_equal(from, to)) return 1;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  dnnl_primitive_desc_t pd = NULL;
  int ok = 0;
  if (accumulate) {
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) goto done;
    if (dnnl_post_ops_create(&ops) != dnnl_success) goto done;
    if (dnnl_post_ops_append_sum(ops, 1.0f) != dnnl_success) goto done;
    if (dnnl_primitive_attr_set_post_ops(attr, ops) != dnnl_success) goto done;
  }
  if (dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr) != dnnl_success)
    goto done;
  if (dnnl_primitive_create(&r->prim, pd) != dnnl_success) goto done;
  if (dnnl_memory_create(&r->from, from, engine, DNNL_MEMORY_NONE) != dnnl_success) goto done;
  if (dnnl_memory_create(&r->to, to, engine, DNNL_MEMORY_NONE) != dnnl_success) goto done;
  ok = 1;
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (ops) dnnl_post_ops_destroy(ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) reorder_free(r);
  return ok;
}

static void reorder_run(Reorder *r, const void *from, void *to) {
  dnnl_memory_set_data_handle(r->from, (void *)from);
  dnnl_memory_set_data_handle(r->to, to);
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
  dnnl_primitive_execute(r->prim, stream, 2, args);
}

/* Returns the buffer a primitive should read `plain` from: `plain` itself if
 * no reorder is needed, else the reordered copy in workspace slot `ws`. */
static void *reorder_in(Reorder *r, const void *plain, void *ws) {
  if (!r->prim) return (void *)plain;
  reorder_run(r, plain, ws);
  return ws;
}

static dnnl_memory_t memory_at(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
  dnnl_memory_t m = NULL;
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
  if (md && dnnl_memory_create(&m, md, engine, DNNL_MEMORY_NONE) != dnnl_success) m = NULL;
  return m;
}

static size_t md_bytes(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
  return dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, what, 0));
}

/* the folded primitive and what goes with it, back to none */
static void fold_release(ConvDnnl *c) {
  if (c->fold) dnnl_primitive_destroy(c->fold);
  if (c->fold_pd) dnnl_primitive_desc_destroy(c->fold_pd);
  dnnl_memory_t fold_mems[] = {c->fold_src, c->fold_wei, c->fold_bias, c->fold_dst};
  for (int i = 0; i < 4; i++)
    if (fold_mems[i]) dnnl_memory_destroy(fold_mems[i]);
  reorder_free(&c->r_fold_src), reorder_free(&c->r_fold_wei), reorder_free(&c->r_fold_dst);
  free(c->fold_weights), free(c->fold_biases);
  c->fold = NULL, c->fold_pd = NULL;
  c->fold_src = c->fold_wei = c->fold_bias = c->fold_dst = NULL;
  c->fold_weights = NULL, c->fold_biases = NULL, c->fold_version = 0, c->fold_sums = 0;
  c->fold_kind = FOLD_NONE, c->fold_relu = 0;
}

void conv2d_dnnl_free(ConvDnnl *c) {
  if (!c) return;
  dnnl_primitive_t prims[] = {c->fwd, c->bwd_data, c->bwd_weights};
  for (int i = 0; i < 3; i++)
    if (prims[i]) dnnl_primitive_destroy(prims[i]);
  dnnl_primitive_desc_t pds[] = {c->fwd_pd, c->bwd_data_pd, c->bwd_weights_pd};
  for (int i = 0; i < 3; i++)
    if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
  fold_release(c);
  dnnl_memory_t mems[] = {c->src,     c->wei,    c->bias,    c->dst,     c->bd_wei,  c->bd_ddst,
                          c->bd_dsrc, c->bw_src, c->bw_ddst, c->bw_dwei, c->bw_dbias};
  for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
    if (mems[i]) dnnl_memory_destroy(mems[i]);
  Reorder *rs[] = {&c->r_src,         &c->r_wei,        &c->r_dst,     &c->r_bd_wei,
                   &c->r_bd_ddst,     &c->r_bw_src,     &c->r_bw_ddst, &c->r_bw_dwei,
                   &c->r_bd_dsrc_add, &c->r_bd_dsrc_set};
  for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) reorder_free(rs[i]);
  free(c);
}

/* The memory descriptors of one convolution: "any" layouts for the
 * primitives to choose, our plain NCHW/GOIHW ones, and the geometry. With
 * channels_last, activations are NHWC on both sides: forcing the primitives
 * onto it costs their kernels a few percent (measured on ResNet-20) and
 * saves every activation reorder, a fifth of a training step.
 *
 * `alias` describes the same NHWC bytes another way: one channel is also NCHW, and 16 channels
 * are also oneDNN's blocked nChw16c. Offered those, oneDNN picks its blocked direct kernels,
 * which beat the NHWC brgconv ones on small maps: cnn's 1->16 channel 3x3 convolution on 28x28
 * images took 0.17 ms per batch of 128 instead of 0.65 (bench_engine --profile; bench/RESULTS.md,
 * session 12). */
typedef struct {
  dnnl_memory_desc_t src_any, dst_any, wei_any, bias, src_plain, dst_plain, wei_plain;
  dnnl_dims_t strides, dilates, pad, pad_r;
} ConvDescs;

/* The layouts a primitive may be offered, in the order tried (best first):
 * - BLOCKED: nChw16c, with the input and output reordered around the call. Only forward
 *   primitives, only for kernels of 5x5 and up on maps smaller than the kernel (OH*OW <
 *   KH*KW): there the NHWC kernels spend their time on padding taps. (3x3 kernels on 1x1 and
 *   2x2 maps, cnn's and mobilenet's last layers, measured no better.) cbr-larget's 7x7 convolution
 * of 256 to 512 channels on 4x4 maps ran 88 ms per batch of 128 blocked against 250 NHWC
 *   (DNNL_VERBOSE), and the two reorders move 6 MB.
 * - ALIAS: the same NHWC bytes described as NCHW (1 channel) or nChw16c (16), above.
 * - PLAIN: NHWC (channels_last) or oneDNN's choice around NCHW. */
enum { LAYOUT_PLAIN, LAYOUT_ALIAS, LAYOUT_BLOCKED, LAYOUT_COUNT };

static int avx512(void) {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

/* Which layouts exist for this convolution. The alias needs both sides to have one and the
 * CPU's blocked kernels to use 16 lanes. */
static void layouts_offered(Conv2dDims d, int channels_last, unsigned char offered[]) {
  offered[LAYOUT_PLAIN] = 1;
  offered[LAYOUT_ALIAS] = channels_last && (d.C == 1 || d.C == 16) && d.OC == 16 && avx512();
  offered[LAYOUT_BLOCKED] =
      channels_last && d.KH * d.KW >= 25 && d.OH * d.OW < d.KH * d.KW && avx512();
}

static dnnl_format_tag_t activation_tag(int channels, int channels_last, int layout, int any) {
  if (!channels_last) return any ? dnnl_format_tag_any : dnnl_nchw;
  if (layout == LAYOUT_ALIAS) return channels == 1 ? dnnl_nchw : dnnl_nChw16c;
  if (layout == LAYOUT_BLOCKED && any) return dnnl_nChw16c; /* "any" may still pick NHWC */
  return dnnl_nhwc;
}

/* The taps of one kernel axis that some output reaches inside the image, [*first, *last].
 * A kernel larger than its map (cbr-larget's 7x7 on 2x2 maps, a 3x3 on a 1x1 map) has rows
 * that only ever meet padding: they add zeros, yet oneDNN runs them all. */
static void taps_reached(int in, int out, int kernel, int stride, int pad, int dilation, int *first,
                         int *last) {
  *first = kernel, *last = -1;
  for (int k = 0; k < kernel; k++)
    for (int o = 0; o < out; o++) {
      const int i = o * stride - pad + k * dilation;
      if (i >= 0 && i < in) {
        if (k < *first) *first = k;
        *last = k;
        break;
      }
    }
}

/* The same convolution without the taps that only meet padding: the cropped kernel starts at
 * tap (*kh0, *kw0) of the stored one, and the padding shrinks by what was cut. Outputs are the
 * same sums without their zero terms; the cut taps' weight gradient is zero. cbr-larget 28x28's
 * last convolution (7x7, 256 to 512 channels, 2x2 maps) becomes a 3x3 one: its backward-data
 * pass took 104 ms per batch of 128 in oneDNN's gemm kernel. Returns d unchanged when nothing
 * can be cut. */
static Conv2dDims taps_cropped(Conv2dDims d, int *kh0, int *kw0) {
  int h0, h1, w0, w1;
  taps_reached(d.H, d.OH, d.KH, d.SH, d.PT, d.DH, &h0, &h1);
  taps_reached(d.W, d.OW, d.KW, d.SW, d.PL, d.DW, &w0, &w1);
  *kh0 = *kw0 = 0;
  if (h1 < 0 || w1 < 0 || (h0 == 0 && h1 == d.KH - 1 && w0 == 0 && w1 == d.KW - 1)) return d;
  Conv2dDims e = d;
  e.KH = h1 - h0 + 1, e.KW = w1 - w0 + 1;
  e.PT = d.PT - h0 * d.DH, e.PL = d.PL - w0 * d.DW;
  e.PB = (d.OH - 1) * d.SH + d.DH * (e.KH - 1) + 1 - d.H - e.PT;
  e.PR = (d.OW - 1) * d.SW + d.DW * (e.KW - 1) + 1 - d.W - e.PL;
  if (e.PT < 0 || e.PL < 0 || e.PB < 0 || e.PR < 0) return d;
  *kh0 = h0, *kw0 = w0;
  return e;
}

/* `full` is the convolution as stored, `d` the one run (taps_cropped): the plain weights are
 * the window of the stored ones that d's kernel covers. */
static int conv_descs_init(ConvDescs *s, Conv2dDims d, Conv2dDims full, int kh0, int kw0,
                           int channels_last, int layout) {
  const int G = d.groups;
  dnnl_dims_t src_dims = {d.B, d.C, d.H, d.W}, dst_dims = {d.B, d.OC, d.OH, d.OW};
  dnnl_dims_t wei_dims = {G, d.OC / G, d.C / G, d.KH, d.KW}, bias_dims = {d.OC};
  dnnl_dims_t full_dims = {G, d.OC / G, d.C / G, full.KH, full.KW}, at = {0, 0, 0, kh0, kw0};
  dnnl_memory_desc_t stored;
  s->strides[0] = d.SH, s->strides[1] = d.SW;
  s->dilates[0] = d.DH - 1, s->dilates[1] = d.DW - 1; /* oneDNN counts the gaps */
  s->pad[0] = d.PT, s->pad[1] = d.PL;
  /* oneDNN wants pad_r so that the output size comes out exactly OH x OW */
  s->pad_r[0] = (d.OH - 1) * d.SH + d.DH * (d.KH - 1) + 1 - d.H - d.PT;
  s->pad_r[1] = (d.OW - 1) * d.SW + d.DW * (d.KW - 1) + 1 - d.W - d.PL;
  const int cl = channels_last;
  return dnnl_memory_desc_init_by_tag(&s->src_any, 4, src_dims, dnnl_f32,
                                      activation_tag(d.C, cl, layout, 1)) == dnnl_success &&
         dnnl_memory_desc_init_by_tag(&s->dst_any, 4, dst_dims, dnnl_f32,
                                      activation_tag(d.OC, cl, layout, 1)) == dnnl_success &&
         dnnl_memory_desc_init_by_tag(&s->wei_any, 5, wei_dims, dnnl_f32, dnnl_format_tag_any) ==
             dnnl_success &&
         dnnl_memory_desc_init_by_tag(&s->bias, 1, bias_dims, dnnl_f32, dnnl_x) == dnnl_success &&
         dnnl_memory_desc_init_by_tag(&s->src_plain, 4, src_dims, dnnl_f32,
                                      activation_tag(d.C, cl, layout, 0)) == dnnl_success &&
         dnnl_memory_desc_init_by_tag(&s->dst_plain, 4, dst_dims, dnnl_f32,
                                      activation_tag(d.OC, cl, layout, 0)) == dnnl_success &&
         dnnl_memory_desc_init_by_tag(&stored, 5, full_dims, dnnl_f32, dnnl_goihw) ==
             dnnl_success &&
         dnnl_memory_desc_init_submemory(&s->wei_plain, &stored, wei_dims, at) == dnnl_success;
}

/* Every layout's descriptors for convolution `full` (its cropped form) and which are offered. */
static int conv_layouts_init(ConvDescs layouts[], unsigned char offered[], Conv2dDims full,
                             int channels_last) {
  int kh0, kw0;
  const Conv2dDims d = taps_cropped(full, &kh0, &kw0);
  layouts_offered(d, channels_last, offered);
  for (int k = 0; k < LAYOUT_COUNT; k++)
    if (offered[k] && !conv_descs_init(&layouts[k], d, full, kh0, kw0, channels_last, k)) return 0;
  return 1;
}

typedef enum { PRIM_FWD_TRAINING, PRIM_FWD_INFERENCE, PRIM_BWD_DATA, PRIM_BWD_WEIGHTS } PrimKind;

static dnnl_status_t conv_op_desc(dnnl_convolution_desc_t *desc, PrimKind kind, const ConvDescs *m,
                                  int has_bias) {
  const dnnl_memory_desc_t *bias = has_bias ? &m->bias : NULL;
  switch (kind) {
    case PRIM_FWD_TRAINING:
    case PRIM_FWD_INFERENCE:
      return dnnl_dilated_convolution_forward_desc_init(
          desc, kind == PRIM_FWD_TRAINING ? dnnl_forward_training : dnnl_forward_inference,
          dnnl_convolution_direct, &m->src_any, &m->wei_any, bias, &m->dst_any, m->strides,
          m->dilates, m->pad, m->pad_r);
    case PRIM_BWD_DATA:
      return dnnl_dilated_convolution_backward_data_desc_init(
          desc, dnnl_convolution_direct, &m->src_any, &m->wei_any, &m->dst_any, m->strides,
          m->dilates, m->pad, m->pad_r);
    case PRIM_BWD_WEIGHTS:
      return dnnl_dilated_convolution_backward_weights_desc_init(
          desc, dnnl_convolution_direct, &m->src_any, &m->wei_any, bias, &m->dst_any, m->strides,
          m->dilates, m->pad, m->pad_r);
  }
  return dnnl_invalid_arguments;
}

/* The primitive descriptor of `kind` on the first layout offered that an optimised kernel
 * takes (oneDNN's reference kernels take anything, hundreds of times slower), else on the
 * plain layout. Each primitive chooses alone: a backward may stay plain. Returns the layout
 * used, -1 on failure. */
static int conv_pd_create(dnnl_primitive_desc_t *pd, PrimKind kind, const ConvDescs m[],
                          const unsigned char offered[], int has_bias,
                          const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint) {
  const int forward = kind == PRIM_FWD_TRAINING || kind == PRIM_FWD_INFERENCE;
  for (int k = LAYOUT_COUNT - 1; k >= 0; k--) {
    if (!offered[k] || (k == LAYOUT_BLOCKED && !forward)) continue;
    dnnl_convolution_desc_t desc;
    *pd = NULL;
    if (conv_op_desc(&desc, kind, &m[k], has_bias) != dnnl_success ||
        dnnl_primitive_desc_create(pd, &desc, attr, engine, hint) != dnnl_success) {
      *pd = NULL;
      continue;
    }
    const char *impl = NULL;
    if (k != LAYOUT_PLAIN &&
        (dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
         !impl || strncmp(impl, "ref", 3) == 0)) {
      dnnl_primitive_desc_destroy(*pd);
      *pd = NULL;
      continue;
    }
    return k;
  }
  return -1;
}

/* ---- pointwise convolutions as matrix products -----------------------------
 * A 1x1 convolution at stride 1 without padding over channels-last tensors is a matrix product
 * with our weights as they are: out (M = B*H*W rows, OC) = inp (M, C) * W^T with W (OC, C);
 * inp's gradient is dout * W and W's is dout^T * inp. The convolution primitives reorder the
 * weights into their blocked layouts (and the weight gradient back) on every call, at about
 * 1 ns a value in oneDNN's jit:uni reorder: 7 ms of MobileNet 64x64's 50 ms training step
 * (DNNL_VERBOSE), 4 ms of one 1024x1024 layer's weight gradient. oneDNN's sgemm needs none.
 * Per pass, timed on this machine against the primitives with their reorders (batch 32,
 * 2 threads; bench/RESULTS.md, session 17):
 * - backward data: sgemm as fast or faster on every shape tried (DenseNet's 96 -> 48 channels
 *   on 64x64 maps 3.9 against 6.3 ms, MobileNet's 1024 -> 1024 on 2x2 0.73 against 1.23);
 * - weight gradient: sgemm, its long sum over the M rows cut into one slice per thread when M is
 *   large against the weights (36 -> 48 channels on 64x64 maps: 1.8 ms, against 3.4 for one
 *   call and 1.9 for the primitive; 1024 -> 1024: 0.7 ms against 4.0);
 * - forward: sgemm (reading W transposed) lost on small and middling weights (96 -> 48 on 64x64
 *   maps: 5.1 against 4.2 ms; 512 -> 512 on 8x8: 3.1-3.9 against 2.6) and won on large ones
 *   (1024 -> 1024 on 2x2: 1.5 against 2.3; on 4x4: 3.5 against 3.8), so it takes layers with
 *   at least POINTWISE_FORWARD_WEIGHTS weights.
 * Inference's folded primitive keeps its weights reordered once, and stays. */
enum { POINTWISE_NONE, POINTWISE_BACKWARD, POINTWISE_ALL };
#define POINTWISE_FORWARD_WEIGHTS (512 * 1024)
#define POINTWISE_SLICE_ROWS 16 /* slice the weight gradient's rows when M >= 16 max(C, OC) */

static void pointwise_plan(ConvDnnl *c) {
  const Conv2dDims *d = &c->d;
  if (!c->channels_last || d->KH != 1 || d->KW != 1 || d->SH != 1 || d->SW != 1 || d->PT || d->PB ||
      d->PL || d->PR || d->groups != 1)
    return;
  c->pointwise =
      (size_t)d->C * d->OC >= POINTWISE_FORWARD_WEIGHTS ? POINTWISE_ALL : POINTWISE_BACKWARD;
  const size_t M = (size_t)d->B * d->H * d->W, widest = (size_t)(d->C > d->OC ? d->C : d->OC);
  /* one partial weight gradient per slice, in the workspace; the slice count is fixed here so
   * the sums do not depend on how many threads run them */
  const int threads = omp_get_max_threads();
  c->wgrad_slices = threads > 1 && M >= POINTWISE_SLICE_ROWS * widest ? threads : 1;
  if (c->wgrad_slices > 1)
    c->bytes[CONV_WS_DWEI] = sizeof(float) * (size_t)c->wgrad_slices * d->C * d->OC;
}

static void pointwise_forward(const ConvDnnl *c, float *out, const float *inp, const float *weight,
                              const float *bias) {
  const Conv2dDims *d = &c->d;
  const dnnl_dim_t M = (dnnl_dim_t)d->B * d->H * d->W;
  dnnl_sgemm('N', 'T', M, d->OC, d->C, 1.0f, inp, d->C, weight, d->C, 0.0f, out, d->OC);
  if (!c->has_bias) return;
#pragma omp parallel for schedule(static)
  for (dnnl_dim_t m = 0; m < M; m++)
    for (int o = 0; o < d->OC; o++) out[m * d->OC + o] += bias[o];
}

/* Inference's folded pointwise layer with few rows (a quarter of its widest channel count or
 * fewer: MobileNet's 2x2 maps) runs as one matrix product on weights kept transposed, [C][OC],
 * then its bias and ReLU in a pass over the (small) output. oneDNN's sgemm with the weights
 * transposed in the call, as pointwise_forward's, and its 1x1 convolution primitive both run
 * such products far below the ceiling (1024 -> 1024 on 128 rows: 1.5 and 1.0-1.1 ms against
 * 0.70-0.75 here, 2 threads; 512 -> 1024: 0.53 and 0.51 against 0.35). With more rows the three
 * are level (512 rows of 512 -> 1024: 1.54, 1.36 and 1.44 ms) and the primitive's post-ops save
 * the extra pass. */
static int pointwise_fold_by_product(const ConvDnnl *c) {
  const Conv2dDims *d = &c->d;
  const size_t M = (size_t)d->B * d->H * d->W, widest = (size_t)(d->C > d->OC ? d->C : d->OC);
  return c->pointwise && 4 * M <= widest;
}

/* transposed [C][OC] = weight [OC][C], in tiles of 16 x 16 */
static void pointwise_transpose(float *transposed, const float *weight, const Conv2dDims *d) {
  const int C = d->C, OC = d->OC;
#pragma omp parallel for collapse(2) schedule(static)
  for (int o0 = 0; o0 < OC; o0 += 16)
    for (int c0 = 0; c0 < C; c0 += 16)
      for (int ci = c0; ci < c0 + 16 && ci < C; ci++)
        for (int o = o0; o < o0 + 16 && o < OC; o++)
          transposed[(size_t)ci * OC + o] = weight[(size_t)o * C + ci];
}

/* out = max(0, inp * transposed + bias (+ out when folded with the sum)), the ReLU when
 * folded with one */
static void pointwise_forward_transposed(const ConvDnnl *c, float *out, const float *inp,
                                         const float *transposed, const float *bias) {
  const Conv2dDims *d = &c->d;
  const dnnl_dim_t M = (dnnl_dim_t)d->B * d->H * d->W;
  const int OC = d->OC, relu = c->fold_relu;
  dnnl_sgemm('N', 'N', M, OC, d->C, 1.0f, inp, d->C, transposed, OC, c->fold_sums ? 1.0f : 0.0f,
             out, OC);
#pragma omp parallel for schedule(static)
  for (dnnl_dim_t m = 0; m < M; m++) {
    float *row = out + m * OC;
    for (int o = 0; o < OC; o++) {
      const float v = row[o] + bias[o];
      row[o] = relu && v < 0.0f ? 0.0f : v;
    }
  }
}

#define POINTWISE_BIAS_CHUNKS 16 /* fixed, so the sums do not depend on the thread count */
/* dbias += the column sums of dout (M, OC): chunks of rows summed in float, added in order */
static void pointwise_bias_grad(float *dbias, const float *dout, size_t M, int OC) {
  /* on the heap: OC comes from a model file */
  float *part = malloc(sizeof(float) * POINTWISE_BIAS_CHUNKS * (size_t)OC);
  if (!part) { /* no room for the partials: one pass in double (rounds apart from them) */
    for (int o = 0; o < OC; o++) {
      double sum = 0.0;
      for (size_t m = 0; m < M; m++) sum += dout[m * OC + o];
      dbias[o] += (float)sum;
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int k = 0; k < POINTWISE_BIAS_CHUNKS; k++) {
    float *p = part + (size_t)k * OC;
    for (int o = 0; o < OC; o++) p[o] = 0.0f;
    for (size_t m = M * k / POINTWISE_BIAS_CHUNKS; m < M * (k + 1) / POINTWISE_BIAS_CHUNKS; m++)
      for (int o = 0; o < OC; o++) p[o] += dout[m * OC + o];
  }
  for (int o = 0; o < OC; o++) {
    double total = 0.0;
    for (int k = 0; k < POINTWISE_BIAS_CHUNKS; k++) total += part[(size_t)k * OC + o];
    dbias[o] += (float)total;
  }
  free(part);
}

/* dW (OC, C) += dout^T * inp, over slices of the rows when planned: each slice's product by one
 * thread (sgemm runs on the calling thread inside a parallel region) into its own partial, the
 * partials then added in slice order */
static void pointwise_weight_grad(const ConvDnnl *c, float *partials, float *dweight,
                                  const float *dout, const float *inp) {
  const Conv2dDims *d = &c->d;
  const dnnl_dim_t M = (dnnl_dim_t)d->B * d->H * d->W, S = c->wgrad_slices;
  if (S == 1) {
    dnnl_sgemm('T', 'N', d->OC, d->C, M, 1.0f, dout, d->OC, inp, d->C, 1.0f, dweight, d->C);
    return;
  }
  const size_t n = (size_t)d->OC * d->C;
#pragma omp parallel for schedule(static)
  for (dnnl_dim_t s = 0; s < S; s++) {
    const dnnl_dim_t m0 = M * s / S, m1 = M * (s + 1) / S;
    dnnl_sgemm('T', 'N', d->OC, d->C, m1 - m0, 1.0f, dout + m0 * d->OC, d->OC, inp + m0 * d->C,
               d->C, 0.0f, partials + (size_t)s * n, d->C);
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float sum = dweight[i];
    for (dnnl_dim_t s = 0; s < S; s++) sum += partials[(size_t)s * n + i];
    dweight[i] = sum;
  }
}

static void pointwise_backward(const ConvDnnl *c, void *const *ws, float *dinp, int accumulate,
                               float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight) {
  const Conv2dDims *d = &c->d;
  const dnnl_dim_t M = (dnnl_dim_t)d->B * d->H * d->W;
  if (dinp) /* dinp (M, C) (+)= dout (M, OC) * W */
    dnnl_sgemm('N', 'N', M, d->C, d->OC, 1.0f, dout, d->OC, weight, d->C, accumulate ? 1.0f : 0.0f,
               dinp, d->C);
  if (dweight) pointwise_weight_grad(c, ws[CONV_WS_DWEI], dweight, dout, inp);
  if (dbias && c->has_bias) pointwise_bias_grad(dbias, dout, (size_t)M, d->OC);
}

/* ---- 3x3 and 7x7 "same" convolutions by the direct kernels --------------------
 * conv2d_direct runs ResNet's and the CNNs' 3x3 layers and CBR-LargeT's 7x7 ones faster than
 * oneDNN 2.6 on this machine (sessions 18-19, bench/RESULTS.md): the forward passes (training's,
 * the attacks', and inference's with the batchnorm folded in) and the input gradient, each with
 * the weights packed into its workspace slot per call (T x T x C x OC floats, 4 ms for 25 MB),
 * or once for inference; and the weight gradient, in one slice per thread (fixed here, as the
 * pointwise one). When it runs all three, no oneDNN primitive is built. conv2d_narrow and
 * conv2d_depthwise (direct_kernels) run some of the passes of their layers the same way. */
enum { DIRECT_FORWARD = 1, DIRECT_BACKWARD_DATA = 2, DIRECT_WEIGHT_GRAD = 4, DIRECT_ALL = 7 };

static void direct_plan(ConvDnnl *c) {
  if (!c->channels_last) return;
  for (const DirectKernel *k = direct_kernels; k->supported; k++) {
    if (!k->supported(c->d)) continue;
    c->kernel = k, c->direct = DIRECT_FORWARD;
    if (k->input_grad_supported && k->input_grad_supported(c->d)) c->direct |= DIRECT_BACKWARD_DATA;
    if (k->wgrad_supported && k->wgrad_supported(c->d)) {
      c->direct |= DIRECT_WEIGHT_GRAD;
      c->wgrad_slices = omp_get_max_threads();
    }
    return;
  }
}

static size_t direct_packed_floats(const ConvDnnl *c) { return c->kernel->packed_floats(c->d); }

static void direct_pack(const ConvDnnl *c, float *packed, const float *weight) {
  c->kernel->pack(packed, weight, c->d);
}

static void direct_forward(const ConvDnnl *c, float *out, const float *inp, const float *packed,
                           const float *bias, int sum, int relu) {
  c->kernel->forward(out, inp, packed, bias, c->d, sum, relu);
}

/* the slots' sizes once the primitives have set theirs */
static void direct_workspace(ConvDnnl *c) {
  if (!c->kernel) return;
  const size_t packed = sizeof(float) * direct_packed_floats(c);
  const size_t partials = c->direct & DIRECT_WEIGHT_GRAD
                              ? sizeof(float) * c->kernel->wgrad_floats(c->d, c->wgrad_slices)
                              : 0;
  if (c->direct & DIRECT_WEIGHT_GRAD && c->bytes[CONV_WS_DWEI] < partials)
    c->bytes[CONV_WS_DWEI] = partials;
  if (c->direct & DIRECT_FORWARD && c->bytes[CONV_WS_WEI] < packed) c->bytes[CONV_WS_WEI] = packed;
  if (c->direct & DIRECT_BACKWARD_DATA && c->bytes[CONV_WS_BD_WEI] < packed)
    c->bytes[CONV_WS_BD_WEI] = packed;
}

#define MD(pd, q) dnnl_primitive_desc_query_md(pd, q, 0)
/* The forward primitive on its layout, its memories and reorders; returns the layout, -1 on
 * failure. */
static int forward_create(ConvDnnl *c, const ConvDescs layouts[], const unsigned char offered[]) {
  const int at =
      conv_pd_create(&c->fwd_pd, PRIM_FWD_TRAINING, layouts, offered, c->has_bias, NULL, NULL);
  if (at < 0 || dnnl_primitive_create(&c->fwd, c->fwd_pd) != dnnl_success) return -1;
  const ConvDescs *fm = &layouts[at];
  c->src = memory_at(c->fwd_pd, dnnl_query_src_md);
  c->wei = memory_at(c->fwd_pd, dnnl_query_weights_md);
  c->dst = memory_at(c->fwd_pd, dnnl_query_dst_md);
  if (c->has_bias) dnnl_memory_create(&c->bias, &fm->bias, engine, DNNL_MEMORY_NONE);
  if (!c->src || !c->wei || !c->dst || (c->has_bias && !c->bias) ||
      !reorder_make(&c->r_src, &fm->src_plain, MD(c->fwd_pd, dnnl_query_src_md), 0) ||
      !reorder_make(&c->r_wei, &fm->wei_plain, MD(c->fwd_pd, dnnl_query_weights_md), 0) ||
      !reorder_make(&c->r_dst, MD(c->fwd_pd, dnnl_query_dst_md), &fm->dst_plain, 0))
    return -1;
  c->bytes[CONV_WS_SRC] = md_bytes(c->fwd_pd, dnnl_query_src_md);
  c->bytes[CONV_WS_WEI] = md_bytes(c->fwd_pd, dnnl_query_weights_md);
  c->bytes[CONV_WS_DST] = md_bytes(c->fwd_pd, dnnl_query_dst_md);
  return at;
}

/* The backward-data and backward-weights primitives, hinted with a forward of their own
 * layouts' family; returns 0 on failure. */
static int backward_create(ConvDnnl *c, const ConvDescs layouts[], const unsigned char offered[],
                           int fwd_at) {
  const_dnnl_primitive_desc_t hint = fwd_at == LAYOUT_BLOCKED ? NULL : c->fwd_pd;
  const int bd_at =
      conv_pd_create(&c->bwd_data_pd, PRIM_BWD_DATA, layouts, offered, c->has_bias, NULL, hint);
  const int bw_at = conv_pd_create(&c->bwd_weights_pd, PRIM_BWD_WEIGHTS, layouts, offered,
                                   c->has_bias, NULL, hint);
  if (bd_at < 0 || bw_at < 0 ||
      dnnl_primitive_create(&c->bwd_data, c->bwd_data_pd) != dnnl_success ||
      dnnl_primitive_create(&c->bwd_weights, c->bwd_weights_pd) != dnnl_success)
    return 0;
  const ConvDescs *dm = &layouts[bd_at], *wm = &layouts[bw_at];
  c->bd_wei = memory_at(c->bwd_data_pd, dnnl_query_weights_md);
  c->bd_ddst = memory_at(c->bwd_data_pd, dnnl_query_diff_dst_md);
  c->bd_dsrc = memory_at(c->bwd_data_pd, dnnl_query_diff_src_md);
  c->bw_src = memory_at(c->bwd_weights_pd, dnnl_query_src_md);
  c->bw_ddst = memory_at(c->bwd_weights_pd, dnnl_query_diff_dst_md);
  c->bw_dwei = memory_at(c->bwd_weights_pd, dnnl_query_diff_weights_md);
  if (c->has_bias) dnnl_memory_create(&c->bw_dbias, &wm->bias, engine, DNNL_MEMORY_NONE);
  if (!c->bd_wei || !c->bd_ddst || !c->bd_dsrc || !c->bw_src || !c->bw_ddst || !c->bw_dwei ||
      (c->has_bias && !c->bw_dbias))
    return 0;
  if (!reorder_make(&c->r_bd_wei, &dm->wei_plain, MD(c->bwd_data_pd, dnnl_query_weights_md), 0) ||
      !reorder_make(&c->r_bd_ddst, &dm->dst_plain, MD(c->bwd_data_pd, dnnl_query_diff_dst_md), 0) ||
      !reorder_make(&c->r_bd_dsrc_add, MD(c->bwd_data_pd, dnnl_query_diff_src_md), &dm->src_plain,
                    1) ||
      !reorder_make(&c->r_bd_dsrc_set, MD(c->bwd_data_pd, dnnl_query_diff_src_md), &dm->src_plain,
                    0) ||
      !reorder_make(&c->r_bw_src, &wm->src_plain, MD(c->bwd_weights_pd, dnnl_query_src_md), 0) ||
      !reorder_make(&c->r_bw_ddst, &wm->dst_plain, MD(c->bwd_weights_pd, dnnl_query_diff_dst_md),
                    0) ||
      !reorder_make(&c->r_bw_dwei, MD(c->bwd_weights_pd, dnnl_query_diff_weights_md),
                    &wm->wei_plain, 1))
    return 0;
  c->ddst_shared = dnnl_memory_desc_equal(MD(c->bwd_data_pd, dnnl_query_diff_dst_md),
                                          MD(c->bwd_weights_pd, dnnl_query_diff_dst_md));
  c->bytes[CONV_WS_BD_WEI] = md_bytes(c->bwd_data_pd, dnnl_query_weights_md);
  c->bytes[CONV_WS_DDST] = md_bytes(c->bwd_data_pd, dnnl_query_diff_dst_md);
  c->bytes[CONV_WS_DSRC] = md_bytes(c->bwd_data_pd, dnnl_query_diff_src_md);
  c->bytes[CONV_WS_BW_SRC] = md_bytes(c->bwd_weights_pd, dnnl_query_src_md);
  c->bytes[CONV_WS_BW_DDST] = md_bytes(c->bwd_weights_pd, dnnl_query_diff_dst_md);
  c->bytes[CONV_WS_DWEI] = md_bytes(c->bwd_weights_pd, dnnl_query_diff_weights_md);
  c->bytes[CONV_WS_DBIAS] = sizeof(float) * c->d.OC;
  return 1;
}
#undef MD

ConvDnnl *conv2d_dnnl_create(Conv2dDims d, int has_bias, int channels_last) {
  if (!dnnl_ready()) return NULL;
  ConvDnnl *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->d = d;
  c->has_bias = has_bias;
  c->channels_last = channels_last;
  pointwise_plan(c);
  direct_plan(c);
  ConvDescs layouts[LAYOUT_COUNT];
  unsigned char offered[LAYOUT_COUNT];
  if (!conv_layouts_init(layouts, offered, d, channels_last)) goto failure;
  const int primitives = !c->pointwise && c->direct != DIRECT_ALL;
  const int fwd_at = c->pointwise == POINTWISE_ALL || c->direct == DIRECT_ALL
                         ? LAYOUT_PLAIN
                         : forward_create(c, layouts, offered);
  if (fwd_at < 0 || (primitives && !backward_create(c, layouts, offered, fwd_at))) goto failure;
  direct_workspace(c);
  return c;
failure:
  conv2d_dnnl_free(c);
  return NULL;
}

size_t conv2d_dnnl_workspace_bytes(const ConvDnnl *c, ConvWorkspaceSlot slot) {
  return c->bytes[slot];
}

static void exec(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args) {
  dnnl_primitive_execute(p, stream, n, args);
}

void conv2d_dnnl_forward(ConvDnnl *c, void *const *ws, float *out, const float *inp,
                         const float *weight, const float *bias) {
  if (c->pointwise == POINTWISE_ALL) {
    pointwise_forward(c, out, inp, weight, bias);
    return;
  }
  if (c->direct & DIRECT_FORWARD) {
    direct_pack(c, ws[CONV_WS_WEI], weight);
    direct_forward(c, out, inp, ws[CONV_WS_WEI], c->has_bias ? bias : NULL, 0, 0);
    return;
  }
  dnnl_memory_set_data_handle(c->src, reorder_in(&c->r_src, inp, ws[CONV_WS_SRC]));
  dnnl_memory_set_data_handle(c->wei, reorder_in(&c->r_wei, weight, ws[CONV_WS_WEI]));
  dnnl_memory_set_data_handle(c->dst, c->r_dst.prim ? ws[CONV_WS_DST] : out);
  dnnl_exec_arg_t args[4] = {
      {DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->wei}, {DNNL_ARG_DST, c->dst}};
  int n = 3;
  if (c->has_bias) {
    dnnl_memory_set_data_handle(c->bias, (void *)bias);
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
  }
  exec(c->fwd, n, args);
  if (c->r_dst.prim) reorder_run(&c->r_dst, ws[CONV_WS_DST], out);
  dnnl_stream_wait(stream);
}

void conv2d_dnnl_backward(ConvDnnl *c, void *const *ws, float *dinp, int accumulate, float *dweight,
                          float *dbias, const float *dout, const float *inp, const float *weight) {
  if (c->pointwise) {
    pointwise_backward(c, ws, dinp, accumulate, dweight, dbias, dout, inp, weight);
    return;
  }
  void *ddst = NULL; /* diff_dst as backward data read it */
  if (dinp && c->direct & DIRECT_BACKWARD_DATA) {
    c->kernel->input_grad(dinp, ws[CONV_WS_BD_WEI], dout, weight, c->d, accumulate);
  } else if (dinp) {
    dnnl_memory_set_data_handle(c->bd_wei, reorder_in(&c->r_bd_wei, weight, ws[CONV_WS_BD_WEI]));
    ddst = reorder_in(&c->r_bd_ddst, dout, ws[CONV_WS_DDST]);
    dnnl_memory_set_data_handle(c->bd_ddst, ddst);
    /* overwriting into a plain layout: oneDNN writes our gradient directly */
    Reorder *out = accumulate ? &c->r_bd_dsrc_add : &c->r_bd_dsrc_set;
    dnnl_memory_set_data_handle(c->bd_dsrc, out->prim ? ws[CONV_WS_DSRC] : dinp);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, c->bd_ddst},
                               {DNNL_ARG_WEIGHTS, c->bd_wei},
                               {DNNL_ARG_DIFF_SRC, c->bd_dsrc}};
    exec(c->bwd_data, 3, args);
    if (out->prim) reorder_run(out, ws[CONV_WS_DSRC], dinp);
  }
  if ((dweight || dbias) && c->direct & DIRECT_WEIGHT_GRAD) {
    if (dweight)
      c->kernel->weight_grad(dweight, ws[CONV_WS_DWEI], dout, inp, c->d, c->wgrad_slices);
    if (dbias && c->has_bias)
      pointwise_bias_grad(dbias, dout, (size_t)c->d.B * c->d.OH * c->d.OW, c->d.OC);
  } else if (dweight || dbias) {
    dnnl_memory_set_data_handle(c->bw_src, reorder_in(&c->r_bw_src, inp, ws[CONV_WS_BW_SRC]));
    dnnl_memory_set_data_handle(
        c->bw_ddst,
        ddst && c->ddst_shared ? ddst : reorder_in(&c->r_bw_ddst, dout, ws[CONV_WS_BW_DDST]));
    dnnl_memory_set_data_handle(c->bw_dwei, ws[CONV_WS_DWEI]);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->bw_src},
                               {DNNL_ARG_DIFF_DST, c->bw_ddst},
                               {DNNL_ARG_DIFF_WEIGHTS, c->bw_dwei}};
    int n = 3;
    if (c->has_bias) {
      dnnl_memory_set_data_handle(c->bw_dbias, ws[CONV_WS_DBIAS]);
      args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, c->bw_dbias};
    }
    exec(c->bwd_weights, n, args);
    dnnl_stream_wait(stream);
    if (dweight) reorder_run(&c->r_bw_dwei, ws[CONV_WS_DWEI], dweight); /* dweight += */
    if (dbias && c->has_bias) {
      dnnl_stream_wait(stream);
      const float *db = ws[CONV_WS_DBIAS];
      for (int i = 0; i < c->d.OC; i++) dbias[i] += db[i];
    }
  }
  dnnl_stream_wait(stream);
}

/* the floats the direct kernel's or the product's folded weights take, prepared (fold_prepare) */
static size_t fold_prepared_floats(const ConvDnnl *c) {
  if (c->fold_kind == FOLD_PANELS) return conv2d_pointwise_panels_floats(c->d);
  return c->fold_kind == FOLD_PRODUCT ? (size_t)c->d.C * c->d.OC : direct_packed_floats(c);
}

/* weight laid out as the direct kernel or the product reads it, into prepared */
static void fold_prepare(const ConvDnnl *c, float *prepared, const float *weight) {
  if (c->fold_kind == FOLD_PRODUCT)
    pointwise_transpose(prepared, weight, &c->d);
  else if (c->fold_kind == FOLD_PANELS)
    conv2d_pointwise_panels_pack(prepared, weight, c->d);
  else
    direct_pack(c, prepared, weight);
}

int conv2d_dnnl_enable_folded(ConvDnnl *c, int relu, int sum) {
  ConvDescs layouts[LAYOUT_COUNT];
  unsigned char offered[LAYOUT_COUNT];
  fold_release(c);                  /* a second call replaces the first */
  if (c->direct & DIRECT_FORWARD) { /* direct_workspace sized its slot */
    c->fold_kind = FOLD_DIRECT, c->fold_sums = sum, c->fold_relu = relu;
    return 1;
  }
  if (pointwise_fold_by_product(c)) { /* its weights, transposed, in the slot for a call's */
    c->fold_kind = FOLD_PRODUCT, c->fold_sums = sum, c->fold_relu = relu;
    const size_t bytes = sizeof(float) * fold_prepared_floats(c);
    if (c->bytes[CONV_WS_WEI] < bytes) c->bytes[CONV_WS_WEI] = bytes;
    return 1;
  }
  if (!conv_layouts_init(layouts, offered, c->d, c->channels_last)) return 0;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  int ok = 0;
  if (relu || sum) { /* the sum before the ReLU: relu(conv + dst) */
    if (dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&ops) ||
        (sum && dnnl_post_ops_append_sum(ops, 1.0f)) ||
        (relu && dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)) ||
        dnnl_primitive_attr_set_post_ops(attr, ops))
      goto done;
  }
  const int at = conv_pd_create(&c->fold_pd, PRIM_FWD_INFERENCE, layouts, offered, 1, attr, NULL);
  if (at < 0 || dnnl_primitive_create(&c->fold, c->fold_pd)) goto done;
  const ConvDescs *m = &layouts[at];
  c->fold_src = memory_at(c->fold_pd, dnnl_query_src_md);
  c->fold_wei = memory_at(c->fold_pd, dnnl_query_weights_md);
  c->fold_dst = memory_at(c->fold_pd, dnnl_query_dst_md);
  dnnl_memory_create(&c->fold_bias, &m->bias, engine, DNNL_MEMORY_NONE);
  if (!c->fold_src || !c->fold_wei || !c->fold_dst || !c->fold_bias) goto done;
  if (!reorder_make(&c->r_fold_src, &m->src_plain,
                    dnnl_primitive_desc_query_md(c->fold_pd, dnnl_query_src_md, 0), 0) ||
      !reorder_make(&c->r_fold_wei, &m->wei_plain,
                    dnnl_primitive_desc_query_md(c->fold_pd, dnnl_query_weights_md, 0), 0) ||
      !reorder_make(&c->r_fold_dst, dnnl_primitive_desc_query_md(c->fold_pd, dnnl_query_dst_md, 0),
                    &m->dst_plain, 0))
    goto done;
  /* the sum reads dst where oneDNN writes it: only when that is the caller's buffer */
  if (sum && c->r_fold_dst.prim) goto done;
  c->fold_kind = FOLD_PRIMITIVE, c->fold_sums = sum;
  /* the folded primitive shares the forward workspace slots */
  const size_t need[3] = {md_bytes(c->fold_pd, dnnl_query_src_md),
                          md_bytes(c->fold_pd, dnnl_query_weights_md),
                          md_bytes(c->fold_pd, dnnl_query_dst_md)};
  const ConvWorkspaceSlot slots[3] = {CONV_WS_SRC, CONV_WS_WEI, CONV_WS_DST};
  for (int i = 0; i < 3; i++)
    if (need[i] > c->bytes[slots[i]]) c->bytes[slots[i]] = need[i];
  ok = 1;
done:
  if (ops) dnnl_post_ops_destroy(ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) fold_release(c);
  return ok;
}

static int folded(const ConvDnnl *c) { return c->fold_kind != FOLD_NONE; }

int conv2d_dnnl_has_folded(const ConvDnnl *c) { return c && folded(c); }

int conv2d_dnnl_folded_sums(const ConvDnnl *c) { return c && folded(c) && c->fold_sums; }

uint64_t conv2d_dnnl_folded_version(const ConvDnnl *c) { return c->fold_version; }

int conv2d_dnnl_set_folded(ConvDnnl *c, const float *weight, const float *bias, uint64_t version) {
  const int primitive = c->fold_kind == FOLD_PRIMITIVE;
  const size_t bytes = primitive ? md_bytes(c->fold_pd, dnnl_query_weights_md)
                                 : sizeof(float) * fold_prepared_floats(c);
  /* made on the first inference, not when planning: training and attacks never need them */
  if (!c->fold_weights) c->fold_weights = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (!c->fold_biases) c->fold_biases = malloc(sizeof(float) * (size_t)c->d.OC);
  if (!c->fold_weights || !c->fold_biases) return 0;
  if (!primitive) {
    fold_prepare(c, c->fold_weights, weight);
  } else if (c->r_fold_wei.prim) {
    reorder_run(&c->r_fold_wei, weight, c->fold_weights);
    dnnl_stream_wait(stream);
  } else {
    memcpy(c->fold_weights, weight, bytes);
  }
  memcpy(c->fold_biases, bias, sizeof(float) * (size_t)c->d.OC);
  c->fold_version = version;
  return 1;
}

int conv2d_dnnl_folded_by_product(const ConvDnnl *c) { return c && c->fold_kind == FOLD_PRODUCT; }

int conv2d_dnnl_folded_pools(const ConvDnnl *c) {
  return c && c->fold_kind == FOLD_DIRECT && c->kernel->pools && !c->fold_sums &&
         conv2d_direct_pool2_supported(c->d);
}

void conv2d_dnnl_forward_folded(ConvDnnl *c, void *const *ws, float *out, const float *inp,
                                const float *weight, const float *bias, int pool2) {
  if (c->fold_kind != FOLD_PRIMITIVE) {
    const float *prepared = c->fold_weights, *b = weight ? bias : c->fold_biases;
    if (weight) { /* this call's weights */
      fold_prepare(c, ws[CONV_WS_WEI], weight);
      prepared = ws[CONV_WS_WEI];
    }
    if (c->fold_kind == FOLD_PRODUCT)
      pointwise_forward_transposed(c, out, inp, prepared, b);
    else if (c->fold_kind == FOLD_PANELS)
      conv2d_pointwise_panels_forward(out, inp, prepared, b, c->d, c->fold_relu);
    else if (pool2)
      conv2d_direct_forward_pool2(out, inp, prepared, b, c->d, c->fold_relu);
    else
      direct_forward(c, out, inp, prepared, b, c->fold_sums, c->fold_relu);
    return;
  }
  dnnl_memory_set_data_handle(c->fold_src, reorder_in(&c->r_fold_src, inp, ws[CONV_WS_SRC]));
  dnnl_memory_set_data_handle(
      c->fold_wei, weight ? reorder_in(&c->r_fold_wei, weight, ws[CONV_WS_WEI]) : c->fold_weights);
  dnnl_memory_set_data_handle(c->fold_bias, weight ? (void *)bias : c->fold_biases);
  dnnl_memory_set_data_handle(c->fold_dst, c->r_fold_dst.prim ? ws[CONV_WS_DST] : out);
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->fold_src},
                             {DNNL_ARG_WEIGHTS, c->fold_wei},
                             {DNNL_ARG_BIAS, c->fold_bias},
                             {DNNL_ARG_DST, c->fold_dst}};
  exec(c->fold, 4, args);
  if (c->r_fold_dst.prim) reorder_run(&c->r_fold_dst, ws[CONV_WS_DST], out);
  dnnl_stream_wait(stream);
}

int conv2d_dnnl_enable_folded_separable(ConvDnnl *pw, const ConvDnnl *dw, int relu) {
  fold_release(pw);
  if (!dw || dw->fold_kind != FOLD_DIRECT || !conv2d_separable_supported(dw->d, pw->d)) return 0;
  pw->fold_kind = FOLD_PANELS, pw->fold_relu = relu;
  pw->fold_threads = omp_get_max_threads();
  const size_t weights = sizeof(float) * fold_prepared_floats(pw);
  const size_t tiles = sizeof(float) * conv2d_separable_scratch_floats(dw->d, pw->fold_threads);
  if (pw->bytes[CONV_WS_WEI] < weights) pw->bytes[CONV_WS_WEI] = weights;
  if (pw->bytes[CONV_WS_SRC] < tiles) pw->bytes[CONV_WS_SRC] = tiles;
  return 1;
}

int conv2d_dnnl_folded_separable(const ConvDnnl *pw) { return pw && pw->fold_kind == FOLD_PANELS; }

void conv2d_dnnl_forward_separable(const ConvDnnl *dw, const ConvDnnl *pw, void *const *ws,
                                   float *out, const float *inp) {
  conv2d_separable_forward(out, ws[CONV_WS_SRC], inp, dw->fold_weights, dw->fold_biases,
                           dw->fold_relu, dw->d, pw->fold_weights, pw->fold_biases, pw->fold_relu,
                           pw->d, pw->fold_threads);
}
