/* Net: building a layer graph, the planner passes (ReLU fusion, layout
 * choice), planning every buffer once per batch size, and the forward /
 * backward loops. Behaviour per op kind lives in the op table (ops.c and
 * src/ops/); nothing here names a kind. No allocation happens in forward or
 * backward once the batch size is planned. */
#include "net.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ------------------------------------------------------------ */

Net *net_new(const ModelSpec *spec) {
  Net *net = calloc(1, sizeof *net);
  if (!net) return NULL;
  model_spec_copy(&net->spec, spec);
  const char *backend = getenv("MEDROBUST_CONV");
  net->use_dnnl = !(backend && strcmp(backend, "im2col") == 0);
  net->allow_channels_last = !(backend && strcmp(backend, "dnnl-nchw") == 0);
  net->param_version = 1; /* never 0: a convolution's folded weights start at version 0 */
  return net;
}

int net_last(const Net *net) { return net->n_layers; }

int net_tensor_dims(const Net *net, int t, int dims[4]) {
  if (t < 0 || t > net->n_layers) return 0;
  const Shape s = net_tensor_shape(net, t);
  memcpy(dims, s.d, sizeof(int) * SHAPE_MAX_DIMS);
  return s.ndim;
}

Shape net_tensor_shape(const Net *net, int t) {
  if (t == NET_INPUT) return shape_chw(net->spec.in_c, net->spec.in_h, net->spec.in_w);
  return net->layers[t - 1].out_shape;
}

float *net_tensor_out(Net *net, int t) {
  return t == NET_INPUT ? net->input : net->layers[t - 1].out;
}
float *net_tensor_dout(Net *net, int t) {
  return t == NET_INPUT ? net->dinput : net->layers[t - 1].dout;
}

OpAttrs op_attrs_default(void) {
  OpAttrs a;
  memset(&a, 0, sizeof a);
  a.groups = 1;
  a.stride[0] = a.stride[1] = 1;
  a.dilation[0] = a.dilation[1] = 1;
  a.scale[0] = a.scale[1] = 1;
  a.eps = 1e-5f;
  a.momentum = 0.1f;
  a.hi = 6.0f;
  return a;
}

static int net_build_fail(Net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int net_build_fail(Net *net, const char *fmt, ...) {
  if (net->build_err.status != STATUS_OK) return -1;
  net->build_err.status = STATUS_ERR_SHAPE;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(net->build_err.msg, sizeof net->build_err.msg, fmt, ap);
  va_end(ap);
  return -1;
}

void net_param(Net *net, Layer *l, ParamSlot slot, const char *suffix, int ndim,
               const int64_t *shape) {
  if (net->n_entries == net->cap_entries) {
    int cap = net->cap_entries ? net->cap_entries * 2 : 64;
    Entry *grown = realloc(net->entries, sizeof(Entry) * cap);
    if (!grown) {
      net->build_err.status = STATUS_ERR_NOMEM;
      snprintf(net->build_err.msg, sizeof net->build_err.msg, "out of memory building the net");
      return;
    }
    net->entries = grown;
    net->cap_entries = cap;
  }
  Entry *e = &net->entries[net->n_entries++];
  memset(e, 0, sizeof *e);
  if (snprintf(e->name, sizeof e->name, "%s.%s", l->name, suffix) >= (int)sizeof e->name) {
    net_build_fail(net, "%s: parameter name longer than %d characters", l->name, NAME_LEN - 1);
    net->n_entries--;
    return;
  }
  e->kind = slot == SLOT_COUNTER                                    ? ENTRY_COUNTER
            : slot == SLOT_RUNNING_MEAN || slot == SLOT_RUNNING_VAR ? ENTRY_STAT
                                                                    : ENTRY_PARAM;
  e->ndim = ndim;
  e->numel = 1;
  for (int i = 0; i < ndim; i++) {
    e->shape[i] = shape[i];
    e->numel *= (size_t)shape[i];
  }
  if (e->kind == ENTRY_COUNTER) {
    e->offset = (size_t)net->n_counters++;
  } else {
    size_t *counter = e->kind == ENTRY_PARAM ? &net->n_params : &net->n_stats;
    e->offset = *counter;
    *counter += e->numel;
  }
  if (e->kind == ENTRY_PARAM) l->n_params += e->numel;
  l->slots |= 1u << slot;
  l->slot_off[slot] = e->offset;
}

int net_add(Net *net, OpKind kind, const char *name, const int *src, int n_src, const OpAttrs *a) {
  if (net->build_err.status != STATUS_OK) return -1;
  if (net->finished) return net_build_fail(net, "net already finished: cannot add a layer");
  const OpDef *op = op_def(kind);
  if (!op) return net_build_fail(net, "unknown op kind %d", (int)kind);
  const char *who = name && name[0] ? name : op->name;
  if (n_src < op->min_inputs || n_src > op->max_inputs)
    return net_build_fail(net, "%s: %s takes %d..%d inputs, got %d", who, op->name, op->min_inputs,
                          op->max_inputs, n_src);
  for (int k = 0; k < n_src; k++)
    if (src[k] < 0 || src[k] > net->n_layers)
      return net_build_fail(net, "%s: input %d is tensor %d, which does not exist (0..%d)", who, k,
                            src[k], net->n_layers);
  if (net->n_layers == net->cap_layers) {
    int cap = net->cap_layers ? net->cap_layers * 2 : 32;
    Layer *grown = realloc(net->layers, sizeof(Layer) * cap);
    if (!grown) return net_build_fail(net, "out of memory building the net");
    net->layers = grown;
    net->cap_layers = cap;
  }
  Layer *l = &net->layers[net->n_layers];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  snprintf(l->name, sizeof l->name, "%s", name ? name : "");
  l->n_src = n_src;
  memcpy(l->src, src, sizeof(int) * n_src);
  l->a = a ? *a : op_attrs_default();
  l->in_shape = l->out_shape = net_tensor_shape(net, src[0]);
  char why[300] = "";
  if (op->infer && op->infer(net, l, why, sizeof why))
    return net_build_fail(net, "%s: %s", who, why);
  /* bounded so no size computation overflows, whatever a file asks for */
  double numel = 1.0;
  for (int i = 0; i < l->out_shape.ndim; i++)
    numel *= l->out_shape.d[i] > 0 ? l->out_shape.d[i] : 0;
  if (numel < 1.0 || numel > (double)(1u << 30))
    return net_build_fail(net, "%s: output of %.0f elements per image (1..2^30)", who, numel);
  if (net->build_err.status != STATUS_OK) return -1; /* a parameter could not be registered */
  net->flops += l->flops;
  if (l->flops_inside <= 0) l->flops_inside = l->flops;
  return ++net->n_layers;
}

/* The convenience builders: one attribute set each. */

int net_add_conv(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                 int groups, int bias) {
  OpAttrs a = op_attrs_default();
  a.out_channels = oc, a.groups = groups, a.bias = bias;
  a.kernel[0] = a.kernel[1] = k;
  a.stride[0] = a.stride[1] = stride;
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = pad;
  return net_add(net, OP_CONV2D, name, &src, 1, &a);
}

int net_add_conv_transpose(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                           int bias) {
  OpAttrs a = op_attrs_default();
  a.out_channels = oc, a.bias = bias;
  a.kernel[0] = a.kernel[1] = k;
  a.stride[0] = a.stride[1] = stride;
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = pad;
  return net_add(net, OP_CONV_TRANSPOSE2D, name, &src, 1, &a);
}

int net_add_bn(Net *net, const char *name, int src) {
  return net_add(net, OP_BATCHNORM2D, name, &src, 1, NULL);
}
int net_add_relu(Net *net, int src) { return net_add(net, OP_RELU, "", &src, 1, NULL); }

static int net_add_pool(Net *net, OpKind kind, int src, int k, int stride, int pad) {
  OpAttrs a = op_attrs_default();
  a.kernel[0] = a.kernel[1] = k;
  a.stride[0] = a.stride[1] = stride;
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = pad;
  return net_add(net, kind, "", &src, 1, &a);
}
int net_add_maxpool(Net *net, int src, int k, int stride, int pad) {
  return net_add_pool(net, OP_MAXPOOL, src, k, stride, pad);
}
int net_add_avgpool(Net *net, int src, int k, int stride, int pad) {
  return net_add_pool(net, OP_AVGPOOL, src, k, stride, pad);
}
int net_add_global_avgpool(Net *net, int src) {
  return net_add(net, OP_GLOBAL_AVGPOOL, "", &src, 1, NULL);
}
int net_add_flatten(Net *net, int src) { return net_add(net, OP_FLATTEN, "", &src, 1, NULL); }
int net_add_dense(Net *net, const char *name, int src, int out) {
  OpAttrs a = op_attrs_default();
  a.out_channels = out;
  return net_add(net, OP_DENSE, name, &src, 1, &a);
}
int net_add_dropout(Net *net, int src, float p) {
  OpAttrs a = op_attrs_default();
  a.p = p;
  return net_add(net, OP_DROPOUT, "", &src, 1, &a);
}
int net_add_add(Net *net, int x, int y) {
  const int src[2] = {x, y};
  return net_add(net, OP_ADD, "", src, 2, NULL);
}
int net_add_shortcut_pad(Net *net, int src, int oc, int stride) {
  OpAttrs a = op_attrs_default();
  a.out_channels = oc;
  a.stride[0] = a.stride[1] = stride;
  return net_add(net, OP_SHORTCUT_PAD, "", &src, 1, &a);
}
int net_add_concat(Net *net, const int *srcs, int n) {
  return net_add(net, OP_CONCAT, "", srcs, n, NULL);
}
int net_add_upsample(Net *net, int src, int scale, UpsampleMode mode) {
  OpAttrs a = op_attrs_default();
  a.scale[0] = a.scale[1] = scale;
  a.mode = mode;
  return net_add(net, OP_UPSAMPLE, "", &src, 1, &a);
}

/* ---- geometry shared by op files ---------------------------------------- */

Conv2dDims conv_dims_between(const Layer *l, Shape in, Shape out, int B) {
  Conv2dDims d = {.B = B,
                  .C = shape_c(in),
                  .H = shape_h(in),
                  .W = shape_w(in),
                  .OC = shape_c(out),
                  .OH = shape_h(out),
                  .OW = shape_w(out),
                  .KH = l->a.kernel[0],
                  .KW = l->a.kernel[1],
                  .SH = l->a.stride[0],
                  .SW = l->a.stride[1],
                  .PT = l->a.pad[0],
                  .PB = l->a.pad[1],
                  .PL = l->a.pad[2],
                  .PR = l->a.pad[3],
                  .DH = l->a.dilation[0] > 0 ? l->a.dilation[0] : 1,
                  .DW = l->a.dilation[1] > 0 ? l->a.dilation[1] : 1,
                  .groups = l->a.groups};
  return d;
}

Conv2dDims layer_conv_dims(const Layer *l, int B) {
  return conv_dims_between(l, l->in_shape, l->out_shape, B);
}

int conv_channels_invalid(const Layer *l, char *why, size_t n) {
  if (l->in_shape.ndim != 3)
    return snprintf(why, n, "needs a (C,H,W) input, got %d-D", l->in_shape.ndim), 1;
  const int C = shape_c(l->in_shape), oc = l->a.out_channels, g = l->a.groups;
  if (oc < 1 || g < 1 || C % g || oc % g)
    return snprintf(why, n, "%d input and %d output channels do not split into %d groups", C, oc,
                    g),
           1;
  return 0;
}

PoolDims layer_pool_dims(const Layer *l, int B) {
  const Shape in = l->in_shape;
  PoolDims d = {.B = B,
                .C = shape_c(in),
                .H = shape_h(in),
                .W = shape_w(in),
                .OH = shape_h(l->out_shape),
                .OW = shape_w(l->out_shape),
                .KH = l->a.kernel[0],
                .KW = l->a.kernel[1],
                .SH = l->a.stride[0],
                .SW = l->a.stride[1],
                .PT = l->a.pad[0],
                .PB = l->a.pad[1],
                .PL = l->a.pad[2],
                .PR = l->a.pad[3],
                .DH = l->a.dilation[0],
                .DW = l->a.dilation[1]};
  return d;
}

/* ---- planner passes ------------------------------------------------------- */

/* How many layer inputs read each layer's output: counted once, when the
 * graph is final. */
static void net_count_readers(Net *net) {
  for (int i = 0; i < net->n_layers; i++) net->layers[i].readers = 0;
  for (int i = 0; i < net->n_layers; i++)
    for (int k = 0; k < net->layers[i].n_src; k++)
      if (net->layers[i].src[k] != NET_INPUT) net->layers[net->layers[i].src[k] - 1].readers++;
}

/* A ReLU whose input is read by nothing else and made by an op that can
 * apply it in its own pass becomes an alias of that op's output: one pass
 * over memory instead of two. Tensor ids keep their meaning. */
static void net_fuse_relus(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    Layer *r = &net->layers[i];
    const int p = r->src[0];
    if (r->kind != OP_RELU || p == NET_INPUT) continue;
    Layer *prod = &net->layers[p - 1];
    if (!op_def(prod->kind)->fuses_relu || prod->fused_relu || prod->alias || prod->readers != 1)
      continue;
    prod->fused_relu = 1;
    r->alias = 1;
  }
}

/* The max-pool after layer b's fused ReLU: b -> its ReLU alias b+1 -> a 2x2 max-pool at stride
 * 2 without padding (b+2), each read by the next alone. Returns b+2, or -1. */
static int relu_pool2_after(const Net *net, int b) {
  if (b + 2 >= net->n_layers) return -1;
  const Layer *l = &net->layers[b], *relu = &net->layers[b + 1], *pool = &net->layers[b + 2];
  if (!l->fused_relu || l->readers != 1 || !relu->alias || relu->src[0] != b + 1 ||
      relu->readers != 1 || pool->kind != OP_MAXPOOL || pool->src[0] != b + 2)
    return -1;
  const PoolDims p = layer_pool_dims(pool, 1);
  return p.KH == 2 && p.KW == 2 && p.SH == 2 && p.SW == 2 && p.DH == 1 && p.DW == 1 && !p.PT &&
                 !p.PB && !p.PL && !p.PR && p.OH == p.H / 2 && p.OW == p.W / 2
             ? b + 2
             : -1;
}

/* Batchnorm -> its fused ReLU -> a 2x2 max-pool: batchnorm's channels-last kernels pool too
 * (d.pool2), writing the pooled map and reading its gradient, so the full-size map, its
 * gradient and the argmax are never stored. cnn 64x64's first stage (16 channels on 64x64
 * maps) spent 14 of a 70 ms training step in batchnorm and the pool (bench/RESULTS.md,
 * session 17). */
static void net_fuse_pools(Net *net) {
  for (int b = 0; b < net->n_layers; b++) {
    Layer *l = &net->layers[b];
    const int m = l->kind == OP_BATCHNORM2D ? relu_pool2_after(net, b) : -1;
    if (m >= 0 && batchnorm2d_pool2_supported(shape_c(l->out_shape), shape_h(l->out_shape),
                                              shape_w(l->out_shape)))
      l->pool_fused = m + 1;
  }
}

/* The inputs of concatenation t, gathered ones opened into theirs, into src (at most
 * NET_MAX_INPUTS); returns their count, or -1 when there are more */
static int concat_sources(const Net *net, int t, int *src, int n) {
  const Layer *l = &net->layers[t - 1];
  for (int k = 0; k < l->n_src && n >= 0; k++) {
    const int s = l->src[k];
    if (s != NET_INPUT && net->layers[s - 1].gathered)
      n = concat_sources(net, s, src, n);
    else if (n < NET_MAX_INPUTS)
      src[n++] = s;
    else
      n = -1;
  }
  return n;
}

/* A concatenation read only by batchnorms (or by concatenations like it) is read where its
 * inputs are: in inference, channels-last, each batchnorm normalises its inputs' channels side by
 * side (batchnorm2d_eval_concat_nhwc), so the concatenation is never written nor read back. A
 * DenseNet layer's input is such a concatenation, one input longer than the last. Later
 * concatenations first: whether one is gathered depends on its readers. */
static void net_gather_concats(Net *net) {
  int src[NET_MAX_INPUTS];
  for (int i = net->n_layers - 2; i >= 0; i--) {
    Layer *l = &net->layers[i];
    if (l->kind != OP_CONCAT || l->out_shape.ndim != 3 || !l->readers) continue;
    int ok = 1;
    for (int j = i + 1; j < net->n_layers && ok; j++) {
      const Layer *r = &net->layers[j];
      for (int k = 0; k < r->n_src && ok; k++)
        if (r->src[k] == i + 1)
          ok = r->kind == OP_CONCAT ? r->gathered : r->kind == OP_BATCHNORM2D && !r->pool_fused;
    }
    l->gathered = ok;
    if (ok && concat_sources(net, i + 1, src, 0) < 0) l->gathered = 0;
  }
}

/* A residual add writes its sum over an input that nothing else needs: one read by the add
 * alone, made by an op whose backward does not read it (the last batchnorm of a bottleneck, or
 * of a shortcut), as PyTorch's `out += identity`. The add's backward reads no input. Saves a
 * block-output-sized buffer per residual block in the training plan: 700 MB of ResNet-50's
 * 224x224 batch of 32. */
static void net_overwrite_inputs(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (!op_def(l->kind)->may_overwrite_input) continue;
    for (int k = 0; k < l->n_src && !l->overwrites; k++) {
      const int t = l->src[k];
      if (t == NET_INPUT) continue;
      const Layer *prod = &net->layers[t - 1];
      if (op_def(prod->kind)->backward_skips_output && !prod->fused_relu && !prod->alias &&
          !prod->overwrites && prod->readers == 1)
        l->overwrites = 1 + k;
    }
  }
}

static void net_resolve(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->slots & (1u << SLOT_WEIGHT))
      l->weight = net->params + l->slot_off[SLOT_WEIGHT],
      l->dweight = net->grads + l->slot_off[SLOT_WEIGHT];
    if (l->slots & (1u << SLOT_BIAS))
      l->bias = net->params + l->slot_off[SLOT_BIAS],
      l->dbias = net->grads + l->slot_off[SLOT_BIAS];
    if (l->slots & (1u << SLOT_RUNNING_MEAN))
      l->running_mean = net->stats + l->slot_off[SLOT_RUNNING_MEAN];
    if (l->slots & (1u << SLOT_RUNNING_VAR))
      l->running_var = net->stats + l->slot_off[SLOT_RUNNING_VAR];
    if (l->slots & (1u << SLOT_COUNTER))
      l->num_batches_tracked = net->counters + l->slot_off[SLOT_COUNTER];
  }
}

Status net_finish(Net *net, MrError *err) {
  if (net->build_err.status != STATUS_OK) {
    if (err) *err = net->build_err;
    return net->build_err.status;
  }
  if (net->n_layers == 0)
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s: the network has no layers", net->spec.arch);
  /* the spec's normalisation holds three channels */
  if (net->spec.in_c < 1 || net->spec.in_c > 3)
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %d input channels, 1 to 3 are supported",
                        net->spec.arch, net->spec.in_c);
  const Shape out = net_tensor_shape(net, net_last(net));
  if (shape_c(out) != net->spec.n_classes || (out.ndim != 1 && out.ndim != 3))
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s: network ends in %d channels (%d-D), not %d class scores",
                        net->spec.arch, shape_c(out), out.ndim, net->spec.n_classes);
  /* a file's spec may declare any depth or width: bound it by what the file can hold */
  if (net->spec.max_floats && net->n_params + net->n_stats > net->spec.max_floats)
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: the architecture needs %zu parameters and statistics but the file "
                        "holds %zu floats (truncated, or not this architecture)",
                        net->spec.arch, net->n_params + net->n_stats, net->spec.max_floats);
  net_count_readers(net);
  net_fuse_relus(net);
  net_fuse_pools(net);
  net_gather_concats(net);
  net_overwrite_inputs(net);
  net->params = calloc(net->n_params ? net->n_params : 1, sizeof(float));
  net->grads = calloc(net->n_params ? net->n_params : 1, sizeof(float));
  net->stats = calloc(net->n_stats ? net->n_stats : 1, sizeof(float));
  net->counters = calloc(net->n_counters ? net->n_counters : 1, sizeof(int64_t));
  net->grad_written = calloc((size_t)net->n_layers + 1, 1);
  if (!net->params || !net->grads || !net->stats || !net->counters || !net->grad_written)
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for %zu parameters", net->n_params);
  net_resolve(net);
  net->finished = 1;
  return STATUS_OK;
}

void net_init_params(Net *net, uint64_t seed) {
  Rng rng;
  rng_seed(&rng, seed);
  for (int i = 0; i < net->n_layers; i++) {
    const OpDef *op = op_def(net->layers[i].kind);
    if (op->init) op->init(&net->layers[i], &rng);
  }
  rng_seed(&net->rng, seed ^ 0xD0D0D0D0ULL);
  net->param_version++;
}

/* ---- oneDNN and the layout ------------------------------------------------ */

static void net_dnnl_release(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    conv2d_dnnl_free(net->layers[i].dnnl);
    net->layers[i].dnnl = NULL;
  }
  for (int s = 0; s < CONV_WS_COUNT; s++) {
    free(net->engine.conv_ws[s]);
    net->engine.conv_ws[s] = NULL;
    net->engine.conv_ws_bytes[s] = 0;
  }
  free(net->engine.fold_weight);
  net->engine.fold_weight = net->engine.fold_bias = NULL;
  net->engine.batch = 0;
  net->engine.channels_last = 0;
}

/* The engine in use and the parked one change places, primitives included; 0 (nothing changed)
 * without memory for the parked one's table */
static int net_engine_swap(Net *net) {
  if (!net->parked.layer_dnnl) {
    net->parked.layer_dnnl = calloc((size_t)net->n_layers, sizeof(ConvDnnl *));
    if (!net->parked.layer_dnnl) return 0;
  }
  ConvDnnl **table = net->parked.layer_dnnl;
  for (int i = 0; i < net->n_layers; i++) {
    ConvDnnl *parked = table[i];
    table[i] = net->layers[i].dnnl;
    net->layers[i].dnnl = parked;
  }
  const NetEngine in_use = net->engine;
  net->engine = net->parked;
  net->engine.layer_dnnl = NULL;
  net->parked = in_use;
  net->parked.layer_dnnl = table;
  return 1;
}

static void net_engines_release(Net *net) {
  net_dnnl_release(net);
  if (!net->parked.layer_dnnl) return;
  net_engine_swap(net);
  net_dnnl_release(net);
  net_engine_swap(net);
  free(net->parked.layer_dnnl);
  net->parked.layer_dnnl = NULL;
}

void net_set_conv_backend(Net *net, ConvBackend backend) {
  net_engines_release(net);
  net->use_dnnl = backend != CONV_BACKEND_IM2COL;
  net->allow_channels_last = backend == CONV_BACKEND_DNNL;
}

/* Channels-last needs every op to have NHWC kernels and every op with
 * oneDNN primitives to get them; returns 0 (all released) otherwise. */
static int net_dnnl_channels_last(Net *net, int batch) {
  for (int i = 0; i < net->n_layers; i++)
    if (!op_def(net->layers[i].kind)->channels_last) return 0;
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    const OpDef *op = op_def(l->kind);
    if (op->prepare && !op->prepare(net, l, batch, 1)) {
      net_dnnl_release(net);
      return 0;
    }
  }
  return 1;
}

/* The tensor whose buffer t shares: t itself, or its producer's when a fused ReLU aliases it */
static int tensor_root(const Net *net, int t) {
  while (t != NET_INPUT && net->layers[t - 1].alias) t = net->layers[t - 1].src[0];
  return t;
}

/* the input of residual add `add` that is not its batchnorm's output (tensor `add`) */
static int residual_identity(const Net *net, int add) {
  const Layer *a = &net->layers[add];
  return a->src[a->src[0] == add ? 1 : 0];
}

/* Conv i -> batchnorm i+1, the convolution read by the batchnorm alone: the batchnorm folds into
 * the convolution for inference */
static int conv_bn_folds(const Net *net, int i) {
  if (i + 1 >= net->n_layers) return 0;
  const Layer *conv = &net->layers[i], *bn = &net->layers[i + 1];
  return conv->kind == OP_CONV2D && bn->kind == OP_BATCHNORM2D && bn->src[0] == i + 1 &&
         conv->readers == 1;
}

/* Inference's residual add: conv i -> batchnorm i+1 -> add, each read by the next alone, the
 * add's other input (the identity) not the convolution's input. Then the convolution, with the
 * batchnorm folded in, adds its result to the identity in the add's buffer (oneDNN's sum
 * post-op) and the batchnorm and add layers are skipped. Returns the add's index, or -1. */
static int residual_add_after(const Net *net, int i) {
  if (i + 2 >= net->n_layers || !conv_bn_folds(net, i)) return -1;
  const Layer *conv = &net->layers[i], *bn = &net->layers[i + 1], *add = &net->layers[i + 2];
  if (add->kind != OP_ADD || bn->readers != 1 || bn->fused_relu || add->n_src != 2 ||
      (add->src[0] == i + 2) == (add->src[1] == i + 2))
    return -1;
  const int identity = residual_identity(net, i + 2);
  return tensor_root(net, identity) == tensor_root(net, conv->src[0]) ? -1 : i + 2;
}

/* Inference's depthwise-separable pair: conv i -> batchnorm i+1 (-> the alias of its fused ReLU)
 * -> conv j -> batchnorm j+1, each read by the next alone, both convolutions folding their
 * batchnorms and j without a residual add. conv2d_separable runs the two convolutions in one
 * pass when their shapes allow (conv2d_dnnl_enable_folded_separable). Returns j, or -1. */
static int separable_pointwise_after(const Net *net, int i) {
  if (!conv_bn_folds(net, i) || net->layers[i + 1].readers != 1) return -1;
  int j = i + 2; /* reading tensor j */
  if (net->layers[i + 1].fused_relu) {
    if (j >= net->n_layers || !net->layers[j].alias || net->layers[j].src[0] != i + 2 ||
        net->layers[j].readers != 1)
      return -1;
    j++;
  }
  if (j >= net->n_layers || net->layers[j].kind != OP_CONV2D || net->layers[j].src[0] != j ||
      !conv_bn_folds(net, j) || residual_add_after(net, j) >= 0)
    return -1;
  return j;
}

/* the depthwise conv i whose pair (separable_pointwise_after) is conv j, or -1 */
static int separable_depthwise_before(const Net *net, int j) {
  const int bn_out = tensor_root(net, net->layers[j].src[0]), i = bn_out - 2;
  return i >= 0 && separable_pointwise_after(net, i) == j ? i : -1;
}

/* The 2x2 max-pool after conv i, its batchnorm and the batchnorm's ReLU, each read by the next
 * alone, which the folded convolution may do (conv2d_dnnl_folded_pools), or -1 */
static int conv_pool2_after(const Net *net, int i) {
  return conv_bn_folds(net, i) ? relu_pool2_after(net, i + 1) : -1;
}

/* The batchnorm that does max-pool layer i when channels-last (net_fuse_pools), or -1 */
static int pool_fused_into(const Net *net, int i) {
  const int t = tensor_root(net, net->layers[i].src[0]);
  return t != NET_INPUT && net->layers[t - 1].pool_fused == i + 1 ? t - 1 : -1;
}

/* Layer i is a max-pool its input's producer does in the current layout */
static int pool_done_by_producer(const Net *net, int i) {
  return net->engine.channels_last && pool_fused_into(net, i) >= 0;
}

/* Builds oneDNN primitives for this batch size, channels-last when the whole
 * graph can; otherwise a layer oneDNN cannot take (or any allocation
 * failure) falls back to the im2col kernels. */
static void net_dnnl_prepare(Net *net, int batch) {
  net_dnnl_release(net);
  net->engine.channels_last = net->allow_channels_last && net_dnnl_channels_last(net, batch);
  net->engine.batch = batch;
  size_t need[CONV_WS_COUNT] = {0}, fold_w = 0, fold_b = 0;
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    const OpDef *op = op_def(l->kind);
    if (!net->engine.channels_last && op->prepare) op->prepare(net, l, batch, 0);
    if (!l->dnnl) continue;
    const int add = residual_add_after(net, i), dw = separable_depthwise_before(net, i);
    const int relu = net->layers[i + 1].fused_relu;
    if (conv_bn_folds(net, i) &&
        ((dw >= 0 && conv2d_dnnl_enable_folded_separable(l->dnnl, net->layers[dw].dnnl, relu)) ||
         (add >= 0 && conv2d_dnnl_enable_folded(l->dnnl, net->layers[add].fused_relu, 1)) ||
         conv2d_dnnl_enable_folded(l->dnnl, relu, 0))) {
      const Conv2dDims d = layer_conv_dims(l, batch);
      const size_t w = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
      if (w > fold_w) fold_w = w;
      if ((size_t)d.OC > fold_b) fold_b = (size_t)d.OC;
    }
    for (int s = 0; s < CONV_WS_COUNT; s++) {
      size_t b = conv2d_dnnl_workspace_bytes(l->dnnl, s);
      if (b > need[s]) need[s] = b;
    }
  }
  net->engine.fold_weight =
      aligned_alloc(64, sizeof(float) * ((fold_w + fold_b + 15) & ~(size_t)15) + 64);
  net->engine.fold_bias =
      net->engine.fold_weight ? net->engine.fold_weight + ((fold_w + 15) & ~(size_t)15) : NULL;
  for (int s = 0; s < CONV_WS_COUNT; s++) {
    const size_t bytes = (need[s] + 63) / 64 * 64;
    net->engine.conv_ws[s] = aligned_alloc(64, bytes ? bytes : 64);
    net->engine.conv_ws_bytes[s] = bytes;
    if (!net->engine.conv_ws[s]) {
      net_dnnl_release(net);     /* back to im2col, which is planar */
      net->engine.batch = batch; /* do not retry every call */
      return;
    }
  }
}

void net_free(Net *net) {
  if (!net) return;
  net_engines_release(net);
  free(net->layers);
  free(net->entries);
  free(net->params);
  free(net->grads);
  free(net->stats);
  free(net->counters);
  free(net->grad_written);
  free(net->profile);
  free(net->act);
  free(net->infer_arena);
  free(net->infer_out);
  free(net->few_scratch);
  if (net->aux_free) net->aux_free(net->aux);
  model_spec_free(&net->spec);
  free(net);
}

/* ---- accessors -------------------------------------------------------------- */

const ModelSpec *net_spec(const Net *net) { return &net->spec; }

/* what the last layer reads: the penultimate features */
int net_feature_dim(const Net *net) {
  return (int)shape_numel(net_tensor_shape(net, net->layers[net->n_layers - 1].src[0]));
}

const float *net_last_features(const Net *net) {
  return net_tensor_out((Net *)net, net->layers[net->n_layers - 1].src[0]);
}

const char *net_class_name(const Net *net, int k, char buf[16]) {
  if (net->spec.class_names[k]) return net->spec.class_names[k];
  snprintf(buf, 16, "%d", k);
  return buf;
}

void net_set_data_record(Net *net, const char *json) {
  snprintf(net->spec.data, sizeof net->spec.data, "%s", json ? json : "");
}

void net_set_training_info(Net *net, const char *json) {
  snprintf(net->spec.training, sizeof net->spec.training, "%s", json ? json : "");
}
size_t net_param_count(const Net *net) { return net->n_params; }
double net_flops(const Net *net) { return net->flops; }
int net_num_classes(const Net *net) { return net->spec.n_classes; }
int net_input_size(const Net *net) { return net->spec.in_c * net->spec.in_h * net->spec.in_w; }
int net_output_pixels(const Net *net) {
  const Shape s = net_tensor_shape(net, net_last(net));
  return shape_h(s) * shape_w(s);
}
void net_set_normalization(Net *net, const float mean[3], const float std[3]) {
  for (int c = 0; c < 3; c++) net->spec.norm_mean[c] = mean[c], net->spec.norm_std[c] = std[c];
}
Status net_require_per_image(const Net *net, MrError *err) {
  if (net_output_pixels(net) == 1) return STATUS_OK;
  return mr_error_set(err, STATUS_ERR_ARG,
                      "%s answers per pixel (segmentation); this takes one label per image "
                      "(segmentation sets go through train, eval and net_segment_dataset)",
                      net->spec.arch);
}
float *net_params(Net *net) {
  net->param_version++; /* the caller may write through it */
  return net->params;
}
Rng *net_rng(Net *net) { return &net->rng; }

void net_set_batch_share(Net *net, const BatchShare *share) { net->share = share; }
void net_set_input_quantization(Net *net, int levels) {
  net->input_levels = levels > 1 ? levels : 0;
}
float *net_grads(Net *net) { return net->grads; }
void net_zero_grad(Net *net) { memset(net->grads, 0, sizeof(float) * net->n_params); }

int net_tensor_count(const Net *net) { return net->n_entries; }

int net_layer_count(const Net *net) { return net->n_layers; }

NetLayerInfo net_layer_info(const Net *net, int i) {
  const Layer *l = &net->layers[i];
  NetLayerInfo info = {.op = op_def(l->kind)->name,
                       .name = l->name,
                       .n_inputs = l->n_src,
                       .inputs = l->src,
                       .out_ndim = l->out_shape.ndim,
                       .params = l->n_params,
                       .flops = l->flops,
                       .flops_inside = l->flops_inside};
  memcpy(info.out, l->out_shape.d, sizeof info.out);
  return info;
}

TensorRef net_tensor(const Net *net, int i) {
  const Entry *e = &net->entries[i];
  /* the caller may write through the pointer: the folded weights of inference are redone */
  ((Net *)net)->param_version++;
  TensorRef t = {.name = e->name, .ndim = e->ndim, .numel = e->numel};
  memcpy(t.shape, e->shape, sizeof t.shape);
  if (e->kind == ENTRY_COUNTER) {
    t.is_int64 = 1;
    t.idata = net->counters + e->offset;
  } else {
    t.data = (e->kind == ENTRY_PARAM ? net->params : net->stats) + e->offset;
  }
  return t;
}

/* ---- planning --------------------------------------------------------------- */

static size_t layer_out_size(const Layer *l) { return shape_numel(l->out_shape); }

/* floats in the biggest layer output of one image */
static size_t largest_output(const Net *net) {
  size_t biggest = 0;
  for (int i = 0; i < net->n_layers; i++)
    if (layer_out_size(&net->layers[i]) > biggest) biggest = layer_out_size(&net->layers[i]);
  return biggest;
}
/* the net's output (B, K, H, W) is kept NCHW for the caller in its own buffer
 * when the last tensor is channels-last and spatial */
static int net_output_transposed(const Net *net) {
  return net->engine.channels_last && net_output_pixels(net) > 1;
}

/* Every planned buffer starts on a 64-byte line: vector stores (ours and
 * oneDNN's reorders) split across cache lines otherwise. */
#define A(nfloats) (((size_t)(nfloats) + 15) & ~(size_t)15)

/* The input's and every layer's output buffer laid out from p; an alias shares its
 * producer's. Returns the end. */
static float *net_plan_outputs(Net *net, float *p, int batch) {
  net->input = p, p += A((size_t)net_input_size(net) * batch);
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->alias)
      l->out = net_tensor_out(net, l->src[0]);
    else if (l->overwrites)
      l->out = net_tensor_out(net, l->src[l->overwrites - 1]);
    else
      l->out = p, p += A(layer_out_size(l) * batch);
  }
  return p;
}

/* Gradient buffers by liveness over the backward pass, as PyTorch frees a gradient once
 * used: layer i's output gradient is written first by the backward of its last reader and
 * read last by layer i's own backward, so it lives over layers [i, last reader] (an alias
 * joins its producer's interval), and buffers whose intervals do not meet share memory.
 * Gradients are never zeroed up front (net_backward's first writer overwrites), so a reused
 * buffer needs no clearing. Sets each layer's offset (floats from the gradient arena's
 * start) and returns the arena's size; -1 offsets are aliases. Layer by layer it cuts the
 * backward's memory from one buffer per layer to the few alive at once. */
static size_t net_plan_gradient_offsets(const Net *net, int batch, size_t *offset) {
  const int n = net->n_layers;
  int *root = malloc(sizeof(int) * (n + 1)), *last = malloc(sizeof(int) * (n + 1));
  int *order = malloc(sizeof(int) * (n + 1)), *slot_of = malloc(sizeof(int) * (n + 1));
  size_t *cap = calloc((size_t)n + 1, sizeof(size_t));
  int *busy_to = malloc(sizeof(int) * (n + 1)); /* a slot is busy down to this layer */
  size_t *start = malloc(sizeof(size_t) * (n + 1)), total = 0; /* at most one slot a layer */
  if (!root || !last || !order || !slot_of || !cap || !busy_to || !start) {
    /* no room to plan: every gradient its own buffer */
    for (int i = 0; i < n; i++) {
      offset[i] = net->layers[i].alias ? (size_t)-1 : total;
      if (!net->layers[i].alias) total += A(layer_out_size(&net->layers[i]) * batch);
    }
    free(root), free(last), free(order), free(slot_of), free(cap), free(busy_to), free(start);
    return total;
  }
  root[0] = 0;
  for (int i = 0; i < n; i++) {
    const Layer *l = &net->layers[i];
    root[i + 1] = l->alias ? root[l->src[0]] : i + 1;
    last[i + 1] = i;
  }
  for (int i = 0; i < n; i++) {
    const Layer *l = &net->layers[i];
    if (l->alias) last[root[i + 1]] = i > last[root[i + 1]] ? i : last[root[i + 1]];
    for (int k = 0; k < l->n_src; k++)
      if (l->src[k] != NET_INPUT && i > last[root[l->src[k]]]) last[root[l->src[k]]] = i;
  }
  last[root[n]] = n; /* the loss gradient is copied in before any backward */
  int m = 0, slots = 0;
  for (int t = 1; t <= n; t++)
    if (root[t] == t) order[m++] = t;
  /* first used first: descending last reader (insertion sort: a few hundred layers) */
  for (int a = 1; a < m; a++)
    for (int b = a; b > 0 && last[order[b - 1]] < last[order[b]]; b--) {
      const int swap = order[b];
      order[b] = order[b - 1], order[b - 1] = swap;
    }
  for (int a = 0; a < m; a++) {
    const int t = order[a];
    const size_t need = A(layer_out_size(&net->layers[t - 1]) * batch);
    int best = -1;
    for (int s = 0; s < slots; s++) { /* free: its occupant's own backward came before */
      if (busy_to[s] <= last[t]) continue;
      if (best < 0 ||
          (cap[s] >= need ? cap[best] < need || cap[s] < cap[best] : cap[s] > cap[best]))
        best = s;
    }
    if (best < 0) best = slots++;
    if (cap[best] < need) cap[best] = need;
    /* a pool done by its batchnorm (in channels-last): that backward reads this gradient */
    const int fused_into = pool_fused_into(net, t - 1);
    busy_to[best] = fused_into >= 0 ? fused_into : t - 1;
    slot_of[t] = best;
  }
  for (int s = 0; s < slots; s++) start[s] = total, total += cap[s];
  for (int i = 0; i < n; i++) offset[i] = net->layers[i].alias ? (size_t)-1 : start[slot_of[i + 1]];
  free(start), free(root), free(last), free(order), free(slot_of), free(cap), free(busy_to);
  return total;
}

NetPlanMemory net_plan_memory(const Net *net) { return net->plan_memory; }

Status net_plan(Net *net, int batch, MrError *err) {
  const int threads = mr_get_threads();
  if (batch <= 0) return mr_error_set(err, STATUS_ERR_ARG, "batch size %d must be positive", batch);
  if (!net->finished) return mr_error_set(err, STATUS_ERR_ARG, "net_plan before net_finish");
  if (net->act && batch <= net->batch && threads <= net->planned_threads) return STATUS_OK;
  const size_t in_size = (size_t)net_input_size(net);
  const size_t n_out = shape_numel(net_tensor_shape(net, net_last(net))) * batch;
  size_t *grad_offset = malloc(sizeof(size_t) * (net->n_layers + 1));
  if (!grad_offset) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory planning a batch");
  const size_t grad_total = net_plan_gradient_offsets(net, batch, grad_offset);
  size_t total = 2 * A(in_size * batch) + grad_total, scratch = 0;
  for (int i = 0; i < net->n_layers; i++) {
    const Layer *l = &net->layers[i];
    const OpDef *op = op_def(l->kind);
    if (!l->alias && !l->overwrites) total += A(layer_out_size(l) * batch);
    if (op->saved_floats) total += A(op->saved_floats(l, batch));
    if (op->scratch_floats) {
      const size_t s = op->scratch_floats(l, batch, threads);
      if (s > scratch) scratch = s;
    }
  }
  total += A(scratch) + 3 * A(n_out);
  free(net->act);
  net->act = mr_alloc_arena(sizeof(float) * total);
  if (!net->act) {
    free(grad_offset);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory planning batch %d (%zu MB)", batch,
                        total * 4 >> 20);
  }
  /* outputs first, then the input's gradient, then the shared gradient buffers */
  float *p = net_plan_outputs(net, net->act, batch);
  net->dinput = p, p += A(in_size * batch);
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    l->dout = l->alias ? net_tensor_dout(net, l->src[0]) : p + grad_offset[i];
  }
  p += grad_total;
  free(grad_offset);
  net->plan_memory = (NetPlanMemory){.total_bytes = sizeof(float) * total,
                                     .gradient_bytes = sizeof(float) * grad_total};
  for (int i = 0; i < net->n_layers; i++)
    if (!net->layers[i].alias)
      net->plan_memory.unshared_gradient_bytes +=
          sizeof(float) * A(layer_out_size(&net->layers[i]) * batch);
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    const OpDef *op = op_def(l->kind);
    l->saved = NULL;
    if (op->saved_floats) l->saved = p, p += A(op->saved_floats(l, batch));
  }
  net->scratch = p, p += A(scratch);
  net->probs = p, p += A(n_out);
  net->dlogits = p, p += A(n_out);
  net->logits = p;
  net->batch = batch;
  net->planned_threads = threads;
  return STATUS_OK;
}

#undef A

/* Forward-only calls (net_predict) reuse a few buffers, assigned by
 * liveness over the layer list, so activations stay in cache instead of
 * streaming through one buffer per layer; backward needs every output and
 * uses the full plan. */
static Status net_plan_inference(Net *net, int batch) {
  if (net->infer_arena && batch <= net->infer_batch) return STATUS_OK;
  const int n = net->n_layers;
  int *last_use = malloc(sizeof(int) * (n + 1)), *slot_of = malloc(sizeof(int) * (n + 1));
  int *slot_free = calloc((size_t)n + 1, sizeof(int)), *shares = malloc(sizeof(int) * (n + 1));
  float **outs = realloc(net->infer_out, sizeof(float *) * n);
  if (!last_use || !slot_of || !slot_free || !shares || !outs) {
    free(last_use), free(slot_of), free(slot_free), free(shares);
    if (outs) net->infer_out = outs;
    return STATUS_ERR_NOMEM;
  }
  net->infer_out = outs;
  /* last_use[t]: the last layer reading tensor t (the output: past the end) */
  for (int t = 0; t <= n; t++) last_use[t] = t == n ? n : t - 1;
  for (int j = 0; j < n; j++) {
    const Layer *l = &net->layers[j];
    for (int k = 0; k < l->n_src; k++)
      if (last_use[l->src[k]] < j) last_use[l->src[k]] = j;
    /* a residual add done by the convolution: it reads its input until it writes the add; a
     * batchnorm doing the pool after it, until it writes the pool's output */
    const int add = residual_add_after(net, j), pool = conv_pool2_after(net, j);
    if (add >= 0 && last_use[l->src[0]] < add) last_use[l->src[0]] = add;
    /* and a pool done by the convolution, until it writes the pool's output */
    if (pool >= 0 && last_use[l->src[0]] < pool) last_use[l->src[0]] = pool;
    if (l->pool_fused && last_use[l->src[0]] < l->pool_fused - 1)
      last_use[l->src[0]] = l->pool_fused - 1;
    /* a depthwise-separable pair, until it writes the pointwise batchnorm's output (whether
     * or not its shapes let conv2d_separable run it: the plan may come before the primitives) */
    const int pw = separable_pointwise_after(net, j);
    if (pw >= 0 && last_use[l->src[0]] < pw + 1) last_use[l->src[0]] = pw + 1;
  }
  /* a gathered concatenation's inputs, until its last reader (later ones first: a chain of
   * them passes it on) */
  for (int j = n - 1; j >= 0; j--)
    for (int k = 0; net->layers[j].gathered && k < net->layers[j].n_src; k++)
      if (last_use[net->layers[j].src[k]] < last_use[j + 1])
        last_use[net->layers[j].src[k]] = last_use[j + 1];
  /* shares[j]: the tensor whose buffer layer j writes over, or -1 for a buffer of its own: an
   * alias's producer, and a residual add's identity when the add is the last to read it */
  for (int j = 0; j < n; j++) shares[j] = net->layers[j].alias ? net->layers[j].src[0] : -1;
  for (int pass = 0; pass < 2; pass++) {
    /* a buffer lives as long as any tensor sharing it: the first pass merges the aliases',
     * which says whether an add is its identity's last reader; the second the adds' too */
    for (int j = n - 1; j >= 0; j--) {
      const int p = shares[j];
      if (p < 0) continue;
      if (last_use[j + 1] > last_use[p]) last_use[p] = last_use[j + 1];
      last_use[j + 1] = last_use[p];
    }
    for (int j = 0; pass == 0 && j + 2 < n; j++) {
      const int add = residual_add_after(net, j), t = add >= 0 ? residual_identity(net, add) : 0;
      if (add >= 0 && tensor_root(net, t) != NET_INPUT && last_use[t] == add) shares[add] = t;
    }
  }
  int n_slots = 0;
  for (int j = 0; j < n; j++) {
    if (shares[j] >= 0) {
      slot_of[j + 1] = slot_of[shares[j]];
    } else {
      int slot = 0;
      while (slot < n_slots && !slot_free[slot]) slot++;
      if (slot == n_slots) n_slots++;
      slot_free[slot] = 0;
      slot_of[j + 1] = slot;
    }
    /* free the inputs of layer j-1, not j: a conv folded with the batchnorm
     * after it reads its input while writing the batchnorm's output */
    if (j == 0) continue;
    const Layer *prev = &net->layers[j - 1];
    for (int k = 0; k < prev->n_src; k++) {
      const int t = prev->src[k];
      if (t != NET_INPUT && last_use[t] == j - 1) slot_free[slot_of[t]] = 1;
    }
  }
  const size_t stride = (largest_output(net) * batch + 15) & ~(size_t)15;
  free(net->infer_arena);
  net->infer_arena = mr_alloc_arena(sizeof(float) * stride * (n_slots ? n_slots : 1));
  Status status = STATUS_ERR_NOMEM;
  if (net->infer_arena) {
    for (int j = 0; j < n; j++) net->infer_out[j] = net->infer_arena + stride * slot_of[j + 1];
    net->infer_batch = batch;
    status = STATUS_OK;
  }
  free(last_use), free(slot_of), free(slot_free), free(shares);
  return status;
}

/* ---- forward / backward -------------------------------------------------------- */

static const float *net_run_forward(Net *net, const float *x, int batch, Mode mode, int inference);

const float *net_forward(Net *net, const float *x, int batch, Mode mode) {
  if (net_plan(net, batch, NULL) != STATUS_OK) return NULL;
  return net_run_forward(net, x, batch, mode, 0);
}

/* net->engine.fold_weight and fold_bias: conv's weights and bias with batchnorm bn folded in */
static void net_fold_bn(Net *net, const Layer *conv, const Layer *bn) {
  const Conv2dDims d = layer_conv_dims(conv, 1);
  const size_t per_oc = (size_t)(d.C / d.groups) * d.KH * d.KW;
  const float eps = bn->a.eps;
  /* in parallel: serial, this fold left the second thread idle for a tenth of a small model's
   * forward pass */
#pragma omp parallel for schedule(static)
  for (int oc = 0; oc < d.OC; oc++) {
    const float scale = bn->weight[oc] * (float)(1.0 / sqrt((double)bn->running_var[oc] + eps));
    const float *w = conv->weight + per_oc * oc;
    float *fw = net->engine.fold_weight + per_oc * oc;
    for (size_t j = 0; j < per_oc; j++) fw[j] = w[j] * scale;
    net->engine.fold_bias[oc] =
        (conv->bias ? conv->bias[oc] : 0.0f) * scale + bn->bias[oc] - bn->running_mean[oc] * scale;
  }
}

/* Inference: the image's first convolution, when it reads few channels, with its batchnorm,
 * the batchnorm's ReLU and a 2x2 max-pool after them, by conv2d_few (one pass, the full-size
 * map never written). Returns the last layer done, or i when the layers do not fit. */
static int net_conv_few(Net *net, int i, int batch) {
  Layer *conv = &net->layers[i];
  /* folded: conv -> batchnorm i+1, the conv read by it alone (net_dnnl_prepare's test) */
  if (conv->src[0] != NET_INPUT || !net->engine.channels_last ||
      !conv2d_dnnl_has_folded(conv->dnnl) || !net->engine.fold_weight)
    return i;
  Layer *bn = &net->layers[i + 1];
  const Conv2dDims d = layer_conv_dims(conv, batch);
  if (!conv2d_few_supported(d)) return i;
  /* batchnorm (ReLU fused) -> its ReLU alias -> a 2x2 max-pool at stride 2, each read once.
   * Only then: without the pool, oneDNN's convolution is as fast (resnet20 64x64's first,
   * writing 33.5 MB: 1.55 ms, 1.65 by hand) */
  const int last = relu_pool2_after(net, i + 1);
  if (last < 0) return i;
  const size_t need = conv2d_few_scratch_floats(d);
  if (need > net->few_scratch_floats) {
    float *grown = realloc(net->few_scratch, sizeof(float) * need);
    if (!grown) return i; /* oneDNN's way then */
    net->few_scratch = grown, net->few_scratch_floats = need;
  }
  net_fold_bn(net, conv, bn);
  conv2d_few_forward_nhwc(net->layers[last].out, net->few_scratch, net->input,
                          net->engine.fold_weight, net->engine.fold_bias, d, bn->fused_relu,
                          last == i + 3);
  return last;
}

/* conv's batchnorm folded into its kept weights, made again only when the parameters may have
 * changed since; 0 when there is no memory to keep them (net->engine.fold_weight and fold_bias then
 * hold them for this call) */
static int net_fold_kept(Net *net, Layer *conv, Layer *bn) {
  if (conv2d_dnnl_folded_version(conv->dnnl) == net->param_version) return 1;
  net_fold_bn(net, conv, bn);
  return conv2d_dnnl_set_folded(conv->dnnl, net->engine.fold_weight, net->engine.fold_bias,
                                net->param_version);
}

/* Inference: depthwise conv i and pointwise conv j (separable_pointwise_after) in one pass, into
 * j's batchnorm's buffer; 0 (nothing run) without kept folded weights */
static int net_conv_separable(Net *net, int i, int j) {
  Layer *dw = &net->layers[i], *pw = &net->layers[j];
  if (!conv2d_dnnl_folded_separable(pw->dnnl) || !net_fold_kept(net, dw, dw + 1) ||
      !net_fold_kept(net, pw, pw + 1))
    return 0;
  conv2d_dnnl_forward_separable(dw->dnnl, pw->dnnl, net->engine.conv_ws, net->layers[j + 1].out,
                                net_tensor_out(net, dw->src[0]));
  return 1;
}

/* Inference: conv i with batchnorm i+1 folded in, written to out (i+1's output, or a residual
 * add's, added to what it holds; with pool2, the 2x2 max-pool's after them). */
static void net_conv_bn_folded(Net *net, Layer *conv, Layer *bn, float *out, int pool2) {
  const int kept = net_fold_kept(net, conv, bn);
  conv2d_dnnl_forward_folded(
      conv->dnnl, net->engine.conv_ws, out, net_tensor_out(net, conv->src[0]),
      kept ? NULL : net->engine.fold_weight, kept ? NULL : net->engine.fold_bias, pool2);
}

/* Inference: conv i, batchnorm i+1 and the residual add after them in one oneDNN call; the
 * identity is copied into the add's buffer first unless the plan put the add there (it does
 * when the add is the identity's last reader). */
static void net_conv_bn_add(Net *net, int i, int add, int batch) {
  Layer *a = &net->layers[add];
  const float *identity = net_tensor_out(net, residual_identity(net, add));
  if (identity != a->out) memcpy(a->out, identity, sizeof(float) * layer_out_size(a) * batch);
  net_conv_bn_folded(net, &net->layers[i], &net->layers[i + 1], a->out, 0);
}

/* Inference: batchnorm l over a gathered concatenation, from the concatenation's inputs */
static void net_batchnorm_gathered(Net *net, Layer *l, int batch) {
  int src[NET_MAX_INPUTS], C[NET_MAX_INPUTS];
  const float *in[NET_MAX_INPUTS];
  const int n = concat_sources(net, l->src[0], src, 0); /* net_gather_concats checked the count */
  for (int k = 0; k < n; k++)
    in[k] = net_tensor_out(net, src[k]), C[k] = shape_c(net_tensor_shape(net, src[k]));
  const BatchNormDims d = {.B = batch,
                           .C = shape_c(l->in_shape),
                           .H = shape_h(l->in_shape),
                           .W = shape_w(l->in_shape),
                           .eps = l->a.eps};
  batchnorm2d_eval_concat_nhwc(l->out, l->saved, l->saved + d.C, in, C, n, l->weight, l->bias,
                               l->running_mean, l->running_var, d, l->fused_relu, net->scratch);
}

static const float *net_output(Net *net, int batch) {
  const float *last = net->layers[net->n_layers - 1].out;
  if (!net_output_transposed(net)) return last;
  const Shape s = net_tensor_shape(net, net_last(net));
  nhwc_to_nchw(net->logits, 0, last, batch, shape_c(s), shape_h(s) * shape_w(s));
  return net->logits;
}

Status net_profile_start(Net *net, MrError *err) {
  free(net->profile);
  net->profile = calloc(2 * (size_t)net->n_layers, sizeof(double));
  if (!net->profile)
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the layer profile");
  return STATUS_OK;
}

const double *net_profile_seconds(const Net *net) { return net->profile; }

static const float *net_run_forward(Net *net, const float *x, int batch, Mode mode, int inference) {
  const ModelSpec *s = &net->spec;
  const size_t hw = (size_t)s->in_h * s->in_w;
  if (net->use_dnnl && net->engine.batch != batch) net_dnnl_prepare(net, batch);
  if (mode == MODE_TRAIN) net->param_version++; /* the running statistics move */
  /* channels-last with colour: normalise in place, then transpose into the
   * input tensor from the input gradient's buffer (free until backward) */
  const int transpose = net->engine.channels_last && s->in_c > 1;
  float *normalised = transpose ? net->dinput : net->input;
  if (net->input_levels) {
    quantize_forward(normalised, x, hw * s->in_c * batch, net->input_levels);
    x = normalised;
  }
#pragma omp parallel for schedule(static)
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < s->in_c; c++) {
      const float mean = s->norm_mean[c], inv = 1.0f / s->norm_std[c];
      const float *src = x + ((size_t)b * s->in_c + c) * hw;
      float *dst = normalised + ((size_t)b * s->in_c + c) * hw;
      for (size_t i = 0; i < hw; i++) dst[i] = (src[i] - mean) * inv;
    }
  if (transpose) nchw_to_nhwc(net->input, 0, normalised, batch, s->in_c, (int)hw);
  net->batch_in_use = batch;
  net->last_mode = mode;
  LayerCall c = {.net = net,
                 .B = batch,
                 .mode = mode,
                 .channels_last = net->engine.channels_last,
                 .forward_only = inference};
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->alias) continue;
    const double t0 = net->profile ? omp_get_wtime() : 0;
    const int few = inference ? net_conv_few(net, i, batch) : i;
    if (few > i) {
      if (net->profile) net->profile[i] += omp_get_wtime() - t0;
      i = few; /* the batchnorm, and its ReLU and max-pool, are done */
      continue;
    }
    if (inference && l->kind == OP_CONV2D && conv2d_dnnl_has_folded(l->dnnl) &&
        net->engine.fold_weight) {
      const int pw = separable_pointwise_after(net, i);
      if (pw >= 0 && net_conv_separable(net, i, pw)) {
        if (net->profile) net->profile[i] += omp_get_wtime() - t0;
        i = pw + 1; /* both batchnorms, and the ReLUs, are done */
        continue;
      }
      const int add = conv2d_dnnl_folded_sums(l->dnnl) ? residual_add_after(net, i) : -1;
      const int pool = conv2d_dnnl_folded_pools(l->dnnl) ? conv_pool2_after(net, i) : -1;
      if (add >= 0)
        net_conv_bn_add(net, i, add, batch);
      else
        net_conv_bn_folded(net, l, &net->layers[i + 1], net->layers[pool >= 0 ? pool : i + 1].out,
                           pool >= 0);
      if (net->profile) net->profile[i] += omp_get_wtime() - t0;
      /* the batchnorm, and the add or the ReLU and pool, are done */
      i = add >= 0 ? add : pool >= 0 ? pool : i + 1;
      continue;
    }
    if (inference && net->engine.channels_last && l->gathered)
      continue; /* read where its inputs are */
    if (inference && net->engine.channels_last && l->kind == OP_BATCHNORM2D &&
        l->src[0] != NET_INPUT && net->layers[l->src[0] - 1].gathered) {
      net_batchnorm_gathered(net, l, batch);
      if (net->profile) net->profile[i] += omp_get_wtime() - t0;
      continue;
    }
    c.l = l;
    op_def(l->kind)->forward(&c);
    if (net->profile) net->profile[i] += omp_get_wtime() - t0;
    if (l->pool_fused && net->engine.channels_last)
      i = l->pool_fused - 1; /* its ReLU and pool, done */
  }
  return net_output(net, batch);
}

void net_backward(Net *net, const float *dlogits, float *dx, int want_param_grads) {
  const int B = net->batch_in_use;
  /* written[t]: tensor t's gradient holds data; its first writer overwrites
   * (reverse order visits consumers before producers), so no gradient
   * buffer is zeroed up front */
  unsigned char *written = net->grad_written;
  memset(written, 0, (size_t)net->n_layers + 1);
  const Layer *last = &net->layers[net->n_layers - 1];
  const Shape out = net_tensor_shape(net, net_last(net));
  if (net_output_transposed(net))
    nchw_to_nhwc(last->dout, 0, dlogits, B, shape_c(out), shape_h(out) * shape_w(out));
  else
    memcpy(last->dout, dlogits, sizeof(float) * B * shape_numel(out));
  written[net->n_layers] = 1;
  LayerCall c = {.net = net,
                 .B = B,
                 .mode = net->last_mode,
                 .param_grads = want_param_grads,
                 .channels_last = net->engine.channels_last};
  for (int i = net->n_layers - 1; i >= 0; i--) {
    Layer *l = &net->layers[i];
    if (!written[i + 1]) { /* an output nothing read */
      memset(l->dout, 0, sizeof(float) * layer_out_size(l) * B);
      written[i + 1] = 1;
    }
    if (l->alias) { /* its gradient is its producer's buffer */
      written[l->src[0]] = 1;
      continue;
    }
    if (pool_done_by_producer(net, i)) { /* whose backward reads this gradient */
      written[l->src[0]] = 1;
      continue;
    }
    c.l = l;
    const double t0 = net->profile ? omp_get_wtime() : 0;
    for (int k = 0; k < l->n_src; k++) {
      const int t = l->src[k];
      int seen = written[t];
      for (int j = 0; j < k && !seen; j++) seen = l->src[j] == t && c.want[j];
      c.want[k] = t != NET_INPUT || dx != NULL;
      c.acc[k] = (unsigned char)seen;
    }
    op_def(l->kind)->backward(&c);
    for (int k = 0; k < l->n_src; k++)
      if (c.want[k]) written[l->src[k]] = 1;
    if (net->profile) net->profile[net->n_layers + i] += omp_get_wtime() - t0;
  }
  if (!dx) return;
  if (!written[0]) memset(net->dinput, 0, sizeof(float) * net_input_size(net) * B);
  if (net->input_levels) { /* rounding is flat almost everywhere: its true derivative */
    quantize_backward(dx, 0, (size_t)net_input_size(net) * B);
    return;
  }
  const ModelSpec *s = &net->spec;
  const size_t hw = (size_t)s->in_h * s->in_w;
  const float *dinput = net->dinput;
  if (net->engine.channels_last && s->in_c > 1) {
    nhwc_to_nchw(dx, 0, net->dinput, B, s->in_c, (int)hw);
    dinput = dx; /* scaled in place below */
  }
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (int c2 = 0; c2 < s->in_c; c2++) {
      const float inv = 1.0f / s->norm_std[c2];
      const float *src = dinput + ((size_t)b * s->in_c + c2) * hw;
      float *dst = dx + ((size_t)b * s->in_c + c2) * hw;
      for (size_t i = 0; i < hw; i++) dst[i] = src[i] * inv;
    }
}

const float *net_forward_last_logits(const Net *net) {
  return net_output_transposed(net) ? net->logits : net->layers[net->n_layers - 1].out;
}

/* Softmax over the class axis of (B, K, P) scores, P pixels per image. */
static void softmax_channels(float *probs, const float *logits, int batch, int k, int pixels) {
  for (int b = 0; b < batch; b++)
    for (int px = 0; px < pixels; px++) {
      const float *z = logits + (size_t)b * k * pixels + px;
      float *p = probs + (size_t)b * k * pixels + px;
      float zmax = z[0];
      for (int j = 1; j < k; j++)
        if (z[(size_t)j * pixels] > zmax) zmax = z[(size_t)j * pixels];
      double s = 0.0;
      for (int j = 0; j < k; j++) s += exp((double)z[(size_t)j * pixels] - zmax);
      for (int j = 0; j < k; j++)
        p[(size_t)j * pixels] = (float)(exp((double)z[(size_t)j * pixels] - zmax) / s);
    }
}

/* A net whose weights are small keeps them in cache whatever the batch; its activations do not:
 * resnet8's 64x64 maps are 256 KB an image, 32 MB at batch 128, and each layer reads its input
 * back from memory. A few images at a time keep them in cache (bench_engine --family resnet8
 * --size 64 --op forward --batch B, 2 threads: 3380-3480 img/s at 128, 3940 at 16, 4070 at 8;
 * resnet20 64x64 1140 -> 1290; resnet8 28x28 +7% at 32). Nets with more weights read them again
 * per chunk and lose (cnn, cbr-larget, mobilenet: up to 7% at 8-16 images); densenet and unet
 * gain nothing. */
#define INFER_CHUNK_MAX_PARAMS ((size_t)320 * 1024)
#define INFER_CHUNK_BYTES ((size_t)2 << 20) /* the biggest output of a chunk */

int net_inference_chunk(const Net *net, int batch) {
  if (!net->use_dnnl || net->n_params > INFER_CHUNK_MAX_PARAMS) return batch;
  const size_t image_bytes = sizeof(float) * largest_output(net);
  /* fewer images than this leave too little work to share between the threads */
  const size_t least = 4 * (size_t)mr_get_threads();
  const size_t fit = image_bytes ? INFER_CHUNK_BYTES / image_bytes : (size_t)batch;
  const size_t chunk = fit > least ? fit : least;
  if (chunk >= (size_t)batch) return batch;
  const int n = (int)(((size_t)batch + chunk - 1) / chunk);
  return (batch + n - 1) / n;
}

static void net_swap_inference_outputs(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    float *out = net->layers[i].out;
    net->layers[i].out = net->infer_out[i];
    net->infer_out[i] = out;
  }
}

void net_predict(Net *net, const float *x, int batch, float *probs) {
  const int k = net->spec.n_classes, pixels = net_output_pixels(net);
  const size_t in_size = (size_t)net_input_size(net), out_size = (size_t)k * pixels;
  const int chunk = net_inference_chunk(net, batch);
  /* the chunks' primitives in use, the full batch's parked for the attack steps */
  const int swapped = chunk < batch && net_engine_swap(net);
  const int run = swapped ? chunk : batch;
  const int planned =
      net_plan(net, run, NULL) == STATUS_OK && net_plan_inference(net, run) == STATUS_OK;
  if (planned) {
    net_swap_inference_outputs(net); /* and back below */
    for (int start = 0; start < batch; start += run) {
      const int at = start + run > batch ? batch - run : start; /* the last overlaps */
      const float *logits = net_run_forward(net, x + in_size * at, run, MODE_EVAL, 1);
      softmax_channels(probs + out_size * at, logits, run, k, pixels);
    }
    net_swap_inference_outputs(net);
  }
  if (swapped) net_engine_swap(net);
  if (!planned)
    for (size_t i = 0; i < (size_t)batch * out_size; i++) probs[i] = NAN;
}

float net_loss_and_input_grad(Net *net, const float *x, const int *y, int batch, float *dx) {
  const float *logits = net_forward(net, x, batch, MODE_EVAL);
  if (!logits) return NAN;
  const float loss = net_loss(net, logits, y, NULL, batch, 1, net->dlogits);
  net_backward(net, net->dlogits, dx, 0);
  return loss;
}

float net_train_step_grads(Net *net, const float *x, const int *y, int batch,
                           const float *class_weights) {
  const float *logits = net_forward(net, x, batch, MODE_TRAIN);
  if (!logits) return NAN;
  const float loss = net_loss(net, logits, y, class_weights, batch, 0, net->dlogits);
  net_backward(net, net->dlogits, NULL, 1);
  return loss;
}
