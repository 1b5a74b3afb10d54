/* ONNX constant folding: the nodes exporters use to compute shapes, pads,
 * scales and axes from constants (PyTorch's F.pad alone emits
 * ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose -> Reshape ->
 * Cast) are evaluated at import, so only ops on image tensors reach the net.
 * Values are float or int64 tensors of up to ONNX_MAX_DIMS axes; every size
 * is checked before allocating (the file is untrusted). Slice, Transpose and
 * broadcasting are one strided copy over the output's indices. */
#include <math.h>
#include <stdlib.h>

#include "onnx_value.h"

static const char *const foldable[] = {
    "Identity", "Dropout", "Gather",    "Unsqueeze", "Squeeze",         "Concat",
    "Reshape",  "Slice",   "Transpose", "Cast",      "ConstantOfShape", "Add",
    "Sub",      "Mul",     "Div",       "Shape",     "Flatten",
};

int onnx_foldable(const char *op) {
  for (size_t i = 0; i < sizeof foldable / sizeof foldable[0]; i++)
    if (strcmp(op, foldable[i]) == 0) return 1;
  return 0;
}

/* memcpy of n int64 (protobuf-c leaves an empty list NULL, which memcpy may not read) */
static void copy_ints(int64_t *dst, const int64_t *src, size_t n) {
  if (n) memcpy(dst, src, sizeof(int64_t) * n);
}

static double get(const Value *v, size_t k) { return v->f ? (double)v->f[k] : (double)v->i[k]; }

static void put(Value *v, size_t k, double x) {
  if (v->f)
    v->f[k] = (float)x;
  else
    v->i[k] = (int64_t)x;
}

/* out's data for its dims, float or integer; NULL or why not */
static const char *alloc_like(Value *out, int floats) {
  size_t n = 1;
  for (int d = 0; d < out->ndim; d++) {
    if (out->dims[d] < 0 || (out->dims[d] && n > ONNX_MAX_FOLDED / (size_t)out->dims[d]))
      return "a folded constant too large (or a negative dimension)";
    n *= (size_t)out->dims[d];
  }
  out->n = n;
  if (floats)
    out->f = malloc(sizeof(float) * (n ? n : 1));
  else
    out->i = malloc(sizeof(int64_t) * (n ? n : 1));
  return out->f || out->i ? NULL : "out of memory";
}

static void strides_of(const Value *v, int64_t *stride) {
  int64_t s = 1;
  for (int d = v->ndim - 1; d >= 0; d--) stride[d] = s, s *= v->dims[d];
}

/* out[index] = in[base + sum_d index[d] * step[d]] over every index of out's dims */
static void strided_copy(const Value *in, Value *out, int64_t base, const int64_t *step) {
  int64_t index[ONNX_MAX_DIMS] = {0};
  for (size_t k = 0; k < out->n; k++) {
    int64_t at = base;
    for (int d = 0; d < out->ndim; d++) at += index[d] * step[d];
    put(out, k, get(in, (size_t)at));
    for (int d = out->ndim - 1; d >= 0 && ++index[d] == out->dims[d]; d--) index[d] = 0;
  }
}

static int axis_of(int64_t axis, int ndim, int *out) {
  if (axis < 0) axis += ndim;
  if (axis < 0 || axis >= ndim) return 0;
  *out = (int)axis;
  return 1;
}

/* The axes a node names: its input k (opset 13 on) or its attribute (before). */
static int axes_list(const Onnx__NodeProto *n, const Value *const *in, size_t n_in, size_t k,
                     int64_t *axes, size_t *count) {
  const Onnx__AttributeProto *a = onnx_attr(n, "axes");
  if (k < n_in && in[k] && in[k]->i && in[k]->n <= ONNX_MAX_DIMS) {
    *count = in[k]->n;
    copy_ints(axes, in[k]->i, *count);
    return 1;
  }
  if (a && a->n_ints <= ONNX_MAX_DIMS) {
    *count = a->n_ints;
    copy_ints(axes, a->ints, *count);
    return 1;
  }
  *count = 0;
  return !(k < n_in && in[k]);
}

static const char *fold_gather(const Onnx__NodeProto *n, const Value *data, const Value *idx,
                               Value *out) {
  const Onnx__AttributeProto *a = onnx_attr(n, "axis");
  int axis;
  if (!idx->i || !axis_of(a && a->has_i ? a->i : 0, data->ndim, &axis) ||
      data->ndim + idx->ndim - 1 > ONNX_MAX_DIMS)
    return "Gather needs integer indices and an axis of the data";
  out->ndim = 0;
  for (int d = 0; d < axis; d++) out->dims[out->ndim++] = data->dims[d];
  for (int d = 0; d < idx->ndim; d++) out->dims[out->ndim++] = idx->dims[d];
  for (int d = axis + 1; d < data->ndim; d++) out->dims[out->ndim++] = data->dims[d];
  const char *why = alloc_like(out, data->f != NULL);
  if (why) return why;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= data->dims[d];
  for (int d = axis + 1; d < data->ndim; d++) inner *= data->dims[d];
  const int64_t len = data->dims[axis];
  size_t k = 0;
  for (int64_t o = 0; o < outer; o++)
    for (size_t j = 0; j < idx->n; j++) {
      int64_t at = idx->i[j] < 0 ? idx->i[j] + len : idx->i[j];
      if (at < 0 || at >= len) return "Gather index out of range";
      for (int64_t r = 0; r < inner; r++)
        put(out, k++, get(data, (size_t)((o * len + at) * inner + r)));
    }
  return NULL;
}

static const char *fold_concat(const Onnx__NodeProto *n, const Value *const *in, size_t n_in,
                               Value *out) {
  const Onnx__AttributeProto *a = onnx_attr(n, "axis");
  int axis;
  if (n_in < 1 || !in[0] || !axis_of(a && a->has_i ? a->i : 0, in[0]->ndim, &axis))
    return "Concat needs inputs and an axis";
  *out = *in[0];
  out->f = NULL, out->i = NULL, out->dims[axis] = 0;
  for (size_t k = 0; k < n_in; k++) {
    if (!in[k] || in[k]->ndim != in[0]->ndim || !in[k]->f != !in[0]->f)
      return "Concat of constants of other ranks or types";
    for (int d = 0; d < in[0]->ndim; d++)
      if (d != axis && in[k]->dims[d] != in[0]->dims[d]) return "Concat of mismatched shapes";
    out->dims[axis] += in[k]->dims[axis];
  }
  const char *why = alloc_like(out, in[0]->f != NULL);
  if (why) return why;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= out->dims[d];
  for (int d = axis + 1; d < out->ndim; d++) inner *= out->dims[d];
  size_t k = 0;
  for (int64_t o = 0; o < outer; o++)
    for (size_t j = 0; j < n_in; j++) {
      const int64_t block = in[j]->dims[axis] * inner;
      for (int64_t r = 0; r < block; r++) put(out, k++, get(in[j], (size_t)(o * block + r)));
    }
  return NULL;
}

static const char *fold_reshape(const Value *data, const Value *shape, Value *out) {
  if (!shape->i || shape->n > ONNX_MAX_DIMS) return "Reshape needs an integer shape";
  int infer = -1;
  size_t known = 1;
  out->ndim = (int)shape->n;
  for (int d = 0; d < out->ndim; d++) {
    int64_t v = shape->i[d];
    if (v == 0 && d < data->ndim) v = data->dims[d];
    if (v == -1) {
      if (infer >= 0) return "Reshape with two -1";
      infer = d, v = 1;
    }
    if (v < 0 || (v && known > ONNX_MAX_FOLDED / (size_t)v)) return "Reshape to a bad shape";
    out->dims[d] = v, known *= (size_t)v;
  }
  if (infer >= 0) out->dims[infer] = known ? (int64_t)(data->n / known) : 0;
  const char *why = alloc_like(out, data->f != NULL);
  if (why) return why;
  if (out->n != data->n) return "Reshape to another number of elements";
  for (size_t k = 0; k < out->n; k++) put(out, k, get(data, k));
  return NULL;
}

/* ONNX's rule: negative starts and ends count from the end, then clamp
 * (to [0, len] going forward, [-1, len-1] going backward). */
static const char *fold_slice(const Onnx__NodeProto *n, const Value *const *in, size_t n_in,
                              Value *out) {
  const Value *data = in[0];
  int64_t starts[ONNX_MAX_DIMS], ends[ONNX_MAX_DIMS], axes[ONNX_MAX_DIMS], steps[ONNX_MAX_DIMS];
  size_t k = 0;
  const Onnx__AttributeProto *sa = onnx_attr(n, "starts"), *ea = onnx_attr(n, "ends");
  if (n_in >= 3 && in[1] && in[2] && in[1]->i && in[2]->i && in[1]->n == in[2]->n &&
      in[1]->n <= ONNX_MAX_DIMS) { /* opset 10 on */
    k = in[1]->n;
    copy_ints(starts, in[1]->i, k), copy_ints(ends, in[2]->i, k);
  } else if (sa && ea && sa->n_ints == ea->n_ints && sa->n_ints <= ONNX_MAX_DIMS) {
    k = sa->n_ints;
    copy_ints(starts, sa->ints, k), copy_ints(ends, ea->ints, k);
  } else {
    return "Slice needs integer starts and ends of one length";
  }
  size_t n_axes = 0;
  if (!axes_list(n, in, n_in, 3, axes, &n_axes)) return "Slice axes are not integers";
  if (!n_axes)
    for (size_t j = 0; j < k; j++) axes[j] = (int64_t)j;
  else if (n_axes != k)
    return "Slice axes of another length than starts";
  for (size_t j = 0; j < k; j++) steps[j] = 1;
  if (n_in >= 5 && in[4]) {
    if (!in[4]->i || in[4]->n != k) return "Slice steps of another length than starts";
    copy_ints(steps, in[4]->i, k);
  }
  int64_t first[ONNX_MAX_DIMS] = {0}, step[ONNX_MAX_DIMS], stride[ONNX_MAX_DIMS];
  strides_of(data, stride);
  *out = *data;
  out->f = NULL, out->i = NULL;
  for (int d = 0; d < data->ndim; d++) step[d] = 1;
  for (size_t j = 0; j < k; j++) {
    int ax;
    if (!axis_of(axes[j], data->ndim, &ax) || steps[j] == 0) return "Slice axis or step is bad";
    const int64_t len = data->dims[ax], s = steps[j];
    int64_t b = starts[j] < 0 ? starts[j] + len : starts[j];
    int64_t e = ends[j] < -len ? -1 : ends[j] < 0 ? ends[j] + len : ends[j];
    if (s > 0) {
      b = b < 0 ? 0 : b > len ? len : b, e = e < 0 ? 0 : e > len ? len : e;
      out->dims[ax] = e > b ? (e - b + s - 1) / s : 0;
    } else {
      b = b < -1 ? -1 : b > len - 1 ? len - 1 : b, e = e < -1 ? -1 : e > len - 1 ? len - 1 : e;
      out->dims[ax] = b > e ? (b - e + (-s) - 1) / (-s) : 0;
    }
    first[ax] = b, step[ax] = s;
  }
  const char *why = alloc_like(out, data->f != NULL);
  if (why) return why;
  int64_t base = 0, walk[ONNX_MAX_DIMS];
  for (int d = 0; d < data->ndim; d++) base += first[d] * stride[d], walk[d] = step[d] * stride[d];
  strided_copy(data, out, base, walk);
  return NULL;
}

static const char *fold_transpose(const Onnx__NodeProto *n, const Value *data, Value *out) {
  const Onnx__AttributeProto *a = onnx_attr(n, "perm");
  int64_t perm[ONNX_MAX_DIMS], stride[ONNX_MAX_DIMS], walk[ONNX_MAX_DIMS];
  int seen = 0;
  for (int d = 0; d < data->ndim; d++) perm[d] = data->ndim - 1 - d;
  if (a) {
    if ((int)a->n_ints != data->ndim) return "Transpose perm of another rank";
    copy_ints(perm, a->ints, a->n_ints);
  }
  strides_of(data, stride);
  *out = *data;
  out->f = NULL, out->i = NULL;
  for (int d = 0; d < data->ndim; d++) {
    if (perm[d] < 0 || perm[d] >= data->ndim || (seen >> perm[d]) & 1) return "a bad perm";
    seen |= 1 << perm[d];
    out->dims[d] = data->dims[perm[d]], walk[d] = stride[perm[d]];
  }
  const char *why = alloc_like(out, data->f != NULL);
  if (why) return why;
  strided_copy(data, out, 0, walk);
  return NULL;
}

/* numpy broadcasting of two constants */
static const char *fold_arith(char op, const Value *a, const Value *b, Value *out) {
  if (!a->f != !b->f) return "arithmetic on a float and an integer constant";
  out->ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
  int64_t sa[ONNX_MAX_DIMS], sb[ONNX_MAX_DIMS], wa[ONNX_MAX_DIMS] = {0}, wb[ONNX_MAX_DIMS] = {0};
  strides_of(a, sa), strides_of(b, sb);
  for (int d = 0; d < out->ndim; d++) {
    const int da = d - (out->ndim - a->ndim), db = d - (out->ndim - b->ndim);
    const int64_t la = da >= 0 ? a->dims[da] : 1, lb = db >= 0 ? b->dims[db] : 1;
    if (la != lb && la != 1 && lb != 1) return "shapes that do not broadcast";
    out->dims[d] = la > lb ? la : lb;
    if (da >= 0 && la > 1) wa[d] = sa[da];
    if (db >= 0 && lb > 1) wb[d] = sb[db];
  }
  const char *why = alloc_like(out, a->f != NULL);
  if (why) return why;
  int64_t index[ONNX_MAX_DIMS] = {0};
  for (size_t k = 0; k < out->n; k++) {
    int64_t ia = 0, ib = 0;
    for (int d = 0; d < out->ndim; d++) ia += index[d] * wa[d], ib += index[d] * wb[d];
    const double x = get(a, (size_t)ia), y = get(b, (size_t)ib);
    if (op == 'D' && y == 0 && !out->f) return "integer division by zero";
    const double r = op == 'A' ? x + y : op == 'S' ? x - y : op == 'M' ? x * y : x / y;
    put(out, k, out->f || op != 'D' ? r : trunc(r));
    for (int d = out->ndim - 1; d >= 0 && ++index[d] == out->dims[d]; d--) index[d] = 0;
  }
  return NULL;
}

static const char *copy_data(const Value *data, Value *out) {
  const char *why = alloc_like(out, data->f != NULL);
  if (why) return why;
  for (size_t k = 0; k < out->n; k++) put(out, k, get(data, k));
  return NULL;
}

const char *onnx_fold(const Onnx__NodeProto *n, const Value *const *in, size_t n_in, Value *out) {
  const char *op = n->op_type ? n->op_type : "";
  const Value *x = n_in ? in[0] : NULL;
  out->ndim = 0, out->n = 0, out->f = NULL, out->i = NULL;
  if (strcmp(op, "ConstantOfShape") == 0) {
    const Onnx__AttributeProto *a = onnx_attr(n, "value");
    if (!x || !x->i || x->n > ONNX_MAX_DIMS) return "ConstantOfShape needs an integer shape";
    out->ndim = (int)x->n;
    copy_ints(out->dims, x->i, x->n);
    const Onnx__TensorProto *t = a ? a->t : NULL;
    const int floats = !t || t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
                       t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    double v = 0;
    if (t && t->has_raw_data && t->raw_data.len >= 4) {
      if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        float f;
        memcpy(&f, t->raw_data.data, 4), v = f;
      } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && t->raw_data.len >= 8) {
        int64_t i;
        memcpy(&i, t->raw_data.data, 8), v = (double)i;
      } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        int32_t i;
        memcpy(&i, t->raw_data.data, 4), v = i;
      }
    } else if (t && t->n_float_data) {
      v = t->float_data[0];
    } else if (t && t->n_int64_data) {
      v = (double)t->int64_data[0];
    } else if (t && t->n_int32_data) {
      v = t->int32_data[0];
    }
    const char *why = alloc_like(out, floats);
    for (size_t k = 0; !why && k < out->n; k++) put(out, k, v);
    return why;
  }
  if (!x) return "no input";
  if (strcmp(op, "Identity") == 0 || strcmp(op, "Dropout") == 0) {
    *out = *x;
    out->f = NULL, out->i = NULL;
    return copy_data(x, out);
  }
  if (strcmp(op, "Shape") == 0) {
    out->ndim = 1, out->dims[0] = x->ndim;
    const char *why = alloc_like(out, 0);
    for (int d = 0; !why && d < x->ndim; d++) out->i[d] = x->dims[d];
    return why;
  }
  if (strcmp(op, "Cast") == 0) {
    const Onnx__AttributeProto *a = onnx_attr(n, "to");
    const int64_t to = a && a->has_i ? a->i : 0;
    const int floats = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
                       to == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE ||
                       to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
    *out = *x;
    out->f = NULL, out->i = NULL;
    const char *why = alloc_like(out, floats);
    for (size_t k = 0; !why && k < out->n; k++) {
      const double v = get(x, k);
      if (!floats && !(fabs(v) < 9.2e18)) return "Cast of a value no integer holds";
      put(out, k, floats ? v : trunc(v));
    }
    return why;
  }
  if (strcmp(op, "Gather") == 0)
    return n_in >= 2 && in[1] ? fold_gather(n, x, in[1], out) : "no indices";
  if (strcmp(op, "Concat") == 0) return fold_concat(n, in, n_in, out);
  if (strcmp(op, "Reshape") == 0)
    return n_in >= 2 && in[1] ? fold_reshape(x, in[1], out) : "no shape";
  if (strcmp(op, "Slice") == 0) return fold_slice(n, in, n_in, out);
  if (strcmp(op, "Transpose") == 0) return fold_transpose(n, x, out);
  if (strcmp(op, "Flatten") == 0) {
    const Onnx__AttributeProto *a = onnx_attr(n, "axis");
    int axis = 0;
    if (!axis_of(a && a->has_i ? a->i : 1, x->ndim + 1, &axis)) return "Flatten axis";
    int64_t lead = 1;
    for (int d = 0; d < axis; d++) lead *= x->dims[d];
    out->ndim = 2, out->dims[0] = lead, out->dims[1] = lead ? (int64_t)x->n / lead : 0;
    return copy_data(x, out);
  }
  if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
    int64_t axes[ONNX_MAX_DIMS];
    size_t count = 0;
    if (!axes_list(n, in, n_in, 1, axes, &count)) return "axes are not integers";
    unsigned marked = 0;
    if (op[0] == 'U') {
      const int rank = x->ndim + (int)count;
      if (rank > ONNX_MAX_DIMS) return "too many dimensions";
      for (size_t j = 0; j < count; j++) {
        int ax;
        if (!axis_of(axes[j], rank, &ax) || (marked >> ax) & 1) return "bad axes";
        marked |= 1u << ax;
      }
      for (int d = 0, src = 0; d < rank; d++) out->dims[d] = (marked >> d) & 1 ? 1 : x->dims[src++];
      out->ndim = rank;
    } else {
      for (size_t j = 0; j < count; j++) {
        int ax;
        if (!axis_of(axes[j], x->ndim, &ax) || x->dims[ax] != 1) return "squeezing a non-1 axis";
        marked |= 1u << ax;
      }
      for (int d = 0; d < x->ndim; d++)
        if (count ? !((marked >> d) & 1) : x->dims[d] != 1) out->dims[out->ndim++] = x->dims[d];
    }
    return copy_data(x, out);
  }
  static const char *const arith[4] = {"Add", "Sub", "Mul", "Div"};
  for (int k = 0; k < 4; k++)
    if (strcmp(op, arith[k]) == 0)
      return n_in >= 2 && in[1] ? fold_arith(arith[k][0], x, in[1], out) : "one input";
  return "not a foldable op";
}
