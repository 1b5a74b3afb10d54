/* ONNX export: a medrobust net (every built-in family, and any graph a model
 * file carries) as an ONNX model, opset 13, packed by protobuf-c's generated
 * code from Debian's onnx.proto, so a model medrobust trained or hardened goes
 * back to PyTorch and ONNX Runtime users. Each op kind has its row in
 * exporters[] below; the net's normalisation becomes a Sub and a Div on the
 * [0,1] pixel input, initializers keep the state_dict names (so onnx_import
 * gives the same net back), and the spec's class names and records travel in
 * the model's metadata_props. The output is logits, as the net's. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/data.h"
#include "../nn/net.h"
#include "onnx.pb-c.h"

#define EXPORT_OPSET 13
#define EXPORT_IR_VERSION 7 /* the IR of opset 13 (ONNX 1.8), read by every runtime since */

/* Every protobuf-c struct and string of the model lives in one arena, freed
 * after packing; tensor data points into the net, which outlives it. */
typedef struct {
  void **blocks;
  int n_blocks, cap_blocks;
  Onnx__GraphProto *g;
  size_t cap_node, cap_init;
  const Net *net;
  char **names; /* ONNX name of each net tensor */
  MrError *err;
  int oom;
} Exporter;

static void *ex_alloc(Exporter *ex, size_t bytes) {
  if (ex->oom) return NULL;
  if (ex->n_blocks == ex->cap_blocks) {
    const int cap = ex->cap_blocks ? 2 * ex->cap_blocks : 1024;
    void **grown = realloc(ex->blocks, sizeof(void *) * cap);
    if (!grown) return ex->oom = 1, NULL;
    ex->blocks = grown, ex->cap_blocks = cap;
  }
  void *p = calloc(1, bytes ? bytes : 1);
  if (!p) return ex->oom = 1, NULL;
  return ex->blocks[ex->n_blocks++] = p;
}

static char *ex_printf(Exporter *ex, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *ex_printf(Exporter *ex, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = n >= 0 ? ex_alloc(ex, (size_t)n + 1) : NULL;
  if (s) {
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  return s;
}

/* Appends p to a growing array of pointers. */
static int push(Exporter *ex, void ***items, size_t *n, size_t *cap, void *p) {
  if (!p) return 0;
  if (*n == *cap) {
    const size_t grown_cap = *cap ? 2 * *cap : 64;
    void **grown = ex_alloc(ex, sizeof(void *) * grown_cap);
    if (!grown) return 0;
    if (*n) memcpy(grown, *items, sizeof(void *) * *n);
    *items = grown, *cap = grown_cap;
  }
  (*items)[(*n)++] = p;
  return 1;
}

/* ---- graph pieces ------------------------------------------------------ */

static Onnx__NodeProto *node(Exporter *ex, const char *op, const char *const *in, int n_in,
                             const char *out) {
  Onnx__NodeProto *nd = ex_alloc(ex, sizeof *nd);
  char **ins = ex_alloc(ex, sizeof(char *) * (size_t)(n_in ? n_in : 1));
  char **outs = ex_alloc(ex, sizeof(char *));
  if (!nd || !ins || !outs) return NULL;
  *nd = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
  nd->op_type = (char *)op;
  for (int i = 0; i < n_in; i++) ins[i] = (char *)in[i];
  nd->input = ins, nd->n_input = (size_t)n_in;
  outs[0] = (char *)out;
  nd->output = outs, nd->n_output = 1;
  nd->name = ex_printf(ex, "%s", out);
  if (!push(ex, (void ***)&ex->g->node, &ex->g->n_node, &ex->cap_node, nd)) return NULL;
  return nd;
}

static Onnx__AttributeProto *attribute(Exporter *ex, Onnx__NodeProto *nd, const char *name,
                                       Onnx__AttributeProto__AttributeType type) {
  if (!nd) return NULL;
  Onnx__AttributeProto *a = ex_alloc(ex, sizeof *a);
  Onnx__AttributeProto **list = ex_alloc(ex, sizeof(void *) * (nd->n_attribute + 1));
  if (!a || !list) return NULL;
  *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
  a->name = (char *)name, a->has_type = 1, a->type = type;
  if (nd->n_attribute) memcpy(list, nd->attribute, sizeof(void *) * nd->n_attribute);
  list[nd->n_attribute++] = a;
  nd->attribute = list;
  return a;
}

static void attr_int(Exporter *ex, Onnx__NodeProto *nd, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attribute(ex, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (a) a->has_i = 1, a->i = v;
}

static void attr_float(Exporter *ex, Onnx__NodeProto *nd, const char *name, float v) {
  Onnx__AttributeProto *a = attribute(ex, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (a) a->has_f = 1, a->f = v;
}

static void attr_string(Exporter *ex, Onnx__NodeProto *nd, const char *name, const char *v) {
  Onnx__AttributeProto *a = attribute(ex, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  if (a) a->has_s = 1, a->s.data = (uint8_t *)v, a->s.len = strlen(v);
}

static void attr_ints(Exporter *ex, Onnx__NodeProto *nd, const char *name, const int *v, int n) {
  Onnx__AttributeProto *a = attribute(ex, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *ints = ex_alloc(ex, sizeof(int64_t) * (size_t)n);
  if (!a || !ints) return;
  for (int i = 0; i < n; i++) ints[i] = v[i];
  a->ints = ints, a->n_ints = (size_t)n;
}

/* An initializer; float data is referenced (the net outlives the packing),
 * int64 data copied. Returns its name. */
static const char *initializer(Exporter *ex, const char *name, const int64_t *dims, int ndim,
                               const float *f, const int64_t *i64, size_t n) {
  Onnx__TensorProto *t = ex_alloc(ex, sizeof *t);
  int64_t *d = ex_alloc(ex, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
  char *nm = ex_printf(ex, "%s", name);
  void *data = i64 ? ex_alloc(ex, sizeof(int64_t) * (n ? n : 1)) : (void *)f;
  if (!t || !d || !nm || !data) return NULL;
  *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
  if (ndim) memcpy(d, dims, sizeof(int64_t) * (size_t)ndim);
  t->dims = d, t->n_dims = (size_t)ndim, t->name = nm;
  t->has_data_type = 1;
  t->data_type = i64 ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  if (i64) memcpy(data, i64, sizeof(int64_t) * n);
  /* raw_data is little-endian, as x86-64 and aarch64 hosts store floats */
  t->has_raw_data = 1, t->raw_data.data = data, t->raw_data.len = n * (i64 ? 8 : 4);
  if (!push(ex, (void ***)&ex->g->initializer, &ex->g->n_initializer, &ex->cap_init, t))
    return NULL;
  return nm;
}

static const char *scalar(Exporter *ex, const char *name, float v) {
  float *f = ex_alloc(ex, sizeof(float));
  if (!f) return NULL;
  *f = v;
  return initializer(ex, name, NULL, 0, f, NULL, 1);
}

static const char *ints1d(Exporter *ex, const char *name, const int64_t *v, int n) {
  const int64_t dims[1] = {n};
  return initializer(ex, name, dims, 1, NULL, v, (size_t)n);
}

/* A parameter of layer l by slot suffix, shaped as its state_dict entry. */
static const char *param(Exporter *ex, const Layer *l, const char *suffix, const float *data) {
  char full[NAME_LEN + 32];
  snprintf(full, sizeof full, "%s.%s", l->name, suffix);
  for (int e = 0; e < ex->net->n_entries; e++) {
    const Entry *en = &ex->net->entries[e];
    if (strcmp(en->name, full) == 0)
      return initializer(ex, full, en->shape, en->ndim, data, NULL, en->numel);
  }
  mr_error_set(ex->err, STATUS_ERR_ARG, "export: layer %s has no tensor %s", l->name, full);
  return NULL;
}

static Onnx__ValueInfoProto *value_info(Exporter *ex, const char *name, const int64_t *dims,
                                        int ndim) {
  Onnx__ValueInfoProto *v = ex_alloc(ex, sizeof *v);
  Onnx__TypeProto *type = ex_alloc(ex, sizeof *type);
  Onnx__TypeProto__Tensor *tt = ex_alloc(ex, sizeof *tt);
  Onnx__TensorShapeProto *shape = ex_alloc(ex, sizeof *shape);
  Onnx__TensorShapeProto__Dimension **dim = ex_alloc(ex, sizeof(void *) * (size_t)ndim);
  if (!v || !type || !tt || !shape || !dim) return NULL;
  for (int k = 0; k < ndim; k++) {
    Onnx__TensorShapeProto__Dimension *d = ex_alloc(ex, sizeof *d);
    if (!d) return NULL;
    *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    if (dims[k] < 0) { /* the batch: any size */
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = "N";
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[k];
    }
    dim[k] = d;
  }
  *shape = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
  shape->dim = dim, shape->n_dim = (size_t)ndim;
  *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
  tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = shape;
  *type = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, type->tensor_type = tt;
  *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
  v->name = (char *)name, v->type = type;
  return v;
}

/* ---- one row per op kind ----------------------------------------------- */

/* A layer's call: its input names, its output name. */
typedef struct {
  const Layer *l;
  const char *in[NET_MAX_INPUTS];
  const char *out;
} Call;

typedef int (*ExportFn)(Exporter *ex, const Call *c);

/* ONNX pads: begin of each axis, then end; ours: top, bottom, left, right */
static void attr_geometry(Exporter *ex, Onnx__NodeProto *nd, const OpAttrs *a, int kernel,
                          int dilation) {
  const int pads[4] = {a->pad[0], a->pad[2], a->pad[1], a->pad[3]};
  if (kernel) attr_ints(ex, nd, "kernel_shape", a->kernel, 2);
  attr_ints(ex, nd, "strides", a->stride, 2);
  attr_ints(ex, nd, "pads", pads, 4);
  if (dilation) attr_ints(ex, nd, "dilations", a->dilation, 2);
}

static int export_conv(Exporter *ex, const Call *c) {
  const Layer *l = c->l;
  const char *in[3] = {c->in[0], param(ex, l, "weight", l->weight),
                       l->a.bias ? param(ex, l, "bias", l->bias) : NULL};
  if (!in[1] || (l->a.bias && !in[2])) return 0;
  const int transposed = l->kind == OP_CONV_TRANSPOSE2D;
  Onnx__NodeProto *nd =
      node(ex, transposed ? "ConvTranspose" : "Conv", in, l->a.bias ? 3 : 2, c->out);
  attr_geometry(ex, nd, &l->a, 1, 1);
  attr_int(ex, nd, "group", l->a.groups);
  if (transposed) attr_ints(ex, nd, "output_padding", l->a.output_padding, 2);
  return nd != NULL;
}

static int export_bn(Exporter *ex, const Call *c) {
  const Layer *l = c->l;
  const char *in[5] = {c->in[0], param(ex, l, "weight", l->weight), param(ex, l, "bias", l->bias),
                       param(ex, l, "running_mean", l->running_mean),
                       param(ex, l, "running_var", l->running_var)};
  for (int i = 1; i < 5; i++)
    if (!in[i]) return 0;
  Onnx__NodeProto *nd = node(ex, "BatchNormalization", in, 5, c->out);
  attr_float(ex, nd, "epsilon", l->a.eps);
  attr_float(ex, nd, "momentum", 1.0f - l->a.momentum); /* ONNX keeps, PyTorch replaces */
  return nd != NULL;
}

static int export_unary(Exporter *ex, const Call *c) {
  static const char *const ops[OP_KIND_COUNT] = {
      [OP_RELU] = "Relu",
      [OP_SIGMOID] = "Sigmoid",
      [OP_GLOBAL_AVGPOOL] = "GlobalAveragePool",
      [OP_LEAKY_RELU] = "LeakyRelu",
  };
  Onnx__NodeProto *nd = node(ex, ops[c->l->kind], c->in, 1, c->out);
  if (c->l->kind == OP_LEAKY_RELU) attr_float(ex, nd, "alpha", c->l->a.value);
  return nd != NULL;
}

static int export_pool(Exporter *ex, const Call *c) {
  const int max = c->l->kind == OP_MAXPOOL;
  Onnx__NodeProto *nd = node(ex, max ? "MaxPool" : "AveragePool", c->in, 1, c->out);
  attr_geometry(ex, nd, &c->l->a, 1, max);
  if (!max) attr_int(ex, nd, "count_include_pad", 1);
  return nd != NULL;
}

static int export_flatten(Exporter *ex, const Call *c) {
  Onnx__NodeProto *nd = node(ex, "Flatten", c->in, 1, c->out);
  attr_int(ex, nd, "axis", 1);
  return nd != NULL;
}

static int export_dense(Exporter *ex, const Call *c) {
  const Layer *l = c->l;
  const char *in[3] = {c->in[0], param(ex, l, "weight", l->weight), param(ex, l, "bias", l->bias)};
  if (!in[1] || !in[2]) return 0;
  if (net_tensor_shape(ex->net, l->src[0]).ndim == 3) { /* a (C,1,1) map: Gemm reads (N, C) */
    const char *flat = ex_printf(ex, "%s.flat", c->out);
    Onnx__NodeProto *f = node(ex, "Flatten", in, 1, flat);
    attr_int(ex, f, "axis", 1);
    in[0] = flat;
    if (!f) return 0;
  }
  Onnx__NodeProto *nd = node(ex, "Gemm", in, 3, c->out);
  attr_int(ex, nd, "transB", 1);
  return nd != NULL;
}

static int export_dropout(Exporter *ex, const Call *c) {
  const char *in[2] = {c->in[0], scalar(ex, ex_printf(ex, "%s.ratio", c->out), c->l->a.p)};
  return in[1] && node(ex, "Dropout", in, 2, c->out) != NULL;
}

static int export_add(Exporter *ex, const Call *c) {
  return node(ex, "Add", c->in, 2, c->out) != NULL;
}

static int export_concat(Exporter *ex, const Call *c) {
  Onnx__NodeProto *nd = node(ex, "Concat", c->in, c->l->n_src, c->out);
  attr_int(ex, nd, "axis", 1);
  return nd != NULL;
}

/* The option-A shortcut: a strided Slice, then zeros on both sides of the
 * channels and around the spatial sides (a Pad). */
static int export_shortcut_pad(Exporter *ex, const Call *c) {
  const Layer *l = c->l;
  const int sh = l->a.stride[0], sw = l->a.stride[1];
  const int C = shape_c(l->in_shape), OC = shape_c(l->out_shape);
  const int *sp = l->a.pad; /* top, bottom, left, right */
  const int subsample = sh > 1 || sw > 1;
  const int pad = OC > C || sp[0] || sp[1] || sp[2] || sp[3] || !subsample;
  const char *x = c->in[0];
  if (subsample) {
    const int64_t starts[2] = {0, 0}, ends[2] = {shape_h(l->in_shape), shape_w(l->in_shape)},
                  axes[2] = {2, 3}, steps[2] = {sh, sw};
    const char *sub = pad ? ex_printf(ex, "%s.subsample", c->out) : c->out;
    const char *in[5] = {x, ints1d(ex, ex_printf(ex, "%s.starts", c->out), starts, 2),
                         ints1d(ex, ex_printf(ex, "%s.ends", c->out), ends, 2),
                         ints1d(ex, ex_printf(ex, "%s.axes", c->out), axes, 2),
                         ints1d(ex, ex_printf(ex, "%s.steps", c->out), steps, 2)};
    for (int i = 1; i < 5; i++)
      if (!in[i]) return 0;
    if (!node(ex, "Slice", in, 5, sub)) return 0;
    x = sub;
  }
  if (pad) {
    const int64_t lo = (OC - C) / 2, pads[8] = {0, lo, sp[0], sp[2], 0, OC - C - lo, sp[1], sp[3]};
    const char *in[2] = {x, ints1d(ex, ex_printf(ex, "%s.pads", c->out), pads, 8)};
    Onnx__NodeProto *nd = in[1] ? node(ex, "Pad", in, 2, c->out) : NULL;
    attr_string(ex, nd, "mode", "constant");
    return nd != NULL;
  }
  return 1;
}

static int export_upsample(Exporter *ex, const Call *c) {
  const OpAttrs *a = &c->l->a;
  float *scales = ex_alloc(ex, sizeof(float) * 4);
  if (!scales) return 0;
  scales[0] = scales[1] = 1.0f, scales[2] = (float)a->scale[0], scales[3] = (float)a->scale[1];
  const int64_t dims[1] = {4};
  const char *in[3] = {
      c->in[0], "", initializer(ex, ex_printf(ex, "%s.scales", c->out), dims, 1, scales, NULL, 4)};
  Onnx__NodeProto *nd = in[2] ? node(ex, "Resize", in, 3, c->out) : NULL;
  if (a->mode == UPSAMPLE_BILINEAR) {
    attr_string(ex, nd, "mode", "linear");
    attr_string(ex, nd, "coordinate_transformation_mode", "half_pixel");
  } else { /* nn.Upsample's nearest: the source pixel floor(y / scale) */
    attr_string(ex, nd, "mode", "nearest");
    attr_string(ex, nd, "coordinate_transformation_mode", "asymmetric");
    attr_string(ex, nd, "nearest_mode", "floor");
  }
  return nd != NULL;
}

static int export_clip(Exporter *ex, const Call *c) {
  const char *in[3] = {c->in[0], scalar(ex, ex_printf(ex, "%s.min", c->out), c->l->a.lo),
                       scalar(ex, ex_printf(ex, "%s.max", c->out), c->l->a.hi)};
  return in[1] && in[2] && node(ex, "Clip", in, 3, c->out) != NULL;
}

static int export_binary(Exporter *ex, const Call *c) {
  const char *op = c->l->kind == OP_MUL ? "Mul" : c->l->kind == OP_SUB ? "Sub" : "Div";
  const char *in[2] = {
      c->in[0],
      c->l->n_src > 1 ? c->in[1] : scalar(ex, ex_printf(ex, "%s.value", c->out), c->l->a.value)};
  return in[1] && node(ex, op, in, 2, c->out) != NULL;
}

static const ExportFn exporters[OP_KIND_COUNT] = {
    [OP_CONV2D] = export_conv,
    [OP_CONV_TRANSPOSE2D] = export_conv,
    [OP_BATCHNORM2D] = export_bn,
    [OP_RELU] = export_unary,
    [OP_MAXPOOL] = export_pool,
    [OP_AVGPOOL] = export_pool,
    [OP_GLOBAL_AVGPOOL] = export_unary,
    [OP_FLATTEN] = export_flatten,
    [OP_DENSE] = export_dense,
    [OP_DROPOUT] = export_dropout,
    [OP_ADD] = export_add,
    [OP_SHORTCUT_PAD] = export_shortcut_pad,
    [OP_CONCAT] = export_concat,
    [OP_UPSAMPLE] = export_upsample,
    [OP_SIGMOID] = export_unary,
    [OP_CLIP] = export_clip,
    [OP_MUL] = export_binary,
    [OP_SUB] = export_binary,
    [OP_DIV] = export_binary,
    [OP_LEAKY_RELU] = export_unary,
};

/* ---- the model ----------------------------------------------------------- */

/* The input's preprocessing: (x - mean) / std as PyTorch writes it, on
 * [0,1] pixels; nothing when it is the identity. Returns the normalised
 * tensor's name. */
static const char *export_normalisation(Exporter *ex) {
  const ModelSpec *s = &ex->net->spec;
  int identity = 1;
  for (int c = 0; c < s->in_c; c++) identity &= s->norm_mean[c] == 0.0f && s->norm_std[c] == 1.0f;
  if (identity) return "input";
  const int64_t dims[4] = {1, s->in_c, 1, 1};
  const char *in[2] = {"input",
                       initializer(ex, "input.mean", dims, 4, s->norm_mean, NULL, (size_t)s->in_c)};
  if (!in[1] || !node(ex, "Sub", in, 2, "input.centred")) return NULL;
  in[0] = "input.centred";
  in[1] = initializer(ex, "input.std", dims, 4, s->norm_std, NULL, (size_t)s->in_c);
  if (!in[1] || !node(ex, "Div", in, 2, "normalised")) return NULL;
  return "normalised";
}

static int metadata(Exporter *ex, Onnx__ModelProto *m, const char *key, const char *value) {
  if (!value || !value[0]) return 1;
  Onnx__StringStringEntryProto *e = ex_alloc(ex, sizeof *e);
  Onnx__StringStringEntryProto **list = ex_alloc(ex, sizeof(void *) * (m->n_metadata_props + 1));
  if (!e || !list) return 0;
  *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
  e->key = (char *)key, e->value = (char *)value;
  if (m->n_metadata_props) memcpy(list, m->metadata_props, sizeof(void *) * m->n_metadata_props);
  list[m->n_metadata_props++] = e;
  m->metadata_props = list;
  return 1;
}

/* The class names as one string, one per line (names hold no newline). */
static char *class_lines(Exporter *ex, const ModelSpec *s) {
  size_t len = 1;
  for (int k = 0; k < s->n_classes; k++) {
    if (!s->class_names[k]) return NULL;
    len += strlen(s->class_names[k]) + 1;
  }
  char *out = ex_alloc(ex, len), *p = out;
  for (int k = 0; out && k < s->n_classes; k++)
    p += sprintf(p, "%s%s", k ? "\n" : "", s->class_names[k]);
  return out;
}

static Status build_model(Exporter *ex, Onnx__ModelProto *m) {
  const Net *net = ex->net;
  const ModelSpec *s = &net->spec;
  const int n_tensors = net->n_layers + 1;
  ex->names = ex_alloc(ex, sizeof(char *) * (size_t)n_tensors);
  ex->g = ex_alloc(ex, sizeof *ex->g);
  if (!ex->names || !ex->g) return STATUS_ERR_NOMEM;
  *ex->g = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
  ex->g->name = (char *)s->arch;
  ex->names[0] = (char *)export_normalisation(ex);
  if (!ex->names[0]) return STATUS_ERR_NOMEM;
  for (int i = 0; i < net->n_layers; i++) {
    const Layer *l = &net->layers[i];
    const ExportFn fn = exporters[l->kind];
    if (!fn)
      return mr_error_set(ex->err, STATUS_ERR_ARG, "export: layer %d (%s) has no ONNX form yet", i,
                          op_def(l->kind)->name);
    Call c = {.l = l};
    for (int k = 0; k < l->n_src; k++) c.in[k] = ex->names[l->src[k]];
    c.out = i + 1 == net->n_layers ? "logits"
            : l->name[0]           ? ex_printf(ex, "%s_%d", l->name, i + 1)
                                   : ex_printf(ex, "%s_%d", op_def(l->kind)->name, i + 1);
    if (!c.out || !fn(ex, &c)) {
      if (ex->err->status != STATUS_OK) return ex->err->status;
      return ex->oom ? STATUS_ERR_NOMEM : STATUS_ERR_ARG;
    }
    ex->names[i + 1] = (char *)c.out;
  }
  const Shape out = net->layers[net->n_layers - 1].out_shape;
  const int64_t in_dims[4] = {-1, s->in_c, s->in_h, s->in_w},
                out_dims[4] = {-1, s->n_classes, shape_h(out), shape_w(out)};
  const int per_pixel = out.ndim == 3 && shape_h(out) * shape_w(out) > 1;
  Onnx__ValueInfoProto **io = ex_alloc(ex, sizeof(void *) * 2);
  if (!io) return STATUS_ERR_NOMEM;
  io[0] = value_info(ex, "input", in_dims, 4);
  io[1] = value_info(ex, "logits", out_dims, per_pixel ? 4 : 2);
  ex->g->input = &io[0], ex->g->n_input = 1;
  ex->g->output = &io[1], ex->g->n_output = 1;
  if (!per_pixel && out.ndim == 3) { /* a (K,1,1) end: flattened to (N, K) scores */
    ex->names[net->n_layers] = "logits.map";
    Onnx__NodeProto *last = ex->g->node[ex->g->n_node - 1];
    last->output[0] = "logits.map";
    const char *in[1] = {"logits.map"};
    Onnx__NodeProto *nd = node(ex, "Flatten", in, 1, "logits");
    attr_int(ex, nd, "axis", 1);
  }
  Onnx__OperatorSetIdProto *opset = ex_alloc(ex, sizeof *opset);
  Onnx__OperatorSetIdProto **opsets = ex_alloc(ex, sizeof(void *));
  if (!opset || !opsets) return STATUS_ERR_NOMEM;
  *opset = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
  opset->domain = "", opset->has_version = 1, opset->version = EXPORT_OPSET;
  opsets[0] = opset;
  m->opset_import = opsets, m->n_opset_import = 1;
  m->has_ir_version = 1, m->ir_version = EXPORT_IR_VERSION;
  m->producer_name = "medrobust", m->producer_version = MEDROBUST_VERSION;
  m->graph = ex->g;
  int ok = metadata(ex, m, "medrobust.class_names", class_lines(ex, s)) &&
           metadata(ex, m, "medrobust.training", s->training) &&
           metadata(ex, m, "medrobust.data", s->data);
  if (per_pixel)
    ok = ok && metadata(ex, m, "medrobust.seg_loss_ignore",
                        ex_printf(ex, "%d %d", (int)s->seg_loss, s->ignore_label));
  return ok && !ex->oom ? STATUS_OK : STATUS_ERR_NOMEM;
}

Status onnx_export(const Net *net, const char *path, MrError *err) {
  if (!net->finished) return mr_error_set(err, STATUS_ERR_ARG, "export: the net is not finished");
  Exporter ex = {.net = net, .err = err};
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  Status st = build_model(&ex, &m);
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (st == STATUS_OK) {
    len = onnx__model_proto__get_packed_size(&m);
    bytes = malloc(len ? len : 1);
    if (!bytes) st = STATUS_ERR_NOMEM;
  }
  if (st == STATUS_OK) onnx__model_proto__pack(&m, bytes);
  for (int i = 0; i < ex.n_blocks; i++) free(ex.blocks[i]);
  free(ex.blocks);
  if (st == STATUS_ERR_NOMEM && err->status == STATUS_OK)
    return mr_error_set(err, STATUS_ERR_NOMEM, "export: out of memory");
  if (st != STATUS_OK) return free(bytes), st;
  st = file_write_all(path, bytes, len, err);
  free(bytes);
  return st;
}
