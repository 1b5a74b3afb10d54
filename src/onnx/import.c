/* ONNX import: a model file (the ModelProto of Debian's onnx.proto, parsed by
 * protobuf-c's generated code) becomes a medrobust graph, so every attack
 * gets the exact input gradient of the user's own model through our backward
 * pass (ONNX Runtime has no input-gradient API). Nodes map one to one onto
 * ops; nodes over constants are evaluated here (fold.c), including the
 * Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain PyTorch emits
 * around a flatten and the one that computes F.pad's pads; Identity aliases
 * its input; a final Softmax is dropped (medrobust nets end in logits).
 * Anything else is refused naming the node, its op type and what was not
 * understood; nothing is written. Weights are copied by name after the graph
 * is planned, in the state_dict names PyTorch exported. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/data.h"
#include "onnx_value.h"

#define MAX_ONNX_BYTES ((size_t)2 << 30) /* protobuf's own bound on one message */

/* A parameter of the net to fill after planning: state_dict name and data. */
typedef struct {
  char name[160];
  const float *data;
  size_t n;
} Pending;

typedef struct {
  Net *net;
  Value *values;
  int n_values, cap_values;
  Pending *pending;
  int n_pending, cap_pending;
  const char *path;
  MrError *err;
  int in_c, in_h, in_w;
  int dropped_softmax;
} Importer;

/* protobuf-c leaves absent optional strings NULL: the file is untrusted */
static const char *nz(const char *s) { return s ? s : ""; }

static Value *find(Importer *im, const char *name) {
  for (int i = im->n_values - 1; i >= 0; i--)
    if (strcmp(im->values[i].name, name) == 0) return &im->values[i];
  return NULL;
}

static Value *add_value(Importer *im, const char *name) {
  if (im->n_values == im->cap_values) {
    const int cap = im->cap_values ? 2 * im->cap_values : 256;
    Value *grown = realloc(im->values, sizeof(Value) * cap);
    if (!grown) return NULL;
    im->values = grown, im->cap_values = cap;
  }
  Value *v = &im->values[im->n_values++];
  memset(v, 0, sizeof *v);
  v->name = name, v->tensor = -1;
  return v;
}

static Status fail(Importer *im, const Onnx__NodeProto *node, const char *fmt, const char *what) {
  return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: node '%s' (%s): %s%s", im->path,
                      node && node->name ? node->name : "?", node ? nz(node->op_type) : "-", fmt,
                      what ? what : "");
}

/* ---- constants --------------------------------------------------------- */

static Status const_from_tensor(Importer *im, const Onnx__TensorProto *t, Value *v) {
  if (t->n_dims > ONNX_MAX_DIMS) return fail(im, NULL, "a constant has too many dimensions", NULL);
  size_t n = 1;
  v->ndim = (int)t->n_dims;
  for (size_t d = 0; d < t->n_dims; d++) {
    if (t->dims[d] < 0 || t->dims[d] > (1LL << 32))
      return fail(im, NULL, "bad constant shape", NULL);
    v->dims[d] = t->dims[d];
    n *= (size_t)t->dims[d];
    if (n > ((size_t)1 << 31)) return fail(im, NULL, "a constant is too large", NULL);
  }
  v->n = n;
  if (t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return mr_error_set(im->err, STATUS_ERR_FORMAT,
                        "%s: tensor '%s' is stored in an external file; export with the weights "
                        "inside the .onnx",
                        im->path, t->name ? t->name : "?");
  const int type = t->data_type;
  /* the declared shape must match the values the file holds before anything is allocated
   * (found by fuzzing: 4 bytes declaring 520 million floats took a 2 GB buffer) */
  if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    if (t->has_raw_data && t->raw_data.len != n * 4)
      return mr_error_set(im->err, STATUS_ERR_FORMAT,
                          "%s: tensor '%s' holds %zu bytes for %zu floats", im->path,
                          t->name ? t->name : "?", t->raw_data.len, n);
    if (!t->has_raw_data && t->n_float_data != n)
      return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: tensor '%s' holds %zu floats for %zu",
                          im->path, t->name ? t->name : "?", t->n_float_data, n);
    v->f = malloc(sizeof(float) * (n ? n : 1));
    if (!v->f) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
    if (n)
      memcpy(v->f, t->has_raw_data ? (const void *)t->raw_data.data : (const void *)t->float_data,
             n * 4); /* raw data is little-endian, as the format */
    for (size_t j = 0; j < n; j++)
      if (!isfinite(v->f[j]))
        return mr_error_set(im->err, STATUS_ERR_NAN, "%s: tensor '%s' holds %g", im->path,
                            t->name ? t->name : "?", v->f[j]);
  } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
             type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
    const size_t item = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4;
    const size_t held = t->has_raw_data ? t->raw_data.len / item
                        : item == 8     ? t->n_int64_data
                                        : t->n_int32_data;
    if (held != n || (t->has_raw_data && t->raw_data.len % item))
      return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: tensor '%s' is truncated", im->path,
                          t->name ? t->name : "?");
    v->i = malloc(sizeof(int64_t) * (n ? n : 1));
    if (!v->i) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
    if (t->has_raw_data) {
      for (size_t j = 0; j < n; j++) {
        if (item == 8) {
          memcpy(&v->i[j], t->raw_data.data + 8 * j, 8);
        } else {
          int32_t x;
          memcpy(&x, t->raw_data.data + 4 * j, 4);
          v->i[j] = x;
        }
      }
    } else if (item == 8 && t->n_int64_data == n) {
      if (n) memcpy(v->i, t->int64_data, n * 8);
    } else if (item == 4 && t->n_int32_data == n) {
      for (size_t j = 0; j < n; j++) v->i[j] = t->int32_data[j];
    } else {
      return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: tensor '%s' is truncated", im->path,
                          t->name ? t->name : "?");
    }
  } else {
    return mr_error_set(im->err, STATUS_ERR_FORMAT,
                        "%s: tensor '%s' has data type %d (float32, int64 and int32 only)",
                        im->path, t->name ? t->name : "?", type);
  }
  return STATUS_OK;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  return a && a->has_i ? a->i : dflt;
}

static float attr_float(const Onnx__NodeProto *n, const char *name, float dflt) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  return a && a->has_f ? a->f : dflt;
}

/* ints attribute into out[want]; 0 when absent (out keeps its defaults), -1 on another count */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, size_t want) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  if (!a) return 0;
  if (a->n_ints != want) return -1;
  for (size_t i = 0; i < want; i++) out[i] = a->ints[i];
  return 1;
}

/* The runtime tensor an input names; fills why when it is absent or constant. */
static int runtime_input(Importer *im, const Onnx__NodeProto *n, size_t k) {
  if (k >= n->n_input) return -1;
  const Value *v = find(im, n->input[k]);
  return v && v->tensor >= 0 ? v->tensor : -1;
}

static const Value *const_input(Importer *im, const Onnx__NodeProto *n, size_t k) {
  if (k >= n->n_input || !n->input[k][0]) return NULL;
  const Value *v = find(im, n->input[k]);
  return v && v->tensor < 0 ? v : NULL;
}

static Status pend(Importer *im, const char *layer, const char *param, const float *data,
                   size_t count) {
  if (im->n_pending == im->cap_pending) {
    const int cap = im->cap_pending ? 2 * im->cap_pending : 64;
    Pending *grown = realloc(im->pending, sizeof(Pending) * cap);
    if (!grown) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
    im->pending = grown, im->cap_pending = cap;
  }
  Pending *p = &im->pending[im->n_pending++];
  snprintf(p->name, sizeof p->name, "%s.%s", layer, param);
  p->data = data, p->n = count;
  return STATUS_OK;
}

/* The layer's name: its weight's initializer name without ".weight" (the
 * PyTorch state_dict path), else the node's name, else node<i>. */
static void layer_name(const Onnx__NodeProto *n, const Value *weight, int index, char *out,
                       size_t len) {
  const char *w = weight ? weight->name : NULL;
  const size_t wl = w ? strlen(w) : 0;
  if (w && wl > 7 && strcmp(w + wl - 7, ".weight") == 0 && wl - 7 < len) {
    memcpy(out, w, wl - 7);
    out[wl - 7] = 0;
  } else if (n->name && n->name[0]) {
    snprintf(out, len, "%s", n->name);
  } else {
    snprintf(out, len, "node%d", index);
  }
  for (char *c = out; *c; c++)
    if (*c == '/' || *c == ':' || *c == ' ') *c = '_';
  if (out[0] == '_') memmove(out, out + 1, strlen(out));
}

static Status add_output(Importer *im, const Onnx__NodeProto *n, int tensor) {
  if (tensor < 0) {
    MrError why = {0};
    net_finish(im->net, &why); /* the net's first build error: what it refused */
    return fail(im, n, "the graph could not take this node: ", why.msg);
  }
  Value *v = add_value(im, nz(n->output[0]));
  if (!v) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
  v->tensor = tensor;
  return STATUS_OK;
}

static Status import_conv(Importer *im, const Onnx__NodeProto *n, int index, int transposed) {
  const int x = runtime_input(im, n, 0);
  const Value *w = const_input(im, n, 1), *b = const_input(im, n, 2);
  if (x < 0 || !w || w->ndim != 4 || !w->f)
    return fail(im, n, "needs a runtime input and a constant 4-D float weight", NULL);
  const int group = (int)attr_int(n, "group", 1);
  /* Conv weights are (OC, C/g, kh, kw), ConvTranspose ones (C, OC/g, kh, kw) */
  const int out_channels = transposed ? (int)w->dims[1] * group : (int)w->dims[0];
  if (n->n_input > 2 && n->input[2][0] && (!b || !b->f || b->n != (size_t)out_channels))
    return fail(im, n, "its bias is not a constant of out_channels floats", NULL);
  OpAttrs a = op_attrs_default();
  int64_t k[2] = {w->dims[2], w->dims[3]}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
  if (attr_ints(n, "kernel_shape", k, 2) < 0 || attr_ints(n, "strides", s, 2) < 0 ||
      attr_ints(n, "dilations", d, 2) < 0 || attr_ints(n, "pads", p, 4) < 0)
    return fail(im, n, "kernel_shape, strides, dilations or pads of another rank than 2-D", NULL);
  const Onnx__AttributeProto *ap = onnx_attr(n, "auto_pad");
  if (ap && ap->s.len && !(ap->s.len == 6 && memcmp(ap->s.data, "NOTSET", 6) == 0))
    return fail(im, n, "attribute auto_pad (only explicit pads)", NULL);
  int64_t op[2] = {0, 0};
  if (transposed && (attr_ints(n, "output_padding", op, 2) < 0 || onnx_attr(n, "output_shape")))
    return fail(im, n, "output_shape, or output_padding other than 2-D", NULL);
  a.out_channels = out_channels, a.groups = group, a.bias = b != NULL;
  a.output_padding[0] = (int)op[0], a.output_padding[1] = (int)op[1];
  a.kernel[0] = (int)k[0], a.kernel[1] = (int)k[1], a.stride[0] = (int)s[0],
  a.stride[1] = (int)s[1];
  a.dilation[0] = (int)d[0], a.dilation[1] = (int)d[1];
  /* ONNX pads: begin of each axis, then end; ours: top, bottom, left, right */
  a.pad[0] = (int)p[0], a.pad[1] = (int)p[2], a.pad[2] = (int)p[1], a.pad[3] = (int)p[3];
  char name[128];
  layer_name(n, w, index, name, sizeof name);
  Status st = pend(im, name, "weight", w->f, w->n);
  if (st == STATUS_OK && b) st = pend(im, name, "bias", b->f, b->n);
  if (st != STATUS_OK) return st;
  return add_output(
      im, n, net_add(im->net, transposed ? OP_CONV_TRANSPOSE2D : OP_CONV2D, name, &x, 1, &a));
}

/* Resize (opset 11+: X, roi, scales, sizes) and Upsample (opset 9: X, scales):
 * an integer factor, nearest (floor of the asymmetric source position, as
 * PyTorch exports nn.Upsample) or linear with half-pixel centres
 * (align_corners=False). */
static Status import_resize(Importer *im, const Onnx__NodeProto *n) {
  const int x = runtime_input(im, n, 0);
  int dims[4];
  if (x < 0 || net_tensor_dims(im->net, x, dims) != 3)
    return fail(im, n, "needs a runtime (C, H, W) input", NULL);
  const int upsample = strcmp(n->op_type, "Upsample") == 0;
  const Value *scales = const_input(im, n, upsample ? 1 : 2), *sizes = const_input(im, n, 3);
  double sh = 0, sw = 0;
  if (scales && scales->f && scales->n == 4)
    sh = scales->f[2], sw = scales->f[3];
  else if (sizes && sizes->i && sizes->n == 4)
    sh = (double)sizes->i[2] / dims[1], sw = (double)sizes->i[3] / dims[2];
  const int fh = (int)lround(sh), fw = (int)lround(sw);
  if (fh < 1 || fw < 1 || fabs(sh - fh) > 1e-6 || fabs(sw - fw) > 1e-6)
    return fail(im, n, "a resize by other than an integer factor on each axis", NULL);
  const Onnx__AttributeProto *mode = onnx_attr(n, "mode"),
                             *ct = onnx_attr(n, "coordinate_transformation_mode");
  const int linear = mode && mode->s.len >= 6 && memcmp(mode->s.data, "linear", 6) == 0;
  const int nearest = !mode || (mode->s.len == 7 && memcmp(mode->s.data, "nearest", 7) == 0);
  OpAttrs a = op_attrs_default();
  a.scale[0] = fh, a.scale[1] = fw;
  a.mode = linear ? UPSAMPLE_BILINEAR : UPSAMPLE_NEAREST;
  if (!linear && !nearest) return fail(im, n, "a mode other than nearest or linear", NULL);
  if (linear && !upsample &&
      !(ct && ((ct->s.len == 10 && !memcmp(ct->s.data, "half_pixel", 10)) ||
               (ct->s.len == 18 && !memcmp(ct->s.data, "pytorch_half_pixel", 18)))))
    return fail(im, n, "linear resizing without half-pixel centres (align_corners=True?)", NULL);
  return add_output(im, n, net_add(im->net, OP_UPSAMPLE, NULL, &x, 1, &a));
}

/* Add, Sub, Mul, Div: of two runtime tensors (broadcasting per channel or
 * per pixel), or of a runtime tensor and a scalar constant. */
/* A float array the importer owns until the weights are copied. */
static float *owned_floats(Importer *im, size_t count) {
  Value *v = add_value(im, "");
  if (!v || !(v->f = malloc(sizeof(float) * count))) return NULL;
  v->n = count;
  return v->f;
}

/* x op c with c per channel: a depthwise 1x1 convolution (weight, bias per
 * channel), so scale and shift layers import without an op of their own;
 * they become parameters, as they would in a fine-tuned PyTorch model. */
static Status import_per_channel(Importer *im, const Onnx__NodeProto *n, int index, int x,
                                 OpKind kind, int constant_first, const Value *k) {
  const int C = (int)k->n;
  const float *value = k->f; /* k itself may move as values grow */
  float *w = owned_floats(im, (size_t)C), *b = owned_floats(im, (size_t)C);
  if (!w || !b) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
  for (int c = 0; c < C; c++) {
    const float v = value[c];
    if (kind == OP_DIV && v == 0.0f) return fail(im, n, "division by a zero constant", NULL);
    w[c] = kind == OP_MUL                     ? v
           : kind == OP_DIV                   ? 1.0f / v
           : constant_first && kind == OP_SUB ? -1.0f
                                              : 1.0f;
    b[c] = kind == OP_ADD ? v : kind == OP_SUB ? (constant_first ? v : -v) : 0.0f;
  }
  OpAttrs a = op_attrs_default();
  a.out_channels = C, a.groups = C, a.bias = 1;
  a.kernel[0] = a.kernel[1] = 1;
  char name[128];
  layer_name(n, NULL, index, name, sizeof name);
  Status st = pend(im, name, "weight", w, (size_t)C);
  if (st == STATUS_OK) st = pend(im, name, "bias", b, (size_t)C);
  if (st != STATUS_OK) return st;
  return add_output(im, n, net_add(im->net, OP_CONV2D, name, &x, 1, &a));
}

static Status import_arith(Importer *im, const Onnx__NodeProto *n, int index) {
  const char c = n->op_type[0];
  const OpKind kind = c == 'A' ? OP_ADD : c == 'S' ? OP_SUB : c == 'M' ? OP_MUL : OP_DIV;
  int src[2] = {runtime_input(im, n, 0), runtime_input(im, n, 1)};
  OpAttrs a = op_attrs_default();
  if (n->n_input != 2) return fail(im, n, "needs two inputs", NULL);
  if (src[0] >= 0 && src[1] >= 0)
    return add_output(im, n, net_add(im->net, kind, NULL, src, 2, &a));
  const int rt = src[0] >= 0 ? 0 : 1;
  const Value *k = const_input(im, n, (size_t)(1 - rt));
  /* preprocessing on the raw input, before any layer: folded into the net's own
   * normalisation, t = (x - mean) / std, so eps stays on [0,1] pixels */
  if (src[rt] == NET_INPUT && net_layer_count(im->net) == 0 && k && k->f &&
      (k->n == 1 || k->n == (size_t)im->in_c) && (rt == 0 || kind == OP_ADD || kind == OP_MUL)) {
    const ModelSpec *sp = net_spec(im->net);
    float mean[3], std[3];
    for (int c = 0; c < 3; c++) {
      const float v = k->f[k->n == 1 ? 0 : c < im->in_c ? c : 0];
      mean[c] = sp->norm_mean[c], std[c] = sp->norm_std[c];
      if (kind == OP_SUB) mean[c] += v * std[c];
      if (kind == OP_ADD) mean[c] -= v * std[c];
      if (kind == OP_DIV) std[c] *= v;
      if (kind == OP_MUL) std[c] /= v;
    }
    for (int c = 0; c < 3; c++)
      if (!(std[c] > 0) || !isfinite(std[c]) || !isfinite(mean[c]))
        return fail(im, n, "preprocessing that scales by zero or a negative factor", NULL);
    net_set_normalization(im->net, mean, std);
    return add_output(im, n, NET_INPUT);
  }
  int dims[4];
  if (src[rt] >= 0 && k && k->f && k->n > 1 && net_tensor_dims(im->net, src[rt], dims) == 3 &&
      k->n == (size_t)dims[0] && k->dims[k->ndim - 1] == 1 && !(rt == 1 && kind == OP_DIV))
    return import_per_channel(im, n, index, src[rt], kind, rt == 1, k);
  if (src[rt] < 0 || !k || !k->f || k->n != 1)
    return fail(im, n,
                "one of its inputs must be a runtime tensor, the other one too, a scalar or a "
                "per-channel (C,1,1) constant",
                NULL);
  if (rt == 1 && (kind == OP_SUB || kind == OP_DIV))
    return fail(im, n, "a constant minus or over a tensor", NULL);
  a.value = kind == OP_ADD ? -k->f[0] : k->f[0]; /* x + c = x - (-c) */
  return add_output(im, n, net_add(im->net, kind == OP_ADD ? OP_SUB : kind, NULL, &src[rt], 1, &a));
}

static Status import_bn(Importer *im, const Onnx__NodeProto *n, int index) {
  const int x = runtime_input(im, n, 0);
  const Value *c[4];
  for (int i = 0; i < 4; i++) {
    c[i] = const_input(im, n, (size_t)i + 1);
    if (!c[i] || !c[i]->f || (i && c[i]->n != c[0]->n))
      return fail(im, n, "scale, B, mean and var must be float constants of one length", NULL);
  }
  if (x < 0) return fail(im, n, "needs a runtime input", NULL);
  OpAttrs a = op_attrs_default();
  a.eps = attr_float(n, "epsilon", 1e-5f);
  a.momentum = 1.0f - attr_float(n, "momentum", 0.9f); /* ONNX keeps, PyTorch replaces */
  char name[128];
  layer_name(n, c[0], index, name, sizeof name);
  static const char *const params[4] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 0; i < 4; i++) {
    const Status st = pend(im, name, params[i], c[i]->f, c[i]->n);
    if (st != STATUS_OK) return st;
  }
  return add_output(im, n, net_add(im->net, OP_BATCHNORM2D, name, &x, 1, &a));
}

static Status import_pool(Importer *im, const Onnx__NodeProto *n, OpKind kind) {
  const int x = runtime_input(im, n, 0);
  if (x < 0) return fail(im, n, "needs a runtime input", NULL);
  OpAttrs a = op_attrs_default();
  int64_t k[2] = {0, 0}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
  if (attr_ints(n, "kernel_shape", k, 2) != 1 || attr_ints(n, "strides", s, 2) < 0 ||
      attr_ints(n, "pads", p, 4) < 0 || attr_ints(n, "dilations", d, 2) < 0)
    return fail(im, n, "needs a 2-D kernel_shape (strides, pads, dilations 2-D)", NULL);
  const int ceil_mode = (int)attr_int(n, "ceil_mode", 0);
  if (ceil_mode && kind != OP_MAXPOOL)
    return fail(im, n, "attribute ceil_mode=1 on average pooling", NULL);
  if (kind == OP_AVGPOOL && (p[0] || p[1] || p[2] || p[3]) && !attr_int(n, "count_include_pad", 0))
    return fail(im, n, "padded average pooling without count_include_pad", NULL);
  if (kind == OP_AVGPOOL && (d[0] != 1 || d[1] != 1)) return fail(im, n, "dilations", NULL);
  a.kernel[0] = (int)k[0], a.kernel[1] = (int)k[1], a.stride[0] = (int)s[0],
  a.stride[1] = (int)s[1];
  a.pad[0] = (int)p[0], a.pad[1] = (int)p[2], a.pad[2] = (int)p[1], a.pad[3] = (int)p[3];
  a.dilation[0] = (int)d[0], a.dilation[1] = (int)d[1];
  int dims[4];
  if (ceil_mode && net_tensor_dims(im->net, x, dims) == 3) {
    /* ceil mode is floor mode with the bottom / right padding the last window needs: max
     * pooling ignores padding, and PyTorch drops a window that starts in the padding */
    for (int ax = 0; ax < 2; ax++) {
      const int size = dims[1 + ax], before = a.pad[2 * ax], after = a.pad[2 * ax + 1];
      const int span = (a.kernel[ax] - 1) * a.dilation[ax] + 1;
      int out = (size + before + after - span + a.stride[ax] - 1) / a.stride[ax] + 1;
      if ((out - 1) * a.stride[ax] >= size + before) out--;
      const int extra = (out - 1) * a.stride[ax] + span - (size + before + after);
      if (extra > 0) a.pad[2 * ax + 1] += extra;
    }
  }
  return add_output(im, n, net_add(im->net, kind, NULL, &x, 1, &a));
}

static Status import_gemm(Importer *im, const Onnx__NodeProto *n, int index, int matmul) {
  const int x = runtime_input(im, n, 0);
  const Value *w = const_input(im, n, 1), *b = matmul ? NULL : const_input(im, n, 2);
  if (x < 0 || !w || !w->f || w->ndim != 2)
    return fail(im, n, "needs a runtime input times a constant 2-D float matrix", NULL);
  if (!matmul && (attr_int(n, "transA", 0) || attr_float(n, "alpha", 1.0f) != 1.0f ||
                  attr_float(n, "beta", 1.0f) != 1.0f))
    return fail(im, n, "transA, alpha or beta other than 0, 1, 1", NULL);
  const int trans = matmul ? 0 : (int)attr_int(n, "transB", 0);
  const int out = (int)(trans ? w->dims[0] : w->dims[1]),
            in = (int)(trans ? w->dims[1] : w->dims[0]);
  if (b && (!b->f || b->n != (size_t)out))
    return fail(im, n, "its bias is not of out floats", NULL);
  /* ours is PyTorch's Linear: weight (out, in) */
  float *weight = malloc(sizeof(float) * w->n), *bias = calloc((size_t)out, sizeof(float));
  Value *keep = add_value(im, "");
  if (!weight || !bias || !keep) {
    free(weight), free(bias);
    return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
  }
  keep->f = weight, keep->n = w->n; /* owned by the value table, freed with it */
  Value *keep_b = add_value(im, "");
  if (!keep_b) {
    free(bias);
    return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
  }
  keep_b->f = bias, keep_b->n = (size_t)out;
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      weight[(size_t)o * in + i] = trans ? w->f[(size_t)o * in + i] : w->f[(size_t)i * out + o];
  if (b) memcpy(bias, b->f, sizeof(float) * out);
  OpAttrs a = op_attrs_default();
  a.out_channels = out;
  char name[128];
  layer_name(n, w, index, name, sizeof name);
  Status st = pend(im, name, "weight", weight, (size_t)out * in);
  if (st == STATUS_OK) st = pend(im, name, "bias", bias, (size_t)out);
  if (st != STATUS_OK) return st;
  return add_output(im, n, net_add(im->net, OP_DENSE, name, &x, 1, &a));
}

/* Shape of a runtime tensor as a constant: (1, C, H, W) or (1, K); the batch is 1. */
static Status import_shape(Importer *im, const Onnx__NodeProto *n) {
  const int x = runtime_input(im, n, 0);
  int dims[4];
  const int nd = x >= 0 ? net_tensor_dims(im->net, x, dims) : 0;
  if (nd < 1) return fail(im, n, "Shape of something that is not a runtime tensor", NULL);
  Value *v = add_value(im, n->output[0]);
  if (!v || !(v->i = malloc(sizeof(int64_t) * (nd + 1))))
    return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
  v->ndim = 1, v->dims[0] = nd + 1, v->n = (size_t)nd + 1;
  v->i[0] = 1;
  for (int d = 0; d < nd; d++) v->i[d + 1] = dims[d];
  return STATUS_OK;
}

/* Reshape to (batch, -1) or (batch, everything): our flatten. */
static Status import_reshape(Importer *im, const Onnx__NodeProto *n) {
  const int x = runtime_input(im, n, 0);
  const Value *shape = const_input(im, n, 1);
  int dims[4];
  const int nd = x >= 0 ? net_tensor_dims(im->net, x, dims) : 0;
  if (nd < 1 || !shape || !shape->i)
    return fail(im, n, "needs a runtime input and a constant shape", NULL);
  long per = 1;
  for (int d = 0; d < nd; d++) per *= dims[d];
  if (shape->n == 2 && (shape->i[0] == 1 || shape->i[0] == -1 || shape->i[0] == 0) &&
      (shape->i[1] == -1 || shape->i[1] == per)) {
    OpAttrs a = op_attrs_default();
    return add_output(im, n, net_add(im->net, OP_FLATTEN, NULL, &x, 1, &a));
  }
  return fail(im, n, "a reshape other than a flatten to (batch, features)", NULL);
}

/* Pad with zeros (constant mode, value 0): around the channels (the larger
 * half after) and / or around each spatial side; the empty one PyTorch puts
 * before average pooling is the identity. */
static Status import_pad(Importer *im, const Onnx__NodeProto *n, int x) {
  /* opset 11 on: pads and value are inputs; before, attributes */
  const Value *pads = const_input(im, n, 1), *value = const_input(im, n, 2);
  const Onnx__AttributeProto *pads_attr = onnx_attr(n, "pads");
  const int64_t *pv = pads && pads->i ? pads->i : pads_attr ? pads_attr->ints : NULL;
  const size_t np = pads && pads->i ? pads->n : pads_attr ? pads_attr->n_ints : 0;
  if (x < 0 || !pv || np > 8 || np % 2 || attr_float(n, "value", 0.0f) != 0.0f)
    return fail(im, n, "needs a runtime input and constant pads", NULL);
  int64_t p[8] = {0};
  const size_t rank = np / 2;
  for (size_t k = 0; k < rank; k++) p[k] = pv[k], p[4 + k] = pv[rank + k];
  int any = 0;
  for (int k = 0; k < 8; k++) any |= p[k] != 0;
  if (!any) return add_output(im, n, x);
  const Onnx__AttributeProto *mode = onnx_attr(n, "mode");
  const int constant =
      !mode || !mode->s.len || (mode->s.len == 8 && !memcmp(mode->s.data, "constant", 8));
  int dims[4], ok = rank == 4 && constant && net_tensor_dims(im->net, x, dims) == 3 && !p[0] &&
                    !p[4] && (p[5] == p[1] || p[5] == p[1] + 1);
  for (int k = 0; ok && k < 8; k++) ok = p[k] >= 0 && p[k] <= 4096;
  if (!ok || (value && (!value->f || value->f[0] != 0.0f)))
    return fail(im, n,
                "a Pad other than zeros (constant mode) around the channels (the larger half "
                "after) and the spatial sides; reflect, edge and cropping are not mapped",
                NULL);
  OpAttrs a = op_attrs_default();
  a.out_channels = dims[0] + (int)(p[1] + p[5]);
  a.stride[0] = a.stride[1] = 1;
  a.pad[0] = (int)p[2], a.pad[1] = (int)p[6], a.pad[2] = (int)p[3], a.pad[3] = (int)p[7];
  return add_output(im, n, net_add(im->net, OP_SHORTCUT_PAD, NULL, &x, 1, &a));
}

/* Slice of a runtime tensor: every s-th row and / or column from the first
 * (x[:, :, ::sh, ::sw]; PyTorch slices one axis per node). */
static Status import_slice(Importer *im, const Onnx__NodeProto *n, int x) {
  const Value *starts = const_input(im, n, 1), *ends = const_input(im, n, 2),
              *axes = const_input(im, n, 3), *steps = const_input(im, n, 4);
  int dims[4];
  const size_t k = starts && starts->i ? starts->n : 0;
  if (x < 0 || net_tensor_dims(im->net, x, dims) != 3 || k < 1 || k > 2 || !ends || !ends->i ||
      ends->n != k || !axes || !axes->i || axes->n != k || (steps && (!steps->i || steps->n != k)))
    return fail(im, n,
                "needs a runtime (C,H,W) input and constant starts, ends, axes (and steps) on "
                "height and width",
                NULL);
  OpAttrs a = op_attrs_default();
  a.out_channels = dims[0];
  int ok = 1;
  for (size_t j = 0; ok && j < k; j++) {
    const int64_t ax = axes->i[j] < 0 ? axes->i[j] + 4 : axes->i[j], s = steps ? steps->i[j] : 1;
    ok = (ax == 2 || ax == 3) && starts->i[j] == 0 && ends->i[j] >= dims[ax - 1] && s >= 1 &&
         s <= 64;
    if (ok) a.stride[ax - 2] = (int)s;
  }
  if (!ok) return fail(im, n, "a Slice other than every s-th row or column from the first", NULL);
  return add_output(im, n, net_add(im->net, OP_SHORTCUT_PAD, NULL, &x, 1, &a));
}

/* Every input present is a constant (and there is one, or the op makes its own). */
static int all_constant(Importer *im, const Onnx__NodeProto *n) {
  int any = strcmp(n->op_type, "ConstantOfShape") == 0;
  for (size_t k = 0; k < n->n_input; k++) {
    if (!n->input[k][0]) continue;
    if (!const_input(im, n, k)) return 0;
    any = 1;
  }
  return any;
}

/* A node over constants, evaluated now (fold.c): shapes, pads, scales, axes. */
static Status import_fold(Importer *im, const Onnx__NodeProto *n) {
  const Value *in[16] = {0};
  if (n->n_input > 16) return fail(im, n, "too many constant inputs", NULL);
  for (size_t k = 0; k < n->n_input; k++) in[k] = const_input(im, n, k);
  Value folded;
  const char *why = onnx_fold(n, in, n->n_input, &folded);
  Value *v = why ? NULL : add_value(im, nz(n->output[0])); /* may move what in[] points to */
  if (!why && !v) why = "out of memory";
  if (why) {
    free(folded.f), free(folded.i);
    return strcmp(why, "out of memory") == 0
               ? mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory")
               : fail(im, n, "could not fold constants: ", why);
  }
  const char *name = v->name;
  *v = folded;
  v->name = name, v->tensor = -1;
  return STATUS_OK;
}

static Status import_node(Importer *im, const Onnx__NodeProto *n, int index, int last) {
  const char *op = n->op_type ? n->op_type : "";
  OpAttrs a = op_attrs_default();
  if (n->n_output < 1) return fail(im, n, "no output", NULL);
  for (size_t k = 0; k < n->n_input; k++)
    if (n->input[k][0] && !find(im, n->input[k]))
      return fail(im, n,
                  "reads a tensor no earlier node, input or initializer makes (missing, or a "
                  "cycle): ",
                  n->input[k]);
  if (onnx_foldable(op) && all_constant(im, n)) return import_fold(im, n);
  if (strcmp(op, "Conv") == 0) return import_conv(im, n, index, 0);
  if (strcmp(op, "ConvTranspose") == 0) return import_conv(im, n, index, 1);
  if (strcmp(op, "Resize") == 0 || strcmp(op, "Upsample") == 0) return import_resize(im, n);
  if (strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 ||
      strcmp(op, "Div") == 0)
    return import_arith(im, n, index);
  if (strcmp(op, "BatchNormalization") == 0) return import_bn(im, n, index);
  if (strcmp(op, "MaxPool") == 0) return import_pool(im, n, OP_MAXPOOL);
  if (strcmp(op, "AveragePool") == 0) return import_pool(im, n, OP_AVGPOOL);
  if (strcmp(op, "Gemm") == 0) return import_gemm(im, n, index, 0);
  if (strcmp(op, "MatMul") == 0) return import_gemm(im, n, index, 1);
  if (strcmp(op, "Shape") == 0) return import_shape(im, n);
  if (strcmp(op, "Reshape") == 0) return import_reshape(im, n);
  if (strcmp(op, "Constant") == 0) {
    const Onnx__AttributeProto *v = onnx_attr(n, "value");
    if (!v || !v->t) return fail(im, n, "a Constant without a tensor value", NULL);
    Value *c = add_value(im, n->output[0]);
    if (!c) return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
    return const_from_tensor(im, v->t, c);
  }
  const int x = runtime_input(im, n, 0);
  if (strcmp(op, "Dropout") == 0 || strcmp(op, "Identity") == 0) {
    if (x < 0) return fail(im, n, "needs a runtime input", NULL);
    if (op[0] == 'I') return add_output(im, n, x);
    /* kept for fine-tuning (the identity in inference): ratio is an input
     * from opset 12, an attribute before */
    const Value *ratio = const_input(im, n, 1);
    a.p = ratio && ratio->f && ratio->n == 1 ? ratio->f[0] : attr_float(n, "ratio", 0.5f);
    if (!(a.p >= 0.0f && a.p < 1.0f)) return fail(im, n, "a ratio outside [0, 1)", NULL);
    return add_output(im, n, net_add(im->net, OP_DROPOUT, NULL, &x, 1, &a));
  }
  if (strcmp(op, "Pad") == 0) return import_pad(im, n, x);
  if (strcmp(op, "Slice") == 0) return import_slice(im, n, x);
  if (strcmp(op, "Softmax") == 0 && last) {
    im->dropped_softmax = 1; /* medrobust nets end in logits; net_predict applies softmax */
    return add_output(im, n, x);
  }
  if (x < 0) return fail(im, n, "its first input is not a runtime tensor", NULL);
  if (strcmp(op, "Relu") == 0) return add_output(im, n, net_add(im->net, OP_RELU, NULL, &x, 1, &a));
  if (strcmp(op, "LeakyRelu") == 0) {
    a.value = attr_float(n, "alpha", 0.01f);
    return add_output(im, n, net_add(im->net, OP_LEAKY_RELU, NULL, &x, 1, &a));
  }
  if (strcmp(op, "Sigmoid") == 0)
    return add_output(im, n, net_add(im->net, OP_SIGMOID, NULL, &x, 1, &a));
  if (strcmp(op, "GlobalAveragePool") == 0)
    return add_output(im, n, net_add(im->net, OP_GLOBAL_AVGPOOL, NULL, &x, 1, &a));
  if (strcmp(op, "Flatten") == 0) {
    if (attr_int(n, "axis", 1) != 1) return fail(im, n, "attribute axis other than 1", NULL);
    return add_output(im, n, net_add(im->net, OP_FLATTEN, NULL, &x, 1, &a));
  }
  if (strcmp(op, "Clip") == 0) {
    const Value *lo = const_input(im, n, 1), *hi = const_input(im, n, 2);
    a.lo = lo && lo->f ? lo->f[0] : attr_float(n, "min", -INFINITY);
    a.hi = hi && hi->f ? hi->f[0] : attr_float(n, "max", INFINITY);
    if (a.lo != 0.0f) return fail(im, n, "a Clip whose minimum is not 0 (ReLU6-like only)", NULL);
    return add_output(im, n, net_add(im->net, OP_CLIP, NULL, &x, 1, &a));
  }
  if (strcmp(op, "Concat") == 0) {
    int src[NET_MAX_INPUTS];
    if (n->n_input > NET_MAX_INPUTS) return fail(im, n, "too many inputs", NULL);
    for (size_t k = 0; k < n->n_input; k++)
      if ((src[k] = runtime_input(im, n, k)) < 0)
        return fail(im, n, "a concat of a runtime tensor and a constant", NULL);
    if (op[0] == 'C' && attr_int(n, "axis", 1) != 1)
      return fail(im, n, "a concat not along channels", NULL);
    return add_output(
        im, n, net_add(im->net, op[0] == 'A' ? OP_ADD : OP_CONCAT, NULL, src, (int)n->n_input, &a));
  }
  return fail(im, n, "op type not supported: ", op);
}

/* The graph's one image input: (N, C, H, W) with C static, H and W static or --size. */
static Status input_shape(Importer *im, const Onnx__GraphProto *g, const OnnxImportOptions *o,
                          const char **name) {
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *in = g->input[i];
    int is_init = 0;
    for (size_t j = 0; j < g->n_initializer && !is_init; j++)
      is_init = strcmp(nz(g->initializer[j]->name), nz(in->name)) == 0;
    if (is_init) continue;
    if (*name)
      return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: more than one input (%s, %s)", im->path,
                          *name, nz(in->name));
    *name = nz(in->name);
    const Onnx__TypeProto *t = in->type;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type ||
        !t->tensor_type->shape || t->tensor_type->shape->n_dim != 4)
      return mr_error_set(im->err, STATUS_ERR_FORMAT,
                          "%s: input '%s' is not a 4-D (N, C, H, W) image tensor", im->path,
                          nz(in->name));
    int64_t d[4];
    for (int k = 0; k < 4; k++) {
      const Onnx__TensorShapeProto__Dimension *dim = t->tensor_type->shape->dim[k];
      d[k] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                 ? dim->dim_value
                 : -1;
    }
    if (d[2] < 1 || d[3] < 1) d[2] = d[3] = o->size;
    if (d[1] != 1 && d[1] != 3)
      return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: input '%s' has %lld channels (1 or 3)",
                          im->path, nz(in->name), (long long)d[1]);
    if (d[2] < 1 || d[3] < 1 || d[2] > 4096 || d[3] > 4096)
      return mr_error_set(im->err, STATUS_ERR_ARG,
                          "%s: input '%s' has no fixed height and width: give --size", im->path,
                          nz(in->name));
    im->in_c = (int)d[1], im->in_h = (int)d[2], im->in_w = (int)d[3];
  }
  if (!*name) return mr_error_set(im->err, STATUS_ERR_FORMAT, "%s: no image input", im->path);
  return STATUS_OK;
}

static int output_classes(Importer *im, const Onnx__GraphProto *g, const OnnxImportOptions *o) {
  (void)im;
  if (g->n_output != 1) return -1;
  const Onnx__TypeProto *t = g->output[0]->type;
  if (t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type &&
      t->tensor_type->shape && t->tensor_type->shape->n_dim >= 2) {
    const Onnx__TensorShapeProto__Dimension *d = t->tensor_type->shape->dim[1];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      return (int)d->dim_value;
  }
  return o->n_classes;
}

/* What onnx_export keeps in metadata_props: class names (one per line, when
 * the options name none), the training and data records, the per-pixel loss.
 * A record too long for the spec is left out (it only describes). */
static Status read_metadata(Importer *im, const Onnx__ModelProto *m, ModelSpec *spec) {
  for (size_t i = 0; i < m->n_metadata_props; i++) {
    const char *key = nz(m->metadata_props[i]->key), *value = nz(m->metadata_props[i]->value);
    if (strcmp(key, "medrobust.class_names") == 0 && !spec->class_names[0]) {
      int k = 0;
      for (const char *p = value; k <= spec->n_classes; k++) {
        const char *end = strchr(p, '\n');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (k < spec->n_classes && !(spec->class_names[k] = strndup(p, len)))
          return mr_error_set(im->err, STATUS_ERR_NOMEM, "out of memory");
        if (!end) break;
        p = end + 1;
      }
      if (k + 1 != spec->n_classes)
        return mr_error_set(
            im->err, STATUS_ERR_FORMAT,
            "%s: metadata medrobust.class_names names %d classes, the output has %d", im->path,
            k + 1, spec->n_classes);
    } else if (strcmp(key, "medrobust.training") == 0 && strlen(value) < sizeof spec->training) {
      strcpy(spec->training, value);
    } else if (strcmp(key, "medrobust.data") == 0 && strlen(value) < sizeof spec->data) {
      strcpy(spec->data, value);
    } else if (strcmp(key, "medrobust.seg_loss_ignore") == 0) {
      int loss, ignore;
      if (sscanf(value, "%d %d", &loss, &ignore) != 2 || loss < SEG_LOSS_XENT ||
          loss > SEG_LOSS_XENT_DICE || ignore < -1 || ignore >= spec->n_classes)
        return mr_error_set(im->err, STATUS_ERR_FORMAT,
                            "%s: metadata medrobust.seg_loss_ignore='%.40s' is not a loss and a "
                            "label",
                            im->path, value);
      spec->seg_loss = (SegLoss)loss, spec->ignore_label = ignore;
    }
  }
  return STATUS_OK;
}

OnnxImportOptions onnx_import_options_default(void) {
  OnnxImportOptions o;
  memset(&o, 0, sizeof o);
  for (int c = 0; c < 3; c++) o.mean[c] = 0.0f, o.std[c] = 1.0f;
  return o;
}

Net *onnx_import(const char *path, const OnnxImportOptions *opt, MrError *err) {
  OnnxImportOptions defaults = onnx_import_options_default();
  if (!opt) opt = &defaults;
  size_t len = 0;
  const size_t limit =
      mr_limits().file_bytes < MAX_ONNX_BYTES ? (size_t)mr_limits().file_bytes : MAX_ONNX_BYTES;
  uint8_t *bytes = file_read_all(path, limit, &len, err);
  if (!bytes) return NULL;
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, bytes);
  free(bytes);
  if (!m || !m->graph) {
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: not an ONNX model (the protobuf does not parse)",
                 path);
    return NULL;
  }
  int64_t opset = 0;
  for (size_t i = 0; i < m->n_opset_import; i++)
    if (!m->opset_import[i]->domain || !m->opset_import[i]->domain[0])
      opset = m->opset_import[i]->version;
  Importer im = {.path = path, .err = err};
  const Onnx__GraphProto *g = m->graph;
  const char *input = NULL;
  Status st = opset >= 7 && opset <= 17
                  ? input_shape(&im, g, opt, &input)
                  : mr_error_set(err, STATUS_ERR_FORMAT, "%s: opset %lld (9 to 17 are read)", path,
                                 (long long)opset);
  const int k = st == STATUS_OK ? output_classes(&im, g, opt) : 0;
  if (st == STATUS_OK && (k < 2 || k > MR_MAX_CLASSES))
    st = mr_error_set(err, STATUS_ERR_FORMAT,
                      "%s: one output of 2..%d classes is needed (found %zu outputs, %d classes); "
                      "--classes names them",
                      path, MR_MAX_CLASSES, g->n_output, k);
  if (st == STATUS_OK) {
    ModelSpec spec = model_spec_default("cnn", im.in_c, im.in_h, im.in_w, k);
    snprintf(spec.arch, sizeof spec.arch, "onnx:%.26s", g->name && g->name[0] ? g->name : "graph");
    for (int c = 0; c < 3; c++) {
      spec.norm_mean[c] = opt->mean[c];
      spec.norm_std[c] = opt->input_scale > 0 ? 1.0f / opt->input_scale : opt->std[c];
    }
    for (int c = 0; c < k && opt->class_names && opt->class_names[c]; c++)
      spec.class_names[c] = strdup(opt->class_names[c]);
    st = read_metadata(&im, m, &spec);
    im.net = st == STATUS_OK ? net_new(&spec) : NULL;
    model_spec_free(&spec);
    Value *in = im.net ? add_value(&im, input) : NULL;
    if (in)
      in->tensor = NET_INPUT;
    else if (st == STATUS_OK)
      st = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; st == STATUS_OK && i < g->n_initializer; i++) {
    Value *v = add_value(&im, g->initializer[i]->name ? g->initializer[i]->name : "");
    st = v ? const_from_tensor(&im, g->initializer[i], v)
           : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; st == STATUS_OK && i < g->n_node; i++)
    st = import_node(&im, g->node[i], (int)i, i + 1 == g->n_node);
  if (st == STATUS_OK) {
    const Value *out = find(&im, nz(g->output[0]->name));
    if (!out || out->tensor < 0 || out->tensor != net_last(im.net))
      st = mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: the output '%s' is not the graph's last op (medrobust nets end in "
                        "their output)",
                        path, nz(g->output[0]->name));
  }
  if (st == STATUS_OK) st = net_finish(im.net, err);
  if (st == STATUS_OK) net_init_params(im.net, 1);
  /* the weights, by name, with their shapes checked by count */
  for (int p = 0; st == STATUS_OK && p < im.n_pending; p++) {
    int found = 0;
    for (int t = 0; t < net_tensor_count(im.net) && !found; t++) {
      TensorRef r = net_tensor(im.net, t);
      if (strcmp(r.name, im.pending[p].name) != 0 || !r.data) continue;
      found = 1;
      if (r.numel != im.pending[p].n)
        st = mr_error_set(err, STATUS_ERR_SHAPE, "%s: %s holds %zu values, the op needs %zu", path,
                          im.pending[p].name, im.pending[p].n, r.numel);
      else
        memcpy(r.data, im.pending[p].data, sizeof(float) * r.numel);
    }
    if (!found && st == STATUS_OK)
      st = mr_error_set(err, STATUS_ERR_FORMAT, "%s: no parameter %s in the graph", path,
                        im.pending[p].name);
  }
  for (int i = 0; i < im.n_values; i++) free(im.values[i].f), free(im.values[i].i);
  free(im.values), free(im.pending);
  onnx__model_proto__free_unpacked(m, NULL);
  if (st != STATUS_OK) {
    net_free(im.net);
    return NULL;
  }
  return im.net;
}

Net *model_load(const char *path, MrError *err) {
  const size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".onnx") == 0) return onnx_import(path, NULL, err);
  return safetensors_load_net(path, err);
}
