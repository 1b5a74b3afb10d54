/* Net: building a layer list, planning every buffer once per batch size,
 * and the forward / backward loops. Behaviour per layer kind lives in one
 * table (layer_ops); the loops are a few lines each. No allocation happens
 * in forward or backward once the batch size is planned. */
#include "net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Conv2dDims layer_conv_dims(const Layer *l, int B);

/* ---- building ------------------------------------------------------------ */

Net *net_new(const ModelSpec *spec) {
  Net *net = calloc(1, sizeof *net);
  if (!net) return NULL;
  model_spec_copy(&net->spec, spec);
  const char *backend = getenv("MEDROBUST_CONV");
  net->use_dnnl = !(backend && strcmp(backend, "im2col") == 0);
  net->allow_channels_last = !(backend && strcmp(backend, "dnnl-nchw") == 0);
  return net;
}

int net_last(const Net *net) { return net->n_layers - 1; }

void net_tensor_shape(const Net *net, int t, int *c, int *h, int *w) {
  if (t == NET_INPUT) {
    *c = net->spec.in_c, *h = net->spec.in_h, *w = net->spec.in_w;
  } else {
    const Layer *l = &net->layers[t];
    *c = l->oc, *h = l->oh, *w = l->ow;
  }
}

static Layer *net_push(Net *net, LayerKind kind, int src) {
  if (net->n_layers == net->cap_layers) {
    int cap = net->cap_layers ? net->cap_layers * 2 : 32;
    Layer *grown = realloc(net->layers, sizeof(Layer) * cap);
    if (!grown) return NULL;
    net->layers = grown;
    net->cap_layers = cap;
  }
  Layer *l = &net->layers[net->n_layers++];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  l->src = src;
  l->src2 = -2;
  l->counter_idx = -1;
  net_tensor_shape(net, src, &l->c, &l->h, &l->w);
  l->oc = l->c, l->oh = l->h, l->ow = l->w;
  return l;
}

static size_t net_add_entry(Net *net, const char *prefix, const char *suffix, EntryKind kind,
                            int ndim, const int64_t *shape) {
  if (net->n_entries == net->cap_entries) {
    int cap = net->cap_entries ? net->cap_entries * 2 : 64;
    Entry *grown = realloc(net->entries, sizeof(Entry) * cap);
    if (!grown) abort(); /* builder-time only, tiny */
    net->entries = grown;
    net->cap_entries = cap;
  }
  Entry *e = &net->entries[net->n_entries++];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s.%s", prefix, suffix);
  e->kind = kind;
  e->ndim = ndim;
  e->numel = 1;
  for (int i = 0; i < ndim; i++) {
    e->shape[i] = shape[i];
    e->numel *= (size_t)shape[i];
  }
  size_t *counter = kind == ENTRY_PARAM ? &net->n_params : &net->n_stats;
  if (kind == ENTRY_COUNTER) {
    e->offset = (size_t)net->n_counters++;
  } else {
    e->offset = *counter;
    *counter += e->numel;
  }
  return e->offset;
}

int net_add_conv(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                 int groups, int bias, MrError *err) {
  Layer *l = net_push(net, LAYER_CONV2D, src);
  if (!l) return -1;
  snprintf(l->name, sizeof l->name, "%s", name);
  if (groups < 1 || l->c % groups || oc % groups) {
    mr_error_set(err, STATUS_ERR_SHAPE,
                 "%s: %d input and %d output channels do not split into %d groups", name, l->c, oc,
                 groups);
    return -1;
  }
  Conv2dDims d = {.C = l->c,
                  .H = l->h,
                  .W = l->w,
                  .OC = oc,
                  .K = k,
                  .stride = stride,
                  .pad = pad,
                  .groups = groups};
  if (!conv2d_dims_finish(&d)) {
    mr_error_set(err, STATUS_ERR_SHAPE, "%s: a %dx%d kernel does not fit a %dx%d input (pad %d)",
                 name, k, k, l->h, l->w, pad);
    return -1;
  }
  l->oc = oc, l->oh = d.OH, l->ow = d.OW;
  l->k = k, l->stride = stride, l->pad = pad, l->groups = groups, l->has_bias = bias;
  const int64_t wshape[4] = {oc, l->c / groups, k, k};
  l->w_off = net_add_entry(net, name, "weight", ENTRY_PARAM, 4, wshape);
  if (bias) {
    const int64_t bshape[1] = {oc};
    l->b_off = net_add_entry(net, name, "bias", ENTRY_PARAM, 1, bshape);
  }
  net->flops += 2.0 * oc * d.OH * d.OW * (double)(l->c / groups) * k * k;
  return net_last(net);
}

int net_add_bn(Net *net, const char *name, int src) {
  Layer *l = net_push(net, LAYER_BATCHNORM2D, src);
  if (!l) return -1;
  snprintf(l->name, sizeof l->name, "%s", name);
  l->eps = 1e-5f;
  l->momentum = 0.1f;
  const int64_t shape[1] = {l->c};
  l->w_off = net_add_entry(net, name, "weight", ENTRY_PARAM, 1, shape);
  l->b_off = net_add_entry(net, name, "bias", ENTRY_PARAM, 1, shape);
  l->stat_off = net_add_entry(net, name, "running_mean", ENTRY_STAT, 1, shape);
  net_add_entry(net, name, "running_var", ENTRY_STAT, 1, shape);
  l->counter_idx = (int)net_add_entry(net, name, "num_batches_tracked", ENTRY_COUNTER, 0, NULL);
  return net_last(net);
}

int net_add_relu(Net *net, int src) {
  Layer *prev = net->n_layers && src == net_last(net) ? &net->layers[src] : NULL;
  if (prev && !prev->fused_relu && (prev->kind == LAYER_BATCHNORM2D || prev->kind == LAYER_ADD)) {
    prev->fused_relu = 1; /* one pass over memory instead of two */
    return src;
  }
  return net_push(net, LAYER_RELU, src) ? net_last(net) : -1;
}

static int net_add_pool(Net *net, LayerKind kind, int src, int k, int stride, int pad,
                        MrError *err) {
  Layer *l = net_push(net, kind, src);
  if (!l) return -1;
  PoolDims d = {.C = l->c, .H = l->h, .W = l->w, .K = k, .stride = stride, .pad = pad};
  if (!pool_dims_finish(&d)) {
    mr_error_set(err, STATUS_ERR_SHAPE, "pool %dx%d/%d pad %d does not fit a %dx%d input", k, k,
                 stride, pad, l->h, l->w);
    return -1;
  }
  l->oh = d.OH, l->ow = d.OW, l->k = k, l->stride = stride, l->pad = pad;
  return net_last(net);
}

int net_add_maxpool(Net *net, int src, int k, int stride, int pad, MrError *err) {
  return net_add_pool(net, LAYER_MAXPOOL, src, k, stride, pad, err);
}

int net_add_avgpool(Net *net, int src, int k, int stride, int pad, MrError *err) {
  return net_add_pool(net, LAYER_AVGPOOL, src, k, stride, pad, err);
}

int net_add_global_avgpool(Net *net, int src) {
  Layer *l = net_push(net, LAYER_GLOBAL_AVGPOOL, src);
  if (!l) return -1;
  l->oh = l->ow = 1;
  return net_last(net);
}

int net_add_flatten(Net *net, int src) {
  Layer *l = net_push(net, LAYER_FLATTEN, src);
  if (!l) return -1;
  l->oc = l->c * l->h * l->w;
  l->oh = l->ow = 1;
  return net_last(net);
}

int net_add_dense(Net *net, const char *name, int src, int out, MrError *err) {
  Layer *l = net_push(net, LAYER_DENSE, src);
  if (!l) return -1;
  snprintf(l->name, sizeof l->name, "%s", name);
  if (l->h != 1 || l->w != 1) {
    mr_error_set(err, STATUS_ERR_SHAPE, "%s: dense layer needs a flat input, got %dx%dx%d", name,
                 l->c, l->h, l->w);
    return -1;
  }
  l->oc = out;
  l->has_bias = 1;
  const int64_t wshape[2] = {out, l->c}, bshape[1] = {out};
  l->w_off = net_add_entry(net, name, "weight", ENTRY_PARAM, 2, wshape);
  l->b_off = net_add_entry(net, name, "bias", ENTRY_PARAM, 1, bshape);
  net->flops += 2.0 * out * l->c;
  return net_last(net);
}

int net_add_dropout(Net *net, int src, float p) {
  Layer *l = net_push(net, LAYER_DROPOUT, src);
  if (!l) return -1;
  l->p = p;
  return net_last(net);
}

int net_add_add(Net *net, int a, int b, MrError *err) {
  int bc, bh, bw;
  net_tensor_shape(net, b, &bc, &bh, &bw);
  Layer *l = net_push(net, LAYER_ADD, a);
  if (!l) return -1;
  l->src2 = b;
  if (bc != l->c || bh != l->h || bw != l->w) {
    mr_error_set(err, STATUS_ERR_SHAPE, "residual add of %dx%dx%d and %dx%dx%d", l->c, l->h, l->w,
                 bc, bh, bw);
    return -1;
  }
  return net_last(net);
}

int net_add_shortcut_pad(Net *net, int src, int oc, int stride) {
  Layer *l = net_push(net, LAYER_SHORTCUT_PAD, src);
  if (!l) return -1;
  l->oc = oc;
  l->stride = stride;
  l->oh = (l->h + stride - 1) / stride;
  l->ow = (l->w + stride - 1) / stride;
  return net_last(net);
}

static void net_resolve(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE || l->kind == LAYER_BATCHNORM2D) {
      l->weight = net->params + l->w_off;
      l->dweight = net->grads + l->w_off;
      if (l->has_bias || l->kind == LAYER_BATCHNORM2D) {
        l->bias = net->params + l->b_off;
        l->dbias = net->grads + l->b_off;
      }
    }
    if (l->kind == LAYER_BATCHNORM2D) {
      l->running_mean = net->stats + l->stat_off;
      l->running_var = l->running_mean + l->c;
      l->num_batches_tracked = net->counters + l->counter_idx;
    }
  }
}

Status net_finish(Net *net, MrError *err) {
  const Layer *last = &net->layers[net_last(net)];
  if (last->oc != net->spec.n_classes || last->oh != 1 || last->ow != 1)
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s: network ends in %dx%dx%d, not %d logits",
                        net->spec.arch, last->oc, last->oh, last->ow, net->spec.n_classes);
  net->params = calloc(net->n_params ? net->n_params : 1, sizeof(float));
  net->grads = calloc(net->n_params ? net->n_params : 1, sizeof(float));
  net->stats = calloc(net->n_stats ? net->n_stats : 1, sizeof(float));
  net->counters = calloc(net->n_counters ? net->n_counters : 1, sizeof(int64_t));
  net->grad_written = calloc((size_t)net->n_layers + 1, 1);
  if (!net->params || !net->grads || !net->stats || !net->counters || !net->grad_written)
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for %zu parameters", net->n_params);
  net_resolve(net);
  return STATUS_OK;
}

static void net_dnnl_release(Net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    conv2d_dnnl_free(net->layers[i].dnnl);
    net->layers[i].dnnl = NULL;
  }
  for (int s = 0; s < CONV_WS_COUNT; s++) {
    free(net->conv_ws[s]);
    net->conv_ws[s] = NULL;
    net->conv_ws_bytes[s] = 0;
  }
  free(net->fold_weight);
  net->fold_weight = net->fold_bias = NULL;
  free(net->bn_scratch);
  net->bn_scratch = NULL;
  net->dnnl_batch = 0;
  net->channels_last = 0;
}

void net_set_conv_backend(Net *net, ConvBackend backend) {
  net_dnnl_release(net);
  net->use_dnnl = backend != CONV_BACKEND_IM2COL;
  net->allow_channels_last = backend == CONV_BACKEND_DNNL;
}

/* Channels-last needs every convolution on oneDNN and the batchnorm scratch;
 * returns 0 (all released) when a layer is refused or memory runs out. */
static int net_dnnl_channels_last(Net *net, int batch) {
  size_t bn_bytes = 0;
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->kind == LAYER_BATCHNORM2D && batchnorm2d_nhwc_scratch_bytes(l->c) > bn_bytes)
      bn_bytes = batchnorm2d_nhwc_scratch_bytes(l->c);
    if (l->kind != LAYER_CONV2D) continue;
    l->dnnl = conv2d_dnnl_create(layer_conv_dims(l, batch), l->has_bias, 1);
    if (!l->dnnl) {
      net_dnnl_release(net);
      return 0;
    }
  }
  net->bn_scratch = malloc(bn_bytes ? bn_bytes : 1);
  if (!net->bn_scratch) net_dnnl_release(net);
  return net->bn_scratch != NULL;
}

/* Builds oneDNN primitives for this batch size, channels-last when every
 * convolution can; otherwise a layer oneDNN cannot take (or any allocation
 * failure) falls back to the im2col kernels. */
static void net_dnnl_prepare(Net *net, int batch) {
  net_dnnl_release(net);
  net->channels_last = net->allow_channels_last && net_dnnl_channels_last(net, batch);
  net->dnnl_batch = batch;
  size_t need[CONV_WS_COUNT] = {0}, fold_w = 0, fold_b = 0;
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (l->kind != LAYER_CONV2D) continue;
    if (!net->channels_last)
      l->dnnl = conv2d_dnnl_create(layer_conv_dims(l, batch), l->has_bias, 0);
    /* conv -> batchnorm with nothing else reading the conv: foldable for inference */
    int readers = 0;
    for (int j = i + 1; j < net->n_layers; j++)
      readers += (net->layers[j].src == i) + (net->layers[j].src2 == i);
    const Layer *next = i + 1 < net->n_layers ? &net->layers[i + 1] : NULL;
    if (l->dnnl && readers == 1 && next && next->kind == LAYER_BATCHNORM2D && next->src == i &&
        conv2d_dnnl_enable_folded(l->dnnl, next->fused_relu)) {
      const size_t w = (size_t)l->oc * (l->c / l->groups) * l->k * l->k;
      if (w > fold_w) fold_w = w;
      if ((size_t)l->oc > fold_b) fold_b = (size_t)l->oc;
    }
    for (int s = 0; l->dnnl && s < CONV_WS_COUNT; s++) {
      size_t b = conv2d_dnnl_workspace_bytes(l->dnnl, s);
      if (b > need[s]) need[s] = b;
    }
  }
  net->fold_weight = aligned_alloc(64, sizeof(float) * ((fold_w + fold_b + 15) & ~(size_t)15) + 64);
  net->fold_bias = net->fold_weight ? net->fold_weight + ((fold_w + 15) & ~(size_t)15) : NULL;
  for (int s = 0; s < CONV_WS_COUNT; s++) {
    const size_t bytes = (need[s] + 63) / 64 * 64;
    net->conv_ws[s] = aligned_alloc(64, bytes ? bytes : 64);
    net->conv_ws_bytes[s] = bytes;
    if (!net->conv_ws[s]) {
      net_dnnl_release(net);   /* back to im2col, which is planar */
      net->dnnl_batch = batch; /* do not retry every call */
      return;
    }
  }
}

void net_free(Net *net) {
  if (!net) return;
  net_dnnl_release(net);
  free(net->layers);
  free(net->entries);
  free(net->params);
  free(net->grads);
  free(net->stats);
  free(net->counters);
  free(net->grad_written);
  free(net->act);
  free(net->argmax_arena);
  free(net->infer_arena);
  free(net->infer_out);
  model_spec_free(&net->spec);
  free(net);
}

/* ---- accessors -------------------------------------------------------------- */

const ModelSpec *net_spec(const Net *net) { return &net->spec; }

int net_feature_dim(const Net *net) {
  const Layer *last = &net->layers[net_last(net)];
  return last->c * last->h * last->w;
}

const float *net_last_features(const Net *net) {
  const Layer *last = &net->layers[net_last(net)];
  return last->src == NET_INPUT ? net->input : net->layers[last->src].out;
}

const char *net_class_name(const Net *net, int k, char buf[16]) {
  if (net->spec.class_names[k]) return net->spec.class_names[k];
  snprintf(buf, 16, "%d", k);
  return buf;
}

void net_set_training_info(Net *net, const char *json) {
  snprintf(net->spec.training, sizeof net->spec.training, "%s", json ? json : "");
}
size_t net_param_count(const Net *net) { return net->n_params; }
double net_flops(const Net *net) { return net->flops; }
int net_num_classes(const Net *net) { return net->spec.n_classes; }
int net_input_size(const Net *net) { return net->spec.in_c * net->spec.in_h * net->spec.in_w; }
float *net_params(Net *net) { return net->params; }
Rng *net_rng(Net *net) { return &net->rng; }
void net_set_input_quantization(Net *net, int levels) {
  net->input_levels = levels > 1 ? levels : 0;
}
const float *net_forward_last_logits(const Net *net) { return net->layers[net->n_layers - 1].out; }
float *net_grads(Net *net) { return net->grads; }
void net_zero_grad(Net *net) { memset(net->grads, 0, sizeof(float) * net->n_params); }

int net_tensor_count(const Net *net) { return net->n_entries; }

TensorRef net_tensor(const Net *net, int i) {
  const Entry *e = &net->entries[i];
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

static size_t layer_out_size(const Layer *l) { return (size_t)l->oc * l->oh * l->ow; }

static Conv2dDims layer_conv_dims(const Layer *l, int B) {
  Conv2dDims d = {.B = B,
                  .C = l->c,
                  .H = l->h,
                  .W = l->w,
                  .OC = l->oc,
                  .OH = l->oh,
                  .OW = l->ow,
                  .K = l->k,
                  .stride = l->stride,
                  .pad = l->pad,
                  .groups = l->groups};
  return d;
}

static PoolDims layer_pool_dims(const Layer *l, int B) {
  PoolDims d = {.B = B,
                .C = l->c,
                .H = l->h,
                .W = l->w,
                .OH = l->oh,
                .OW = l->ow,
                .K = l->k,
                .stride = l->stride,
                .pad = l->pad};
  return d;
}

/* Every planned buffer starts on a 64-byte line: vector stores (ours and
 * oneDNN's reorders) split across cache lines otherwise. */
#define A(nfloats) (((size_t)(nfloats) + 15) & ~(size_t)15)

Status net_plan(Net *net, int batch, MrError *err) {
  const int threads = mr_get_threads();
  if (batch <= 0) return mr_error_set(err, STATUS_ERR_ARG, "batch size %d must be positive", batch);
  if (net->act && batch <= net->batch && threads <= net->planned_threads) return STATUS_OK;
  const size_t in_size = (size_t)net_input_size(net);
  size_t total = 2 * A(in_size * batch), n_argmax = 0, scratch = 0, wmax = 0;
  for (int i = 0; i < net->n_layers; i++) {
    const Layer *l = &net->layers[i];
    total += 2 * A(layer_out_size(l) * batch);
    if (l->kind == LAYER_BATCHNORM2D) total += A(2 * (size_t)l->c);
    if (l->kind == LAYER_DROPOUT) total += A(layer_out_size(l) * batch);
    if (l->kind == LAYER_MAXPOOL) n_argmax += layer_out_size(l) * batch;
    if (l->kind == LAYER_CONV2D) {
      Conv2dDims d = layer_conv_dims(l, batch);
      size_t s = conv2d_scratch_floats(d);
      size_t w = (size_t)l->oc * (l->c / l->groups) * l->k * l->k;
      if (s > scratch) scratch = s;
      if (w > wmax) wmax = w;
    }
  }
  const size_t k = (size_t)net->spec.n_classes;
  total += A(scratch * threads) + A(wmax * (threads > 1 ? threads - 1 : 0)) + 2 * A(k * batch);
  free(net->act);
  free(net->argmax_arena);
  net->act = aligned_alloc(64, sizeof(float) * total);
  net->argmax_arena = malloc(sizeof(int32_t) * (n_argmax ? n_argmax : 1));
  if (!net->act || !net->argmax_arena) {
    free(net->act);
    free(net->argmax_arena);
    net->act = NULL;
    net->argmax_arena = NULL;
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory planning batch %d (%zu MB)", batch,
                        total * 4 >> 20);
  }
  /* outputs first, then all gradients contiguously so backward zeroes them
   * with one memset */
  float *p = net->act;
  net->input = p, p += A(in_size * batch);
  for (int i = 0; i < net->n_layers; i++)
    net->layers[i].out = p, p += A(layer_out_size(&net->layers[i]) * batch);
  net->dinput = p, p += A(in_size * batch);
  for (int i = 0; i < net->n_layers; i++)
    net->layers[i].dout = p, p += A(layer_out_size(&net->layers[i]) * batch);
  int32_t *q = net->argmax_arena;
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    l->save_mean = l->save_invstd = l->mask = NULL;
    l->argmax = NULL;
    if (l->kind == LAYER_BATCHNORM2D)
      l->save_mean = p, l->save_invstd = p + l->c, p += A(2 * (size_t)l->c);
    if (l->kind == LAYER_DROPOUT) l->mask = p, p += A(layer_out_size(l) * batch);
    if (l->kind == LAYER_MAXPOOL) l->argmax = q, q += layer_out_size(l) * batch;
  }
  net->scratch = p, p += A(scratch * threads);
  net->wpartial = p, p += A(wmax * (threads > 1 ? threads - 1 : 0));
  net->probs = p, p += A(k * batch);
  net->dlogits = p;
  net->batch = batch;
  net->planned_threads = threads;
  return STATUS_OK;
}

#undef A

/* ---- the layer table ------------------------------------------------------------ */

static float *tensor_out(Net *net, int t) {
  return t == NET_INPUT ? net->input : net->layers[t].out;
}
static float *tensor_dout(Net *net, int t) {
  return t == NET_INPUT ? net->dinput : net->layers[t].dout;
}

typedef struct {
  Net *net;
  Layer *l;
  int B;
  Mode mode;
  int param_grads; /* accumulate parameter gradients */
  int want_dinp;   /* the source tensor's gradient is needed */
  int acc, acc2;   /* accumulate into src / src2's gradient, else overwrite it */
} LayerCall;

static void conv_fwd(LayerCall c) {
  if (c.l->dnnl) {
    conv2d_dnnl_forward(c.l->dnnl, c.net->conv_ws, c.l->out, tensor_out(c.net, c.l->src),
                        c.l->weight, c.l->bias);
    return;
  }
  conv2d_forward(c.l->out, tensor_out(c.net, c.l->src), c.l->weight, c.l->bias,
                 layer_conv_dims(c.l, c.B), c.net->scratch);
}
static void conv_bwd(LayerCall c) {
  if (c.l->dnnl) {
    conv2d_dnnl_backward(c.l->dnnl, c.net->conv_ws,
                         c.want_dinp ? tensor_dout(c.net, c.l->src) : NULL, c.acc,
                         c.param_grads ? c.l->dweight : NULL, c.param_grads ? c.l->dbias : NULL,
                         c.l->dout, tensor_out(c.net, c.l->src), c.l->weight);
    return;
  }
  conv2d_backward(c.want_dinp ? tensor_dout(c.net, c.l->src) : NULL, c.acc,
                  c.param_grads ? c.l->dweight : NULL, c.param_grads ? c.l->dbias : NULL, c.l->dout,
                  tensor_out(c.net, c.l->src), c.l->weight, layer_conv_dims(c.l, c.B),
                  c.net->scratch, c.net->wpartial);
}

static BatchNormDims layer_bn_dims(const Layer *l, int B) {
  BatchNormDims d = {
      .B = B, .C = l->c, .H = l->h, .W = l->w, .eps = l->eps, .momentum = l->momentum};
  return d;
}
static void bn_fwd(LayerCall c) {
  Layer *l = c.l;
  if (c.net->channels_last)
    batchnorm2d_forward_nhwc(l->out, l->save_mean, l->save_invstd, tensor_out(c.net, l->src),
                             l->weight, l->bias, l->running_mean, l->running_var,
                             l->num_batches_tracked, layer_bn_dims(l, c.B), c.mode, l->fused_relu,
                             c.net->bn_scratch);
  else
    batchnorm2d_forward(l->out, l->save_mean, l->save_invstd, tensor_out(c.net, l->src), l->weight,
                        l->bias, l->running_mean, l->running_var, l->num_batches_tracked,
                        layer_bn_dims(l, c.B), c.mode, l->fused_relu);
}
static void bn_bwd(LayerCall c) {
  Layer *l = c.l;
  float *dinp = c.want_dinp ? tensor_dout(c.net, l->src) : NULL;
  float *dgamma = c.param_grads ? l->dweight : NULL, *dbeta = c.param_grads ? l->dbias : NULL;
  const float *relu_out = l->fused_relu ? l->out : NULL;
  if (c.net->channels_last)
    batchnorm2d_backward_nhwc(dinp, c.acc, dgamma, dbeta, l->dout, relu_out,
                              tensor_out(c.net, l->src), l->weight, l->save_mean, l->save_invstd,
                              layer_bn_dims(l, c.B), c.mode, c.net->bn_scratch);
  else
    batchnorm2d_backward(dinp, c.acc, dgamma, dbeta, l->dout, relu_out, tensor_out(c.net, l->src),
                         l->weight, l->save_mean, l->save_invstd, layer_bn_dims(l, c.B), c.mode);
}

static void relu_fwd(LayerCall c) {
  relu_forward(c.l->out, tensor_out(c.net, c.l->src), layer_out_size(c.l) * c.B);
}
static void relu_bwd(LayerCall c) {
  if (c.want_dinp)
    relu_backward(tensor_dout(c.net, c.l->src), c.acc, c.l->dout, c.l->out,
                  layer_out_size(c.l) * c.B);
}

static void maxpool_fwd(LayerCall c) {
  (c.net->channels_last ? maxpool2d_forward_nhwc : maxpool2d_forward)(
      c.l->out, c.l->argmax, tensor_out(c.net, c.l->src), layer_pool_dims(c.l, c.B));
}
static void maxpool_bwd(LayerCall c) {
  if (c.want_dinp)
    (c.net->channels_last ? maxpool2d_backward_nhwc : maxpool2d_backward)(
        tensor_dout(c.net, c.l->src), c.acc, c.l->dout, c.l->argmax, layer_pool_dims(c.l, c.B));
}

static void avgpool_fwd(LayerCall c) {
  (c.net->channels_last ? avgpool2d_forward_nhwc : avgpool2d_forward)(
      c.l->out, tensor_out(c.net, c.l->src), layer_pool_dims(c.l, c.B));
}
static void avgpool_bwd(LayerCall c) {
  if (c.want_dinp)
    (c.net->channels_last ? avgpool2d_backward_nhwc : avgpool2d_backward)(
        tensor_dout(c.net, c.l->src), c.acc, c.l->dout, layer_pool_dims(c.l, c.B));
}

static void gap_fwd(LayerCall c) {
  (c.net->channels_last ? global_avgpool_forward_nhwc : global_avgpool_forward)(
      c.l->out, tensor_out(c.net, c.l->src), c.B, c.l->c, c.l->h * c.l->w);
}
static void gap_bwd(LayerCall c) {
  if (c.want_dinp)
    (c.net->channels_last ? global_avgpool_backward_nhwc : global_avgpool_backward)(
        tensor_dout(c.net, c.l->src), c.acc, c.l->dout, c.B, c.l->c, c.l->h * c.l->w);
}

/* The flat features keep PyTorch's (C,H,W) order whatever the layout, so a
 * dense layer's weights mean the same thing on every backend. */
static void flatten_fwd(LayerCall c) {
  const float *x = tensor_out(c.net, c.l->src);
  const int hw = c.l->h * c.l->w;
  if (c.net->channels_last && hw > 1)
    nhwc_to_nchw(c.l->out, 0, x, c.B, c.l->c, hw);
  else
    memcpy(c.l->out, x, sizeof(float) * layer_out_size(c.l) * c.B);
}
static void flatten_bwd(LayerCall c) {
  if (!c.want_dinp) return;
  float *d = tensor_dout(c.net, c.l->src);
  const int hw = c.l->h * c.l->w;
  if (c.net->channels_last && hw > 1) {
    nchw_to_nhwc(d, c.acc, c.l->dout, c.B, c.l->c, hw);
    return;
  }
  const size_t n = layer_out_size(c.l) * c.B;
  for (size_t i = 0; i < n; i++) d[i] = c.acc ? d[i] + c.l->dout[i] : c.l->dout[i];
}

static void dense_fwd(LayerCall c) {
  dense_forward(c.l->out, tensor_out(c.net, c.l->src), c.l->weight, c.l->bias, c.B, c.l->c,
                c.l->oc);
}
static void dense_bwd(LayerCall c) {
  dense_backward(c.want_dinp ? tensor_dout(c.net, c.l->src) : NULL, c.acc,
                 c.param_grads ? c.l->dweight : NULL, c.param_grads ? c.l->dbias : NULL, c.l->dout,
                 tensor_out(c.net, c.l->src), c.l->weight, c.B, c.l->c, c.l->oc);
}

static void dropout_fwd(LayerCall c) {
  dropout_forward(c.l->out, c.l->mask, tensor_out(c.net, c.l->src), layer_out_size(c.l) * c.B,
                  c.l->p, c.mode, &c.net->rng);
}
static void dropout_bwd(LayerCall c) {
  if (c.want_dinp)
    dropout_backward(tensor_dout(c.net, c.l->src), c.acc, c.l->dout, c.l->mask,
                     layer_out_size(c.l) * c.B, c.mode);
}

static void add_fwd(LayerCall c) {
  add_forward(c.l->out, tensor_out(c.net, c.l->src), tensor_out(c.net, c.l->src2),
              layer_out_size(c.l) * c.B, c.l->fused_relu);
}
static void add_bwd(LayerCall c) {
  add_backward(tensor_dout(c.net, c.l->src), c.acc, tensor_dout(c.net, c.l->src2), c.acc2,
               c.l->dout, c.l->fused_relu ? c.l->out : NULL, layer_out_size(c.l) * c.B);
}

static ShortcutDims layer_shortcut_dims(const Layer *l, int B) {
  ShortcutDims d = {.B = B,
                    .C = l->c,
                    .H = l->h,
                    .W = l->w,
                    .OC = l->oc,
                    .OH = l->oh,
                    .OW = l->ow,
                    .stride = l->stride};
  return d;
}
static void shortcut_fwd(LayerCall c) {
  (c.net->channels_last ? shortcut_pad_forward_nhwc : shortcut_pad_forward)(
      c.l->out, tensor_out(c.net, c.l->src), layer_shortcut_dims(c.l, c.B));
}
static void shortcut_bwd(LayerCall c) {
  if (c.want_dinp)
    (c.net->channels_last ? shortcut_pad_backward_nhwc : shortcut_pad_backward)(
        tensor_dout(c.net, c.l->src), c.acc, c.l->dout, layer_shortcut_dims(c.l, c.B));
}

typedef struct {
  const char *name;
  void (*forward)(LayerCall);
  void (*backward)(LayerCall);
} LayerOps;

static const LayerOps layer_ops[LAYER_KIND_COUNT] = {
    [LAYER_CONV2D] = {"conv2d", conv_fwd, conv_bwd},
    [LAYER_BATCHNORM2D] = {"batchnorm2d", bn_fwd, bn_bwd},
    [LAYER_RELU] = {"relu", relu_fwd, relu_bwd},
    [LAYER_MAXPOOL] = {"maxpool2d", maxpool_fwd, maxpool_bwd},
    [LAYER_AVGPOOL] = {"avgpool2d", avgpool_fwd, avgpool_bwd},
    [LAYER_GLOBAL_AVGPOOL] = {"global_avgpool", gap_fwd, gap_bwd},
    [LAYER_FLATTEN] = {"flatten", flatten_fwd, flatten_bwd},
    [LAYER_DENSE] = {"dense", dense_fwd, dense_bwd},
    [LAYER_DROPOUT] = {"dropout", dropout_fwd, dropout_bwd},
    [LAYER_ADD] = {"add", add_fwd, add_bwd},
    [LAYER_SHORTCUT_PAD] = {"shortcut_pad", shortcut_fwd, shortcut_bwd},
};

/* ---- forward / backward -------------------------------------------------------- */

/* Forward-only calls (net_predict) reuse a few buffers, assigned by
 * liveness over the layer list, so activations stay in cache instead of
 * streaming through one buffer per layer; backward needs every output and
 * uses the full plan. */
static Status net_plan_inference(Net *net, int batch) {
  if (net->infer_arena && batch <= net->infer_batch) return STATUS_OK;
  const int n = net->n_layers;
  int *last_use = malloc(sizeof(int) * n), *slot_of = malloc(sizeof(int) * n);
  int *slot_free = calloc((size_t)n + 1, sizeof(int));
  float **outs = realloc(net->infer_out, sizeof(float *) * n);
  if (!last_use || !slot_of || !slot_free || !outs) {
    free(last_use), free(slot_of), free(slot_free);
    if (outs) net->infer_out = outs;
    return STATUS_ERR_NOMEM;
  }
  net->infer_out = outs;
  size_t biggest = 0;
  for (int i = 0; i < n; i++) {
    last_use[i] = i == n - 1 ? n : i;
    const size_t size = layer_out_size(&net->layers[i]) * batch;
    if (size > biggest) biggest = size;
  }
  for (int j = 0; j < n; j++) {
    const Layer *l = &net->layers[j];
    if (l->src >= 0) last_use[l->src] = j;
    if (l->src2 >= 0) last_use[l->src2] = j;
  }
  int n_slots = 0;
  for (int j = 0; j < n; j++) {
    int slot = 0;
    while (slot < n_slots && !slot_free[slot]) slot++;
    if (slot == n_slots) n_slots++;
    slot_free[slot] = 0;
    slot_of[j] = slot;
    /* free the inputs of layer j-1, not j: a conv folded with the batchnorm
     * after it reads its input while writing the batchnorm's output */
    if (j == 0) continue;
    const int inputs[2] = {net->layers[j - 1].src, net->layers[j - 1].src2};
    for (int k = 0; k < 2; k++)
      if (inputs[k] >= 0 && last_use[inputs[k]] == j - 1) slot_free[slot_of[inputs[k]]] = 1;
  }
  const size_t stride = (biggest + 15) & ~(size_t)15;
  free(net->infer_arena);
  net->infer_arena = aligned_alloc(64, sizeof(float) * stride * n_slots);
  Status status = STATUS_ERR_NOMEM;
  if (net->infer_arena) {
    for (int j = 0; j < n; j++) net->infer_out[j] = net->infer_arena + stride * slot_of[j];
    net->infer_batch = batch;
    status = STATUS_OK;
  }
  free(last_use), free(slot_of), free(slot_free);
  return status;
}

static const float *net_run_forward(Net *net, const float *x, int batch, Mode mode, int inference);

const float *net_forward(Net *net, const float *x, int batch, Mode mode) {
  if (net_plan(net, batch, NULL) != STATUS_OK) return NULL;
  return net_run_forward(net, x, batch, mode, 0);
}

/* Inference: conv i with batchnorm i+1 folded in, written to i+1's output. */
static void net_conv_bn_folded(Net *net, Layer *conv, Layer *bn) {
  const size_t per_oc = (size_t)(conv->c / conv->groups) * conv->k * conv->k;
  for (int oc = 0; oc < conv->oc; oc++) {
    const float scale = bn->weight[oc] * (float)(1.0 / sqrt((double)bn->running_var[oc] + bn->eps));
    const float *w = conv->weight + per_oc * oc;
    float *fw = net->fold_weight + per_oc * oc;
    for (size_t j = 0; j < per_oc; j++) fw[j] = w[j] * scale;
    net->fold_bias[oc] =
        (conv->bias ? conv->bias[oc] : 0.0f) * scale + bn->bias[oc] - bn->running_mean[oc] * scale;
  }
  conv2d_dnnl_forward_folded(conv->dnnl, net->conv_ws, bn->out, tensor_out(net, conv->src),
                             net->fold_weight, net->fold_bias);
}

static const float *net_run_forward(Net *net, const float *x, int batch, Mode mode, int inference) {
  const ModelSpec *s = &net->spec;
  const size_t hw = (size_t)s->in_h * s->in_w;
  if (net->use_dnnl && net->dnnl_batch != batch) net_dnnl_prepare(net, batch);
  /* channels-last with colour: normalise in place, then transpose into the
   * input tensor from the input gradient's buffer (free until backward) */
  const int transpose = net->channels_last && s->in_c > 1;
  float *normalised = transpose ? net->dinput : net->input;
  if (net->input_levels) {
    quantize_forward(normalised, x, hw * s->in_c * batch, net->input_levels);
    x = normalised;
  }
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
  for (int i = 0; i < net->n_layers; i++) {
    Layer *l = &net->layers[i];
    if (inference && l->kind == LAYER_CONV2D && conv2d_dnnl_has_folded(l->dnnl) &&
        net->fold_weight) {
      net_conv_bn_folded(net, l, &net->layers[i + 1]);
      i++; /* the batchnorm is done */
      continue;
    }
    LayerCall c = {.net = net, .l = l, .B = batch, .mode = mode};
    layer_ops[l->kind].forward(c);
  }
  return net->layers[net_last(net)].out;
}

void net_backward(Net *net, const float *dlogits, float *dx, int want_param_grads) {
  const int B = net->batch_in_use;
  /* written[t + 1]: tensor t's gradient holds data; its first writer
   * overwrites (reverse order visits consumers before producers), so no
   * gradient buffer is zeroed up front */
  unsigned char *written = net->grad_written;
  memset(written, 0, (size_t)net->n_layers + 1);
  const Layer *last = &net->layers[net_last(net)];
  memcpy(last->dout, dlogits, sizeof(float) * B * net->spec.n_classes);
  written[net->n_layers] = 1;
  for (int i = net->n_layers - 1; i >= 0; i--) {
    Layer *l = &net->layers[i];
    if (!written[i + 1]) { /* an output nothing read */
      memset(l->dout, 0, sizeof(float) * layer_out_size(l) * B);
      written[i + 1] = 1;
    }
    LayerCall c = {.net = net,
                   .l = l,
                   .B = B,
                   .mode = net->last_mode,
                   .param_grads = want_param_grads,
                   .want_dinp = l->src != NET_INPUT || dx != NULL,
                   .acc = written[l->src + 1]};
    if (l->kind == LAYER_ADD) c.acc2 = l->src2 == l->src || written[l->src2 + 1];
    layer_ops[l->kind].backward(c);
    if (c.want_dinp || l->kind == LAYER_ADD) written[l->src + 1] = 1;
    if (l->kind == LAYER_ADD) written[l->src2 + 1] = 1;
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
  if (net->channels_last && s->in_c > 1) {
    nhwc_to_nchw(dx, 0, net->dinput, B, s->in_c, (int)hw);
    dinput = dx; /* scaled in place below */
  }
  for (int b = 0; b < B; b++)
    for (int c = 0; c < s->in_c; c++) {
      const float inv = 1.0f / s->norm_std[c];
      const float *src = dinput + ((size_t)b * s->in_c + c) * hw;
      float *dst = dx + ((size_t)b * s->in_c + c) * hw;
      for (size_t i = 0; i < hw; i++) dst[i] = src[i] * inv;
    }
}

void net_predict(Net *net, const float *x, int batch, float *probs) {
  const float *logits = NULL;
  if (net_plan(net, batch, NULL) == STATUS_OK && net_plan_inference(net, batch) == STATUS_OK) {
    for (int i = 0; i < net->n_layers; i++) {
      float *full = net->layers[i].out;
      net->layers[i].out = net->infer_out[i];
      net->infer_out[i] = full; /* swapped back below */
    }
    logits = net_run_forward(net, x, batch, MODE_EVAL, 1);
    for (int i = 0; i < net->n_layers; i++) {
      float *lean = net->layers[i].out;
      net->layers[i].out = net->infer_out[i];
      net->infer_out[i] = lean;
    }
  }
  const int k = net->spec.n_classes;
  if (!logits) {
    for (size_t i = 0; i < (size_t)batch * k; i++) probs[i] = NAN;
    return;
  }
  for (int b = 0; b < batch; b++) {
    const float *z = logits + (size_t)b * k;
    float *p = probs + (size_t)b * k;
    float zmax = z[0];
    for (int j = 1; j < k; j++)
      if (z[j] > zmax) zmax = z[j];
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp((double)z[j] - zmax);
    for (int j = 0; j < k; j++) p[j] = (float)(exp((double)z[j] - zmax) / s);
  }
}

float net_loss_and_input_grad(Net *net, const float *x, const int *y, int batch, float *dx) {
  const float *logits = net_forward(net, x, batch, MODE_EVAL);
  if (!logits) return NAN;
  float loss =
      softmax_xent(net->dlogits, net->probs, logits, y, NULL, batch, net->spec.n_classes, 1);
  net_backward(net, net->dlogits, dx, 0);
  return loss;
}

float net_train_step_grads(Net *net, const float *x, const int *y, int batch,
                           const float *class_weights) {
  const float *logits = net_forward(net, x, batch, MODE_TRAIN);
  if (!logits) return NAN;
  float loss = softmax_xent(net->dlogits, net->probs, logits, y, class_weights, batch,
                            net->spec.n_classes, 0);
  net_backward(net, net->dlogits, NULL, 1);
  return loss;
}
